/*
 * crust.h - reliable peer-to-peer connections on a sharded io_uring engine.
 *
 * The only header a program includes. Every function returns 0 or a
 * negative errno value unless it says otherwise. Thread safety: every
 * crust_* call may be made from any thread except where noted; event
 * callbacks run on a shard thread and must not block.
 */
#ifndef CRUST_H
#define CRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CRUST_API __attribute__((visibility("default")))
#define CRUST_MUST_CHECK __attribute__((warn_unused_result))
#else
#define CRUST_API
#define CRUST_MUST_CHECK
#endif

#define CRUST_VERSION_MAJOR 0
#define CRUST_VERSION_MINOR 1
#define CRUST_PEER_ID_LEN 32               /* bytes; 64 hex characters */
#define CRUST_PEER_HEX_LEN (2 * CRUST_PEER_ID_LEN)
#define CRUST_ADDRSTRLEN 64                /* "[v6]:port" fits */
#define CRUST_REASON_LEN 192
#define CRUST_BEACON_PORT_DEFAULT 5483     /* the LAN beacon's UDP port */

struct crust_service;
struct crust_msg;

struct crust_peer_id {
	uint8_t bytes[CRUST_PEER_ID_LEN];
};

enum crust_transport {
	CRUST_TRANSPORT_ANY = 0,          /* dial: TCP first, then reliable UDP */
	CRUST_TRANSPORT_TCP = 1,
	CRUST_TRANSPORT_RUDP = 2,
};

