/*
 * rudp_recovery.h - loss detection and RTT estimation after RFC 9002,
 * with delivery-rate samples for the congestion controller. Pure: the
 * caller passes the time (microseconds) and gets callbacks for packets
 * acknowledged or lost; no I/O.
 *
 * Every packet number is used once, in order, so the packets sent live
 * in a ring indexed by number. A packet is lost when a packet sent
 * `reorder` numbers later was acknowledged (packet threshold, starts at
 * 3) or when it was sent more than time_thresh x max(srtt, latest RTT)
 * before an acknowledged one (time threshold, starts at 9/8). Lost
 * packets are remembered a while: one acknowledged afterwards was a
 * spurious loss, and both thresholds then grow (to the reordering seen,
 * and towards 2 x RTT). A probe timeout (PTO) sends probes and backs off
 * but never shrinks the window; only persistent congestion does.
 */
#ifndef CRUST_RUDP_RECOVERY_H
#define CRUST_RUDP_RECOVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "rudp_cc.h"
#include "rudp_wire.h"

#define RUDP_PKT_ACK_ELICITING 0x01u
#define RUDP_PKT_IN_FLIGHT 0x02u     /* counts against the congestion window */
#define RUDP_PKT_MTU_PROBE 0x04u     /* its loss says nothing about congestion */
#define RUDP_PKT_LOST 0x08u
#define RUDP_PKT_DONE 0x10u          /* acknowledged, or lost and forgotten */
#define RUDP_PKT_STREAM_MAX 2u

#define RUDP_GRANULARITY_US 1000u
#define RUDP_INITIAL_RTT_US 333000u
#define RUDP_REORDER_MAX 256u

struct rudp_sent_pkt {
	uint64_t pn, time_us;
	uint32_t size;
	uint8_t flags;
	uint8_t nstream;
	bool app_limited;
	struct { uint64_t off; uint32_t len; } stream[RUDP_PKT_STREAM_MAX];
	uint64_t max_data;           /* a MAX_DATA frame it carried (0: none) */
	uint64_t delivered, delivered_time_us, first_sent_time_us;
};

struct rudp_rec_ops {
	void (*acked)(void *ctx, const struct rudp_sent_pkt *p);
	void (*lost)(void *ctx, const struct rudp_sent_pkt *p);
};

struct rudp_recovery {
	struct rudp_sent_pkt *ring;
	uint64_t mask;               /* ring size - 1 */
	uint64_t head_pn, next_pn;   /* remembered: [head_pn, next_pn) */
	uint64_t largest_acked;      /* UINT64_MAX: none yet */
	uint64_t srtt_us, rttvar_us, min_rtt_us, latest_rtt_us;
	bool have_rtt;
	uint64_t max_ack_delay_us;
	uint64_t bytes_in_flight, eliciting_in_flight;
	uint64_t last_eliciting_sent_us;
	uint64_t loss_time_us;       /* earliest time-threshold loss; 0: none */
	unsigned pto_count;
	unsigned reorder;            /* packet threshold */
	unsigned time_thresh_8ths;   /* time threshold in 1/8 RTT */
	/* delivery rate estimation state */
	uint64_t delivered, delivered_time_us, first_sent_time_us, app_limited_until;
	struct rudp_cc *cc;
	const struct rudp_rec_ops *ops;
	void *ctx;
	/* counters */
	uint64_t sent_pkts, lost_pkts, lost_bytes, spurious, ptos;
};

int rudp_rec_init(struct rudp_recovery *r, struct rudp_cc *cc, const struct rudp_rec_ops *ops,
		  void *ctx, uint64_t max_ack_delay_us);
void rudp_rec_free(struct rudp_recovery *r);
/*
 * The record for the next packet number (zeroed, pn set), or NULL when
 * out of memory. Fill it, then call rudp_rec_on_sent before the next.
 */
struct rudp_sent_pkt *rudp_rec_next(struct rudp_recovery *r);
void rudp_rec_on_sent(struct rudp_recovery *r, struct rudp_sent_pkt *p, uint64_t now_us);
/* The sender has less to send than the window allows (delivery-rate samples are app-limited). */
void rudp_rec_app_limited(struct rudp_recovery *r);
/*
 * An ACK frame arrived. Returns 0, or -EPROTO if it acknowledges a packet
 * number never sent (the peer lies or is broken).
 */
int rudp_rec_on_ack(struct rudp_recovery *r, const struct rudp_ack *a, uint64_t now_us);
/* When rudp_rec_on_timeout should run (0: nothing armed). */
uint64_t rudp_rec_deadline(const struct rudp_recovery *r);
/*
 * The deadline passed: time-threshold losses are declared, or (a PTO)
 * the backoff grows and the number of probe packets to send is returned.
 */
unsigned rudp_rec_on_timeout(struct rudp_recovery *r, uint64_t now_us);
/* The current probe timeout (without backoff). */
uint64_t rudp_rec_pto_us(const struct rudp_recovery *r);
/* Is pn still unacknowledged and not declared lost? */
bool rudp_rec_outstanding(const struct rudp_recovery *r, uint64_t pn);
/* The oldest packet still in flight (NULL if none), for probes to repeat. */
const struct rudp_sent_pkt *rudp_rec_oldest_in_flight(const struct rudp_recovery *r);

#endif
