/*
 * conn.c - connections on a shard: their lifecycle, the transport's
 * upcalls, sending, and the events the user hears about them.
 *
 * A connection is in its shard's list from creation to the transport's
 * closed(). It starts in the handshake (secure.c); once up it is the
 * peer's connection (dedupe.c decides which one when there are two) and
 * liveness.c keeps it honest. Messages charged to a peer (m->acct)
 * release their bytes from its send budget when they leave the
 * transport; those that never made it are counted in lost_connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator.h"
#include "node.h"
#include "nat/portmap.h"
#include "pex.h"
#include "rendezvous.h"

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

static void hs_timeout_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	conn_close(ctx, -ETIMEDOUT, "handshake did not complete within the handshake timeout");
}

struct p2p_conn *conn_new(struct crust_service *svc, struct shard *sh, bool outgoing)
{
	struct p2p_conn *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return NULL;
	pc->svc = svc;
	pc->outgoing = outgoing;
	eng_timer_init(&pc->hs_timer, hs_timeout_cb, pc);
	list_add(&svc->shards[sh->id], pc);
	return pc;
}

void conn_discard(struct p2p_conn *pc, struct shard *sh)
{
	eng_timer_cancel(&sh->timers, &pc->hs_timer);
	liveness_stop(pc);
	if (pc->limited && pc->tc)
		limiter_release(&pc->svc->limiter, &pc->tc->remote);
	if (pc->hs) {
		hs_wipe(pc->hs);
		free(pc->hs);
	}
	session_wipe(&pc->session);
	list_del(&pc->svc->shards[sh->id], pc);
	free(pc);
}

void conn_close(struct p2p_conn *pc, int err, const char *reason)
{
	if (pc->state == CONN_CLOSING)
		return;
	if (pc->ref && pc->ref->conn == pc)
		atomic_store(&pc->ref->closing, true);
	pc->state = CONN_CLOSING;
	pc->tc->t->vt->close(pc->tc, err, reason);
}

void event_fill_conn(struct crust_event *ev, struct p2p_conn *pc)
{
	ev->transport = pc->tc->t->vt->kind;
	memcpy(&ev->addr, &pc->tc->remote, sizeof(ev->addr));
	if (pc->ref)
		ev->peer = pc->ref->id;
	else if (pc->hs && pc->hs->step > 0)
		ev->peer = pc->hs->peer;
}

static void report_abuse(struct p2p_conn *pc, int err, const char *reason)
{
	if (pc->abuse_reported)
		return;
	pc->abuse_reported = true;
	struct crust_event ev;
	event_init(&ev, CRUST_EV_ABUSE);
	event_fill_conn(&ev, pc);
	ev.error = err;
	snprintf(ev.reason, sizeof(ev.reason), "%s", reason);
	char addr[CRUST_ADDRSTRLEN];
	crust_addr_format(&pc->tc->remote, addr, sizeof(addr));
	svc_log(pc->svc, CRUST_LOG_WARN, "abuse from %s: %s", addr, reason);
	event_emit(pc->svc, &ev);
}

void conn_abuse(struct p2p_conn *pc, int err, const char *reason)
{
	report_abuse(pc, err, reason);
	conn_close(pc, err, reason);
}

void conn_close_all(struct crust_service *svc, struct shard *sh)
{
	struct p2p_conn *pc = svc->shards[sh->id].conns;
	while (pc) {
		struct p2p_conn *next = pc->next;
		pc->stopping = true;
		conn_close(pc, 0, "service stopped");
		pc = next;
	}
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
	if (svc_blacklisted_addr(svc, &c->remote)) {
		pc->stopping = true; /* refused quietly: no event for a blacklisted source */
		conn_close(pc, -EPERM, "blacklisted");
		return;
	}
	/* limits per source before any key work is spent on it */
	enum limiter_verdict v = limiter_admit(&svc->limiter, &c->remote, eng_clock_ms());
	if (v != LIMITER_OK) {
		conn_abuse(pc, -EAGAIN, v == LIMITER_RATE ? "handshake rate limit exceeded"
							  : "too many pending handshakes from one source");
		return;
	}
	pc->limited = true;
	punch_claim(svc, pc); /* a punching peer's SYN that reached our listener first */
	if (secure_start(pc) < 0)
		conn_close(pc, -ENOMEM, "out of memory");
}

