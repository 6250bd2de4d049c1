/*
 * test_rudp_recovery.c - loss detection (RFC 9002) and congestion control
 * without sockets or clocks: packet and time thresholds, spurious losses
 * that widen the thresholds, probe timeouts that keep the window, ACKs of
 * packets never sent; then both controllers on a simulated 200 Mbit/s,
 * 20 ms path with random loss (simulated time: nothing here depends on
 * how fast the machine is).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "transports/rudp_cc.h"
#include "transports/rudp_ranges.h"
#include "transports/rudp_recovery.h"

#define MSS 1200u

struct tally {
	uint64_t acked, lost, acked_bytes, lost_bytes;
	uint64_t lost_pns[64];
};

static void on_acked(void *ctx, const struct rudp_sent_pkt *p)
{
	struct tally *t = ctx;
	t->acked++;
	t->acked_bytes += p->size;
}

static void on_lost(void *ctx, const struct rudp_sent_pkt *p)
{
	struct tally *t = ctx;
	if (t->lost < 64)
		t->lost_pns[t->lost] = p->pn;
	t->lost++;
	t->lost_bytes += p->size;
}

static const struct rudp_rec_ops ops = { .acked = on_acked, .lost = on_lost };

struct fixture {
	struct rudp_cc cc;
	struct rudp_recovery r;
	struct tally t;
};

static void setup(struct fixture *f, const struct rudp_cc_ops *cc)
{
	memset(f, 0, sizeof(*f));
	rudp_cc_init(&f->cc, cc, MSS, 0);
	cr_assert(zero(int, rudp_rec_init(&f->r, &f->cc, &ops, &f->t, 25000)));
}

static void send_at(struct fixture *f, uint64_t now)
{
	struct rudp_sent_pkt *p = rudp_rec_next(&f->r);
	cr_assert(not(eq(ptr, p, NULL)));
	p->size = MSS;
	p->flags = RUDP_PKT_ACK_ELICITING | RUDP_PKT_IN_FLIGHT;
	rudp_rec_on_sent(&f->r, p, now);
}

static void ack(struct fixture *f, uint64_t lo, uint64_t hi, uint64_t now)
{
	struct rudp_ack a = { .nranges = 1, .r = { { lo, hi } } };
	cr_assert(zero(int, rudp_rec_on_ack(&f->r, &a, now)));
}

Test(rudp_recovery, three_later_acks_declare_a_packet_lost)
{
	static struct fixture f;
	setup(&f, &rudp_cc_cubic);
	for (int i = 0; i < 10; i++)
		send_at(&f, 1000);
	ack(&f, 3, 9, 2000);
	cr_assert(eq(u64, f.t.lost, 3), "0, 1 and 2 are 3+ behind 9");
	cr_assert(eq(u64, f.t.acked, 7));
	cr_assert(eq(u64, f.r.bytes_in_flight, 0));
	rudp_rec_free(&f.r);
}

Test(rudp_recovery, time_threshold_catches_a_tail_loss)
{
	static struct fixture f;
	setup(&f, &rudp_cc_cubic);
	send_at(&f, 0);
	send_at(&f, 0);
	ack(&f, 1, 1, 20000); /* rtt 20 ms; packet 0 only 1 behind */
	cr_assert(zero(u64, f.t.lost));
	uint64_t d = rudp_rec_deadline(&f.r);
	cr_assert(eq(u64, d, 20000 * 9 / 8), "lost at 9/8 RTT after it was sent");
	cr_assert(zero(u32, rudp_rec_on_timeout(&f.r, d)));
	cr_assert(eq(u64, f.t.lost, 1));
	rudp_rec_free(&f.r);
}

