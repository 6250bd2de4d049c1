/*
 * stream.h - a connected stream socket on a shard: multishot receive into
 * the shard's provided buffers, one send in flight with everything queued
 * meanwhile coalesced into the next send, asynchronous close.
 *
 * Lifecycle: eng_stream_attach() (accepted fd) or eng_stream_connect();
 * callbacks then run on the shard thread; eng_stream_close() cancels
 * what is in flight, and on_closed runs exactly once after the last
 * completion was reaped. Only then may the owner free the stream.
 */
#ifndef CRUST_ENGINE_STREAM_H
#define CRUST_ENGINE_STREAM_H

#include <linux/time_types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "engine.h"
#include "msg.h"
#include "txq.h"

#define ENG_STREAM_IOV 64          /* iovecs per send */
#define ENG_STREAM_COPY_MAX 4096u  /* frames up to this size are copied into a chunk */
#define ENG_STREAM_SEND_MAX (4u << 20) /* bytes gathered per send */

struct eng_stream;

struct eng_stream_ops {
	/* connect finished: 0, or -errno (-ETIMEDOUT after the deadline) */
	void (*on_connected)(struct eng_stream *s, int res);
	/*
	 * n bytes arrived at p inside b. The engine drops its reference to b
	 * after this returns; take one (eng_msg_view) to keep any of it.
	 */
	void (*on_data)(struct eng_stream *s, struct eng_rxbuf *b, uint8_t *p, uint32_t n);
	/*
	 * A queued message left the queue; the owner frees it. status: 0 =
	 * handed to the kernel, ENG_MSG_STAGED = copied into a staging chunk
	 * (its fate follows in on_staged_done), else -errno (never sent).
	 */
	void (*on_msg_done)(struct eng_stream *s, struct crust_msg *m, int status);
	/* staged messages with acct set: nmsgs/nbytes went to the kernel (0) or never will (-errno) */
	void (*on_staged_done)(struct eng_stream *s, uint32_t nmsgs, uint64_t nbytes, int status);
	/* final callback; err 0 = orderly end or local close, else -errno */
	void (*on_closed)(struct eng_stream *s, int err);
};

/*
 * Optional record sealing (the secure session's encryption). seal() gets
 * a record at rec: hdr_room bytes to fill, then body_len bytes of frames
 * to transform in place, then tag_room bytes to fill. Returns 0 or -errno
 * (the stream then closes with it). Must stay valid while installed.
 */
struct eng_sealer {
	uint32_t hdr_room, tag_room;
	/* seal() writes only the hdr_room bytes at rec, never the body (which may be elsewhere) */
	bool header_only;
	int (*seal)(void *ctx, uint8_t *rec, uint32_t body_len);
	void *ctx;
};

#define ENG_MSG_STAGED 1

struct eng_stream_seg {
	uint8_t *p;
	uint32_t len;
	struct crust_msg *msg; /* NULL: bytes in the stream's chunk */
	uint32_t staged_msgs;  /* chunk segs: charged messages copied in, and their bytes */
	uint64_t staged_bytes;
};

struct eng_stream {
	struct shard *sh;
	int fd;
	const struct eng_stream_ops *ops;
	void *owner;
	struct eng_op recv_op, send_op, connect_op, timeout_op, cancel_op, pause_op;
	struct __kernel_timespec connect_ts;
	struct msghdr mh;
	struct iovec iov[ENG_STREAM_IOV];
	struct eng_stream_seg segs[ENG_STREAM_IOV]; /* what the send in flight carries */
	unsigned nsegs, seg_first;
	uint32_t seg_off;
	uint8_t *chunk;           /* staging for small frames: arena or heap */
	uint32_t chunk_used;
	bool chunk_zc;            /* chunk went out with SEND_ZC: keep until its notification */
	bool zc_enabled;          /* off after the kernel reports it copied anyway */
	bool zc_notif_pending;
	uint8_t *zc_hold;         /* a sent chunk waiting for its notification */
	const struct eng_sealer *sealer;
	uint32_t rec_start;       /* the open record's offset in chunk */
	uint32_t rec_msgs;        /* charged messages in the open record, and their bytes */
	uint64_t rec_bytes;
	bool rec_open;
	int seal_err;
	struct eng_txq txq;
	unsigned inflight;        /* SQEs whose last CQE is not reaped yet */
	bool recv_armed, sending, closing, closed, connecting;
	bool pausing;             /* receive cancelled because the user holds too much */
	bool draining, write_shut; /* eng_stream_shutdown: flush, then SHUT_WR */
	bool peer_eof;             /* EOF read while we still had data to send: flush, then close */
	int close_err;
	struct eng_stream *next_starved;
	uint64_t rx_bytes, tx_bytes;
};

/* Take over a connected fd and start receiving. */
void eng_stream_attach(struct eng_stream *s, struct shard *sh, int fd,
		       const struct eng_stream_ops *ops, void *owner);
/* Connect to addr; on_connected follows (also on failure). Returns -errno if no socket. */
int eng_stream_connect(struct eng_stream *s, struct shard *sh, const struct sockaddr *addr,
		       socklen_t len, uint32_t timeout_ms, const struct eng_stream_ops *ops,
		       void *owner);
/*
 * The same from a socket bound to local first (SO_REUSEADDR + SO_REUSEPORT:
 * it may share the port of our listener). -errno if binding fails.
 */
int eng_stream_connect_from(struct eng_stream *s, struct shard *sh, const struct sockaddr *local,
			    socklen_t llen, const struct sockaddr *addr, socklen_t len,
			    uint32_t timeout_ms, const struct eng_stream_ops *ops, void *owner);
/* Queue m (frame = header + payload, see msg.h). On error the caller keeps m. */
int eng_stream_send(struct eng_stream *s, struct crust_msg *m);
/*
 * Seal every record gathered from now on (NULL: plain frames). Messages
 * flagged ENG_MSG_RAW still go out plain (handshake frames queued before).
 * Head- and tailroom of messages must cover hdr_room and tag_room.
 */
void eng_stream_set_sealer(struct eng_stream *s, const struct eng_sealer *sealer);
/*
 * Graceful end: send everything queued, then shut down our direction;
 * receiving goes on until the peer's end (EOF), which closes the stream.
 */
void eng_stream_shutdown(struct eng_stream *s);
/* Close; err is passed to on_closed. Idempotent. */
void eng_stream_close(struct eng_stream *s, int err);
/* Shard loop: re-arm streams that ran out of receive buffers. */
void eng_streams_rearm_starved(struct shard *sh);

#endif
