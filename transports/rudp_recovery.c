/* rudp_recovery.c - RFC 9002 loss detection (see rudp_recovery.h). */
#include "rudp_recovery.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RING_INITIAL 1024u

int rudp_rec_init(struct rudp_recovery *r, struct rudp_cc *cc, const struct rudp_rec_ops *ops,
		  void *ctx, uint64_t max_ack_delay_us)
{
	memset(r, 0, sizeof(*r));
	r->ring = calloc(RING_INITIAL, sizeof(*r->ring));
	if (!r->ring)
		return -ENOMEM;
	r->mask = RING_INITIAL - 1;
	r->largest_acked = UINT64_MAX;
	r->srtt_us = RUDP_INITIAL_RTT_US;
	r->rttvar_us = RUDP_INITIAL_RTT_US / 2;
	r->min_rtt_us = UINT64_MAX;
	r->max_ack_delay_us = max_ack_delay_us;
	r->reorder = 3;
	r->time_thresh_8ths = 9;
	r->cc = cc;
	r->ops = ops;
	r->ctx = ctx;
	return 0;
}

void rudp_rec_free(struct rudp_recovery *r)
{
	free(r->ring);
	r->ring = NULL;
}

static struct rudp_sent_pkt *at(const struct rudp_recovery *r, uint64_t pn)
{
	return &r->ring[pn & r->mask];
}

static int grow(struct rudp_recovery *r)
{
	uint64_t n = (r->mask + 1) * 2;
	struct rudp_sent_pkt *ring = calloc(n, sizeof(*ring));
	if (!ring)
		return -ENOMEM;
	for (uint64_t pn = r->head_pn; pn < r->next_pn; pn++)
		ring[pn & (n - 1)] = *at(r, pn);
	free(r->ring);
	r->ring = ring;
	r->mask = n - 1;
	return 0;
}

struct rudp_sent_pkt *rudp_rec_next(struct rudp_recovery *r)
{
	if (r->next_pn - r->head_pn > r->mask && grow(r) < 0)
		return NULL;
	struct rudp_sent_pkt *p = at(r, r->next_pn);
	memset(p, 0, sizeof(*p));
	p->pn = r->next_pn;
	return p;
}

void rudp_rec_on_sent(struct rudp_recovery *r, struct rudp_sent_pkt *p, uint64_t now_us)
{
	p->time_us = now_us;
	if (p->flags & RUDP_PKT_IN_FLIGHT) {
		if (r->bytes_in_flight == 0)
			r->first_sent_time_us = r->delivered_time_us = now_us;
		p->delivered = r->delivered;
		p->delivered_time_us = r->delivered_time_us;
		p->first_sent_time_us = r->first_sent_time_us;
		p->app_limited = r->app_limited_until != 0;
		r->bytes_in_flight += p->size;
	}
	if (p->flags & RUDP_PKT_ACK_ELICITING) {
		r->eliciting_in_flight++;
		r->last_eliciting_sent_us = now_us;
	} else {
		/*
		 * Nothing to recover (a pure ACK): done at once. A peer that only
		 * receives never has its ACKs acknowledged, so they must not
		 * hold the ring's head.
		 */
		p->flags |= RUDP_PKT_DONE;
	}
	r->next_pn = p->pn + 1;
	r->sent_pkts++;
	while (r->head_pn < r->next_pn && (at(r, r->head_pn)->flags & RUDP_PKT_DONE))
		r->head_pn++;
}

void rudp_rec_app_limited(struct rudp_recovery *r)
{
	uint64_t mark = r->delivered + r->bytes_in_flight;
	r->app_limited_until = mark ? mark : 1;
}

static void leave_flight(struct rudp_recovery *r, struct rudp_sent_pkt *p)
{
	if ((p->flags & RUDP_PKT_IN_FLIGHT) && !(p->flags & RUDP_PKT_LOST))
		r->bytes_in_flight -= p->size;
	if ((p->flags & RUDP_PKT_ACK_ELICITING) && !(p->flags & RUDP_PKT_LOST))
		r->eliciting_in_flight--;
}

/* RFC 9002 section 5.3 */
static void update_rtt(struct rudp_recovery *r, uint64_t sample, uint64_t ack_delay)
{
	r->latest_rtt_us = sample;
	if (sample < r->min_rtt_us)
		r->min_rtt_us = sample;
	if (!r->have_rtt) {
		r->have_rtt = true;
		r->srtt_us = sample;
		r->rttvar_us = sample / 2;
		return;
	}
	if (ack_delay > r->max_ack_delay_us)
		ack_delay = r->max_ack_delay_us;
	uint64_t adjusted = sample >= r->min_rtt_us + ack_delay ? sample - ack_delay : sample;
	uint64_t diff = r->srtt_us > adjusted ? r->srtt_us - adjusted : adjusted - r->srtt_us;
	r->rttvar_us = (3 * r->rttvar_us + diff) / 4;
	r->srtt_us = (7 * r->srtt_us + adjusted) / 8;
}

