/*
 * rudp_cc_bbr.c - a BBR-style controller: estimate the bottleneck
 * bandwidth (max delivery rate over 10 rounds) and the round-trip
 * propagation time (min RTT over 10 s); pace at gain x bandwidth and
 * keep about two bandwidth-delay products in flight.
 *
 * States as in BBRv1 (STARTUP, DRAIN, PROBE_BW with the 8-phase gain
 * cycle, PROBE_RTT). Loss, after BBRv2/v3: random loss does not shrink the
 * model; a round with more than 2 % of its bytes lost (and at least 6
 * packets) ends startup and lowers inflight_hi by 0.7, but never below
 * 1.5 BDP: the pipe stays full and the 1.25 probing phases can still find
 * more bandwidth (a floor at 1 BDP starved the estimate at 5 % random
 * loss in the simulated-path test). inflight_hi grows back in rounds
 * without heavy loss.
 */
#include "rudp_cc.h"

enum { BBR_STARTUP, BBR_DRAIN, BBR_PROBE_BW, BBR_PROBE_RTT };

#define BBR_HIGH_GAIN 289          /* percent: 2/ln 2 */
#define BBR_CWND_GAIN 200
#define BBR_MIN_RTT_WIN_US 10000000ull
#define BBR_PROBE_RTT_US 200000ull
#define BBR_LOSS_THRESH_PCT 2
#define BBR_BW_ROUNDS 10
#define BBR_LOSS_MIN_PKTS 6
#define BBR_AGGREGATION_US 3000ull /* pacing burst (2 ms) + the 1 ms timer tick */

static const unsigned cycle_gain[8] = { 125, 75, 100, 100, 100, 100, 100, 100 };

static uint64_t min_window(const struct rudp_cc *cc)
{
	return (uint64_t)RUDP_MIN_WINDOW_PKTS * cc->mss;
}

static uint64_t bdp(const struct rudp_cc *cc)
{
	const struct rudp_bbr *b = &cc->u.bbr;
	if (!b->bw || b->min_rtt_us == UINT64_MAX)
		return (uint64_t)RUDP_INITIAL_WINDOW_PKTS * cc->mss;
	return b->bw * b->min_rtt_us / 1000000;
}

static unsigned pacing_gain(const struct rudp_bbr *b)
{
	switch (b->state) {
	case BBR_STARTUP:
		return BBR_HIGH_GAIN;
	case BBR_DRAIN:
		return 100 * 100 / BBR_HIGH_GAIN;
	case BBR_PROBE_BW:
		return cycle_gain[b->cycle_idx];
	default:
		return 100;
	}
}

static void set_outputs(struct rudp_cc *cc)
{
	struct rudp_bbr *b = &cc->u.bbr;
	uint64_t rate = b->bw;
	if (!rate) {
		uint64_t rtt = b->min_rtt_us != UINT64_MAX ? b->min_rtt_us : cc->srtt_hint_us;
		rate = cc->cwnd * 1000000 / (rtt ? rtt : 1);
	}
	cc->pacing_Bps = rate * pacing_gain(b) / 100 * 99 / 100;
	if (b->state == BBR_PROBE_RTT) {
		cc->cwnd = min_window(cc);
		return;
	}
	/*
	 * Plus what the sender emits between two timer ticks and the receiver
	 * acknowledges per batch (Linux BBR adds 3 send quanta for the same
	 * reason): with a loopback RTT of ~20 us, 2 BDP alone is a few packets.
	 */
	uint64_t w = bdp(cc) * BBR_CWND_GAIN / 100 + b->bw * BBR_AGGREGATION_US / 1000000 +
		     3ull * cc->mss;
	if (b->state == BBR_STARTUP && w < cc->cwnd)
		w = cc->cwnd; /* never shrink while the model is still growing */
	if (w > b->inflight_hi)
		w = b->inflight_hi;
	cc->cwnd = w > min_window(cc) ? w : min_window(cc);
}

static void bbr_init(struct rudp_cc *cc, uint64_t now_us)
{
	struct rudp_bbr *b = &cc->u.bbr;
	b->state = BBR_STARTUP;
	b->min_rtt_us = UINT64_MAX;
	b->min_rtt_stamp_us = now_us;
	b->inflight_hi = UINT64_MAX;
	set_outputs(cc);
}

static void update_bw(struct rudp_bbr *b, const struct rudp_ack_sample *s, bool new_round)
{
	if (new_round)
		b->bw_max[b->round % BBR_BW_ROUNDS] = 0;
	uint64_t *slot = &b->bw_max[b->round % BBR_BW_ROUNDS];
	/* app-limited samples only count when they raise the estimate */
	if (s->rate_Bps && (!s->app_limited || s->rate_Bps > b->bw) && s->rate_Bps > *slot)
		*slot = s->rate_Bps;
	b->bw = 0;
	for (unsigned i = 0; i < BBR_BW_ROUNDS; i++)
		if (b->bw_max[i] > b->bw)
			b->bw = b->bw_max[i];
}

/* Startup ends when the bandwidth stopped growing by 25 % for 3 rounds. */
static void check_full_pipe(struct rudp_bbr *b, const struct rudp_ack_sample *s)
{
	if (s->app_limited)
		return;
	if (b->bw >= b->full_bw * 5 / 4) {
		b->full_bw = b->bw;
		b->full_bw_rounds = 0;
		return;
	}
	b->full_bw_rounds++;
}

