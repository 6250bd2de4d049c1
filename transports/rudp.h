/*
 * rudp.h - the reliable-UDP transport's internals, shared by rudp.c
 * (sockets, demultiplexing, the transport vtable) and rudp_conn.c (one
 * connection: frames in, packets out, timers).
 *
 * Threads: everything here belongs to one shard, except the counters
 * (relaxed atomics, read by crust_stats) and the transport's immutable
 * fields. Connection ids carry their shard in the first byte, so a
 * packet the kernel's SO_REUSEPORT hash hands to another shard (a NAT
 * rebinding changes the 4-tuple) is forwarded to the owner by mailbox.
 */
#ifndef CRUST_RUDP_H
#define CRUST_RUDP_H

#include "engine/txq.h"
#include "engine/udp.h"
#include "framing.h"
#include "rudp_cc.h"
#include "rudp_crypto.h"
#include "rudp_ranges.h"
#include "rudp_recovery.h"
#include "rudp_stream.h"
#include "rudp_wire.h"
#include "transport.h"

#define RUDP_TXBUF (64u * 1024u)
#define RUDP_TXBUFS_PER_SHARD 64u
#define RUDP_CID_BUCKETS 4096u
#define RUDP_BASE_MTU 1200u       /* UDP payload every path must carry */
#define RUDP_MAX_MTU 1452u        /* 1500 - IPv6 - UDP */
#define RUDP_MAX_ACK_DELAY_US 25000u
#define RUDP_INITIAL_WINDOW (4u << 20)   /* flow control, both ends assume it */
#define RUDP_MAX_WINDOW (64u << 20)
#define RUDP_KEEPALIVE_MS 25000u
#define RUDP_PROBE_INTERVAL_US (600ull * 1000000ull)

struct rudp_shard;
struct rudp_conn;

/*
 * A UDP socket of a shard. The dialing socket is embedded in the shard;
 * listening sockets are on the heap, because a re-bind replaces the
 * shard's listening socket while connections still use the old one: the
 * old one is retired (no new connections), and closed once its last
 * connection is gone (or at shutdown), then freed once closed and unused.
 * Extra sockets (sock_open: birthday hole punching) are on the heap too,
 * in the shard's extra list until freed; the layer above owns one until
 * it closes it or a connection takes it (connect_on), which closes it
 * with its end.
 */
struct rudp_sock {
	struct eng_udp udp;
	struct rudp_shard *rs;
	struct rudp_sock *next_retired; /* the retired list, or the extra list */
	unsigned nconns;                /* connections sending from it */
	uint64_t drops_seen;            /* udp.rx_kernel_drops already counted */
	int family;
	bool open;
	bool listener;                  /* heap: freed when closed and unused */
	bool retired;                   /* replaced by a re-bind */
	bool extra;                     /* sock_open's: never accepts */
	void *user;                     /* extra, while the layer above owns it: sock_user */
};

/* One GSO send: up to 64 KiB of packets, the same size but the last. */
struct rudp_txbuf {
	struct rudp_txbuf *next;
	struct rudp_conn *c;          /* NULL: a stateless reply (retry) */
	uint8_t data[RUDP_TXBUF];
};

struct rudp_cid_ent {
	uint64_t cid;
	struct rudp_conn *c;
	struct rudp_cid_ent *next;
};

struct rudp_counters {
	_Atomic uint64_t rx_packets, tx_packets, bad_packets, auth_failures, unknown_cid,
		lost_packets, retx_bytes, retries_sent, forwarded, kernel_drops, dup_packets,
		late_packets;
};

struct rudp_shard {
	struct rudp_transport *rt;
	struct shard *sh;
	struct rudp_sock *lsock;        /* the listening socket (NULL before listen) */
	struct rudp_sock *retired;      /* old listening sockets that connections still use */
	struct rudp_sock *extras;       /* extra sockets (sock_open) not yet freed */
	struct rudp_sock csock;         /* an ephemeral socket for dialing before listen */
	struct rudp_cid_ent *cids[RUDP_CID_BUCKETS];
	struct rudp_txbuf *free_tx;
	unsigned ntx;                   /* allocated */
	struct rudp_conn *conns;        /* every live connection of the shard */
	struct rudp_conn *blocked;      /* waiting for a send buffer */
	unsigned pending_hs;            /* server connections still in the handshake */
	bool stopping;
	struct rudp_counters n;
};

struct rudp_transport {
	struct transport base;
	struct rudp_shard *shards;
	unsigned nshards;               /* kept: destroy runs after the engine is freed */
	uint8_t secret[32];             /* retry tokens */
	_Atomic bool bound;             /* listening: set by the user's thread, read by shards */
	const struct rudp_cc_ops *cc;
	uint32_t idle_timeout_ms;
	uint32_t retry_pending;         /* handshakes per shard above which Initials get a Retry */
};

enum rudp_state { RS_CONNECTING, RS_OPEN, RS_CLOSED };

