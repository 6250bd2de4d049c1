/*
 * node.h - the service's internals, shared by the p2p files.
 *
 * Threads: the user's threads call the public API; each connection lives
 * on one shard. What both sides touch is the peer table (a read-write
 * lock) and peer_refs (refcounted, fields marked "atomic" or immutable).
 */
#ifndef CRUST_P2P_NODE_H
#define CRUST_P2P_NODE_H

#include <pthread.h>
#include <stdatomic.h>

#include "crust.h"
#include "engine/engine.h"
#include "engine/mailbox.h"
#include "engine/msg.h"
#include "transports/transport.h"
#include "beacon.h"
#include "blacklist.h"
#include "bootstrap.h"
#include "handshake.h"
#include "identity.h"
#include "limiter.h"
#include "session.h"

#define PEER_BUCKETS 1024u

struct p2p_conn;

/* A connected peer as the user's threads see it. */
struct peer_ref {
	atomic_uint refs;
	struct peer_ref *next;             /* bucket chain, under table lock */
	struct crust_peer_id id;           /* immutable */
	struct shard *sh;                  /* immutable: the connection's shard */
	struct p2p_conn *conn;             /* shard thread only; NULL once gone */
	atomic_uint_fast64_t queued;       /* frame bytes accepted, not yet sent */
	enum crust_transport transport;    /* immutable */
	struct sockaddr_storage addr;      /* immutable */
	uint8_t transcript[32];            /* immutable: names the connection on both ends */
	bool we_initiated;                 /* immutable */
	uint16_t listen_port;              /* immutable: the TCP port its handshake advertised */
	enum crust_via via;                /* immutable: how the connection was made */
	bool coordinator;                  /* immutable: our rendezvous session's peer */
	/* set once when a duplicate connection took over (shard thread of sh writes, others read) */
	_Atomic(struct peer_ref *) successor;
	atomic_bool dead;                  /* its connection is gone; waiting for a successor */
	atomic_bool closing;               /* its connection is closing (drop, error, blacklist) */
	struct crust_msg *parked, *parked_tail; /* sh thread: sent while dead, for the successor */
};

/* Control messages inside records: length field with this bit set, one code byte. */
#define CTRL_FLAG 0x80000000u
enum ctrl_code { CTRL_PING = 1, CTRL_RETIRE = 2, CTRL_PEX_ASK = 3, CTRL_PEX_LIST = 4 };
/* codes 5..9 are the rendezvous messages (rendezvous_wire.h) */

/*
 * HANDSHAKE -> CONFIRMING (initiator only: keys agreed, waiting for the
 * responder's first record, which proves it accepted us) -> UP
 * (announced, or silently taking over from a duplicate)
 * -> RETIRING (a duplicate that lost: drains, then closes without an event)
 * -> CLOSING. Any state can go straight to CLOSING.
 */
enum conn_state { CONN_HANDSHAKE, CONN_CONFIRMING, CONN_UP, CONN_RETIRING, CONN_CLOSING };