static void on_connected(void *ctx, struct tp_conn *c, int res)
{
	struct crust_service *svc = ctx;
	struct p2p_conn *pc = c->user;
	if (res < 0 && (pc->punch_req || pc->rdv_session)) {
		/* punch attempts fail by the dozen, quietly; the punch or the session retries */
		punch_attempt_failed(pc);
		pc->stopping = true;
		rdv_conn_closed(pc);
		conn_discard(pc, c->sh);
		return;
	}
	if (res < 0 && pc->rudp_fallback && svc->rudp && !atomic_load(&c->sh->stop)) {
		/* TCP did not get through (filtered, refused): the same endpoint over reliable UDP */
		struct tp_conn *tc;
		pc->rudp_fallback = false;
		pc->tcp_err = res;
		if (svc->rudp->vt->connect(svc->rudp, c->sh, (struct sockaddr *)&c->remote,
					   c->remote_len, pc, &tc) == 0) {
			pc->tc = tc;
			return;
		}
	}
	if (res < 0) {
		struct crust_event ev;
		event_init(&ev, CRUST_EV_CONNECT_FAILED);
		ev.transport = c->t->vt->kind;
		memcpy(&ev.addr, &c->remote, sizeof(ev.addr));
		ev.error = res;
		if (pc->tcp_err) /* both ways failed: say why for each */
			snprintf(ev.reason, sizeof(ev.reason), "tcp: %s; rudp: %s",
				 strerror(-pc->tcp_err), strerror(-res));
		else
			snprintf(ev.reason, sizeof(ev.reason), "%s", strerror(-res));
		conn_discard(pc, c->sh);
		event_emit(svc, &ev);
		return;
	}
	if (secure_start(pc) < 0)
		conn_close(pc, -ENOMEM, "out of memory");
}

void conn_established(struct p2p_conn *pc)
{
	struct crust_service *svc = pc->svc;
	struct peer_ref *ref = calloc(1, sizeof(*ref));
	if (!ref) {
		conn_close(pc, -ENOMEM, "out of memory");
		return;
	}
	atomic_init(&ref->refs, 1);
	ref->id = pc->hs->peer;
	ref->sh = pc->tc->sh;
	ref->conn = pc;
	ref->transport = pc->tc->t->vt->kind;
	memcpy(&ref->addr, &pc->tc->remote, sizeof(ref->addr));
	memcpy(ref->transcript, pc->hs->transcript, 32);
	ref->we_initiated = pc->outgoing;
	ref->listen_port = pc->hs->peer_port;
	/* accepted from off our LAN while the gateway forwards this listener to us */
	if (!pc->tc->outgoing && pc->via == CRUST_VIA_DIRECT && !pc->punch_req &&
	    portmap_came_through(svc, ref->transport, &pc->tc->remote))
		pc->via = CRUST_VIA_UPNP;
	ref->via = pc->via;
	ref->coordinator = pc->rdv_session;
	eng_timer_cancel(&pc->tc->sh->timers, &pc->hs_timer);
	if (pc->limited) {
		limiter_release(&svc->limiter, &pc->tc->remote);
		pc->limited = false;
	}
	hs_wipe(pc->hs);
	free(pc->hs);
	pc->hs = NULL;
	pc->ref = ref; /* pc's reference */
	pc->state = CONN_UP;
	liveness_start(pc);
	if (dedupe_register(pc, ref)) {
		struct crust_event ev;
		event_init(&ev, CRUST_EV_NEW_CONNECTION);
		event_fill_conn(&ev, pc);
		ev.via = pc->via;
		event_emit(svc, &ev);
	}
	/* a duplicate that lost still proved the endpoint reaches the peer; a punched or
	 * relayed one did not (the NAT's mapping or the relay is no endpoint to cache) */
	if (pc->tc->outgoing && pc->via == CRUST_VIA_DIRECT && !pc->punch_req)
		boot_on_direct(svc, &pc->tc->remote, ref->transport, &ref->id);
	punch_established(pc);
	rdv_conn_up(pc);
	if (!pc->rdv_session && !svc->coord)
		pex_on_up(pc);
}

