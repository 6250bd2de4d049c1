/*
 * stream.c - stream sockets on a shard (see stream.h).
 *
 * Receive: one multishot recv per socket selecting from the shard's
 * buffer ring. It ends (no IORING_CQE_F_MORE) on EOF, error, cancel or
 * ENOBUFS; the last parks the stream on the shard's starved list until
 * buffers come back, everything else with data re-arms at once.
 * Send: one sendmsg in flight per socket (more may be reordered by the
 * kernel). While it flies, messages queue by priority; the next send
 * gathers them, copying small frames into one staging chunk from the
 * registered arena and pointing iovecs at large ones. Short sends resume
 * from the first unsent byte.
 */
#define _GNU_SOURCE
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "compat.h"
#include "fault.h"

static void recv_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);
static void send_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);
static void connect_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);
static void timeout_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);
static void cancel_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);
static void pause_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);
static void flush(struct eng_stream *s);
static void drop_chunk(struct eng_stream *s);
static void maybe_shut_write(struct eng_stream *s);


static void init_common(struct eng_stream *s, struct shard *sh, int fd,
			const struct eng_stream_ops *ops, void *owner)
{
	memset(s, 0, sizeof(*s));
	s->sh = sh;
	s->fd = fd;
	s->ops = ops;
	s->owner = owner;
	s->recv_op.cb = recv_cb;
	s->send_op.cb = send_cb;
	s->connect_op.cb = connect_cb;
	s->timeout_op.cb = timeout_cb;
	s->cancel_op.cb = cancel_cb;
	s->pause_op.cb = pause_cb;
	s->zc_enabled = sh->eng->cfg.zc_min > 0 && sh->arena.registered;
	sh->live++;
}