Test(rudp_recovery, a_spurious_loss_widens_both_thresholds)
{
	static struct fixture f;
	setup(&f, &rudp_cc_cubic);
	for (int i = 0; i < 10; i++)
		send_at(&f, 0);
	ack(&f, 6, 9, 10000);
	cr_assert(eq(u64, f.t.lost, 6));
	unsigned before_time = f.r.time_thresh_8ths;
	ack(&f, 0, 0, 11000); /* packet 0 was only late */
	cr_assert(eq(u64, f.r.spurious, 1));
	cr_assert(ge(u32, f.r.reorder, 10), "threshold grows to the reordering seen");
	cr_assert(gt(u32, f.r.time_thresh_8ths, before_time));
	/* the same reordering again is no longer a loss */
	for (int i = 0; i < 10; i++)
		send_at(&f, 12000);
	uint64_t lost = f.t.lost;
	ack(&f, 16, 19, 13000);
	cr_assert(eq(u64, f.t.lost, lost), "4 behind is within the new threshold");
	rudp_rec_free(&f.r);
}

Test(rudp_recovery, probe_timeouts_back_off_and_keep_the_window)
{
	static struct fixture f;
	setup(&f, &rudp_cc_bbr);
	send_at(&f, 0);
	ack(&f, 0, 0, 10000);
	send_at(&f, 20000);
	uint64_t cwnd = f.cc.cwnd;
	uint64_t d1 = rudp_rec_deadline(&f.r);
	cr_assert(eq(u32, rudp_rec_on_timeout(&f.r, d1), 2), "a PTO asks for two probes");
	uint64_t d2 = rudp_rec_deadline(&f.r);
	cr_assert(eq(u64, d2 - 20000, 2 * (d1 - 20000)), "the next PTO is twice as far");
	cr_assert(eq(u64, f.cc.cwnd, cwnd), "no window collapse on a PTO");
	cr_assert(zero(u64, f.t.lost), "a PTO declares nothing lost");
	rudp_rec_free(&f.r);
}

Test(rudp_recovery, an_ack_of_a_packet_never_sent_is_refused)
{
	static struct fixture f;
	setup(&f, &rudp_cc_cubic);
	send_at(&f, 0);
	struct rudp_ack a = { .nranges = 1, .r = { { 0, 5 } } };
	cr_assert(eq(int, rudp_rec_on_ack(&f.r, &a, 1000), -EPROTO));
	rudp_rec_free(&f.r);
}

Test(rudp_recovery, pure_acks_never_pile_up)
{
	/* a receive-only peer's ACKs are never acknowledged: they must not hold memory */
	static struct fixture f;
	setup(&f, &rudp_cc_cubic);
	for (int i = 0; i < 100000; i++) {
		struct rudp_sent_pkt *p = rudp_rec_next(&f.r);
		p->size = 40;
		rudp_rec_on_sent(&f.r, p, (uint64_t)i);
	}
	cr_assert(eq(u64, f.r.head_pn, f.r.next_pn));
	cr_assert(lt(u64, f.r.mask, 4096), "the ring did not grow");
	cr_assert(zero(u64, rudp_rec_deadline(&f.r)), "nothing to time out");
	rudp_rec_free(&f.r);
}

Test(rudp_cc, cubic_reduces_once_per_round_of_losses)
{
	struct rudp_cc cc;
	rudp_cc_init(&cc, &rudp_cc_cubic, MSS, 0);
	cc.cwnd = 100 * MSS;
	cc.ops->on_loss(&cc, MSS, 1000, 5000);
	uint64_t after = cc.cwnd;
	cr_assert(eq(u64, after, 70 * MSS));
	cc.ops->on_loss(&cc, MSS, 900, 6000); /* sent before the reduction: same round */
	cr_assert(eq(u64, cc.cwnd, after));
	cc.ops->on_loss(&cc, MSS, 7000, 8000);
	cr_assert(lt(u64, cc.cwnd, after));
	cc.ops->on_persistent_congestion(&cc, 9000);
	cr_assert(eq(u64, cc.cwnd, (uint64_t)RUDP_MIN_WINDOW_PKTS * MSS));
}

/*
 * A loss found while processing an ACK reaches BBR twice: through on_loss and
 * in the ACK sample's lost_bytes. Counted both times, 1 % random loss looked
 * like 2 % (the threshold of a heavy round) and cut inflight_hi.
 */