static void on_received(void *ctx, struct tp_conn *c, struct crust_msg *m)
{
	(void)ctx;
	struct p2p_conn *pc = c->user;
	if (pc->relay && pc->state != CONN_CLOSING) {
		relay_received(pc, m); /* coordinator: a frame between two relayed nodes */
		return;
	}
	if (pc->state == CONN_CLOSING) {
		eng_msg_free(m);
		return;
	}
	secure_received(pc, m);
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
static void settle(struct crust_msg *m)
{
	struct peer_ref *ref = m->acct;
	if (ref) {
		atomic_fetch_sub(&ref->queued, (uint64_t)m->len + ENG_MSG_HEADROOM);
		peer_put(ref);
	}
	eng_msg_free(m);
}

static void count_done(struct crust_service *svc, struct tp_conn *c, uint32_t nmsgs,
		       uint64_t nbytes, int status)
{
	struct p2p_conn *pc = c->user;
	if (status == 0) {
		atomic_fetch_add_explicit(&svc->shards[c->sh->id].tx_msgs, nmsgs,
					  memory_order_relaxed);
	} else {
		pc->unsent_msgs += nmsgs;
		pc->unsent_bytes += nbytes;
	}
}

static void on_msg_done(void *ctx, struct tp_conn *c, struct crust_msg *m, int status)
{
	/* a staged copy is counted when its chunk goes out (on_staged_done) */
	if (m->acct && status != ENG_MSG_STAGED)
		count_done(ctx, c, 1, m->len, status);
	settle(m);
}

static void on_staged_done(void *ctx, struct tp_conn *c, uint32_t nmsgs, uint64_t nbytes,
			   int status)
{
	count_done(ctx, c, nmsgs, nbytes, status);
}

/* Errors that mean the peer sent something it must not: worth a warning. */
static bool is_bad_input(int err)
{
	return err == -EPROTO || err == -EMSGSIZE || err == -ETIMEDOUT || err == -EBADMSG ||
	       err == -EACCES;
}

static void log_close(struct crust_service *svc, struct tp_conn *c, int err, const char *reason)
{
	char addr[CRUST_ADDRSTRLEN];
	crust_addr_format(&c->remote, addr, sizeof(addr));
	svc_log(svc, is_bad_input(err) ? CRUST_LOG_WARN : CRUST_LOG_INFO,
		"connection %s closed: %s", addr, reason);
}

/* A connection that never got past its handshake: the dialer or the user hears why. */
static void report_handshake_failure(struct crust_service *svc, struct p2p_conn *pc, int err,
				     const char *reason)
{
	struct crust_event ev;
	event_init(&ev, pc->tc->outgoing ? CRUST_EV_CONNECT_FAILED : CRUST_EV_HANDSHAKE_FAILED);
	event_fill_conn(&ev, pc);
	ev.error = err ? err : -ECONNRESET;
	snprintf(ev.reason, sizeof(ev.reason), "%s", reason);
	event_emit(svc, &ev);
}

static void lost_event(struct crust_event *ev, struct p2p_conn *pc, int err, const char *reason)
{
	event_init(ev, CRUST_EV_LOST_CONNECTION);
	event_fill_conn(ev, pc);
	ev->error = err;
	ev->unsent_msgs = pc->unsent_msgs;
	ev->unsent_bytes = pc->unsent_bytes;
	snprintf(ev->reason, sizeof(ev->reason), "%s", reason);
}

static void on_closed(void *ctx, struct tp_conn *c, int err, const char *reason)
{
	struct crust_service *svc = ctx;
	struct p2p_conn *pc = c->user;
	log_close(svc, c, err, reason);
	/* on_accepted could not allocate its p2p_conn: nothing above the transport to undo
	 * (found by fault injection: this dereferenced NULL) */
	if (!pc)
		return;
	coord_conn_closed(pc);
	rdv_conn_closed(pc);
	if (!pc->ref && pc->punch_req) {
		punch_attempt_failed(pc); /* an attempt that never came up: the punch says why */
		pc->stopping = true;
	}
	if (err == -EMSGSIZE)
		report_abuse(pc, err, reason); /* an oversized frame: the transport closed already */
	if (pc->ref) {
		struct peer_ref *ref = pc->ref;
		struct crust_event lost;
		lost_event(&lost, pc, err, reason);
		enum dedupe_close how = dedupe_closed(pc, &lost);
		if (how != DEDUPE_WAIT && ref->conn == pc) {
			peer_remove(svc, ref);
			ref->conn = NULL;
		}
		if (how == DEDUPE_REPORT && !pc->stopping)
			event_emit(svc, &lost);
		pc->ref = NULL;
		peer_put(ref);
	} else if (!pc->stopping) {
		report_handshake_failure(svc, pc, err, reason);
	}
	conn_discard(pc, c->sh);
}

/* A datagram the transport does not recognise: STUN or punch probes, for NAT traversal. */
static void on_datagram(void *ctx, struct shard *sh, const struct sockaddr_storage *from,
			socklen_t fromlen, const uint8_t *p, uint32_t len, void *sock_user)
{
	struct crust_service *svc = ctx;
	if (svc->coord && !sock_user)
		coord_stun_datagram(svc, sh, from, fromlen, p, len);
	else
		rdv_datagram(svc, sh, from, fromlen, p, len, sock_user);
}

const struct tp_callbacks conn_callbacks = {
	.accepted = on_accepted,
	.connected = on_connected,
	.received = on_received,
	.msg_done = on_msg_done,
	.staged_done = on_staged_done,
	.closed = on_closed,
	.datagram = on_datagram,
};

void conn_send_ctrl(struct p2p_conn *pc, enum ctrl_code code)
{
	uint8_t c = (uint8_t)code;
	conn_send_ctrl_data(pc, &c, 1);
}

void conn_send_ctrl_data(struct p2p_conn *pc, const uint8_t *data, size_t len)
{
	struct crust_msg *m = eng_msg_alloc(len);
	if (!m)
		return;
	memcpy(m->data, data, len);
	m->flags |= ENG_MSG_CTRL;
	if (pc->tc->t->vt->send(pc->tc, m) == 0)
		pc->last_tx_ms = eng_clock_ms();
	else
		eng_msg_free(m);
}

/* Move m's charge from its ref to the successor and post it to that shard. */
static void forward(struct crust_service *svc, struct peer_ref *from, struct peer_ref *to,
		    struct crust_msg *m);

void conn_send(struct crust_service *svc, struct peer_ref *ref, struct crust_msg *m)
{
	struct peer_ref *next = atomic_load(&ref->successor);
	struct p2p_conn *pc = ref->conn;
	if (next && (!pc || pc->state != CONN_UP)) {
		forward(svc, ref, next, m);
		return;
	}
	int err = -ENOTCONN;
	if (!pc && !next && atomic_load(&ref->dead)) {
		/* waiting for the connection the peer kept: hold it for that one */
		m->next = NULL;
		if (ref->parked_tail)
			ref->parked_tail->next = m;
		else
			ref->parked = m;
		ref->parked_tail = m;
		return;
	}
	if (pc && pc->state == CONN_UP) {
		err = pc->tc->t->vt->send(pc->tc, m);
		if (err == 0) {
			/* the shard's clock of this loop iteration: no syscall per message */
			pc->last_tx_ms = pc->last_user_ms = pc->tc->sh->now_ms;
			return;
		}
	}
	report_unsent(svc, ref, m, err);
	settle(m);
}

void conn_flush_parked(struct crust_service *svc, struct peer_ref *ref, bool fail)
{
	struct crust_msg *m = ref->parked;
	ref->parked = ref->parked_tail = NULL;
	while (m) {
		struct crust_msg *next = m->next;
		m->next = NULL;
		if (fail) {
			report_unsent(svc, ref, m, -ENOTCONN);
			settle(m);
		} else {
			conn_send(svc, ref, m);
		}
		m = next;
	}
}

static void forward_on_shard(struct shard *sh, struct eng_mail *mail)
{
	struct crust_msg *m = container_of(mail, struct crust_msg, mail);
	conn_send(sh->eng->cfg.ctx, m->acct, m);
}

static void forward(struct crust_service *svc, struct peer_ref *from, struct peer_ref *to,
		    struct crust_msg *m)
{
	(void)svc;
	uint64_t cost = (uint64_t)m->len + ENG_MSG_HEADROOM;
	atomic_fetch_add(&to->refs, 1);
	atomic_fetch_add(&to->queued, cost);
	atomic_fetch_sub(&from->queued, cost);
	m->acct = to;
	peer_put(from);
	m->mail.fn = forward_on_shard;
	eng_post(to->sh, &m->mail);
}
