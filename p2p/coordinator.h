/*
 * coordinator.h - the coordinator role of a service (crust_coordinator_start):
 * STUN Binding answers on UDP (coord_stun.c), rendezvous over crust
 * sessions (coordinator.c) and a capped relay (relay.c).
 *
 * Threads: the coordinator service has one shard; everything here but
 * crust_coordinator_start, crust_coordinator_stats and coord_free runs on
 * that shard's thread, so the tables need no locks. Counters are atomic
 * for the stats call.
 */
#ifndef CRUST_P2P_COORDINATOR_H
#define CRUST_P2P_COORDINATOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "crust.h"
#include "engine/udp.h"
#include "rendezvous_wire.h"

#define COORD_MAX_STUN 4u            /* STUN addresses (--listen) */
#define COORD_STUN_SLOTS 64u         /* answers in flight per socket */
#define COORD_STUN_RATE 5000u        /* answers per second, all sources (CPU bound) */
#define COORD_RELAY_TOKEN_MS 60000u  /* a relay token not used within this expires */

struct p2p_conn;
struct crust_service;
struct relay_leg;
struct relay_pair;

struct coord_counters {
	_Atomic uint64_t stun_requests, stun_answers, stun_errors, stun_dropped;
	_Atomic uint64_t registrations, registrations_refused, expired;
	_Atomic uint64_t rendezvous, rendezvous_unknown;
	_Atomic uint64_t relay_pairs, relay_bytes, relay_refused, relay_capped;
	_Atomic uint64_t registered_now;
};

struct coord_stun_slot {
	uint8_t bytes[96];
	bool busy;
};

struct coord_stun {
	struct coordinator *c;
	struct eng_udp u;
	int fd;                      /* ours until the shard opens it */
	bool opened;
	struct coord_stun_slot slots[COORD_STUN_SLOTS];
};

/* One node's registration: its proven id, where it is, until when. */
struct coord_reg {
	struct coord_reg *next;      /* hash chain */
	struct crust_peer_id id;
	struct p2p_conn *pc;         /* its session (shard thread) */
	struct crust_endpoint eps[RDV_MAX_EPS];  /* [0] observed, then what it registered */
	unsigned neps;
	uint8_t ip[16];              /* the observed IP, for the per-IP cap */
	uint64_t expires_ms;
};

#define COORD_BUCKETS 1024u

struct coordinator {
	struct crust_service *svc;
	struct shard *sh;
	struct crust_coordinator_config cfg;
	struct coord_stun stun[COORD_MAX_STUN];
	unsigned nstun;
	struct crust_endpoint stun_eps[COORD_MAX_STUN];   /* every address answering STUN */
	unsigned nstun_eps;
	struct eng_mail start_mail;
	struct eng_timer sweep;      /* drops expired registrations and tokens */
	double stun_tokens;
	uint64_t stun_tokens_ms;
	struct coord_reg *regs[COORD_BUCKETS];
	unsigned nregs;
	struct relay_pair *pairs;    /* relay.c: tokens handed out and pairs running */
	unsigned npairs;
	struct coord_counters n;
};

static inline void coord_count(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* coordinator.c: a rendezvous control message from a node's session. */
void coord_control(struct p2p_conn *pc, const uint8_t *p, uint32_t len);
/* coordinator.c: a connection closed (its registration or relay leg goes). */
void coord_conn_closed(struct p2p_conn *pc);
void coord_stop_shard(struct crust_service *svc, struct shard *sh);
void coord_free(struct crust_service *svc);

/* coord_stun.c: bind the STUN sockets (any thread), start them (shard), close them. */
int coord_stun_bind(struct coordinator *c, const struct crust_endpoint *eps, size_t n);
void coord_stun_start(struct coordinator *c);
void coord_stun_close(struct coordinator *c);
void coord_stun_free(struct coordinator *c);
/* Shard thread: a STUN datagram that reached the reliable-UDP listener. */
void coord_stun_datagram(struct crust_service *svc, struct shard *sh,
			 const struct sockaddr_storage *from, socklen_t fromlen, const uint8_t *p,
			 uint32_t len);

/* relay.c */
/* A token for a new pair (for the rendezvous): 0, or -EBUSY when at relay_max_pairs. */
int relay_token_new(struct coordinator *c, uint8_t token[RDV_TOKEN_LEN]);
/*
 * First frame of an accepted connection: if it is a relay preamble, the
 * connection becomes a relay leg (true, frame consumed or the connection
 * closed with a reason); false: not a relay preamble, go on with the handshake.
 */
bool relay_first_frame(struct p2p_conn *pc, const uint8_t *p, size_t len);
/* A frame on a relay leg: forwarded to the other leg (takes m). */
void relay_received(struct p2p_conn *pc, struct crust_msg *m);
void relay_leg_closed(struct p2p_conn *pc);
/* Drop tokens nobody used in time. */
void relay_expire(struct coordinator *c, uint64_t now);
void relay_free_all(struct coordinator *c);

#endif