struct ack_state {
	struct rudp_ack_sample s;
	uint64_t prior_time_us, send_elapsed, ack_elapsed;
	bool have_prior;
	uint64_t largest_newly_sent_us;
	bool largest_newly_eliciting;
};

/* Delivery rate estimation: the newest acknowledged packet sets the sample's interval. */
static void rate_on_acked(struct rudp_recovery *r, const struct rudp_sent_pkt *p, uint64_t now,
			  struct ack_state *st)
{
	r->delivered += p->size;
	r->delivered_time_us = now;
	if (!st->have_prior || p->delivered >= st->s.prior_delivered) {
		st->have_prior = true;
		st->s.prior_delivered = p->delivered;
		st->prior_time_us = p->delivered_time_us;
		st->s.app_limited = p->app_limited;
		st->send_elapsed = p->time_us - p->first_sent_time_us;
		st->ack_elapsed = now - p->delivered_time_us;
		r->first_sent_time_us = p->time_us;
	}
}

static void on_pkt_acked(struct rudp_recovery *r, struct rudp_sent_pkt *p, uint64_t now,
			 struct ack_state *st)
{
	if (p->flags & RUDP_PKT_LOST) {
		/* declared lost, yet it arrived: reordering, not loss; be more patient */
		r->spurious++;
		uint64_t dist = r->largest_acked - p->pn + 1;
		if (dist > r->reorder)
			r->reorder = dist < RUDP_REORDER_MAX ? (unsigned)dist : RUDP_REORDER_MAX;
		if (r->time_thresh_8ths < 16)
			r->time_thresh_8ths += 2;
	} else {
		leave_flight(r, p);
		if (p->flags & RUDP_PKT_IN_FLIGHT) {
			st->s.acked_bytes += p->size;
			rate_on_acked(r, p, now, st);
		}
	}
	p->flags |= RUDP_PKT_DONE;
	r->ops->acked(r->ctx, p);
}

static void declare_lost(struct rudp_recovery *r, struct rudp_sent_pkt *p, uint64_t now,
			 struct ack_state *st, uint64_t *first_lost_us, uint64_t *last_lost_us)
{
	leave_flight(r, p);
	p->flags |= RUDP_PKT_LOST;
	r->lost_pkts++;
	if ((p->flags & RUDP_PKT_IN_FLIGHT) && !(p->flags & RUDP_PKT_MTU_PROBE)) {
		r->lost_bytes += p->size;
		st->s.lost_bytes += p->size;
		if (!*first_lost_us || p->time_us < *first_lost_us)
			*first_lost_us = p->time_us;
		if (p->time_us > *last_lost_us)
			*last_lost_us = p->time_us;
	}
	(void)now;
	r->ops->lost(r->ctx, p);
}

/* Forget what no ACK can change any more: acknowledged, or lost long enough ago. */
static void advance_head(struct rudp_recovery *r, uint64_t now)
{
	uint64_t keep_lost = 2 * (r->srtt_us > r->latest_rtt_us ? r->srtt_us : r->latest_rtt_us) +
			     r->max_ack_delay_us;
	while (r->head_pn < r->next_pn) {
		struct rudp_sent_pkt *p = at(r, r->head_pn);
		bool gone = (p->flags & RUDP_PKT_DONE) ||
			    ((p->flags & RUDP_PKT_LOST) && now - p->time_us > keep_lost);
		if (!gone)
			break;
		r->head_pn++;
	}
}

uint64_t rudp_rec_pto_us(const struct rudp_recovery *r)
{
	uint64_t var = 4 * r->rttvar_us;
	return r->srtt_us + (var > RUDP_GRANULARITY_US ? var : RUDP_GRANULARITY_US) +
	       r->max_ack_delay_us;
}

static void detect_lost(struct rudp_recovery *r, uint64_t now, struct ack_state *st)
{
	r->loss_time_us = 0;
	if (r->largest_acked == UINT64_MAX)
		return;
	uint64_t rtt = r->latest_rtt_us > r->srtt_us ? r->latest_rtt_us : r->srtt_us;
	uint64_t delay = rtt * r->time_thresh_8ths / 8;
	if (delay < RUDP_GRANULARITY_US)
		delay = RUDP_GRANULARITY_US;
	uint64_t first_lost = 0, last_lost = 0;
	for (uint64_t pn = r->head_pn; pn < r->largest_acked && pn < r->next_pn; pn++) {
		struct rudp_sent_pkt *p = at(r, pn);
		if (p->flags & (RUDP_PKT_DONE | RUDP_PKT_LOST))
			continue;
		if (p->time_us + delay <= now || r->largest_acked - pn >= r->reorder) {
			declare_lost(r, p, now, st, &first_lost, &last_lost);
			continue;
		}
		uint64_t when = p->time_us + delay;
		if (!r->loss_time_us || when < r->loss_time_us)
			r->loss_time_us = when;
	}
	if (!st->s.lost_bytes)
		return;
	r->cc->ops->on_loss(r->cc, st->s.lost_bytes, last_lost, now);
	/* RFC 9002 7.6: losses spanning 3 PTOs with no ACK in between */
	if (r->have_rtt && last_lost - first_lost > 3 * rudp_rec_pto_us(r) && st->s.acked_bytes == 0)
		r->cc->ops->on_persistent_congestion(r->cc, now);
}

