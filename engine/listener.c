/*
 * listener.c - multishot accept (see listener.h).
 *
 * A multishot accept ends (no IORING_CQE_F_MORE) on errors such as
 * EMFILE; it is re-armed after a short pause so a descriptor shortage
 * does not become a busy loop.
 */
#define _GNU_SOURCE
#include "listener.h"

#include "addr.h"
#include "udp.h"
#include "fault.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCEPT_RETRY_MS 100

int eng_bind_socket(int type, const struct sockaddr *addr, socklen_t len, unsigned flags)
{
	int fd = socket(addr->sa_family, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (type == SOCK_STREAM || (flags & ENG_BIND_SHARED))
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (type == SOCK_DGRAM)
		eng_udp_prepare_socket(fd);
	if ((flags & ENG_BIND_REUSEPORT) &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (addr->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, addr, len) < 0)
		goto fail;
	if (type == SOCK_STREAM && listen(fd, 4096) < 0)
		goto fail;
	return fd;
fail:;
	int err = -errno;
	close(fd);
	return err;
}

uint16_t eng_bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	return eng_addr_port(&ss);
}

static void arm_accept(struct eng_listener *l)
{
	struct io_uring_sqe *sqe = eng_sqe(l->sh, &l->accept_op);
	/* a fault (faults build): no socket, so the accept ends with -EBADF */
	io_uring_prep_multishot_accept(sqe, crust_fault_hit(CRUST_FAULT_SOCK) ? -1 : l->fd, NULL,
				       NULL, SOCK_CLOEXEC);
	l->inflight++;
}

static void finish(struct eng_listener *l)
{
	if (l->closed || l->inflight)
		return;
	l->closed = true;
	eng_timer_cancel(&l->sh->timers, &l->retry);
	close(l->fd);
	l->fd = -1;
	l->sh->live--;
	if (l->on_closed)
		l->on_closed(l);
}

static void accept_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	struct eng_listener *l = container_of(op, struct eng_listener, accept_op);
	if (cqe->res >= 0) {
		if (l->closing)
			close(cqe->res);
		else
			l->on_accept(l, cqe->res);
	}
	if (cqe->flags & IORING_CQE_F_MORE)
		return;
	l->inflight--;
	if (l->closing) {
		finish(l);
		return;
	}
	if (cqe->res < 0) {
		eng_log(sh->eng, 1, "shard %u: accept: %s; retrying", sh->id, strerror(-cqe->res));
		eng_timer_arm(&sh->timers, &l->retry, ACCEPT_RETRY_MS);
		return;
	}
	arm_accept(l);
}

static void retry_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct eng_listener *l = ctx;
	if (!l->closing)
		arm_accept(l);
}

static void cancel_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	(void)sh;
	(void)cqe;
	struct eng_listener *l = container_of(op, struct eng_listener, cancel_op);
	l->inflight--;
	finish(l);
}

void eng_listener_start(struct eng_listener *l, struct shard *sh, int fd, eng_accept_fn on_accept,
			void (*on_closed)(struct eng_listener *l), void *owner)
{
	memset(l, 0, sizeof(*l));
	l->sh = sh;
	l->fd = fd;
	l->on_accept = on_accept;
	l->on_closed = on_closed;
	l->owner = owner;
	l->accept_op.cb = accept_cb;
	l->cancel_op.cb = cancel_cb;
	eng_timer_init(&l->retry, retry_cb, l);
	sh->live++;
	arm_accept(l);
}

void eng_listener_close(struct eng_listener *l)
{
	if (l->closing)
		return;
	l->closing = true;
	if (l->inflight) {
		struct io_uring_sqe *sqe = eng_sqe(l->sh, &l->cancel_op);
		io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
		l->inflight++;
		return;
	}
	finish(l);
}

/*
 * Is the port free for us? A bind without reuse flags answers. With port 0
 * it picks one nobody holds and stores it in ss: an autobind with
 * SO_REUSEPORT (or, for UDP, SO_REUSEADDR) may hand out a port another
 * process's socket group of the same user holds, which would then share
 * that process's traffic.
 */
static int probe_port(int type, struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int ret = bind(fd, (const struct sockaddr *)ss, len) < 0 ? -errno : 0;
	if (ret == 0 && eng_addr_port(ss) == 0) {
		eng_addr_set_port(ss, eng_bound_port(fd));
		if (eng_addr_port(ss) == 0)
			ret = -EADDRNOTAVAIL;
	}
	close(fd);
	return ret;
}

/* Bind every shard's socket on ss's (probed, free) port. */
static int bind_all(int type, struct sockaddr_storage *ss, socklen_t len, unsigned n, int *fds)
{
	for (unsigned i = 0; i < n; i++) {
		fds[i] = eng_bind_socket(type, (struct sockaddr *)ss, len, ENG_BIND_REUSEPORT);
		if (fds[i] < 0) {
			int err = fds[i];
			while (i--)
				close(fds[i]);
			return err;
		}
	}
	return 0;
}

/* The port free at the probe may be taken before the group binds it: a few tries. */
#define RANDOM_PORT_TRIES 8

static int bind_random(int type, struct sockaddr_storage *ss, socklen_t len, unsigned n, int *fds)
{
	int err = -EADDRINUSE;
	for (int i = 0; i < RANDOM_PORT_TRIES && err == -EADDRINUSE; i++) {
		eng_addr_set_port(ss, 0);
		err = probe_port(type, ss, len);
		if (err == 0)
			err = bind_all(type, ss, len, n, fds);
	}
	return err;
}

int eng_bind_port_group(int type, struct sockaddr_storage *ss, socklen_t len, unsigned n,
			int *fds, bool *fallback)
{
	*fallback = false;
	if (eng_addr_port(ss) == 0)
		return bind_random(type, ss, len, n, fds);
	int err = probe_port(type, ss, len);
	if (err == 0)
		err = bind_all(type, ss, len, n, fds);
	if (err == -EADDRINUSE || err == -EACCES) {
		*fallback = true;
		err = bind_random(type, ss, len, n, fds);
	}
	return err;
}

struct take_mail {
	struct eng_mail m;
	eng_take_listener_fn take;
	void *ctx;
	int fd, family;
};

static void take_on_shard(struct shard *sh, struct eng_mail *m)
{
	struct take_mail *tm = (struct take_mail *)m;
	tm->take(sh, tm->fd, tm->family, tm->ctx);
	free(tm);
}

int eng_listen_group(struct eng *eng, int type, const struct sockaddr *addr, socklen_t len,
		     uint16_t *port, bool *fallback, eng_take_listener_fn take, void *ctx)
{
	struct sockaddr_storage ss;
	bool fell_back;
	if (len > sizeof(ss))
		return -EINVAL;
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, addr, len);
	int fds[eng->nshards];
	int err = eng_bind_port_group(type, &ss, len, eng->nshards, fds, &fell_back);
	if (err)
		return err;
	*port = eng_addr_port(&ss);
	if (fallback)
		*fallback = fell_back;
	for (unsigned i = 0; i < eng->nshards; i++) {
		struct take_mail *tm = calloc(1, sizeof(*tm));
		if (!tm) {
			close(fds[i]); /* that shard keeps the listener it had, if any */
			continue;
		}
		tm->m.fn = take_on_shard;
		tm->take = take;
		tm->ctx = ctx;
		tm->fd = fds[i];
		tm->family = ss.ss_family;
		eng_post(&eng->shards[i], &tm->m);
	}
	return 0;
}