struct rudp_conn {
	struct tp_conn base;
	struct rudp_shard *rs;
	struct rudp_sock *sock;
	struct rudp_conn *prev, *next;  /* the shard's list */
	struct rudp_conn *next_blocked;
	bool blocked;
	enum rudp_state state;
	bool is_client;
	bool validated;                 /* the peer's address is proven: no 3x limit */
	bool peer_short_seen;           /* the peer has 1-RTT keys: long packets are over */
	bool have_pkt_keys;
	bool counted_pending;
	bool connect_failed;
	bool silent;                    /* never announced: closing makes no callback */
	uint64_t cid, peer_cid, odcid;
	uint8_t token[RUDP_TOKEN_LEN];
	uint32_t token_len;
	struct rudp_aead init_tx, init_rx, pkt_tx, pkt_rx;
	uint64_t long_until;            /* stream bytes below travel in long packets */
	uint64_t amp_rx, amp_tx;        /* bytes from / to an unvalidated address */
	/* loss recovery and congestion control */
	struct rudp_cc cc;
	struct rudp_recovery rec;
	unsigned probes_due;
	bool ping_due;
	bool announce_keys;             /* a short PING once long data is done (see rudp_conn_set_keys) */
	/* receiving */
	struct rudp_ranges rx_pns;
	uint64_t largest_rx_pn;         /* UINT64_MAX: none */
	uint64_t largest_rx_us;
	unsigned eliciting_unacked;
	bool ack_now;
	uint64_t ack_deadline_us;
	bool cur_long;                  /* the packet being processed has a long header */
	/* the stream */
	struct rudp_sendbuf sb;
	struct rudp_recvbuf rb;
	struct frame_decoder dec;
	uint64_t rx_frame_off;          /* stream offset after the last frame handed up */
	uint64_t peer_max_data, local_max_data, rx_window, window_update_us;
	bool send_max_data;
	struct eng_txq txq;
	const struct eng_sealer *sealer;
	bool rec_open;
	uint64_t rec_hdr_off;
	/* pacing */
	uint64_t pace_tokens, pace_last_us, pace_wake_us;
	/* path MTU (RFC 8899) */
	uint32_t mtu, probe_lo, probe_hi, probe_size;
	bool probing;
	uint64_t probe_pn, next_probe_us;
	/* timers and liveness */
	struct eng_timer timer;
	uint64_t last_rx_us, last_tx_us, connect_deadline_us;
	/* closing */
	bool shutdown_req;
	int shutdown_err;
	int close_err;
	char reason[CRUST_REASON_LEN];
	unsigned inflight_tx;           /* sends whose completion is not in yet */
	bool finalizing;
	uint64_t retx_pkts;
};

/* rudp.c */
uint64_t rudp_now_us(void);
struct rudp_txbuf *rudp_txbuf_get(struct rudp_shard *rs);
void rudp_txbuf_put(struct rudp_shard *rs, struct rudp_txbuf *t);
/* Send len bytes of t (segments of gso bytes, 0 = one packet) to the conn's peer. */
int rudp_conn_output(struct rudp_conn *c, struct rudp_txbuf *t, uint32_t len, uint16_t gso);
bool rudp_sock_can_send(const struct rudp_sock *s);
/*
 * One packet (header not parsed yet) as if it came in on sock: the
 * demultiplexer on_datagram uses, for the fuzz harness. The connection it
 * went to, or NULL; the caller flushes that one.
 */
struct rudp_conn *rudp_packet_in(struct rudp_shard *rs, struct rudp_sock *sock,
				 const struct sockaddr_storage *from, socklen_t fromlen, uint8_t *p,
				 uint32_t len);

/* A connection starts / stops sending from s (rudp_conn_new / its final free). */
void rudp_sock_hold(struct rudp_sock *s);
void rudp_sock_release(struct rudp_sock *s);
int rudp_cid_add(struct rudp_shard *rs, uint64_t cid, struct rudp_conn *c);
void rudp_cid_del(struct rudp_shard *rs, uint64_t cid);
struct rudp_conn *rudp_cid_find(struct rudp_shard *rs, uint64_t cid);
void rudp_block(struct rudp_conn *c);

/* rudp_conn.c */
struct rudp_conn *rudp_conn_new(struct rudp_shard *rs, struct rudp_sock *sock, bool client,
				uint64_t odcid);
/*
 * A packet of this connection arrived (header parsed; sealed unless
 * opened); b is its receive buffer or NULL (a copy).
 */
void rudp_conn_input(struct rudp_conn *c, const struct rudp_hdr *h, uint8_t *pkt, uint32_t len,
		     const struct sockaddr_storage *from, socklen_t fromlen, struct eng_rxbuf *b,
		     uint64_t now, bool opened);
/* Build and send what the windows allow. */
void rudp_conn_flush(struct rudp_conn *c);
/* Close: tell the peer (if send_close), then report closed() later. */
void rudp_conn_close(struct rudp_conn *c, int err, const char *reason, bool send_close);
/* A send of this connection completed. */
void rudp_conn_sent(struct rudp_conn *c, int res);
int rudp_conn_send_msg(struct rudp_conn *c, struct crust_msg *m);
void rudp_conn_set_sealer(struct rudp_conn *c, const struct eng_sealer *s);
int rudp_conn_set_keys(struct rudp_conn *c, const struct tp_packet_keys *k);
void rudp_conn_shutdown(struct rudp_conn *c, int err, const char *reason);
/* The client's first Initial (connect). */
int rudp_conn_start(struct rudp_conn *c);

#endif
