/*
 * rudp_cc.h - congestion control behind a small table of functions
 * (picoquic's shape): the recovery code reports acks (with a delivery
 * rate sample) and losses; a controller answers with a congestion window
 * and a pacing rate. Pure: time comes in as microseconds, no I/O.
 *
 * Controllers: "bbr" (the default; rudp_cc_bbr.c: a model of bottleneck
 * bandwidth and round-trip time that does not read random loss as
 * congestion) and "cubic" (rudp_cc_cubic.c: RFC 9438, for fairness with
 * loss-based flows).
 */
#ifndef CRUST_RUDP_CC_H
#define CRUST_RUDP_CC_H

#include <stdbool.h>
#include <stdint.h>

#define RUDP_INITIAL_WINDOW_PKTS 10u
#define RUDP_MIN_WINDOW_PKTS 4u

/* What one ACK frame told us (delivery rate estimation, draft-cheng-iccrg-delivery-rate-estimation). */
struct rudp_ack_sample {
	uint64_t now_us;
	uint64_t acked_bytes;       /* newly acknowledged, in-flight bytes */
	uint64_t lost_bytes;        /* declared lost while processing this ACK */
	uint64_t inflight;          /* bytes in flight after processing it */
	uint64_t rtt_us, srtt_us, min_rtt_us; /* rtt_us 0: no new sample */
	uint64_t delivered;         /* total bytes delivered so far */
	uint64_t prior_delivered;   /* delivered when the newest acked packet was sent */
	uint64_t rate_Bps;          /* delivery rate of this sample, 0 if none */
	bool app_limited;           /* the sample was taken while the sender had too little to send */
};

struct rudp_cc;

struct rudp_cc_ops {
	const char *name;
	void (*init)(struct rudp_cc *cc, uint64_t now_us);
	void (*on_ack)(struct rudp_cc *cc, const struct rudp_ack_sample *s);
	/* bytes lost; sent_us: when the newest of them was sent (one reaction per round) */
	void (*on_loss)(struct rudp_cc *cc, uint64_t lost_bytes, uint64_t sent_us, uint64_t now_us);
	/* RFC 9002 section 7.6: everything over a long span was lost */
	void (*on_persistent_congestion)(struct rudp_cc *cc, uint64_t now_us);
};

struct rudp_cubic {
	uint64_t ssthresh, w_max, epoch_us, recovery_start_us;
	double k;                   /* seconds */
	uint64_t w_est;             /* Reno-friendly estimate, bytes */
	uint64_t srtt_us;
};

struct rudp_bbr {
	int state;
	uint64_t bw_max[10];        /* max delivery rate per round, last 10 rounds (ring) */
	uint64_t bw;                /* their max, bytes/s */
	uint64_t min_rtt_us, min_rtt_stamp_us;
	uint64_t round, next_round_delivered;
	uint64_t full_bw;
	unsigned full_bw_rounds;
	unsigned cycle_idx;
	uint64_t cycle_stamp_us;
	uint64_t probe_rtt_done_us;
	uint64_t inflight_hi;       /* BBRv2/v3 bound after rounds with loss above 2 % */
	uint64_t round_lost, round_delivered;
	uint64_t prior_cwnd;
};

struct rudp_cc {
	const struct rudp_cc_ops *ops;
	uint32_t mss;               /* bytes of one full packet */
	uint64_t cwnd;              /* bytes */
	uint64_t pacing_Bps;        /* bytes per second */
	uint64_t srtt_hint_us;      /* for the pacing rate before any RTT sample */
	union {
		struct rudp_cubic cubic;
		struct rudp_bbr bbr;
	} u;
};

extern const struct rudp_cc_ops rudp_cc_cubic;
extern const struct rudp_cc_ops rudp_cc_bbr;

/* Find a controller by name ("bbr", "cubic"); NULL if unknown. */
const struct rudp_cc_ops *rudp_cc_find(const char *name);
void rudp_cc_init(struct rudp_cc *cc, const struct rudp_cc_ops *ops, uint32_t mss,
		  uint64_t now_us);

#endif
