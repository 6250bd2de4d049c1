/*
 * tcp.c - the TCP transport: per-shard SO_REUSEPORT listeners, framed
 * messages over engine streams.
 * Port choice: eng_bind_port_group (live port, random backup).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/addr.h"
#include "engine/listener.h"
#include "engine/stream.h"
#include "framing.h"
#include "transport.h"

struct tcp_transport {
	struct transport base;
	struct eng_listener **listeners; /* one per shard (heap: an old one may still be closing) */
	bool *listening;             /* shard thread's view */
	bool bound;                  /* user thread's view: listen() ran */
};

struct tcp_conn {
	struct tp_conn base;
	struct eng_stream s;
	struct frame_decoder dec;
	struct eng_timer frame_timer;
	char reason[CRUST_REASON_LEN];
	int shutdown_err;          /* reported when a graceful end completes */
	bool connect_failed;
};

static const struct eng_stream_ops stream_ops;

static struct tcp_conn *conn_new(struct transport *t, struct shard *sh)
{
	struct tcp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->base.t = t;
	c->base.sh = sh;
	frame_decoder_init(&c->dec, t->limits.max_msg_size);
	return c;
}

static void set_reason(struct tcp_conn *c, const char *reason)
{
	if (!c->reason[0] && reason)
		snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

static void tcp_close(struct tp_conn *tc, int err, const char *reason)
{
	struct tcp_conn *c = (struct tcp_conn *)tc;
	set_reason(c, reason);
	eng_stream_close(&c->s, err);
}

static void tcp_shutdown(struct tp_conn *tc, int err, const char *reason)
{
	struct tcp_conn *c = (struct tcp_conn *)tc;
	set_reason(c, reason);
	c->shutdown_err = err;
	eng_stream_shutdown(&c->s);
}

static void tcp_set_sealer(struct tp_conn *tc, const struct eng_sealer *sealer)
{
	eng_stream_set_sealer(&((struct tcp_conn *)tc)->s, sealer);
}

static void frame_timeout_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	tcp_close(ctx, -ETIMEDOUT, "stalled frame: no progress within frame timeout");
}

static void on_connected(struct eng_stream *s, int res)
{
	struct tcp_conn *c = s->owner;
	struct transport *t = c->base.t;
	if (res < 0) {
		c->connect_failed = true;
		t->cb->connected(t->cb_ctx, &c->base, res);
		eng_stream_close(s, res);
		return;
	}
	t->cb->connected(t->cb_ctx, &c->base, 0);
}

static int deliver(void *ctx, struct crust_msg *m)
{
	struct tcp_conn *c = ctx;
	struct transport *t = c->base.t;
	/* reassembled messages hold heap memory: the shard pauses receiving past its budget */
	if (m->kind == ENG_MSG_HEAP)
		eng_msg_charge_rx(m, &c->base.sh->rx);
	t->cb->received(t->cb_ctx, &c->base, m);
	/* the layer above may have closed us: stop decoding */
	return c->s.closing ? 1 : 0;
}

static void on_data(struct eng_stream *s, struct eng_rxbuf *b, uint8_t *p, uint32_t n)
{
	struct tcp_conn *c = s->owner;
	int err = frame_decode(&c->dec, b, p, n, deliver, c);
	if (err < 0) {
		char why[CRUST_REASON_LEN];
		if (err == -EMSGSIZE)
			snprintf(why, sizeof(why), "frame length above the maximum (%u bytes)",
				 c->dec.max_len);
		else
			snprintf(why, sizeof(why), "receive failed: %s", strerror(-err));
		tcp_close(&c->base, err, why);
		return;
	}
	if (s->closing)
		return;
	/* a frame in progress must keep moving; a stalled one ends the connection */
	if (frame_decoder_mid_frame(&c->dec))
		eng_timer_arm(&s->sh->timers, &c->frame_timer, c->base.t->limits.frame_timeout_ms);
	else
		eng_timer_cancel(&s->sh->timers, &c->frame_timer);
}

static void on_msg_done(struct eng_stream *s, struct crust_msg *m, int status)
{
	struct tcp_conn *c = s->owner;
	struct transport *t = c->base.t;
	t->cb->msg_done(t->cb_ctx, &c->base, m, status);
}

static void on_staged_done(struct eng_stream *s, uint32_t nmsgs, uint64_t nbytes, int status)
{
	struct tcp_conn *c = s->owner;
	struct transport *t = c->base.t;
	t->cb->staged_done(t->cb_ctx, &c->base, nmsgs, nbytes, status);
}

static void on_closed(struct eng_stream *s, int err)
{
	struct tcp_conn *c = s->owner;
	struct transport *t = c->base.t;
	eng_timer_cancel(&s->sh->timers, &c->frame_timer);
	frame_decoder_reset(&c->dec);
	if (!c->connect_failed) {
		if (!c->reason[0])
			snprintf(c->reason, sizeof(c->reason), "%s",
				 err ? strerror(-err) : "closed by peer");
		t->cb->closed(t->cb_ctx, &c->base, err ? err : c->shutdown_err, c->reason);
	}
	free(c);
}

static const struct eng_stream_ops stream_ops = {
	.on_connected = on_connected,
	.on_data = on_data,
	.on_msg_done = on_msg_done,
	.on_staged_done = on_staged_done,
	.on_closed = on_closed,
};