static int ack_range(struct rudp_recovery *r, uint64_t lo, uint64_t hi, uint64_t now,
		     struct ack_state *st)
{
	if (hi >= r->next_pn)
		return -EPROTO;
	if (lo < r->head_pn)
		lo = r->head_pn;
	for (uint64_t pn = hi + 1; pn-- > lo;) {
		struct rudp_sent_pkt *p = at(r, pn);
		if (p->flags & RUDP_PKT_DONE)
			continue;
		if (r->largest_acked == UINT64_MAX || pn > r->largest_acked) {
			r->largest_acked = pn;
			st->largest_newly_sent_us = p->time_us;
			st->largest_newly_eliciting = p->flags & RUDP_PKT_ACK_ELICITING;
		}
		on_pkt_acked(r, p, now, st);
	}
	return 0;
}

static void finish_sample(struct rudp_recovery *r, struct ack_state *st, uint64_t now)
{
	struct rudp_ack_sample *s = &st->s;
	s->now_us = now;
	s->inflight = r->bytes_in_flight;
	s->srtt_us = r->have_rtt ? r->srtt_us : 0;
	s->min_rtt_us = r->min_rtt_us;
	s->delivered = r->delivered;
	if (r->app_limited_until && r->delivered > r->app_limited_until)
		r->app_limited_until = 0;
	uint64_t interval = st->send_elapsed > st->ack_elapsed ? st->send_elapsed : st->ack_elapsed;
	uint64_t bytes = r->delivered - s->prior_delivered;
	/* a sample over less than one min RTT overestimates (ACK compression) */
	if (st->have_prior && interval && r->min_rtt_us != UINT64_MAX && interval >= r->min_rtt_us)
		s->rate_Bps = bytes * 1000000 / interval;
}

int rudp_rec_on_ack(struct rudp_recovery *r, const struct rudp_ack *a, uint64_t now_us)
{
	struct ack_state st;
	memset(&st, 0, sizeof(st));
	uint64_t prev_largest = r->largest_acked;
	for (unsigned i = 0; i < a->nranges; i++)
		if (ack_range(r, a->r[i].lo, a->r[i].hi, now_us, &st) < 0)
			return -EPROTO;
	if (r->largest_acked != prev_largest && st.largest_newly_eliciting) {
		st.s.rtt_us = now_us - st.largest_newly_sent_us;
		update_rtt(r, st.s.rtt_us, a->delay_us);
	}
	if (st.s.acked_bytes)
		r->pto_count = 0;
	detect_lost(r, now_us, &st);
	finish_sample(r, &st, now_us);
	r->cc->ops->on_ack(r->cc, &st.s);
	advance_head(r, now_us);
	return 0;
}

uint64_t rudp_rec_deadline(const struct rudp_recovery *r)
{
	if (r->loss_time_us)
		return r->loss_time_us;
	if (!r->eliciting_in_flight)
		return 0;
	/* without an RTT sample (the handshake) the PTO is a guess of about a
	 * second: doubling it at most once keeps several tries inside the
	 * handshake timeout on a lossy path (every 2 s, like a SYN's first retries) */
	unsigned cap = r->have_rtt ? 16 : 1;
	unsigned shift = r->pto_count < cap ? r->pto_count : cap;
	return r->last_eliciting_sent_us + (rudp_rec_pto_us(r) << shift);
}

unsigned rudp_rec_on_timeout(struct rudp_recovery *r, uint64_t now_us)
{
	if (r->loss_time_us && r->loss_time_us <= now_us) {
		struct ack_state st;
		memset(&st, 0, sizeof(st));
		detect_lost(r, now_us, &st);
		advance_head(r, now_us);
		return 0;
	}
	uint64_t d = rudp_rec_deadline(r);
	if (!d || d > now_us)
		return 0;
	/* PTO: probe, back off; the window stays (RFC 9002 6.2) */
	r->pto_count++;
	r->ptos++;
	return 2;
}

bool rudp_rec_outstanding(const struct rudp_recovery *r, uint64_t pn)
{
	if (pn < r->head_pn || pn >= r->next_pn)
		return false;
	return !(at(r, pn)->flags & (RUDP_PKT_DONE | RUDP_PKT_LOST));
}

const struct rudp_sent_pkt *rudp_rec_oldest_in_flight(const struct rudp_recovery *r)
{
	for (uint64_t pn = r->head_pn; pn < r->next_pn; pn++) {
		const struct rudp_sent_pkt *p = at(r, pn);
		if (!(p->flags & (RUDP_PKT_DONE | RUDP_PKT_LOST)) && p->nstream)
			return p;
	}
	return NULL;
}
