/*
 * transport.h - the interface every transport implements (TCP now,
 * reliable UDP next), and the callbacks it makes to the layer above.
 *
 * A transport moves whole messages (struct crust_msg) between two
 * endpoints; it knows nothing of peers, crypto or bootstrap. Each
 * connection lives on one shard: every call on a tp_conn and every
 * callback about it happens on that shard's thread. listen() is the
 * exception: it binds from the caller's thread and arms on the shards.
 */
#ifndef CRUST_TRANSPORT_H
#define CRUST_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "crust.h"
#include "engine/engine.h"
#include "engine/msg.h"
#include "engine/stream.h"

struct transport;
struct tp_conn;
struct tp_sock;

/* Upcalls, on the connection's shard thread. */
struct tp_callbacks {
	/* a connection came in on a listener */
	void (*accepted)(void *ctx, struct tp_conn *c);
	/* an outgoing connect finished: res 0 (c is live) or -errno (c is gone after return) */
	void (*connected)(void *ctx, struct tp_conn *c, int res);
	/* one whole message; the callee owns m */
	void (*received)(void *ctx, struct tp_conn *c, struct crust_msg *m);
	/*
	 * A message given to send() left the transport; callee owns m. status:
	 * 0 sent, ENG_MSG_STAGED copied (staged_done reports its fate), -errno.
	 */
	void (*msg_done)(void *ctx, struct tp_conn *c, struct crust_msg *m, int status);
	/* staged messages (counted by nmsgs/nbytes) were sent (0) or lost (-errno) */
	void (*staged_done)(void *ctx, struct tp_conn *c, uint32_t nmsgs, uint64_t nbytes,
			    int status);
	/* the connection is gone (err 0 = closed locally or orderly); c is freed after return */
	void (*closed)(void *ctx, struct tp_conn *c, int err, const char *reason);
	/*
	 * Optional: a datagram on a listener socket that is not the
	 * transport's own (first byte's top two bits 00: STUN, hole-punching
	 * probes), on the receiving shard's thread; p is valid during the call.
	 * sock_user: NULL on a listener, else the user given to sock_open of
	 * the extra socket it came in on.
	 */
	void (*datagram)(void *ctx, struct shard *sh, const struct sockaddr_storage *from,
			 socklen_t fromlen, const uint8_t *p, uint32_t len, void *sock_user);
};

struct tp_limits {
	uint32_t max_msg_size;       /* larger frames end the connection */
	uint32_t frame_timeout_ms;   /* a started frame must finish within this */
	uint32_t connect_timeout_ms;
	uint32_t idle_timeout_ms;    /* datagram transports: nothing heard this long ends it */
};

/*
 * Packet-protection keys a datagram transport takes from the secure
 * session (32-byte secrets per direction; the transport derives its keys
 * and IVs from them and the caller wipes them). Records then travel
 * unsealed inside packets that are (sealers must be header_only).
 */
struct tp_packet_keys {
	bool aes;                    /* AES-256-GCM, else ChaCha20-Poly1305 */
	uint8_t tx[32], rx[32];
};

/* Counters a transport keeps (summed over shards; approximate). */
struct tp_stats {
	uint64_t rx_packets, tx_packets, bad_packets, auth_failures, unknown_cid;
	uint64_t lost_packets, retx_bytes, retries_sent, kernel_drops;
	uint64_t dup_packets, late_packets;
};

