/*
 * rudp_cc_cubic.c - CUBIC (RFC 9438): slow start, then a cubic window
 * growth around the window of the last reduction (W_max), never slower
 * than Reno; multiplicative decrease by 0.7 once per round of losses.
 */
#include <math.h>

#include "rudp_cc.h"

#define CUBIC_C 0.4
#define CUBIC_BETA 0.7

static void cubic_init(struct rudp_cc *cc, uint64_t now_us)
{
	(void)now_us;
	cc->u.cubic.ssthresh = UINT64_MAX;
	cc->pacing_Bps = cc->cwnd * 1000000 / cc->srtt_hint_us * 2;
}

static void set_pacing(struct rudp_cc *cc, uint64_t srtt_us)
{
	struct rudp_cubic *c = &cc->u.cubic;
	if (!srtt_us)
		srtt_us = cc->srtt_hint_us;
	/* RFC 9002 7.7: pace at a multiple of cwnd/srtt so ACK clocking never starves */
	uint64_t gain = cc->cwnd < c->ssthresh ? 200 : 125;
	cc->pacing_Bps = cc->cwnd * 1000000 / srtt_us * gain / 100;
}

static void cubic_on_ack(struct rudp_cc *cc, const struct rudp_ack_sample *s)
{
	struct rudp_cubic *c = &cc->u.cubic;
	if (s->srtt_us)
		c->srtt_us = s->srtt_us;
	if (s->acked_bytes == 0)
		goto out;
	if (cc->cwnd < c->ssthresh) {
		cc->cwnd += s->acked_bytes;
		goto out;
	}
	if (!c->epoch_us) {
		c->epoch_us = s->now_us;
		c->w_est = cc->cwnd;
		if (c->w_max < cc->cwnd) {
			c->w_max = cc->cwnd;
			c->k = 0;
		}
	}
	double t = (double)(s->now_us - c->epoch_us + c->srtt_us) / 1e6;
	double mss = cc->mss;
	double w_cubic = (CUBIC_C * pow(t - c->k, 3) + (double)c->w_max / mss) * mss;
	/* Reno-friendly region (RFC 9438 4.3) */
	c->w_est += (uint64_t)(3.0 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA) * mss *
			       (double)s->acked_bytes / (double)cc->cwnd);
	double target = w_cubic > (double)c->w_est ? w_cubic : (double)c->w_est;
	if (target > 1.5 * (double)cc->cwnd)
		target = 1.5 * (double)cc->cwnd;
	if (target > (double)cc->cwnd)
		cc->cwnd += (uint64_t)((target - (double)cc->cwnd) * (double)s->acked_bytes /
				       (double)cc->cwnd);
out:
	set_pacing(cc, c->srtt_us);
}

static void cubic_on_loss(struct rudp_cc *cc, uint64_t lost, uint64_t sent_us, uint64_t now_us)
{
	(void)lost;
	struct rudp_cubic *c = &cc->u.cubic;
	/* one reduction per round: losses of packets sent before the last one are old news */
	if (sent_us <= c->recovery_start_us)
		return;
	c->recovery_start_us = now_us;
	c->w_max = cc->cwnd;
	uint64_t min = (uint64_t)RUDP_MIN_WINDOW_PKTS * cc->mss;
	cc->cwnd = (uint64_t)((double)cc->cwnd * CUBIC_BETA);
	if (cc->cwnd < min)
		cc->cwnd = min;
	c->ssthresh = cc->cwnd;
	c->k = cbrt((double)c->w_max / cc->mss * (1 - CUBIC_BETA) / CUBIC_C);
	c->epoch_us = 0;
	set_pacing(cc, c->srtt_us);
}

static void cubic_on_persistent(struct rudp_cc *cc, uint64_t now_us)
{
	struct rudp_cubic *c = &cc->u.cubic;
	c->recovery_start_us = now_us;
	c->ssthresh = cc->cwnd / 2 > 2u * cc->mss ? cc->cwnd / 2 : 2u * cc->mss;
	cc->cwnd = (uint64_t)RUDP_MIN_WINDOW_PKTS * cc->mss;
	c->epoch_us = 0;
	set_pacing(cc, c->srtt_us);
}

const struct rudp_cc_ops rudp_cc_cubic = {
	.name = "cubic",
	.init = cubic_init,
	.on_ack = cubic_on_ack,
	.on_loss = cubic_on_loss,
	.on_persistent_congestion = cubic_on_persistent,
};