static void set_nodelay(int fd)
{
	int one = 1;
	/* crust coalesces itself; Nagle would only add latency */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void arm_recv(struct eng_stream *s)
{
	struct io_uring_sqe *sqe = eng_sqe(s->sh, &s->recv_op);
	io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (__u16)s->sh->rx.bgid;
	s->recv_armed = true;
	s->inflight++;
}

void eng_stream_attach(struct eng_stream *s, struct shard *sh, int fd,
		       const struct eng_stream_ops *ops, void *owner)
{
	init_common(s, sh, fd, ops, owner);
	set_nodelay(fd);
	arm_recv(s);
}

/*
 * A socket bound to local with SO_REUSEADDR + SO_REUSEPORT, so it shares
 * the port of our own listener: TCP hole punching needs the connect to
 * leave from the port the NAT mapped for the listener (simultaneous open).
 */
static int bound_socket(const struct sockaddr *local, socklen_t llen)
{
	int fd = socket(local->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (local->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, local, llen) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int eng_stream_connect(struct eng_stream *s, struct shard *sh, const struct sockaddr *addr,
		       socklen_t len, uint32_t timeout_ms, const struct eng_stream_ops *ops,
		       void *owner)
{
	return eng_stream_connect_from(s, sh, NULL, 0, addr, len, timeout_ms, ops, owner);
}

int eng_stream_connect_from(struct eng_stream *s, struct shard *sh, const struct sockaddr *local,
			    socklen_t llen, const struct sockaddr *addr, socklen_t len,
			    uint32_t timeout_ms, const struct eng_stream_ops *ops, void *owner)
{
	int fd = local ? bound_socket(local, llen)
		       : socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return local ? fd : -errno;
	init_common(s, sh, fd, ops, owner);
	set_nodelay(fd);
	s->connecting = true;
	s->connect_ts.tv_sec = timeout_ms / 1000;
	s->connect_ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
	/* the link keeps both SQEs in one submission */
	struct io_uring_sqe *sqe = eng_sqe(sh, &s->connect_op);
	/* a fault (faults build): length 0, so the kernel fails the connect (-EINVAL) */
	io_uring_prep_connect(sqe, fd, addr, crust_fault_hit(CRUST_FAULT_SOCK) ? 0 : len);
	sqe->flags |= IOSQE_IO_LINK;
	s->inflight++;
	sqe = eng_sqe(sh, &s->timeout_op);
	io_uring_prep_link_timeout(sqe, &s->connect_ts, 0);
	s->inflight++;
	/* addr is read at submission: submit now, the caller's copy may go away */
	io_uring_submit(&sh->ring);
	return 0;
}

/* Everything is reaped: release what is left and tell the owner. */
static void finish_close(struct eng_stream *s)
{
	if (s->closed || s->inflight)
		return;
	s->closed = true;
	for (unsigned i = s->seg_first; i < s->nsegs; i++) {
		struct eng_stream_seg *g = &s->segs[i];
		if (g->msg)
			s->ops->on_msg_done(s, g->msg, -ECONNRESET);
		else if (g->staged_msgs)
			s->ops->on_staged_done(s, g->staged_msgs, g->staged_bytes, -ECONNRESET);
	}
	s->nsegs = s->seg_first = 0;
	struct crust_msg *m;
	while ((m = eng_txq_pop(&s->txq)))
		s->ops->on_msg_done(s, m, -ECONNRESET);
	eng_txq_release(&s->txq);
	drop_chunk(s);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->sh->live--;
	s->ops->on_closed(s, s->close_err);
}

static void op_done(struct eng_stream *s)
{
	s->inflight--;
	if (s->closing)
		finish_close(s);
}

void eng_stream_close(struct eng_stream *s, int err)
{
	if (s->closing)
		return;
	s->closing = true;
	s->close_err = err;
	if (s->next_starved || s->sh->starved == s) {
		/* unlink from the starved list */
		struct eng_stream **pp = &s->sh->starved;
		while (*pp && *pp != s)
			pp = &(*pp)->next_starved;
		if (*pp)
			*pp = s->next_starved;
		s->next_starved = NULL;
	}
	if (s->inflight) {
		/* close() alone would not stop in-flight operations */
		struct io_uring_sqe *sqe = eng_sqe(s->sh, &s->cancel_op);
		io_uring_prep_cancel_fd(sqe, s->fd, IORING_ASYNC_CANCEL_ALL);
		s->inflight++;
		shutdown(s->fd, SHUT_RDWR);
		return;
	}
	finish_close(s);
}

static void cancel_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	(void)sh;
	(void)cqe;
	op_done(container_of(op, struct eng_stream, cancel_op));
}

static void connect_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	(void)sh;
	struct eng_stream *s = container_of(op, struct eng_stream, connect_op);
	int res = cqe->res == -ECANCELED ? -ETIMEDOUT : cqe->res;
	s->connecting = false;
	s->inflight--;
	if (s->closing) {
		finish_close(s);
		return;
	}
	if (res == 0)
		arm_recv(s);
	s->ops->on_connected(s, res);
	if (res == 0 && !s->closing)
		flush(s);
}

static void timeout_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	(void)sh;
	(void)cqe;
	op_done(container_of(op, struct eng_stream, timeout_op));
}

static void park_starved(struct eng_stream *s)
{
	s->next_starved = s->sh->starved;
	s->sh->starved = s;
	atomic_store(&s->sh->rx.starved, true);
}

static bool over_held_limit(const struct shard *sh, uint64_t limit)
{
	return atomic_load_explicit(&sh->rx.heap_held, memory_order_relaxed) > limit;
}

void eng_streams_rearm_starved(struct shard *sh)
{
	if (!sh->starved || eng_bufring_available(&sh->rx) < sh->rx.count / 4 ||
	    over_held_limit(sh, sh->eng->cfg.rx_held_limit / 2))
		return;
	struct eng_stream *s = sh->starved;
	sh->starved = NULL;
	atomic_store(&sh->rx.starved, false);
	while (s) {
		struct eng_stream *next = s->next_starved;
		s->next_starved = NULL;
		arm_recv(s);
		atomic_fetch_add_explicit(&sh->stats.rx_rearms, 1, memory_order_relaxed);
		s = next;
	}
}

static void pause_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	(void)sh;
	(void)cqe;
	op_done(container_of(op, struct eng_stream, pause_op));
}

/*
 * The user holds more reassembled bytes than the budget: stop this
 * stream's multishot receive; it waits on the starved list and TCP flow
 * control holds the sender back until the user releases messages.
 */