/* One connection, owned by its shard. */
struct p2p_conn {
	struct crust_service *svc;
	struct tp_conn *tc;
	struct peer_ref *ref;              /* once the hello is in */
	enum conn_state state;
	struct handshake *hs;              /* during the handshake */
	struct session session;            /* once up */
	struct eng_sealer sealer;
	struct eng_timer hs_timer;         /* handshake deadline */
	struct eng_timer tick;             /* keepalive, idle timeout, provisional grace */
	struct p2p_conn *prev, *next;      /* the shard's connection list */
	uint64_t unsent_msgs, unsent_bytes;
	uint64_t last_rx_ms, last_tx_ms, last_user_ms;
	double flood_tokens;               /* incoming-message budget (abuse limit) */
	uint64_t flood_ms;
	bool outgoing;
	bool expect_peer;                  /* dialed a known id */
	struct crust_peer_id expected;
	bool limited;                      /* holds a limiter slot for its source */
	bool maintained;
	bool rudp_fallback;                /* dialed ADDR:PORT over TCP: try reliable UDP if it fails */
	int tcp_err;                       /* why TCP failed before the fallback (0: no fallback) */
	bool peer_retired;                 /* the peer said this connection is a duplicate */
	bool refused;                      /* we sent a refusal: ignore input until it closes */
	bool abuse_reported;
	bool stopping;                     /* closed by crust_service_free */
	uint64_t pex_asked_ms;             /* pex.c: when our outstanding ask left (0: none) */
	uint64_t pex_served_ms;            /* pex.c: when we last answered an ask */
	/* NAT traversal. outgoing above is the handshake role, tc->outgoing who dialed:
	 * they differ on punched and relayed connections, where the coordinator names
	 * the initiator */
	enum crust_via via;                /* how it was made (new_connection's via) */
	uint32_t punch_req;                /* punch.c: the punch this attempt belongs to, 0 = none */
	uint8_t punch_cand;                /* punch.c: the candidate it dialed */
	bool rdv_session;                  /* rendezvous.c: our session to the coordinator */
	bool relay_dial;                   /* punch.c: send the relay preamble first */
	uint8_t relay_token[16];
	struct relay_leg *relay;           /* relay.c (coordinator): this is a relay leg */
	double rdv_tokens;                 /* coordinator.c: control-message budget */
	uint64_t rdv_tokens_ms;
};

struct wait_successor;

struct p2p_shard {
	struct p2p_conn *conns;
	struct wait_successor *waits;      /* dedupe.c: entries waiting for a successor */
	_Atomic unsigned nconns;          /* live connections, any state (crust_stats reads it) */
	_Atomic uint64_t rx_msgs, tx_msgs;
};

struct event_node {
	struct eng_mail link;
	struct crust_event ev;
};

struct crust_service {
	struct crust_config cfg;
	struct crust_peer_id id;
	struct eng *eng;
	struct transport *tcp;
	struct transport *rudp;
	struct p2p_shard *shards;
	uint8_t network_tag[8];
	atomic_uint next_shard;             /* round-robin for outgoing connects */
	/* peer table */
	pthread_rwlock_t peers_lock;
	struct peer_ref *peers[PEER_BUCKETS];
	unsigned npeers;
	/* listeners */
	pthread_mutex_t listen_lock;
	_Atomic uint16_t tcp_port;           /* 0 until listening; moves with ports_rebind */
	_Atomic uint16_t rudp_port;          /* 0 = no UDP listener; moves with ports_rebind */
	struct sockaddr_storage bind_addr;
	socklen_t bind_len;
	/* LAN beacon (beacon.c): hook fields under listen_lock */
	struct beacon *beacon;               /* NULL when off */
	_Atomic uint16_t beacon_port;        /* bound port, 0 = off */
	beacon_candidate_fn beacon_hook;
	void *beacon_hook_ctx;
	/* identity and policy */
	struct identity identity;
	struct limiter limiter;
	struct blacklist blacklist;
	bool identity_loaded, limiter_up, blacklist_up;
	/* events to the user */
	struct eng_mailbox events;
	int event_fd;
	pthread_mutex_t poll_lock;
	/* bootstrap, cache, peer exchange (bootstrap.c) */
	struct boot *boot;
	/*
	 * NAT traversal: the coordinator role (coordinator.c) or the node side (rendezvous.c).
	 * Atomic, as is portmap: set by the user's thread after the listeners are open, while
	 * shard threads already read them for every datagram and connection (TSan found the
	 * plain pointers racing in stress_p2p).
	 */
	struct coordinator *_Atomic coord;
	struct rendezvous *_Atomic rdv;
	/* port mapping at the gateway (nat/portmap.c), NULL when off */
	struct portmap *_Atomic portmap;
};

/* events.c */
int events_init(struct crust_service *svc);
void events_destroy(struct crust_service *svc);
/* Deliver ev (callback, or queue for crust_poll). ev->msg passes to the receiver. */
void event_emit(struct crust_service *svc, struct crust_event *ev);
void event_init(struct crust_event *ev, enum crust_event_type type);