static void on_accept(struct eng_listener *l, int fd)
{
	struct tcp_transport *tt = l->owner;
	struct tcp_conn *c = conn_new(&tt->base, l->sh);
	if (!c) {
		close(fd);
		return;
	}
	c->base.remote_len = sizeof(c->base.remote);
	getpeername(fd, (struct sockaddr *)&c->base.remote, &c->base.remote_len);
	eng_timer_init(&c->frame_timer, frame_timeout_cb, c);
	eng_stream_attach(&c->s, l->sh, fd, &stream_ops, c);
	tt->base.cb->accepted(tt->base.cb_ctx, &c->base);
}

static int tcp_connect_from(struct transport *t, struct shard *sh, const struct sockaddr *local,
			    socklen_t llen, const struct sockaddr *addr, socklen_t len, void *user,
			    struct tp_conn **out)
{
	struct tcp_conn *c = conn_new(t, sh);
	if (!c)
		return -ENOMEM;
	c->base.user = user;
	c->base.outgoing = true;
	memcpy(&c->base.remote, addr, len);
	c->base.remote_len = len;
	eng_timer_init(&c->frame_timer, frame_timeout_cb, c);
	int err = eng_stream_connect_from(&c->s, sh, local, llen, addr, len,
					  t->limits.connect_timeout_ms, &stream_ops, c);
	if (err) {
		free(c);
		return err;
	}
	*out = &c->base;
	return 0;
}

static int tcp_connect(struct transport *t, struct shard *sh, const struct sockaddr *addr,
		       socklen_t len, void *user, struct tp_conn **out)
{
	return tcp_connect_from(t, sh, NULL, 0, addr, len, user, out);
}

static int tcp_send(struct tp_conn *tc, struct crust_msg *m)
{
	struct tcp_conn *c = (struct tcp_conn *)tc;
	if (m->kind != ENG_MSG_HEAP)
		return -EINVAL;
	if (m->len > c->dec.max_len)
		return -EMSGSIZE;
	frame_encode(m);
	return eng_stream_send(&c->s, m);
}

static void free_listener(struct eng_listener *l)
{
	free(l);
}

/* The shard takes fd as its listening socket; the one it had (a re-bind) stops accepting. */
static void start_listener(struct shard *sh, int fd, int family, void *ctx)
{
	(void)family;
	struct tcp_transport *tt = ctx;
	if (atomic_load(&sh->stop)) {
		/* the stop hook may have run already: it would never close this one */
		close(fd);
		return;
	}
	struct eng_listener *l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return;
	}
	/* a re-bind: the old listener stops accepting; its connections are not its */
	if (tt->listening[sh->id])
		eng_listener_close(tt->listeners[sh->id]);
	eng_listener_start(l, sh, fd, on_accept, free_listener, tt);
	tt->listeners[sh->id] = l;
	tt->listening[sh->id] = true;
}

static int tcp_listen(struct transport *t, const struct sockaddr *addr, socklen_t len,
		      uint16_t *port, bool *fallback)
{
	struct tcp_transport *tt = (struct tcp_transport *)t;
	if (tt->bound)
		return -EALREADY;
	int err = eng_listen_group(t->eng, SOCK_STREAM, addr, len, port, fallback, start_listener,
				   tt);
	tt->bound = err == 0;
	return err;
}

/*
 * Move the listeners to addr's port (random if 0 or taken): bind it on
 * every shard, then each shard swaps. Established connections stay (they are not the
 * listener's); accepts still in the old listener's queue are dropped.
 */
static int tcp_rebind(struct transport *t, const struct sockaddr *addr, socklen_t len,
		      uint16_t *port)
{
	struct tcp_transport *tt = (struct tcp_transport *)t;
	if (!tt->bound)
		return -ENOTCONN;
	return eng_listen_group(t->eng, SOCK_STREAM, addr, len, port, NULL, start_listener, tt);
}

static void tcp_stop_shard(struct transport *t, struct shard *sh)
{
	struct tcp_transport *tt = (struct tcp_transport *)t;
	if (tt->listening[sh->id]) {
		eng_listener_close(tt->listeners[sh->id]);
		tt->listening[sh->id] = false;
	}
}

static void tcp_destroy(struct transport *t)
{
	struct tcp_transport *tt = (struct tcp_transport *)t;
	free(tt->listeners);
	free(tt->listening);
	free(tt);
}

static const struct transport_vtable tcp_vtable = {
	.kind = CRUST_TRANSPORT_TCP,
	.name = "tcp",
	.listen = tcp_listen,
	.rebind = tcp_rebind,
	.connect = tcp_connect,
	.connect_from = tcp_connect_from,
	.send = tcp_send,
	.close = tcp_close,
	.shutdown = tcp_shutdown,
	.set_sealer = tcp_set_sealer,
	.stop_shard = tcp_stop_shard,
	.destroy = tcp_destroy,
};

int tcp_transport_new(struct eng *eng, const struct tp_callbacks *cb, void *cb_ctx,
		      const struct tp_limits *limits, struct transport **out)
{
	struct tcp_transport *tt = calloc(1, sizeof(*tt));
	if (!tt)
		return -ENOMEM;
	tt->listeners = calloc(eng->nshards, sizeof(*tt->listeners));
	tt->listening = calloc(eng->nshards, sizeof(*tt->listening));
	if (!tt->listeners || !tt->listening) {
		tcp_destroy(&tt->base);
		return -ENOMEM;
	}
	tt->base.vt = &tcp_vtable;
	tt->base.eng = eng;
	tt->base.cb = cb;
	tt->base.cb_ctx = cb_ctx;
	tt->base.limits = *limits;
	*out = &tt->base;
	return 0;
}