static void maybe_pause(struct eng_stream *s)
{
	if (s->pausing || !s->recv_armed || s->closing ||
	    !over_held_limit(s->sh, s->sh->eng->cfg.rx_held_limit))
		return;
	s->pausing = true;
	struct io_uring_sqe *sqe = eng_sqe(s->sh, &s->pause_op);
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&s->recv_op, 0);
	s->inflight++;
	atomic_fetch_add_explicit(&s->sh->stats.rx_pauses, 1, memory_order_relaxed);
}

static void recv_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	struct eng_stream *s = container_of(op, struct eng_stream, recv_op);
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		struct eng_rxbuf *b = eng_bufring_take(&sh->rx, cqe->flags);
		if (cqe->res > 0 && !s->closing) {
			s->rx_bytes += (uint32_t)cqe->res;
			atomic_fetch_add_explicit(&sh->stats.rx_bytes, (uint64_t)cqe->res,
						  memory_order_relaxed);
			atomic_fetch_add_explicit(&sh->stats.rx_calls, 1, memory_order_relaxed);
			s->ops->on_data(s, b, b->data, (uint32_t)cqe->res);
		}
		eng_rxbuf_put(b);
	}
	if (cqe->flags & IORING_CQE_F_MORE) {
		maybe_pause(s);
		return;
	}
	/* the multishot ended: find out why and re-arm if the stream lives on */
	s->recv_armed = false;
	s->inflight--;
	if (s->closing) {
		finish_close(s);
		return;
	}
	if (s->pausing && (cqe->res == -ECANCELED || cqe->res > 0)) {
		s->pausing = false;
		park_starved(s);
	} else if (cqe->res == -ENOBUFS) {
		atomic_fetch_add_explicit(&sh->stats.rx_enobufs, 1, memory_order_relaxed);
		park_starved(s);
	}
	else if (cqe->res > 0)
		arm_recv(s);
	else if (cqe->res == 0 && !s->write_shut &&
		 (s->sending || s->seg_first < s->nsegs || !eng_txq_empty(&s->txq))) {
		/* the peer finished sending; what we still have for it goes out first */
		s->peer_eof = true;
		s->draining = true;
	} else
		eng_stream_close(s, cqe->res);
}

/*
 * Release the staging chunk once nothing in flight points into it. After
 * a zero-copy send the kernel may still read it until the notification.
 */
static void drop_chunk(struct eng_stream *s)
{
	if (s->chunk && s->chunk_zc && s->zc_notif_pending)
		s->zc_hold = s->chunk;
	else if (s->chunk)
		eng_arena_put(s->sh, s->chunk);
	s->chunk = NULL;
	s->chunk_zc = false;
	s->chunk_used = 0;
}

/*
 * One arena chunk, big enough, and no notification outstanding: send it
 * with SEND_ZC from the registered buffer (no copy into the kernel).
 */
static bool try_send_zc(struct eng_stream *s)
{
	struct eng_stream_seg *g = &s->segs[s->seg_first];
	const struct eng_arena *a = &s->sh->arena;
	if (!s->zc_enabled || s->zc_notif_pending || s->zc_hold || s->nsegs - s->seg_first != 1 ||
	    g->msg || g->len - s->seg_off < s->sh->eng->cfg.zc_min || !eng_arena_owns(a, g->p))
		return false;
	struct io_uring_sqe *sqe = eng_sqe(s->sh, &s->send_op);
	io_uring_prep_send_zc_fixed(sqe, s->fd, g->p + s->seg_off, g->len - s->seg_off,
				    MSG_NOSIGNAL, 0, 0);
	sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
	s->chunk_zc = true;
	s->sending = true;
	s->inflight++;
	atomic_fetch_add_explicit(&s->sh->stats.tx_zc_sends, 1, memory_order_relaxed);
	return true;
}

/* The kernel is done with a zero-copy send's memory. */
static void zc_notified(struct eng_stream *s, const struct io_uring_cqe *cqe)
{
	s->zc_notif_pending = false;
	if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED) {
		/* copied anyway (loopback does): zero copy only costs here */
		s->zc_enabled = false;
		atomic_fetch_add_explicit(&s->sh->stats.tx_zc_copied, 1, memory_order_relaxed);
	}
	if (s->zc_hold) {
		eng_arena_put(s->sh, s->zc_hold);
		s->zc_hold = NULL;
	}
	op_done(s);
	if (!s->closing)
		flush(s);
}

