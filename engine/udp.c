/*
 * udp.c - datagram socket primitives (see udp.h).
 *
 * Each receive completion's buffer starts with struct io_uring_recvmsg_out,
 * then the source address, the control messages and the payload; the
 * liburing helpers find each part. The UDP_GRO control message gives the
 * segment size of a coalesced batch; SO_RXQ_OVFL counts what the kernel
 * dropped because the socket buffer was full.
 */
#define _GNU_SOURCE
#include "udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"

#define UDP_ERROR_RETRY_MS 100
/* UDP_GRO, SO_RXQ_OVFL, and IP_TTL / IPV6_HOPLIMIT for owners that ask for them */
#define RECV_CTL_SPACE (2 * CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(uint32_t)))

static void recv_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);
static void send_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);
static void cancel_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);

static void arm_recv(struct eng_udp *u)
{
	struct io_uring_sqe *sqe = eng_sqe(u->sh, &u->recv_op);
	io_uring_prep_recvmsg_multishot(sqe, u->fd, &u->rmh, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (__u16)u->sh->rx.bgid;
	u->inflight++;
}

static void rearm_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct eng_udp *u = ctx;
	if (!u->closing)
		arm_recv(u);
}

static void set_sockbuf(int fd, int opt_force, int opt, int size)
{
	/* the FORCE variants pass rmem_max/wmem_max when we are privileged */
	if (setsockopt(fd, SOL_SOCKET, opt_force, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size));
}

void eng_udp_prepare_socket(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_UDP, UDP_GRO, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
	set_sockbuf(fd, SO_RCVBUFFORCE, SO_RCVBUF, ENG_UDP_SOCKBUF);
	set_sockbuf(fd, SO_SNDBUFFORCE, SO_SNDBUF, ENG_UDP_SOCKBUF);
}

int eng_udp_open(struct eng_udp *u, struct shard *sh, int fd, const struct eng_udp_ops *ops,
		 void *owner)
{
	return eng_udp_open_slots(u, sh, fd, ops, owner, ENG_UDP_SLOTS);
}

int eng_udp_open_slots(struct eng_udp *u, struct shard *sh, int fd,
		       const struct eng_udp_ops *ops, void *owner, unsigned nslots)
{
	memset(u, 0, sizeof(*u));
	if (!nslots || nslots > ENG_UDP_SLOTS)
		return -EINVAL;
	u->slots = calloc(nslots, sizeof(*u->slots));
	if (!u->slots)
		return -ENOMEM;
	for (unsigned i = 0; i < nslots; i++) {
		u->slots[i].op.cb = send_cb;
		u->slots[i].u = u;
		u->slots[i].next_free = i + 1 < nslots ? &u->slots[i + 1] : NULL;
	}
	u->free_slots = &u->slots[0];
	u->sh = sh;
	u->fd = fd;
	u->ops = ops;
	u->owner = owner;
	u->recv_op.cb = recv_cb;
	u->cancel_op.cb = cancel_cb;
	eng_timer_init(&u->rearm, rearm_cb, u);
	u->rmh.msg_namelen = sizeof(struct sockaddr_storage);
	u->rmh.msg_controllen = RECV_CTL_SPACE;
	sh->live++;
	arm_recv(u);
	return 0;
}

static void finish(struct eng_udp *u)
{
	if (u->closed || u->inflight)
		return;
	u->closed = true;
	eng_timer_cancel(&u->sh->timers, &u->rearm);
	close(u->fd);
	u->fd = -1;
	free(u->slots);
	u->slots = NULL;
	u->sh->live--;
	if (u->ops->on_closed)
		u->ops->on_closed(u);
}

void eng_udp_close(struct eng_udp *u)
{
	if (u->closing)
		return;
	u->closing = true;
	eng_timer_cancel(&u->sh->timers, &u->rearm);
	if (u->inflight) {
		struct io_uring_sqe *sqe = eng_sqe(u->sh, &u->cancel_op);
		io_uring_prep_cancel_fd(sqe, u->fd, IORING_ASYNC_CANCEL_ALL);
		u->inflight++;
		return;
	}
	finish(u);
}

static void cancel_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	(void)sh;
	(void)cqe;
	struct eng_udp *u = container_of(op, struct eng_udp, cancel_op);
	u->inflight--;
	finish(u);
}