/* peers.c */
struct peer_ref *peer_lookup(struct crust_service *svc, const struct crust_peer_id *id);
/* Insert (the table takes a reference), or return the entry already there (referenced). */
struct peer_ref *peer_insert_or_existing(struct crust_service *svc, struct peer_ref *ref);
/*
 * If old is still in the table, put ref in its place, make ref old's
 * successor and return true. The table's reference moves from old to
 * the successor link.
 */
bool peer_replace(struct crust_service *svc, struct peer_ref *old, struct peer_ref *ref);
void peer_remove(struct crust_service *svc, struct peer_ref *ref);
void peer_put(struct peer_ref *ref);
int peer_list(struct crust_service *svc, struct crust_peer_id *out, size_t n);

/* conn.c: transport upcalls and the shard side of the API */
extern const struct tp_callbacks conn_callbacks;
struct p2p_conn *conn_new(struct crust_service *svc, struct shard *sh, bool outgoing);
void conn_close(struct p2p_conn *pc, int err, const char *reason);
/* Close after telling the user it was abuse (event + log). */
void conn_abuse(struct p2p_conn *pc, int err, const char *reason);
void event_fill_conn(struct crust_event *ev, struct p2p_conn *pc);
/* Queue a control message (keepalive, retire) on an established connection. */
void conn_send_ctrl(struct p2p_conn *pc, enum ctrl_code code);
/* The same with a body: data[0] is the code (copied). */
void conn_send_ctrl_data(struct p2p_conn *pc, const uint8_t *data, size_t len);
/* The connection is up: announce (new peer) or take over from a duplicate quietly. */
void conn_established(struct p2p_conn *pc);

/* secure.c: the handshake and records on a connection */
int secure_start(struct p2p_conn *pc);
void secure_received(struct p2p_conn *pc, struct crust_msg *m);

/* dedupe.c: at most one connection per pair of nodes */
/* Register pc for its peer. Returns true if the user should hear new_connection. */
bool dedupe_register(struct p2p_conn *pc, struct peer_ref *ref);
/* Shard thread of the old connection: retire it in favour of its ref's successor. */
void dedupe_retire(struct p2p_conn *pc);
/*
 * pc (which has a ref) closed: QUIET (a retired duplicate), REPORT (tell
 * the user with lost), or WAIT (the peer retired it in favour of a
 * connection we have not seen yet: lost is reported later if that never
 * comes; the table entry stays until then).
 */
enum dedupe_close { DEDUPE_REPORT, DEDUPE_QUIET, DEDUPE_WAIT };
/* ref's shard: hand messages parked on a dead ref to its successor, or fail them. */
void conn_flush_parked(struct crust_service *svc, struct peer_ref *ref, bool fail);
enum dedupe_close dedupe_closed(struct p2p_conn *pc, const struct crust_event *lost);
/* Shard stop: end the waits (and the messages parked on them). */
void dedupe_stop(struct crust_service *svc, struct shard *sh);

/* liveness.c: keepalives, idle timeout, provisional grace */
void liveness_start(struct p2p_conn *pc);
void liveness_stop(struct p2p_conn *pc);

/* service.c: the listener's endpoints on our own addresses (no external ones) */
int svc_local_endpoints(struct crust_service *svc, struct crust_endpoint *out, size_t n);

/* blacklist enforcement (service.c) */
bool svc_blacklisted_addr(struct crust_service *svc, const struct sockaddr_storage *addr);
/* Free a connection the transport no longer knows (or never knew). */
void conn_discard(struct p2p_conn *pc, struct shard *sh);
void conn_close_all(struct crust_service *svc, struct shard *sh);
/* Shard thread: send m on the peer's connection, or report it undeliverable. */
void conn_send(struct crust_service *svc, struct peer_ref *ref, struct crust_msg *m);

void svc_log(struct crust_service *svc, enum crust_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