Test(rudp_cc, bbr_counts_a_loss_once)
{
	static struct fixture f;
	setup(&f, &rudp_cc_bbr);
	for (int i = 0; i < 20; i++)
		send_at(&f, 0);
	ack(&f, 0, 0, 20000); /* a round starts: it ends when a packet sent from now is acked */
	ack(&f, 4, 19, 21000); /* 1, 2, 3 are 3+ behind 19: lost, within the round */
	cr_assert(eq(u64, f.t.lost, 3));
	cr_assert(eq(u64, f.cc.u.bbr.round_lost, 3 * MSS), "3 packets lost, counted %llu bytes",
		  (unsigned long long)f.cc.u.bbr.round_lost);
	rudp_rec_free(&f.r);
}

/* ---- a simulated path: bottleneck rate, fixed delay, drop-tail queue, random loss ---- */

#define SIM_RATE_BPS (200000000ull / 8) /* 200 Mbit/s in bytes/s */
#define SIM_OWD_US 10000ull             /* one way */
#define SIM_QUEUE_US 20000ull           /* ~1 BDP of queue */
#define SIM_STEP_US 100ull
#define SIM_SECONDS 6ull
#define SIM_EVENTS (1u << 16)

struct sim_ev {
	uint64_t at;
	uint64_t pn;
	bool is_ack;
};

struct sim {
	struct fixture f;
	uint64_t rng, link_free, tokens, last;
	double loss;
	struct rudp_ranges rx;
	struct sim_ev ev[SIM_EVENTS];
	unsigned head, tail;
	uint64_t queue_drops;
};

static double rnd(struct sim *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return (double)(s->rng >> 11) / 9007199254740992.0;
}

static void push(struct sim *s, uint64_t at, uint64_t pn, bool is_ack)
{
	/* events are pushed in time order per kind; keep one sorted queue by insertion */
	unsigned i = s->tail++;
	while (i != s->head && s->ev[(i - 1) % SIM_EVENTS].at > at) {
		s->ev[i % SIM_EVENTS] = s->ev[(i - 1) % SIM_EVENTS];
		i--;
	}
	s->ev[i % SIM_EVENTS] = (struct sim_ev){ at, pn, is_ack };
}

static void sim_send(struct sim *s, uint64_t now)
{
	struct rudp_sent_pkt *p = rudp_rec_next(&s->f.r);
	p->size = MSS;
	p->flags = RUDP_PKT_ACK_ELICITING | RUDP_PKT_IN_FLIGHT;
	rudp_rec_on_sent(&s->f.r, p, now);
	if (rnd(s) < s->loss)
		return;
	uint64_t start = s->link_free > now ? s->link_free : now;
	if (start - now > SIM_QUEUE_US) {
		s->queue_drops++;
		return;
	}
	s->link_free = start + MSS * 1000000ull / SIM_RATE_BPS;
	push(s, s->link_free + SIM_OWD_US, p->pn, false);
}

static void sim_events(struct sim *s, uint64_t now)
{
	bool acked_any = false;
	while (s->head != s->tail && s->ev[s->head % SIM_EVENTS].at <= now) {
		struct sim_ev e = s->ev[s->head++ % SIM_EVENTS];
		if (!e.is_ack) {
			/* checked: an empty set has no max (faults build: allocations fail) */
			cr_assert(ge(int, rudp_ranges_add(&s->rx, e.pn, e.pn), 0));
			acked_any = true;
			continue;
		}
		/* e.pn is the largest the ACK covers: the receiver's ranges up to it */
		struct rudp_ack a = { .nranges = 0 };
		for (unsigned i = s->rx.n; i-- > 0 && a.nranges < RUDP_MAX_ACK_RANGES;) {
			if (s->rx.r[i].lo > e.pn)
				continue;
			a.r[a.nranges].lo = s->rx.r[i].lo;
			a.r[a.nranges].hi = s->rx.r[i].hi < e.pn ? s->rx.r[i].hi : e.pn;
			a.nranges++;
		}
		if (a.nranges)
			cr_assert(zero(int, rudp_rec_on_ack(&s->f.r, &a, now)));
	}
	/* one ACK per step with arrivals, lost with the same probability */
	if (acked_any && rnd(s) >= s->loss)
		push(s, now + SIM_OWD_US, rudp_ranges_max(&s->rx), true);
}

