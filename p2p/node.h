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
};

enum conn_state { CONN_HELLO, CONN_UP, CONN_CLOSING };

/* One connection, owned by its shard. */
struct p2p_conn {
	struct crust_service *svc;
	struct tp_conn *tc;
	struct peer_ref *ref;              /* once the hello is in */
	enum conn_state state;
	struct eng_timer hello_timer;
	struct p2p_conn *prev, *next;      /* the shard's connection list */
	uint64_t unsent_msgs, unsent_bytes;
	bool outgoing;
	bool stopping;                     /* closed by crust_service_free */
};

struct p2p_shard {
	struct p2p_conn *conns;
	unsigned nconns;
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
	struct p2p_shard *shards;
	uint8_t network_tag[8];
	atomic_uint next_shard;             /* round-robin for outgoing connects */
	/* peer table */
	pthread_rwlock_t peers_lock;
	struct peer_ref *peers[PEER_BUCKETS];
	unsigned npeers;
	/* listeners */
	pthread_mutex_t listen_lock;
	uint16_t tcp_port;                   /* 0 until listening */
	struct sockaddr_storage bind_addr;
	socklen_t bind_len;
	/* events to the user */
	struct eng_mailbox events;
	int event_fd;
	pthread_mutex_t poll_lock;
};

/* events.c */
int events_init(struct crust_service *svc);
void events_destroy(struct crust_service *svc);
/* Deliver ev (callback, or queue for crust_poll). ev->msg passes to the receiver. */
void event_emit(struct crust_service *svc, struct crust_event *ev);
void event_init(struct crust_event *ev, enum crust_event_type type);

/* peers.c */
struct peer_ref *peer_lookup(struct crust_service *svc, const struct crust_peer_id *id);
/* Insert; -EEXIST if that id is connected already. Takes a reference for the table. */
int peer_insert(struct crust_service *svc, struct peer_ref *ref);
void peer_remove(struct crust_service *svc, struct peer_ref *ref);
void peer_put(struct peer_ref *ref);
int peer_list(struct crust_service *svc, struct crust_peer_id *out, size_t n);

/* conn.c: transport upcalls and the shard side of the API */
extern const struct tp_callbacks conn_callbacks;
struct p2p_conn *conn_new(struct crust_service *svc, struct shard *sh, bool outgoing);
void conn_close(struct p2p_conn *pc, int err, const char *reason);
/* Free a connection the transport no longer knows (or never knew). */
void conn_discard(struct p2p_conn *pc, struct shard *sh);
void conn_close_all(struct crust_service *svc, struct shard *sh);
/* Shard thread: send m on the peer's connection, or report it undeliverable. */
void conn_send(struct crust_service *svc, struct peer_ref *ref, struct crust_msg *m);

void svc_log(struct crust_service *svc, enum crust_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