/* Read the GRO segment size, the kernel's drop counter and the TTL from the cmsgs. */
static uint16_t parse_cmsgs(struct eng_udp *u, struct io_uring_recvmsg_out *o)
{
	uint16_t gso = 0;
	u->rx_ttl = -1;
	for (struct cmsghdr *c = io_uring_recvmsg_cmsg_firsthdr(o, &u->rmh); c;
	     c = io_uring_recvmsg_cmsg_nexthdr(o, &u->rmh, c)) {
		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
			int v;
			memcpy(&v, CMSG_DATA(c), sizeof(v));
			gso = (uint16_t)v;
		} else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
			uint32_t v;
			memcpy(&v, CMSG_DATA(c), sizeof(v));
			u->rx_kernel_drops = v;
		} else if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
			   (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)) {
			memcpy(&u->rx_ttl, CMSG_DATA(c), sizeof(u->rx_ttl));
		}
	}
	return gso;
}

static void deliver(struct eng_udp *u, struct eng_rxbuf *b, int res)
{
	struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(b->data, res, &u->rmh);
	if (!o || (o->flags & MSG_TRUNC) || o->namelen > u->rmh.msg_namelen) {
		u->rx_truncated++;
		return;
	}
	uint16_t gso = parse_cmsgs(u, o);
	uint8_t *p = io_uring_recvmsg_payload(o, &u->rmh);
	uint32_t len = io_uring_recvmsg_payload_length(o, res, &u->rmh);
	u->rx_datagrams++;
	atomic_fetch_add_explicit(&u->sh->stats.rx_bytes, len, memory_order_relaxed);
	u->ops->on_datagram(u, b, io_uring_recvmsg_name(o), o->namelen, p, len, gso);
}

static void recv_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	struct eng_udp *u = container_of(op, struct eng_udp, recv_op);
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		struct eng_rxbuf *b = eng_bufring_take(&sh->rx, cqe->flags);
		if (cqe->res > 0 && !u->closing)
			deliver(u, b, cqe->res);
		eng_rxbuf_put(b);
	}
	if (cqe->flags & IORING_CQE_F_MORE)
		return;
	u->inflight--;
	if (u->closing) {
		finish(u);
		return;
	}
	/* out of buffers: datagrams meanwhile are dropped by the kernel (counted) */
	if (cqe->res == -ENOBUFS) {
		atomic_fetch_add_explicit(&sh->stats.rx_enobufs, 1, memory_order_relaxed);
		eng_timer_arm(&sh->timers, &u->rearm, 1);
		return;
	}
	if (cqe->res < 0) {
		/* an unexpected error: retry, but slowly enough not to spin */
		u->rx_errors++;
		eng_timer_arm(&sh->timers, &u->rearm, UDP_ERROR_RETRY_MS);
		return;
	}
	arm_recv(u);
}

static void send_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	struct eng_udp_send *s = container_of(op, struct eng_udp_send, op);
	struct eng_udp *u = s->u;
	if (cqe->res > 0)
		atomic_fetch_add_explicit(&sh->stats.tx_bytes, (uint64_t)cqe->res, memory_order_relaxed);
	s->next_free = u->free_slots;
	u->free_slots = s;
	u->inflight--;
	if (u->ops->on_sent)
		u->ops->on_sent(u, s->ctx, cqe->res);
	if (u->closing)
		finish(u);
}

int eng_udp_send(struct eng_udp *u, const struct sockaddr *to, socklen_t tolen,
		 const struct iovec *iov, unsigned iovcnt, uint16_t gso_size, void *ctx)
{
	if (u->closing)
		return -ENOTCONN;
	if (iovcnt > ENG_UDP_IOV || tolen > sizeof(struct sockaddr_storage))
		return -EINVAL;
	struct eng_udp_send *s = u->free_slots;
	if (!s)
		return -EAGAIN;
	u->free_slots = s->next_free;
	memcpy(&s->to, to, tolen);
	memcpy(s->iov, iov, iovcnt * sizeof(*iov));
	memset(&s->mh, 0, sizeof(s->mh));
	s->mh.msg_name = &s->to;
	s->mh.msg_namelen = tolen;
	s->mh.msg_iov = s->iov;
	s->mh.msg_iovlen = iovcnt;
	s->ctx = ctx;
	if (gso_size) {
		s->mh.msg_control = s->ctl;
		s->mh.msg_controllen = sizeof(s->ctl);
		struct cmsghdr *c = CMSG_FIRSTHDR(&s->mh);
		c->cmsg_level = SOL_UDP;
		c->cmsg_type = UDP_SEGMENT;
		c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
		memcpy(CMSG_DATA(c), &gso_size, sizeof(gso_size));
	}
	struct io_uring_sqe *sqe = eng_sqe(u->sh, &s->op);
	io_uring_prep_sendmsg(sqe, u->fd, &s->mh, 0);
	u->inflight++;
	u->tx_sends++;
	return 0;
}