/*
 * Records. Without a sealer a record is just the frames it holds. With
 * one, small frames copied into the chunk are grouped into one record per
 * run: hdr_room bytes are reserved before the first, tag_room after the
 * last, and the sealer encrypts the run in place when it closes. A large
 * message is its own record, sealed in its own buffer (head- and
 * tailroom). Records are sealed in wire order.
 */
static uint32_t hdr_room(const struct eng_stream *s)
{
	return s->sealer ? s->sealer->hdr_room : 0;
}

static uint32_t tag_room(const struct eng_stream *s)
{
	return s->sealer ? s->sealer->tag_room : 0;
}

static void seal(struct eng_stream *s, uint8_t *rec, uint32_t body_len)
{
	if (!s->sealer || s->seal_err)
		return;
	s->seal_err = s->sealer->seal(s->sealer->ctx, rec, body_len);
}

static void add_seg(struct eng_stream *s, uint8_t *p, uint32_t len, struct crust_msg *m)
{
	struct eng_stream_seg *last = s->nsegs ? &s->segs[s->nsegs - 1] : NULL;
	if (!m && last && !last->msg && last->p + last->len == p) {
		last->len += len;
	} else {
		s->segs[s->nsegs++] = (struct eng_stream_seg){ p, len, m, 0, 0 };
		last = &s->segs[s->nsegs - 1];
	}
	if (!m) {
		last->staged_msgs += s->rec_msgs;
		last->staged_bytes += s->rec_bytes;
		s->rec_msgs = 0;
		s->rec_bytes = 0;
	}
}

/* Seal the open run of small frames in the chunk and queue it for sending. */
static void close_record(struct eng_stream *s)
{
	if (!s->rec_open)
		return;
	s->rec_open = false;
	uint8_t *rec = s->chunk + s->rec_start;
	seal(s, rec, s->chunk_used - s->rec_start - hdr_room(s));
	s->chunk_used += tag_room(s);
	add_seg(s, rec, s->chunk_used - s->rec_start, NULL);
}

/* Copy a small frame into the open record of the chunk; false if it does not fit. */
static bool stage_small(struct eng_stream *s, struct crust_msg *m, uint32_t flen)
{
	if (!s->chunk) {
		s->chunk = eng_arena_get(s->sh);
		if (!s->chunk)
			return false;
		s->chunk_used = 0;
	}
	uint32_t need = flen + tag_room(s) + (s->rec_open ? 0 : hdr_room(s));
	if (s->chunk_used + need > ENG_ARENA_CHUNK)
		return false;
	if (!s->rec_open) {
		s->rec_open = true;
		s->rec_start = s->chunk_used;
		s->chunk_used += hdr_room(s);
	}
	memcpy(s->chunk + s->chunk_used, eng_msg_frame(m), flen);
	s->chunk_used += flen;
	if (m->acct) {
		s->rec_msgs++;
		s->rec_bytes += m->len;
	}
	return true;
}

/* A frame sent from its own memory: sealed in place unless it is raw. */
static void add_own(struct eng_stream *s, struct crust_msg *m)
{
	close_record(s);
	uint8_t *frame = eng_msg_frame(m);
	uint32_t flen = eng_msg_frame_len(m);
	if (m->flags & ENG_MSG_RAW || !s->sealer) {
		add_seg(s, frame, flen, m);
		return;
	}
	seal(s, frame - hdr_room(s), flen);
	add_seg(s, frame - hdr_room(s), hdr_room(s) + flen + tag_room(s), m);
}

/* Move queued frames into segs until the send is full (one seg stays free for a record). */
static void gather(struct eng_stream *s)
{
	uint64_t total = 0;
	struct crust_msg *m;
	while (s->nsegs < ENG_STREAM_IOV - 1 && total < ENG_STREAM_SEND_MAX &&
	       (m = eng_txq_peek(&s->txq))) {
		uint32_t flen = eng_msg_frame_len(m);
		if (flen <= ENG_STREAM_COPY_MAX && !(m->flags & ENG_MSG_RAW)) {
			if (!stage_small(s, m, flen))
				break;
			eng_txq_pop(&s->txq);
			s->ops->on_msg_done(s, m, ENG_MSG_STAGED);
		} else {
			eng_txq_pop(&s->txq);
			add_own(s, m);
		}
		total += flen;
	}
	close_record(s);
	if (s->nsegs == 0 && (m = eng_txq_pop(&s->txq)))
		add_own(s, m); /* no chunk to stage in: send from its own memory */
}