/* A network endpoint with the transport to use. */
struct crust_endpoint {
	enum crust_transport transport;
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

enum crust_log_level { CRUST_LOG_ERROR, CRUST_LOG_WARN, CRUST_LOG_INFO, CRUST_LOG_DEBUG };
typedef void (*crust_log_fn)(void *ctx, enum crust_log_level level, const char *msg);

struct crust_event;
typedef void (*crust_event_fn)(void *ctx, const struct crust_event *ev);

/*
 * Configuration. Fill with crust_config_init() and change what you need;
 * zero means "the default" for every numeric field.
 */
struct crust_config {
	unsigned shards;             /* 0 = one per online core */
	bool pin_shards;             /* pin shard i to core (first_cpu + i) mod ncpu */
	unsigned first_cpu;
	uint16_t tcp_port;           /* live port; 0 = random */
	uint16_t rudp_port;          /* reliable-UDP live port; 0 = the TCP port's number if free,
	                                else random */
	const char *bind_addr;       /* listen address, default "0.0.0.0" */
	uint32_t max_msg_size;       /* default 16 MiB; larger sends fail with -EMSGSIZE */
	uint32_t max_send_queue;     /* bytes queued per peer before -ENOBUFS, default 64 MiB */
	uint32_t handshake_timeout_ms; /* hello must complete, default 10000 */
	uint32_t frame_timeout_ms;   /* a started frame must complete, default 30000 */
	uint32_t connect_timeout_ms; /* default 10000 */
	uint32_t rx_buffer_size;     /* provided-buffer size, default 64 KiB */
	uint32_t rx_buffer_count;    /* per shard, power of two, default 256 */
	uint32_t tx_arena_size;      /* registered TX arena per shard, default 4 MiB */
	uint64_t rx_held_limit;      /* per shard: bytes of large (reassembled) received messages
	                                the user may hold before receiving pauses; default 64 MiB */
	uint32_t zerocopy_min;       /* SEND_ZC for coalesced sends >= this many bytes; 0 = off
	                                (the default: it only pays on real NICs, see BENCHMARKS) */
	const char *network_name;    /* nodes of other networks are refused (and not discovered) */
	const char *identity_file;   /* Ed25519 key pair kept here (created on first start,
	                                mode 0600); NULL = a new identity every start */
	bool tracer;                 /* clear records with a magic, for debugging; both ends must
	                                opt in; never use in production */
	uint32_t keepalive_ms;       /* send a keepalive after this much silence, default 10000 */
	uint32_t idle_timeout_ms;    /* nothing heard this long: lost "timeout", default 30000 */
	uint32_t provisional_grace_ms; /* not maintained and no user message this long: dropped
	                                "not maintained", default 120000; UINT32_MAX = never */
	uint32_t max_rx_msgs_per_s;  /* per connection; more is abuse and ends it; 0 = no limit */
	uint32_t hs_rate_per_s;      /* new handshakes per source IP per second, default 50 */
	uint32_t hs_burst;           /* default 100 */
	uint32_t hs_max_pending;     /* unfinished handshakes per source IP, default 16 */
	/* bootstrap and discovery (docs/CONFIG.md has the details) */
	const struct crust_endpoint *contacts; /* hard-coded contacts crust_bootstrap tries
	                                (copied by crust_service_new) */
	size_t ncontacts;
	const char *cache_file;      /* bootstrap cache of directly reached endpoints; NULL = none */
	uint32_t cache_max_entries;  /* default 64 (at most 4096) */
	uint32_t cache_max_failures; /* failed dials in a row before an entry is removed, default 5 */
	bool no_beacon;              /* keep the LAN beacon off */
	bool no_pex;                 /* ask no peer for endpoints (still answer asks) */
	uint16_t beacon_port;        /* UDP port of the LAN beacon, default 5483 */
	uint32_t beacon_interval_ms; /* beacon announce period, default 30000 (+-10% jitter);
	                                peers not heard for 3 periods are forgotten */
	uint32_t bootstrap_parallel; /* dials at once while bootstrapping, default 8 */
	uint32_t bootstrap_retry_min_ms; /* first retry after a round with no success, default 1000 */
	uint32_t bootstrap_retry_max_ms; /* backoff cap (delays double, +-25% jitter), default 60000 */
	uint32_t pex_interval_ms;    /* ask a random connected peer for endpoints, default 60000 */
	uint32_t pex_max_endpoints;  /* endpoints per peer-exchange answer, default 32 (at most 64) */
	uint32_t auto_connect_max;   /* dial discovered peers while fewer are connected, default 32 */
	uint32_t rebind_interval_ms; /* move listeners to new random ports this often; 0 = never */
	/* NAT traversal (docs/CONFIG.md, docs/PROTOCOL.md "Rendezvous") */
	const char *coordinator;     /* "ADDR:PORT" of a coordinator: crust session over TCP and
	                                STUN over UDP on that address; NULL = none */
	uint32_t coordinator_refresh_ms; /* re-register this often, default 20000 */
	uint32_t punch_timeout_ms;   /* hole punching gives up after this, default 4000 */
	bool no_relay;               /* never fall back to the coordinator's relay */
	bool no_tcp_punch;           /* punch over UDP only (reliable UDP) */
	bool no_udp_punch;           /* punch over TCP only (simultaneous open) */
	const char *port_mapping;    /* ask the gateway to forward our listener ports: "auto"
	                                (NULL: UPnP IGD, then PCP, then NAT-PMP), "upnp", "pcp",
	                                "natpmp", or "off"; IPv4, not when bound to loopback */
	uint32_t port_mapping_lease_s; /* lease asked for, renewed at half; default 3600 */
	void *loaded;                /* what crust_config_load allocated; crust_config_release */
	const char *rudp_cc;         /* reliable UDP congestion control: "bbr" (default), "cubic" */
	uint32_t rudp_retry_pending; /* unfinished UDP handshakes per shard before new ones must
	                                prove their address (stateless Retry); default 64 */
	crust_log_fn log;            /* default: warnings and errors to stderr */
	void *log_ctx;
	enum crust_log_level log_level;
	crust_event_fn on_event;     /* optional: events run on the shard thread */
	void *on_event_ctx;          /* when set, crust_poll() sees no events */
};

enum crust_event_type {
	CRUST_EV_LISTENER_STARTED = 1,
	CRUST_EV_LISTENER_FAILED,
	CRUST_EV_NEW_CONNECTION,
	CRUST_EV_NEW_BOOTSTRAP_CONNECTION,
	CRUST_EV_BOOTSTRAP_FINISHED,
	CRUST_EV_LOST_CONNECTION,
	CRUST_EV_NEW_MESSAGE,
	CRUST_EV_CONNECT_FAILED,          /* crust_connect could not reach the endpoint */
	CRUST_EV_SEND_FAILED,             /* a message was accepted but could not be sent */
	CRUST_EV_HANDSHAKE_FAILED,        /* an incoming connection ended before its hello */
	CRUST_EV_PEER_DISCOVERED,
	CRUST_EV_EXTERNAL_ENDPOINT,
	CRUST_EV_PUNCH_RESULT,
	CRUST_EV_ABUSE,
	CRUST_EV_BOOTSTRAP_ROUND,         /* a bootstrap round ended without success; retry follows */
	CRUST_EV_PORT_MAPPING,            /* the gateway mapped or renewed a port (addr: the mapped
	                                     endpoint), or no method worked / a mapping was lost
	                                     (error set); reason says which method and why. It and
	                                     the mapping's EXTERNAL_ENDPOINT come from the service's
	                                     port-mapping thread */
};

/* How a connection was made (NEW_CONNECTION and PUNCH_RESULT's via). */
enum crust_via {
	CRUST_VIA_DIRECT = 0,             /* dialed or accepted; no NAT in the way */
	CRUST_VIA_UDP_PUNCH,              /* UDP hole punching (needs reliable UDP) */
	CRUST_VIA_TCP_PUNCH,              /* TCP simultaneous open through NATs */
	CRUST_VIA_PREDICTED,              /* punching to predicted ports of a symmetric NAT */
	CRUST_VIA_RELAY,                  /* through the coordinator's relay */
	CRUST_VIA_UPNP,                   /* accepted through our gateway's port mapping (UPnP IGD,
	                                     PCP or NAT-PMP); the dialer sees direct */
};

/*
 * One event. Fields a type does not use are zero. For NEW_MESSAGE, msg
 * is a view the receiver owns: read crust_msg_data()/crust_msg_len() and
 * give it back with crust_msg_release() (from any thread, at any time
 * before crust_service_free: the view points into the service's receive
 * buffers). Held messages keep receive buffers out of the engine's pool.
 */
struct crust_event {
	enum crust_event_type type;
	enum crust_transport transport;
	struct crust_peer_id peer;
	struct sockaddr_storage addr;     /* remote, or the listener's own */
	struct crust_msg *msg;            /* NEW_MESSAGE only */
	uint16_t port;                    /* LISTENER_STARTED: bound port;
	                                     PEER_DISCOVERED: its reliable-UDP port (0 = none) */
	bool fallback;                    /* LISTENER_STARTED: live port taken */
	uint64_t unsent_msgs;             /* LOST_CONNECTION: queued, never sent; SEND_FAILED: 1 */
	uint64_t unsent_bytes;
	int error;                        /* -errno, when relevant */
	char reason[CRUST_REASON_LEN];    /* LOST/FAILED/ABUSE: why, in words */
	uint32_t round;                   /* BOOTSTRAP_ROUND/FINISHED: rounds so far (from 1) */
	uint32_t tried, succeeded;        /* BOOTSTRAP_ROUND/FINISHED: endpoints of the last round */
	uint32_t retry_ms;                /* BOOTSTRAP_ROUND: next round in this many ms */
	enum crust_via via;               /* NEW_CONNECTION, PUNCH_RESULT: how it was made */
	uint32_t elapsed_ms;              /* PUNCH_RESULT: from the request to the connection */
};

/* Fill cfg with defaults. */
CRUST_API void crust_config_init(struct crust_config *cfg);

/*
 * Fill cfg from a JSON config file (keys in docs/CONFIG.md); fields the
 * file does not name keep their value. Returns 0, -ENOENT if the file does
 * not exist (cfg untouched: "use the defaults"), or -EINVAL / -errno with
 * a message in why naming the key and line (unknown key, wrong type, out
 * of range) or the line and column (invalid JSON). Strings and contacts
 * live in memory owned by cfg until crust_config_release(cfg). On an
 * error the keys before the bad one are applied already: release cfg then
 * too (or keep using it, knowingly).
 */
CRUST_API CRUST_MUST_CHECK int crust_config_load(struct crust_config *cfg, const char *path,
						 char *why, size_t whylen);
/* Free what crust_config_load allocated (cfg's strings from the file become NULL). */
CRUST_API void crust_config_release(struct crust_config *cfg);

/*
 * Create a service: starts the shards, creates the node id. Nothing
 * listens until crust_start_listening(). *out is set on success.
 */
CRUST_API CRUST_MUST_CHECK int crust_service_new(const struct crust_config *cfg,
						 struct crust_service **out);

/*
 * Close every connection, stop the shards, free everything. Not from a
 * callback. Release every received message first; events nobody polled
 * are freed here, messages included.
 */
CRUST_API void crust_service_free(struct crust_service *svc);

/* This node's id. */
CRUST_API void crust_own_id(const struct crust_service *svc, struct crust_peer_id *out);

/*
 * Open the listeners on every shard: the config's live port, or a
 * random one when it is 0 or taken (LISTENER_STARTED says which).
 * Returns once the listeners are bound.
 */
CRUST_API CRUST_MUST_CHECK int crust_start_listening(struct crust_service *svc);

/*
 * Find the network, without blocking: dial the bootstrap cache's
 * endpoints, the config's contacts and peers the beacon or peer exchange
 * found, at most bootstrap_parallel at once. Each success gives
 * NEW_BOOTSTRAP_CONNECTION (after its NEW_CONNECTION); when a round
 * reached at least one node, BOOTSTRAP_FINISHED. A round that reached
 * none gives BOOTSTRAP_ROUND and is retried with exponential backoff and
 * jitter until one succeeds or the service is freed. With no candidate
 * at all it waits quietly for one (beacon, peer exchange) or for a peer
 * that dials in (then BOOTSTRAP_FINISHED). After finishing, losing every
 * peer starts it again. Calling it again
 * while it runs does nothing (-EALREADY). Bootstrap events come from the
 * service's bootstrap thread.
 */
CRUST_API CRUST_MUST_CHECK int crust_bootstrap(struct crust_service *svc);

/* Connect to an endpoint. Asynchronous: NEW_CONNECTION or CONNECT_FAILED follows. */
CRUST_API CRUST_MUST_CHECK int crust_connect(struct crust_service *svc,
					     const struct crust_endpoint *ep);
/*
 * Connect to the node with id peer at ep: CONNECT_FAILED ("peer proved a
 * different key ...") if another key answers.
 */
CRUST_API CRUST_MUST_CHECK int crust_connect_peer(struct crust_service *svc,
						  const struct crust_endpoint *ep,
						  const struct crust_peer_id *peer);

/*
 * Connect to the node with id peer through the configured coordinator:
 * both sides learn each other's candidates and a start time, try them at
 * once (TCP simultaneous open from the listener port), and fall back to
 * the coordinator's relay. PUNCH_RESULT follows (error set on failure,
 * reason saying why: "no coordinator", "unknown peer", ...), and
 * NEW_CONNECTION with via on success. -ENOTCONN without a coordinator
 * session yet, -EALREADY while a punch to that peer runs.
 */
CRUST_API CRUST_MUST_CHECK int crust_connect_id(struct crust_service *svc,
						const struct crust_peer_id *peer);

/*
 * Serve as a coordinator (p2p/coordinator.c): answer STUN Binding
 * requests on UDP at each of cc->stun (ADDR:PORT), and rendezvous and
 * relay for nodes that open a crust session to this service. Call after
 * crust_start_listening. The service must have one shard (shards = 1):
 * the relay splices connections on it.
 */
struct crust_coordinator_config {
	const struct crust_endpoint *stun;   /* UDP addresses answering STUN (copied) */
	size_t nstun;
	uint32_t registration_ttl_ms;        /* a registration not refreshed expires, default 60000 */
	uint32_t max_registrations;          /* in all, default 10000 */
	uint32_t max_per_ip;                 /* registrations from one IP, default 64 */
	uint32_t punch_lead_ms;              /* start time this far after the answer, default 300 */
	bool relay_off;                      /* relay is on by default */
	uint32_t relay_max_pairs;            /* relayed pairs at once, default 64 */
	uint64_t relay_max_bytes;            /* per pair, both directions, default 64 MiB */
	uint32_t relay_rate;                 /* bytes/s per pair, default 1 MiB/s */
};
CRUST_API CRUST_MUST_CHECK int crust_coordinator_start(struct crust_service *svc,
						       const struct crust_coordinator_config *cc);
struct crust_coordinator_stats {
	uint64_t stun_requests, stun_answers, stun_errors, stun_dropped;
	uint64_t registrations, registrations_refused, expired;
	uint64_t rendezvous, rendezvous_unknown;
	uint64_t relay_pairs, relay_bytes, relay_refused, relay_capped;
	uint64_t registered_now;
};
CRUST_API void crust_coordinator_stats(struct crust_service *svc,
				       struct crust_coordinator_stats *out);

/*
 * Refuse a peer id ("64 hex") or an address ("IP" for every port,
 * "IP:PORT", "[IPv6]:PORT") for the life of the service: matching
 * connections close at once (LOST_CONNECTION "blacklisted"), new ones are
 * refused. -EINVAL if the text is neither.
 */
CRUST_API int crust_blacklist(struct crust_service *svc, const char *peer_or_addr);

/*
 * Send a copy of data (any length up to max_msg_size, 0 allowed) to a
 * connected peer. Lower priority values are more urgent; messages of one
 * priority are delivered in order. Returns -ENOTCONN if the peer is not
 * connected, -EMSGSIZE if too large, -ENOBUFS if the peer's send queue is
 * full (nothing was queued). The data is copied before return.
 */
CRUST_API CRUST_MUST_CHECK int crust_send(struct crust_service *svc,
					  const struct crust_peer_id *peer,
					  const void *data, size_t len, uint8_t priority);

/*
 * Zero-copy send: crust_msg_alloc returns a message with room for len
 * bytes at crust_msg_data(); fill it, then crust_send_msg() takes
 * ownership whatever it returns (the message is freed on error).
 */
CRUST_API struct crust_msg *crust_msg_alloc(struct crust_service *svc, size_t len);
CRUST_API CRUST_MUST_CHECK int crust_send_msg(struct crust_service *svc,
					      const struct crust_peer_id *peer,
					      struct crust_msg *msg, uint8_t priority);

/* A message's bytes and length (valid until it is released or sent). */
CRUST_API void *crust_msg_data(struct crust_msg *msg);
CRUST_API size_t crust_msg_len(const struct crust_msg *msg);
/* Give a received (or unsent allocated) message back. NULL is ignored. */
CRUST_API void crust_msg_release(struct crust_msg *msg);

/* Close the connection to peer; LOST_CONNECTION follows with reason "dropped". */
CRUST_API int crust_drop(struct crust_service *svc, const struct crust_peer_id *peer);

/*
 * Keep a connection: connections start provisional and are dropped
 * ("not maintained") after provisional_grace_ms without user messages
 * unless maintained. -ENOTCONN if the peer is not connected.
 */
CRUST_API int crust_maintain(struct crust_service *svc, const struct crust_peer_id *peer);

/*
 * This node's listening endpoints: up to n written to out, the TCP ones
 * first, then the reliable-UDP ones. Returns the number written, or -errno.
 */
CRUST_API int crust_own_endpoints(struct crust_service *svc, struct crust_endpoint *out,
				  size_t n);

/* Connected peers: up to n ids written to out; returns how many are connected. */
CRUST_API int crust_peers(struct crust_service *svc, struct crust_peer_id *out, size_t n);

/*
 * Take up to n events, waiting up to timeout_ms (-1 forever, 0 never).
 * Returns the number taken or -errno. Single consumer: call from one
 * thread at a time.
 */
CRUST_API int crust_poll(struct crust_service *svc, struct crust_event *events, int n,
			 int timeout_ms);

/* A descriptor that is readable while events are waiting (for the user's poll loop). */
CRUST_API int crust_event_fd(struct crust_service *svc);

/*
 * The UDP port the LAN beacon is bound to, or 0 when it is off (config
 * port 0, bound to loopback, port unavailable, or not listening yet).
 */
CRUST_API uint16_t crust_beacon_port(struct crust_service *svc);

/* Counters, summed over shards. */
struct crust_stats {
	uint64_t connections;
	uint64_t rx_bytes, tx_bytes;
	uint64_t rx_msgs, tx_msgs;
	uint64_t rx_recv_calls, tx_send_calls;   /* completions that moved data */
	uint64_t rx_enobufs;                     /* multishot recv ran out of buffers */
	uint64_t rx_pauses;                      /* receives paused: user held too much */
	uint64_t tx_zc_sends, tx_zc_copied;      /* zero-copy sends; those the kernel copied */
	/* LAN beacon: datagrams received, accepted, and dropped by reason */
	uint64_t beacon_rx, beacon_accepted, beacon_own;
	uint64_t beacon_malformed;               /* truncated, bad magic, version or type */
	uint64_t beacon_oversized;
	uint64_t beacon_other_network;
	uint64_t beacon_off_link;                /* TTL / hop limit not 255 */
	uint64_t beacon_stale;                   /* replayed, or timestamp out of the window */
	uint64_t beacon_rate_limited;            /* over the per-source or overall budget */
	uint64_t beacon_bad_signature;
	uint64_t beacon_sig_checks;              /* signatures verified (the costly step) */
	uint64_t beacon_sent, beacon_answers;    /* datagrams sent; of them, answers to queries */
	/* reliable UDP */
	uint64_t udp_rx_packets, udp_tx_packets;
	uint64_t udp_bad_packets;                /* malformed, or for no connection we could use */
	uint64_t udp_auth_failures;              /* failed packet authentication: dropped */
	uint64_t udp_unknown_cid;                /* no connection with that id */
	uint64_t udp_lost_packets, udp_retx_bytes;
	uint64_t udp_retries_sent;               /* stateless Retry answers (handshake load) */
	uint64_t udp_rcvbuf_drops;               /* datagrams the kernel dropped: socket buffer full */
	uint64_t udp_dup_packets;                /* authentic packets received before: dropped */
	uint64_t udp_late_packets;               /* authentic packets arriving after a higher number */
	/* what is alive now (gauges; leak checks compare them before and after) */
	uint64_t live_conns;                     /* connections in any state: dialing, handshake,
	                                            up, closing */
	uint64_t live_sockets;                   /* sockets the shards have not finished closing */
	uint64_t live_timers;                    /* armed timers on the shards */
	uint64_t rx_buffers_out;                 /* receive buffers out of the kernel's ring: held
	                                            by messages or being processed */
	uint64_t rx_held_bytes;                  /* reassembled received messages not released */
	uint64_t live_msgs;                      /* messages allocated and not freed, in the whole
	                                            process (every service; sent ones until sent) */
};
CRUST_API void crust_stats(struct crust_service *svc, struct crust_stats *out);

/* Helpers. */
CRUST_API void crust_peer_to_hex(const struct crust_peer_id *id, char out[CRUST_PEER_HEX_LEN + 1]);
CRUST_API int crust_peer_from_hex(const char *hex, struct crust_peer_id *out);
CRUST_API bool crust_peer_eq(const struct crust_peer_id *a, const struct crust_peer_id *b);
/* "ADDR:PORT" (transport ANY), "[v6]:PORT", "tcp://..." or "rudp://..." -> endpoint. */
CRUST_API int crust_endpoint_parse(const char *s, struct crust_endpoint *out);
/* addr -> "ADDR:PORT" / "[v6]:PORT". */
CRUST_API void crust_addr_format(const struct sockaddr_storage *addr, char *out, size_t n);
CRUST_API const char *crust_event_name(enum crust_event_type type);
CRUST_API const char *crust_transport_name(enum crust_transport t);
CRUST_API const char *crust_via_name(enum crust_via via);
CRUST_API const char *crust_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* CRUST_H */