struct sim_result {
	double goodput_mbps, retx_ratio;
};

static struct sim_result simulate(const struct rudp_cc_ops *cc, double loss)
{
	static struct sim s;
	memset(&s, 0, sizeof(s));
	setup(&s.f, cc);
	s.rng = 0x9e3779b97f4a7c15ull;
	s.loss = loss;
	rudp_ranges_init(&s.rx, RUDP_MAX_ACK_RANGES);
	uint64_t end = SIM_SECONDS * 1000000ull;
	for (uint64_t now = 0; now < end; now += SIM_STEP_US) {
		sim_events(&s, now);
		uint64_t d = rudp_rec_deadline(&s.f.r);
		unsigned probes = d && d <= now ? rudp_rec_on_timeout(&s.f.r, now) : 0;
		while (probes--)
			sim_send(&s, now);
		s.tokens += s.f.cc.pacing_Bps * SIM_STEP_US / 1000000;
		uint64_t burst = s.f.cc.pacing_Bps * 2000 / 1000000 + 10 * MSS;
		if (s.tokens > burst)
			s.tokens = burst;
		while (s.f.r.bytes_in_flight + MSS <= s.f.cc.cwnd && s.tokens >= MSS) {
			sim_send(&s, now);
			s.tokens -= MSS;
		}
	}
	struct sim_result r;
	r.goodput_mbps = (double)s.f.t.acked_bytes * 8 / (double)SIM_SECONDS / 1e6;
	r.retx_ratio = (double)s.f.t.lost_bytes / (double)s.f.t.acked_bytes;
	cr_log_info("%s loss %.3f: goodput %.1f Mbit/s, lost/delivered %.4f, queue drops %llu",
		    cc->name, loss, r.goodput_mbps, r.retx_ratio, (unsigned long long)s.queue_drops);
	rudp_rec_free(&s.f.r);
	rudp_ranges_free(&s.rx);
	return r;
}

Test(rudp_cc, bbr_keeps_the_path_full_under_random_loss, .timeout = 120)
{
	static const double losses[] = { 0, 0.01, 0.05 };
	for (unsigned i = 0; i < 3; i++) {
		struct sim_result r = simulate(&rudp_cc_bbr, losses[i]);
		/* includes startup; the bar is 0.9 x link x (1 - loss) in steady state */
		cr_assert(ge(dbl, r.goodput_mbps, 0.75 * 200 * (1 - losses[i])),
			  "bbr at loss %.2f: %.1f Mbit/s", losses[i], r.goodput_mbps);
		cr_assert(le(dbl, r.retx_ratio, losses[i] * 1.2 + 0.02),
			  "bbr at loss %.2f sends little beyond the loss: %.4f", losses[i],
			  r.retx_ratio);
	}
}

Test(rudp_cc, cubic_fills_a_clean_path_and_backs_off_under_loss, .timeout = 120)
{
	struct sim_result clean = simulate(&rudp_cc_cubic, 0);
	cr_assert(ge(dbl, clean.goodput_mbps, 150), "cubic clean: %.1f", clean.goodput_mbps);
	struct sim_result lossy = simulate(&rudp_cc_cubic, 0.01);
	cr_assert(lt(dbl, lossy.goodput_mbps, clean.goodput_mbps), "loss-based: it yields to loss");
}

Test(rudp_cc, the_table_knows_bbr_cubic_and_nothing_else)
{
	cr_assert(eq(ptr, (void *)rudp_cc_find(NULL), (void *)&rudp_cc_bbr), "default");
	cr_assert(eq(ptr, (void *)rudp_cc_find("bbr"), (void *)&rudp_cc_bbr));
	cr_assert(eq(ptr, (void *)rudp_cc_find("cubic"), (void *)&rudp_cc_cubic));
	cr_assert(eq(ptr, (void *)rudp_cc_find("reno"), NULL));
	cr_assert(eq(ptr, (void *)rudp_cc_find(""), NULL));
}