void eng_stream_set_sealer(struct eng_stream *s, const struct eng_sealer *sealer)
{
	s->sealer = sealer;
}

static void submit_send(struct eng_stream *s)
{
	unsigned n = 0;
	for (unsigned i = s->seg_first; i < s->nsegs; i++, n++) {
		uint32_t off = i == s->seg_first ? s->seg_off : 0;
		s->iov[n].iov_base = s->segs[i].p + off;
		s->iov[n].iov_len = s->segs[i].len - off;
	}
	memset(&s->mh, 0, sizeof(s->mh));
	s->mh.msg_iov = s->iov;
	s->mh.msg_iovlen = n;
	struct io_uring_sqe *sqe = eng_sqe(s->sh, &s->send_op);
	io_uring_prep_sendmsg(sqe, s->fd, &s->mh, MSG_NOSIGNAL);
	s->sending = true;
	s->inflight++;
}

static void flush(struct eng_stream *s)
{
	if (s->sending || s->closing || s->connecting)
		return;
	if (s->seg_first == s->nsegs) {
		s->nsegs = s->seg_first = 0;
		s->seg_off = 0;
		drop_chunk(s);
		gather(s);
		if (s->seal_err) {
			eng_stream_close(s, s->seal_err);
			return;
		}
	}
	if (s->seg_first < s->nsegs && !try_send_zc(s))
		submit_send(s);
}

/* The kernel took res bytes: retire the segments they covered. */
static void consume(struct eng_stream *s, uint32_t res)
{
	while (res && s->seg_first < s->nsegs) {
		struct eng_stream_seg *g = &s->segs[s->seg_first];
		uint32_t left = g->len - s->seg_off;
		if (res < left) {
			s->seg_off += res;
			return;
		}
		res -= left;
		s->seg_off = 0;
		s->seg_first++;
		if (g->msg)
			s->ops->on_msg_done(s, g->msg, 0);
		else if (g->staged_msgs)
			s->ops->on_staged_done(s, g->staged_msgs, g->staged_bytes, 0);
	}
}

static void send_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	struct eng_stream *s = container_of(op, struct eng_stream, send_op);
	if (cqe->flags & IORING_CQE_F_NOTIF) {
		zc_notified(s, cqe);
		return;
	}
	if (cqe->flags & IORING_CQE_F_MORE) {
		/* a zero-copy send: its notification completes the operation */
		s->zc_notif_pending = true;
		s->inflight++;
	}
	s->sending = false;
	s->inflight--;
	if (s->closing) {
		finish_close(s);
		return;
	}
	if (cqe->res < 0) {
		eng_stream_close(s, cqe->res);
		return;
	}
	s->tx_bytes += (uint32_t)cqe->res;
	atomic_fetch_add_explicit(&sh->stats.tx_bytes, (uint64_t)cqe->res, memory_order_relaxed);
	atomic_fetch_add_explicit(&sh->stats.tx_calls, 1, memory_order_relaxed);
	consume(s, (uint32_t)cqe->res);
	flush(s);
	maybe_shut_write(s);
}

/* Draining and nothing left to send: end our direction (the peer sees EOF after our data). */
static void maybe_shut_write(struct eng_stream *s)
{
	if (!s->draining || s->write_shut || s->sending || s->closing ||
	    s->seg_first < s->nsegs || !eng_txq_empty(&s->txq))
		return;
	s->write_shut = true;
	shutdown(s->fd, SHUT_WR);
	if (s->peer_eof)
		eng_stream_close(s, 0);
}

void eng_stream_shutdown(struct eng_stream *s)
{
	s->draining = true;
	if (!s->connecting)
		maybe_shut_write(s);
}

int eng_stream_send(struct eng_stream *s, struct crust_msg *m)
{
	if (s->closing || s->write_shut)
		return -ENOTCONN;
	int err = eng_txq_push(&s->txq, m);
	if (err)
		return err;
	flush(s);
	return 0;
}
