/*
 * conn.c - connections on a shard: the hello exchange, the peer table
 * entry, and turning transport upcalls into user events.
 *
 * State: CONN_HELLO until the peer's hello is in (only a hello may come
 * first; anything else ends the connection), then CONN_UP. A connection
 * is in its shard's list from creation to the transport's closed().
 * Messages charged to a peer (m->acct) release their bytes from the
 * peer's send-queue budget when they leave the transport; those that
 * never made it are counted and reported with lost_connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hello.h"
#include "node.h"

static void list_add(struct p2p_shard *ps, struct p2p_conn *pc)
{
	pc->prev = NULL;
	pc->next = ps->conns;
	if (ps->conns)
		ps->conns->prev = pc;
	ps->conns = pc;
	ps->nconns++;
}

static void list_del(struct p2p_shard *ps, struct p2p_conn *pc)
{
	if (pc->prev)
		pc->prev->next = pc->next;
	else
		ps->conns = pc->next;
	if (pc->next)
		pc->next->prev = pc->prev;
	ps->nconns--;
}

static void hello_timeout_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	conn_close(ctx, -ETIMEDOUT, "no hello within the handshake timeout");
}

struct p2p_conn *conn_new(struct crust_service *svc, struct shard *sh, bool outgoing)
{
	struct p2p_conn *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return NULL;
	pc->svc = svc;
	pc->outgoing = outgoing;
	eng_timer_init(&pc->hello_timer, hello_timeout_cb, pc);
	list_add(&svc->shards[sh->id], pc);
	return pc;
}

void conn_discard(struct p2p_conn *pc, struct shard *sh)
{
	eng_timer_cancel(&sh->timers, &pc->hello_timer);
	list_del(&pc->svc->shards[sh->id], pc);
	free(pc);
}

void conn_close(struct p2p_conn *pc, int err, const char *reason)
{
	if (pc->state == CONN_CLOSING)
		return;
	pc->state = CONN_CLOSING;
	pc->tc->t->vt->close(pc->tc, err, reason);
}

void conn_close_all(struct crust_service *svc, struct shard *sh)
{
	struct p2p_conn *pc = svc->shards[sh->id].conns;
	while (pc) {
		struct p2p_conn *next = pc->next;
		/* connects still in flight have no tc yet: the transport's close of its own follows */
		pc->stopping = true;
		if (pc->tc)
			conn_close(pc, 0, "service stopped");
		pc = next;
	}
}

static void send_hello(struct p2p_conn *pc)
{
	struct crust_service *svc = pc->svc;
	struct hello h = { .id = svc->id, .listen_port = svc->tcp_port };
	memcpy(h.network, svc->network_tag, 8);
	struct crust_msg *m = eng_msg_alloc(HELLO_LEN);
	if (!m) {
		conn_close(pc, -ENOMEM, "out of memory");
		return;
	}
	hello_encode(&h, m->data);
	int err = pc->tc->t->vt->send(pc->tc, m);
	if (err) {
		eng_msg_free(m);
		conn_close(pc, err, "cannot send hello");
		return;
	}
	eng_timer_arm(&pc->tc->sh->timers, &pc->hello_timer, svc->cfg.handshake_timeout_ms);
}

static void fill_event(struct crust_event *ev, struct p2p_conn *pc)
{
	ev->transport = pc->tc->t->vt->kind;
	memcpy(&ev->addr, &pc->tc->remote, sizeof(ev->addr));
	if (pc->ref)
		ev->peer = pc->ref->id;
}

static void on_accepted(void *ctx, struct tp_conn *c)
{
	struct crust_service *svc = ctx;
	struct p2p_conn *pc = conn_new(svc, c->sh, false);
	if (!pc) {
		c->t->vt->close(c, -ENOMEM, "out of memory");
		return;
	}
	pc->tc = c;
	c->user = pc;
	send_hello(pc);
}

static void on_connected(void *ctx, struct tp_conn *c, int res)
{
	struct crust_service *svc = ctx;
	struct p2p_conn *pc = c->user;
	if (res < 0) {
		struct crust_event ev;
		event_init(&ev, CRUST_EV_CONNECT_FAILED);
		ev.transport = c->t->vt->kind;
		memcpy(&ev.addr, &c->remote, sizeof(ev.addr));
		ev.error = res;
		snprintf(ev.reason, sizeof(ev.reason), "%s", strerror(-res));
		conn_discard(pc, c->sh);
		event_emit(svc, &ev);
		return;
	}
	send_hello(pc);
}

/* The hello came in: check it, claim the peer id, tell the user. */
static void accept_hello(struct p2p_conn *pc, struct crust_msg *m)
{
	struct crust_service *svc = pc->svc;
	struct hello h;
	char why[CRUST_REASON_LEN];
	int err = hello_decode(m->data, m->len, &h, why, sizeof(why));
	eng_msg_free(m);
	if (err) {
		conn_close(pc, err, why);
		return;
	}
	if (memcmp(h.network, svc->network_tag, 8) != 0) {
		conn_close(pc, -EPROTO, "peer belongs to another network");
		return;
	}
	if (crust_peer_eq(&h.id, &svc->id)) {
		conn_close(pc, -EPROTO, "connected to ourselves");
		return;
	}
	struct peer_ref *ref = calloc(1, sizeof(*ref));
	if (!ref) {
		conn_close(pc, -ENOMEM, "out of memory");
		return;
	}
	atomic_init(&ref->refs, 1);
	ref->id = h.id;
	ref->sh = pc->tc->sh;
	ref->conn = pc;
	ref->transport = pc->tc->t->vt->kind;
	memcpy(&ref->addr, &pc->tc->remote, sizeof(ref->addr));
	if (peer_insert(svc, ref) < 0) {
		peer_put(ref);
		conn_close(pc, -EEXIST, "already connected to this peer");
		return;
	}
	pc->ref = ref;
	pc->state = CONN_UP;
	eng_timer_cancel(&pc->tc->sh->timers, &pc->hello_timer);
	struct crust_event ev;
	event_init(&ev, CRUST_EV_NEW_CONNECTION);
	fill_event(&ev, pc);
	event_emit(svc, &ev);
}