/* End of a round: judge its loss rate (BBRv2's 2 % threshold). */
static void end_round(struct rudp_cc *cc, uint64_t inflight)
{
	struct rudp_bbr *b = &cc->u.bbr;
	uint64_t total = b->round_lost + b->round_delivered;
	bool heavy = total && b->round_lost * 100 > total * BBR_LOSS_THRESH_PCT &&
		     b->round_lost >= BBR_LOSS_MIN_PKTS * cc->mss;
	if (heavy) {
		uint64_t base = inflight > cc->cwnd ? inflight : cc->cwnd;
		uint64_t hi = base * 7 / 10;
		uint64_t floor = bdp(cc) * 3 / 2 + 3ull * cc->mss;
		b->inflight_hi = hi > floor ? hi : floor;
		if (b->state == BBR_STARTUP)
			b->state = BBR_DRAIN;
	} else if (b->inflight_hi != UINT64_MAX) {
		/* grow back: probing for room the loss may have been hiding */
		b->inflight_hi += b->inflight_hi / 4 + cc->mss;
		if (b->inflight_hi > 2 * bdp(cc) * BBR_CWND_GAIN / 100)
			b->inflight_hi = UINT64_MAX;
	}
	b->round_lost = b->round_delivered = 0;
}

static void advance_state(struct rudp_cc *cc, const struct rudp_ack_sample *s)
{
	struct rudp_bbr *b = &cc->u.bbr;
	if (b->state == BBR_STARTUP && b->full_bw_rounds >= 3)
		b->state = BBR_DRAIN;
	if (b->state == BBR_DRAIN && s->inflight <= bdp(cc)) {
		b->state = BBR_PROBE_BW;
		b->cycle_idx = 2;
		b->cycle_stamp_us = s->now_us;
	}
	if (b->state == BBR_PROBE_BW && b->min_rtt_us != UINT64_MAX &&
	    s->now_us - b->cycle_stamp_us > b->min_rtt_us) {
		b->cycle_idx = (b->cycle_idx + 1) % 8;
		b->cycle_stamp_us = s->now_us;
	}
	/* min RTT not refreshed for 10 s: drain the queue briefly to see the path's floor */
	if (b->state != BBR_PROBE_RTT && b->state != BBR_STARTUP &&
	    s->now_us - b->min_rtt_stamp_us > BBR_MIN_RTT_WIN_US) {
		b->state = BBR_PROBE_RTT;
		b->prior_cwnd = cc->cwnd;
		b->probe_rtt_done_us = s->now_us + BBR_PROBE_RTT_US;
	}
	if (b->state == BBR_PROBE_RTT && s->now_us >= b->probe_rtt_done_us) {
		b->min_rtt_stamp_us = s->now_us;
		b->state = BBR_PROBE_BW;
		b->cycle_idx = 2;
		b->cycle_stamp_us = s->now_us;
		cc->cwnd = b->prior_cwnd;
	}
}

static void bbr_on_ack(struct rudp_cc *cc, const struct rudp_ack_sample *s)
{
	struct rudp_bbr *b = &cc->u.bbr;
	if (s->rtt_us && (s->rtt_us <= b->min_rtt_us || b->min_rtt_us == UINT64_MAX)) {
		b->min_rtt_us = s->rtt_us;
		b->min_rtt_stamp_us = s->now_us;
	}
	if (s->srtt_us)
		cc->srtt_hint_us = s->srtt_us;
	/* s->lost_bytes came through on_loss already (which also hears timer-found losses) */
	b->round_delivered += s->acked_bytes;
	bool new_round = s->prior_delivered >= b->next_round_delivered && s->acked_bytes;
	if (new_round) {
		b->next_round_delivered = s->delivered;
		b->round++;
		end_round(cc, s->inflight);
	}
	update_bw(b, s, new_round);
	if (new_round && b->state == BBR_STARTUP)
		check_full_pipe(b, s);
	advance_state(cc, s);
	/* in startup, grow like slow start until the model catches up */
	if (b->state == BBR_STARTUP)
		cc->cwnd += s->acked_bytes;
	set_outputs(cc);
}

static void bbr_on_loss(struct rudp_cc *cc, uint64_t lost, uint64_t sent_us, uint64_t now_us)
{
	(void)sent_us;
	(void)now_us;
	cc->u.bbr.round_lost += lost;
}

static void bbr_on_persistent(struct rudp_cc *cc, uint64_t now_us)
{
	(void)now_us;
	struct rudp_bbr *b = &cc->u.bbr;
	/* the path may have changed completely: start over from a small window */
	for (unsigned i = 0; i < BBR_BW_ROUNDS; i++)
		b->bw_max[i] = 0;
	b->bw = 0;
	b->full_bw = 0;
	b->full_bw_rounds = 0;
	b->state = BBR_STARTUP;
	b->inflight_hi = UINT64_MAX;
	cc->cwnd = min_window(cc);
	set_outputs(cc);
}

const struct rudp_cc_ops rudp_cc_bbr = {
	.name = "bbr",
	.init = bbr_init,
	.on_ack = bbr_on_ack,
	.on_loss = bbr_on_loss,
	.on_persistent_congestion = bbr_on_persistent,
};
