/*
 * rendezvous.h - the node side of NAT traversal: the session to the
 * coordinator, registration, the STUN client and our external endpoints
 * (rendezvous.c), and hole punching with relay fallback (punch.c).
 *
 * Threads: timers, the STUN socket, the coordinator session and every
 * punch attempt live on shard 0. Accepted connections and established
 * ones may be on any shard, and the user's threads call
 * crust_connect_id and crust_own_endpoints: what they touch is under
 * lock.
 */
#ifndef CRUST_P2P_RENDEZVOUS_H
#define CRUST_P2P_RENDEZVOUS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "crust.h"
#include "rendezvous_wire.h"

#define RDV_STUN_TRIES 4u           /* requests per round: after 0, 500, 1500, 3500 ms */
#define RDV_REDIAL_MIN_MS 1000u
#define RDV_REDIAL_MAX_MS 30000u
#define RDV_REFRESH_DEFAULT 20000u
#define PUNCH_TIMEOUT_DEFAULT 4000u
#define PUNCH_RETRY_MS 200u         /* connect() again this often while punching */
#define PUNCH_ASK_TIMEOUT_MS 5000u  /* the coordinator must answer a reach within this */
#define PUNCH_LINGER_MS 10000u      /* a finished punch absorbs late attempts this long */
#define RDV_DGRAM_MAX 512u          /* STUN answers and punch probes are smaller */

struct p2p_conn;
struct crust_service;
struct punch;

struct rendezvous {
	struct crust_service *svc;
	struct shard *sh;                /* shard 0 */
	struct crust_endpoint coord;     /* the coordinator: TCP session and UDP STUN */
	struct eng_mail start_mail;
	struct eng_mail nudge_mail;      /* re-register now: our candidates changed */
	atomic_bool nudge_pending;
	struct eng_mail moved_mail;      /* the listeners moved (rebind_interval_ms) */
	atomic_bool moved_posted;        /* moved_mail is queued */
	bool redial_now;                 /* shard 0: the session closes to move: redial at once */
	struct eng_timer tick;           /* session redial, registration refresh */
	struct eng_timer stun_timer;     /* STUN retransmissions */
	/* shard 0 only */
	struct p2p_conn *session;        /* the live session, NULL while down */
	bool dialing;
	uint32_t backoff_ms;
	struct rdv_stun_target {
		struct crust_endpoint to;
		uint8_t txid[12];
		bool answered;
	} stun[2];                       /* [0] the coordinator; [1] its second STUN address */
	unsigned nstun;
	unsigned stun_tries;
	/* under lock: read by other threads */
	pthread_mutex_t lock;
	bool registered;
	bool natted;                     /* our observed TCP endpoint is none of our own */
	bool has_ext_tcp, has_ext_udp, has_ext_udp2;
	struct crust_endpoint ext_tcp, ext_udp;
	struct crust_endpoint ext_udp2;  /* our mapping toward the second STUN address */
	struct punch *punches;           /* punch.c */
	uint32_t next_req;
};

/* rendezvous.c */
/* At crust_start_listening with cfg.coordinator set: parse it, bind the STUN socket, start. */
int rdv_start(struct crust_service *svc);
void rdv_stop_shard(struct crust_service *svc, struct shard *sh);
void rdv_free(struct crust_service *svc);
/* Shard 0: a rendezvous control message arrived on a connection. */
void rdv_control(struct p2p_conn *pc, const uint8_t *p, uint32_t len);
/* A connection is up / closed: the coordinator session's fate (any shard). */
void rdv_conn_up(struct p2p_conn *pc);
void rdv_conn_closed(struct p2p_conn *pc);
/* Shard 0: send a control message on the session; false if it is down. */
bool rdv_send(struct rendezvous *r, const struct rdv_msg *m);
/*
 * A datagram the reliable-UDP transport did not recognise (STUN answer,
 * punch probe), on any shard; handled on shard 0. sock_user: as the
 * transport's datagram callback gives it (an extra socket: shard 0).
 */
void rdv_datagram(struct crust_service *svc, struct shard *sh,
		  const struct sockaddr_storage *from, socklen_t fromlen, const uint8_t *p,
		  uint32_t len, void *sock_user);
/*
 * Any thread, after ports_rebind moved the listeners: on shard 0, ask
 * STUN again from the new UDP socket and move the coordinator session to
 * the new TCP port (close it, redial at once, register again), so peers
 * are handed our new public endpoints, not the old ports' mappings.
 */
void rdv_listeners_moved(struct crust_service *svc);
/*
 * Any thread: our candidates changed (a port mapping came or went): register
 * again now rather than at the next refresh. Not during crust_service_free.
 */
void rdv_candidates_changed(struct crust_service *svc);
/* Append our external endpoints (TCP, then UDP) to out (n room, got used); the new count. */
int rdv_external_endpoints(struct crust_service *svc, struct crust_endpoint *out, size_t n,
			   int got);

/* punch.c */
/* Shard 0: the coordinator answered with punch or refused. */
void punch_on_punch(struct rendezvous *r, const struct rdv_msg *m);
void punch_on_refused(struct rendezvous *r, const struct rdv_msg *m);
/* Any shard: an accepted connection from a candidate of a running punch takes its role. */
void punch_claim(struct crust_service *svc, struct p2p_conn *pc);
/* Any shard: a punch attempt (pc->punch_req) is up, or failed before it was. */
void punch_established(struct p2p_conn *pc);
void punch_attempt_failed(struct p2p_conn *pc);
/*
 * Shard 0: a datagram that is not STUN: maybe a punch probe. sock_user:
 * NULL from the listener, else the struct bday_sock it reached.
 */
void punch_probe(struct rendezvous *r, const struct sockaddr_storage *from, const uint8_t *p,
		 uint32_t len, void *sock_user);
/*
 * Any shard but 0, as a datagram that is not STUN is read (before it is
 * mailed to shard 0 for punch_probe): learn at once what a punch probe says
 * of the method, so a connection the same socket brings next names it.
 */
void punch_probe_seen(struct rendezvous *r, const struct sockaddr_storage *from,
		      const uint8_t *p, uint32_t len);
/* Shard 0, at stop: cancel the punches' timers; free them. */
void punch_stop(struct rendezvous *r);
void punch_free_all(struct rendezvous *r);

#endif