static void on_received(void *ctx, struct tp_conn *c, struct crust_msg *m)
{
	struct crust_service *svc = ctx;
	struct p2p_conn *pc = c->user;
	if (pc->state == CONN_HELLO) {
		accept_hello(pc, m);
		return;
	}
	if (pc->state != CONN_UP) {
		eng_msg_free(m);
		return;
	}
	atomic_fetch_add_explicit(&svc->shards[c->sh->id].rx_msgs, 1, memory_order_relaxed);
	struct crust_event ev;
	event_init(&ev, CRUST_EV_NEW_MESSAGE);
	fill_event(&ev, pc);
	ev.msg = m;
	event_emit(svc, &ev);
}

/* A message the user sent could not go out; its owner is told. */
static void report_unsent(struct crust_service *svc, struct peer_ref *ref, struct crust_msg *m,
			  int status)
{
	struct crust_event ev;
	event_init(&ev, CRUST_EV_SEND_FAILED);
	ev.peer = ref->id;
	ev.transport = ref->transport;
	memcpy(&ev.addr, &ref->addr, sizeof(ev.addr));
	ev.error = status;
	ev.unsent_msgs = 1;
	ev.unsent_bytes = m->len;
	snprintf(ev.reason, sizeof(ev.reason), "%s",
		 status == -ENOTCONN ? "peer not connected" : strerror(-status));
	event_emit(svc, &ev);
}

/* Release m's bytes from its peer's budget, then free it. */
static void settle(struct crust_service *svc, struct crust_msg *m)
{
	struct peer_ref *ref = m->acct;
	if (ref) {
		atomic_fetch_sub(&ref->queued, (uint64_t)m->len + ENG_MSG_HEADROOM);
		peer_put(ref);
	}
	(void)svc;
	eng_msg_free(m);
}

static void on_msg_done(void *ctx, struct tp_conn *c, struct crust_msg *m, int status)
{
	struct crust_service *svc = ctx;
	struct p2p_conn *pc = c->user;
	if (status == 0 && m->acct)
		atomic_fetch_add_explicit(&svc->shards[c->sh->id].tx_msgs, 1, memory_order_relaxed);
	if (status != 0 && m->acct) {
		pc->unsent_msgs++;
		pc->unsent_bytes += m->len;
	}
	settle(svc, m);
}

/* Errors that mean the peer sent something it must not: worth a warning. */
static bool is_bad_input(int err)
{
	return err == -EPROTO || err == -EMSGSIZE || err == -ETIMEDOUT;
}

static void log_close(struct crust_service *svc, struct tp_conn *c, int err, const char *reason)
{
	char addr[CRUST_ADDRSTRLEN];
	crust_addr_format(&c->remote, addr, sizeof(addr));
	svc_log(svc, is_bad_input(err) ? CRUST_LOG_WARN : CRUST_LOG_INFO,
		"connection %s closed: %s", addr, reason);
}

/* A connection that never got past its hello: the dialer or the user hears why. */
static void report_handshake_failure(struct crust_service *svc, struct p2p_conn *pc, int err,
				     const char *reason)
{
	struct crust_event ev;
	event_init(&ev, pc->outgoing ? CRUST_EV_CONNECT_FAILED : CRUST_EV_HANDSHAKE_FAILED);
	fill_event(&ev, pc);
	ev.error = err ? err : -ECONNRESET;
	snprintf(ev.reason, sizeof(ev.reason), "%s", reason);
	event_emit(svc, &ev);
}

static void on_closed(void *ctx, struct tp_conn *c, int err, const char *reason)
{
	struct crust_service *svc = ctx;
	struct p2p_conn *pc = c->user;
	log_close(svc, c, err, reason);
	if (pc->ref) {
		struct peer_ref *ref = pc->ref;
		peer_remove(svc, ref);
		ref->conn = NULL;
		struct crust_event ev;
		event_init(&ev, CRUST_EV_LOST_CONNECTION);
		fill_event(&ev, pc);
		ev.error = err;
		ev.unsent_msgs = pc->unsent_msgs;
		ev.unsent_bytes = pc->unsent_bytes;
		snprintf(ev.reason, sizeof(ev.reason), "%s", reason);
		peer_put(ref);
		pc->ref = NULL;
		event_emit(svc, &ev);
	} else if (!pc->stopping) {
		report_handshake_failure(svc, pc, err, reason);
	}
	conn_discard(pc, c->sh);
}

const struct tp_callbacks conn_callbacks = {
	.accepted = on_accepted,
	.connected = on_connected,
	.received = on_received,
	.msg_done = on_msg_done,
	.closed = on_closed,
};

void conn_send(struct crust_service *svc, struct peer_ref *ref, struct crust_msg *m)
{
	struct p2p_conn *pc = ref->conn;
	int err = -ENOTCONN;
	if (pc && pc->state == CONN_UP) {
		err = pc->tc->t->vt->send(pc->tc, m);
		if (err == 0)
			return;
	}
	report_unsent(svc, ref, m, err);
	settle(svc, m);
}