struct transport_vtable {
	enum crust_transport kind;
	const char *name;
	/*
	 * Bind one listener per shard on addr's port, or on a random port if
	 * that one is taken (*fallback = true). Any thread; returns once
	 * bound, with the port in *port.
	 */
	int (*listen)(struct transport *t, const struct sockaddr *addr, socklen_t len,
		      uint16_t *port, bool *fallback);
	/*
	 * Move the listeners to addr (port 0, or a taken port: a new random
	 * one), port in *port. Any thread, after listen; connections stay up
	 * and keep working both ways. NULL if unsupported.
	 */
	int (*rebind)(struct transport *t, const struct sockaddr *addr, socklen_t len,
		      uint16_t *port);
	/*
	 * Shard thread: start a connection with c->user = user; connected()
	 * follows. *out is the connection, closable while it connects.
	 */
	int (*connect)(struct transport *t, struct shard *sh, const struct sockaddr *addr,
		       socklen_t len, void *user, struct tp_conn **out);
	/*
	 * The same from a local address (may share our listener's port: hole
	 * punching). NULL if unsupported.
	 */
	int (*connect_from)(struct transport *t, struct shard *sh, const struct sockaddr *local,
			    socklen_t llen, const struct sockaddr *addr, socklen_t len, void *user,
			    struct tp_conn **out);
	/* Queue a message (payload only; the transport frames it). On error the caller keeps m. */
	int (*send)(struct tp_conn *c, struct crust_msg *m);
	/* Close; closed() follows with err and reason. */
	void (*close)(struct tp_conn *c, int err, const char *reason);
	/*
	 * Send what is queued, then end our direction; closed() follows when
	 * the peer ends too, with err and reason (if non-NULL) as given here.
	 */
	void (*shutdown)(struct tp_conn *c, int err, const char *reason);
	/* Seal everything sent from now on into records (NULL: plain frames). */
	void (*set_sealer)(struct tp_conn *c, const struct eng_sealer *sealer);
	/*
	 * Optional (NULL for stream transports): protect every packet from
	 * now on with keys from the secure session. 0 or -errno.
	 */
	int (*set_packet_keys)(struct tp_conn *c, const struct tp_packet_keys *keys);
	/*
	 * Optional (datagram transports): send len bytes (copied) to `to` from
	 * shard sh's listener socket, so they leave through the same NAT
	 * mapping as the transport's packets. Shard thread. -ENOTCONN without
	 * a listener socket, -EAGAIN when no send buffer is free.
	 */
	int (*send_datagram)(struct transport *t, struct shard *sh, const struct sockaddr *to,
			     socklen_t tolen, const void *p, size_t len);
	/*
	 * Optional (datagram transports), all on shard sh's thread: extra
	 * sockets for hole punching with many sockets at once (birthday port
	 * prediction). sock_open binds one on a random port of family's
	 * wildcard address; datagrams it receives that are not the
	 * transport's own go to the datagram callback with sock_user = user,
	 * and Initials to it are dropped (it never accepts). sock_send sends
	 * a copy of p from it (-EAGAIN when no buffer is free). connect_on
	 * starts a connection over it like connect(): the connection takes
	 * the socket (no datagram callbacks any more) and closes it when it
	 * ends, also when connect_on fails. sock_close closes one the caller
	 * still owns.
	 */
	int (*sock_open)(struct transport *t, struct shard *sh, int family, void *user,
			 struct tp_sock **out);
	int (*sock_send)(struct tp_sock *s, const struct sockaddr *to, socklen_t tolen,
			 const void *p, size_t len);
	int (*connect_on)(struct tp_sock *s, const struct sockaddr *addr, socklen_t len,
			  void *user, struct tp_conn **out);
	void (*sock_close)(struct tp_sock *s);
	/* Optional: add this transport's counters to *out (any thread). */
	void (*stats)(struct transport *t, struct tp_stats *out);
	/* Shard thread, at shutdown: close this shard's listeners. */
	void (*stop_shard)(struct transport *t, struct shard *sh);
	void (*destroy)(struct transport *t);
};

struct transport {
	const struct transport_vtable *vt;
	struct eng *eng;
	const struct tp_callbacks *cb;
	void *cb_ctx;
	struct tp_limits limits;
};

/* What every transport connection starts with. */
struct tp_conn {
	struct transport *t;
	struct shard *sh;
	void *user;                       /* the layer above's object */
	struct sockaddr_storage remote;
	socklen_t remote_len;
	bool outgoing;
};

/* Create the TCP transport. */
int tcp_transport_new(struct eng *eng, const struct tp_callbacks *cb, void *cb_ctx,
		      const struct tp_limits *limits, struct transport **out);

struct rudp_options {
	const char *cc;              /* "bbr" (default) or "cubic" */
	uint32_t retry_pending;      /* unfinished handshakes per shard before Retry; 0 = 64 */
};

/* Create the reliable-UDP transport (transports/rudp.c). -EINVAL: unknown cc name. */
int rudp_transport_new(struct eng *eng, const struct tp_callbacks *cb, void *cb_ctx,
		       const struct tp_limits *limits, const struct rudp_options *opt,
		       struct transport **out);

#endif
