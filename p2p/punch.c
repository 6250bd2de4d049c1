/*
 * punch.c - reaching a peer id through the coordinator (see rendezvous.h):
 * TCP hole punching by simultaneous open, then the relay.
 *
 * A punch starts when we ask (crust_connect_id: reach) or when the
 * coordinator tells us a peer asked for us (punch). Both sides then hold
 * the other's candidates (its public TCP endpoint as the coordinator saw
 * it first, then its LAN endpoints), the same start delay and opposite
 * handshake roles. From the start time every TCP candidate is dialed
 * from our listener's port (so the SYN leaves through the NAT mapping
 * the peer was told about), again every PUNCH_RETRY_MS after a refusal
 * or timeout, until punch_timeout_ms. A peer's SYN that arrives at our
 * listener first is accepted there; punch_claim gives that connection
 * the punch's role. The coordinator names the initiator because with a
 * simultaneous open both ends have dialed.
 *
 * What wins is reported once: punch_result (via, elapsed_ms) and the
 * connection's new_connection with the same via. Failed attempts are
 * silent (they are expected); the punch result says why it failed.
 *
 * UDP at the same time: from the start time both sides send probes (the
 * token, our id) from the reliable-UDP listener's port to the peer's UDP
 * candidates, and answer every probe they get. A probe or answer proves
 * a path from the address it came from - which, behind a symmetric NAT,
 * is not the one STUN reported: that source actually seen is where the
 * initiator dials its reliable-UDP connection (so cone <-> symmetric works
 * when the cone side filters by nothing or by address only). The
 * responder's probes keep its own NAT open for the initiator's packets.
 *
 * Random symmetric NATs: birthday.h. From BDAY_DELAY_MS after the start,
 * if no UDP path is seen yet, the side behind a symmetric NAT (two
 * registered mappings on different ports) opens many extra sockets
 * toward a cone peer, and the cone side probes random ports of its IP.
 * The symmetric side dials (whatever the handshake roles) over the
 * socket a probe reached; the cone side never dials a path announced as
 * birthday (it would reach a socket that does not accept).
 *
 * Locking: the punch list is under r->lock; timers and attempts are on
 * shard 0; claims and results may come from any shard.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birthday.h"
#include "engine/addr.h"
#include "node.h"
#include "rendezvous.h"
#include "nat/portmap.h"

#define PUNCH_PREDICT 12          /* mappings ahead a symmetric peer's ports are guessed */
#define PUNCH_CAND_UDP 0xfe       /* punch_cand of the reliable-UDP dial */
#define PUNCH_CAND_CLAIMED 0xff   /* punch_cand of an accepted connection */

enum punch_phase { PUNCH_ASKED, PUNCH_WAITING, PUNCH_PUNCHING, PUNCH_RELAY, PUNCH_DONE };

struct punch {
	struct punch *next;
	struct rendezvous *r;
	struct crust_peer_id peer;
	uint32_t req;
	bool ours;                           /* we asked */
	bool initiate, relay_ok, peer_natted;
	enum punch_phase phase;
	uint8_t token[RDV_TOKEN_LEN];
	struct crust_endpoint cands[RDV_MAX_EPS];
	bool live[RDV_MAX_EPS];              /* an attempt to cands[i] is under way */
	unsigned ncands;
	uint64_t asked_ms, deadline_ms;
	struct sockaddr_storage udp_seen;    /* where the peer's probes come from */
	bool udp_seen_ok, udp_dialed;
	struct sockaddr_storage pred[2 * PUNCH_PREDICT]; /* the peer's next mappings, guessed */
	unsigned npred;
	bool predicted;                      /* the UDP path was found by prediction */
	struct bday bday;                    /* birthday punching (random symmetric NATs) */
	enum bday_role bday_role;            /* the role this round, once it starts */
	bool bday_won;                       /* our extra socket carries the connection */
	struct sockaddr_storage bday_seen;   /* the peer's extra socket that reached us */
	bool bday_seen_ok;
	struct eng_timer timer;              /* shard 0 */
	struct eng_timer bday_timer;         /* shard 0: birthday batches */
	struct eng_mail mail;
};

static void timer_cb(struct eng_timer *t, void *ctx);
static void bday_tick(struct eng_timer *t, void *ctx);

static struct punch *by_req(struct rendezvous *r, uint32_t req)
{
	for (struct punch *p = r->punches; p; p = p->next)
		if (p->req == req)
			return p;
	return NULL;
}

static struct punch *by_peer(struct rendezvous *r, const struct crust_peer_id *id)
{
	for (struct punch *p = r->punches; p; p = p->next)
		if (p->phase != PUNCH_DONE && crust_peer_eq(&p->peer, id))
			return p;
	return NULL;
}

static struct punch *punch_new(struct rendezvous *r, const struct crust_peer_id *peer)
{
	struct punch *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->r = r;
	p->peer = *peer;
	p->asked_ms = eng_clock_ms();
	eng_timer_init(&p->timer, timer_cb, p);
	eng_timer_init(&p->bday_timer, bday_tick, p);
	p->next = r->punches;
	r->punches = p;
	return p;
}

static void unlink_punch(struct rendezvous *r, struct punch *p)
{
	for (struct punch **pp = &r->punches; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

/*
 * Under lock: the outcome, once. The event is emitted by the caller after
 * unlocking (a user callback may call back into us).
 */
static bool finish(struct punch *p, enum crust_via via, const struct sockaddr_storage *addr,
		   int err, const char *reason, struct crust_event *ev)
{
	if (p->phase == PUNCH_DONE)
		return false;
	p->phase = PUNCH_DONE;
	event_init(ev, CRUST_EV_PUNCH_RESULT);
	ev->transport = CRUST_TRANSPORT_TCP;
	ev->peer = p->peer;
	ev->via = via;
	ev->error = err;
	ev->elapsed_ms = (uint32_t)(eng_clock_ms() - p->asked_ms);
	if (addr)
		ev->addr = *addr;
	if (reason)
		snprintf(ev->reason, sizeof(ev->reason), "%s", reason);
	return true;
}

/* --- attempts ------------------------------------------------------------------- */

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	uint8_t ia[16], ib[16];
	return eng_addr_ip_key(a, ia) && eng_addr_ip_key(b, ib) && !memcmp(ia, ib, 16);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	return same_ip(a, b) && eng_addr_port(a) == eng_addr_port(b);
}

static socklen_t addr_len(const struct sockaddr_storage *a)
{
	return a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* The peer's public IP (the first candidate: its session as the coordinator saw it). */
static bool is_public(const struct punch *p, const struct sockaddr_storage *a)
{
	uint8_t x[16], y[16];
	return p->ncands && eng_addr_ip_key(&p->cands[0].addr, x) && eng_addr_ip_key(a, y) &&
	       !memcmp(x, y, 16);
}

/* Direct when either side has no NAT, or over the peer's LAN address; else a punch. */
static enum crust_via via_for(struct punch *p, const struct sockaddr_storage *to,
			      enum crust_transport t)
{
	if (!p->r->natted || !p->peer_natted || !is_public(p, to))
		return CRUST_VIA_DIRECT;
	if (t == CRUST_TRANSPORT_RUDP)
		return p->predicted || (p->bday_seen_ok && same_addr(&p->bday_seen, to))
			       ? CRUST_VIA_PREDICTED
			       : CRUST_VIA_UDP_PUNCH;
	return CRUST_VIA_TCP_PUNCH;
}

static struct p2p_conn *attempt_conn(struct punch *p, enum crust_via via)
{
	struct crust_service *svc = p->r->svc;
	struct p2p_conn *pc = conn_new(svc, p->r->sh, p->initiate);
	if (!pc)
		return NULL;
	pc->punch_req = p->req;
	pc->expect_peer = true;
	pc->expected = p->peer;
	pc->via = via;
	return pc;
}

/* Under lock, shard 0: dial cands[i] from our listener's port. */
static void attempt(struct punch *p, unsigned i)
{
	struct crust_service *svc = p->r->svc;
	struct p2p_conn *pc = attempt_conn(p, via_for(p, &p->cands[i].addr, CRUST_TRANSPORT_TCP));
	if (!pc)
		return;
	pc->punch_cand = (uint8_t)i;
	struct sockaddr_storage local = svc->bind_addr;
	eng_addr_set_port(&local, svc->tcp_port);
	struct tp_conn *tc = NULL;
	int err = svc->tcp->vt->connect_from(svc->tcp, p->r->sh, (struct sockaddr *)&local,
					     svc->bind_len, (struct sockaddr *)&p->cands[i].addr,
					     p->cands[i].addrlen, pc, &tc);
	if (err) {
		pc->stopping = true;
		conn_discard(pc, p->r->sh);
		return;
	}
	pc->tc = tc;
	p->live[i] = true;
}

static void probe_encode(const struct punch *p, uint8_t flags, uint8_t out[PUNCH_PROBE_LEN])
{
	struct punch_probe pp = { .flags = flags, .from = p->r->svc->id };
	memcpy(pp.token, p->token, RDV_TOKEN_LEN);
	punch_probe_encode(&pp, out);
}

static void send_probe(struct punch *p, const struct sockaddr_storage *to, uint8_t flags)
{
	struct transport *t = p->r->svc->rudp;
	if (!t || !t->vt->send_datagram)
		return;
	uint8_t out[PUNCH_PROBE_LEN];
	probe_encode(p, flags, out);
	t->vt->send_datagram(t, p->r->sh, (const struct sockaddr *)to, addr_len(to), out,
			     sizeof(out));
}

/* Under lock, shard 0: the initiator's reliable-UDP dial to where the peer's probes come from. */
static void udp_dial(struct punch *p)
{
	struct crust_service *svc = p->r->svc;
	if (!p->initiate || p->udp_dialed || !p->udp_seen_ok || !svc->rudp)
		return;
	/* the peer's extra socket accepts nothing: the peer dials over it */
	if (p->bday_seen_ok && same_addr(&p->bday_seen, &p->udp_seen))
		return;
	struct p2p_conn *pc = attempt_conn(p, via_for(p, &p->udp_seen, CRUST_TRANSPORT_RUDP));
	if (!pc)
		return;
	pc->punch_cand = PUNCH_CAND_UDP;
	struct tp_conn *tc = NULL;
	int err = svc->rudp->vt->connect(svc->rudp, p->r->sh, (struct sockaddr *)&p->udp_seen,
					 addr_len(&p->udp_seen), pc, &tc);
	if (err) {
		pc->stopping = true;
		conn_discard(pc, p->r->sh);
		return;
	}
	pc->tc = tc;
	p->udp_dialed = true;
}

static void attempt_all(struct punch *p)
{
	const struct crust_config *cfg = &p->r->svc->cfg;
	for (unsigned i = 0; i < p->ncands; i++) {
		if (p->cands[i].transport == CRUST_TRANSPORT_TCP && !p->live[i] && !cfg->no_tcp_punch)
			attempt(p, i);
		else if (p->cands[i].transport == CRUST_TRANSPORT_RUDP && !cfg->no_udp_punch)
			send_probe(p, &p->cands[i].addr, 0);
	}
	if (cfg->no_udp_punch)
		return;
	if (p->udp_seen_ok)
		send_probe(p, &p->udp_seen, p->predicted ? PUNCH_PROBE_PREDICTED : 0);
	else
		for (unsigned i = 0; i < p->npred; i++)
			send_probe(p, &p->pred[i], PUNCH_PROBE_PREDICTED);
	udp_dial(p);
}

/* Under lock, shard 0: both ends dial the coordinator with the token; it splices them. */
static bool relay(struct punch *p, struct crust_event *ev)
{
	struct rendezvous *r = p->r;
	struct crust_service *svc = r->svc;
	p->phase = PUNCH_RELAY;
	struct p2p_conn *pc = attempt_conn(p, CRUST_VIA_RELAY);
	if (!pc)
		return false;
	pc->relay_dial = true;
	memcpy(pc->relay_token, p->token, RDV_TOKEN_LEN);
	struct tp_conn *tc = NULL;
	int err = svc->tcp->vt->connect(svc->tcp, r->sh, (struct sockaddr *)&r->coord.addr,
					r->coord.addrlen, pc, &tc);
	if (err) {
		pc->stopping = true;
		conn_discard(pc, r->sh);
		return finish(p, CRUST_VIA_RELAY, NULL, err, "cannot dial the relay", ev);
	}
	pc->tc = tc;
	return false;
}

/* --- the schedule --------------------------------------------------------------- */

static bool on_deadline(struct punch *p, struct crust_event *ev)
{
	if (p->relay_ok && !p->r->svc->cfg.no_relay) {
		/* the relayed handshake gets the handshake timeout, plus slack */
		eng_timer_arm(&p->r->sh->timers, &p->timer,
			      p->r->svc->cfg.handshake_timeout_ms + 2000);
		return relay(p, ev);
	}
	return finish(p, CRUST_VIA_TCP_PUNCH, NULL, -ETIMEDOUT,
		      p->relay_ok ? "hole punching failed (relay turned off here)"
				  : "hole punching failed and the coordinator offers no relay", ev);
}

static void timer_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct punch *p = ctx;
	struct rendezvous *r = p->r;
	uint64_t now = r->sh->now_ms;
	struct crust_event ev;
	bool emit = false;
	pthread_mutex_lock(&r->lock);
	switch (p->phase) {
	case PUNCH_ASKED:
		emit = finish(p, CRUST_VIA_DIRECT, NULL, -ETIMEDOUT, "the coordinator did not answer",
			      &ev);
		break;
	case PUNCH_WAITING:
		p->phase = PUNCH_PUNCHING;
		__attribute__((fallthrough)); /* a statement: clang ignores the comment form */
	case PUNCH_PUNCHING:
		if (now >= p->deadline_ms) {
			emit = on_deadline(p, &ev);
			break;
		}
		attempt_all(p);
		/*
		 * Jittered retries: with routers that answer an early SYN with RST,
		 * two sides retrying in lockstep keep refusing each other's SYN.
		 */
		uint64_t left = p->deadline_ms - now;
		uint64_t next = PUNCH_RETRY_MS / 2 + randombytes_uniform(PUNCH_RETRY_MS);
		eng_timer_arm(&r->sh->timers, &p->timer, left < next ? left : next);
		break;
	case PUNCH_RELAY:
		emit = finish(p, CRUST_VIA_RELAY, NULL, -ETIMEDOUT,
			      "hole punching and the relay failed", &ev);
		break;
	case PUNCH_DONE:
		/* finished elsewhere, or its linger is over */
		unlink_punch(r, p);
		eng_timer_cancel(&r->sh->timers, &p->bday_timer);
		bday_close(&p->bday);
		pthread_mutex_unlock(&r->lock);
		free(p);
		return;
	}
	if (emit)
		eng_timer_arm(&r->sh->timers, &p->timer, PUNCH_LINGER_MS);
	pthread_mutex_unlock(&r->lock);
	if (emit)
		event_emit(r->svc, &ev);
}

/* --- from the coordinator ------------------------------------------------------- */

/*
 * Sequential-delta port prediction: a peer that registered two public UDP
 * mappings on different ports (toward the coordinator's two STUN
 * addresses) is behind a symmetric NAT, and if that NAT hands out ports
 * in sequence its mapping toward us is a few steps of the same delta past
 * the second one. Probing those ports from our socket lets its probe in
 * through our own NAT (we sent to that address and port first) and ours
 * into its NAT (a reply to its mapping toward us). +1 variants cover a
 * counter's low byte wrapping (docs/NATLAB.md). Bounded: 2 x
 * PUNCH_PREDICT probes per retry round, and only until a path is seen.
 */
/* The peer's public UDP mappings: *a the first, *b a second on another port (symmetric NAT). */
static void peer_mappings(const struct punch *p, const struct crust_endpoint **a,
			  const struct crust_endpoint **b)
{
	*a = *b = NULL;
	for (unsigned i = 0; i < p->ncands && !*b; i++) {
		const struct crust_endpoint *c = &p->cands[i];
		if (c->transport != CRUST_TRANSPORT_RUDP || !is_public(p, &c->addr))
			continue;
		if (!*a)
			*a = c;
		else if (eng_addr_port(&c->addr) != eng_addr_port(&(*a)->addr))
			*b = c;
	}
}

static void predict(struct punch *p)
{
	p->npred = 0;
	p->predicted = false;
	const struct crust_endpoint *a, *b;
	peer_mappings(p, &a, &b);
	if (!b)
		return;
	int delta = (int)eng_addr_port(&b->addr) - (int)eng_addr_port(&a->addr);
	for (int k = 1; k <= PUNCH_PREDICT; k++) {
		for (int wrap = 0; wrap <= 1; wrap++) {
			int port = (int)eng_addr_port(&b->addr) + delta * k + wrap;
			if (port <= 0 || port > 65535)
				continue;
			p->pred[p->npred] = b->addr;
			eng_addr_set_port(&p->pred[p->npred++], (uint16_t)port);
		}
	}
}

/*
 * Under lock: our birthday role with this peer (birthday.h), from what
 * both of us registered: the side behind a symmetric NAT (two public UDP
 * mappings on different ports) opens the sockets, a cone peer (one
 * mapping) probes. Both read the same registrations, so both pick
 * matching roles. Two symmetric NATs: neither (the relay). A predictable
 * NAT gets the same roles, but its sequential prediction wins long before
 * BDAY_DELAY_MS; a random one's "delta" predicts nothing.
 */
static enum bday_role bday_role_for(const struct punch *p)
{
	const struct rendezvous *r = p->r;
	const struct crust_endpoint *a, *b;
	peer_mappings(p, &a, &b);
	if (!a || !r->has_ext_udp || !r->natted || p->r->svc->cfg.no_udp_punch)
		return BDAY_OFF;
	bool we_two = r->has_ext_udp2 &&
		      eng_addr_port(&r->ext_udp2.addr) != eng_addr_port(&r->ext_udp.addr);
	if (we_two && !b)
		return BDAY_SOCKETS;
	if (!we_two && b)
		return BDAY_PROBER;
	return BDAY_OFF;
}

static bool is_predicted(const struct punch *p, const struct sockaddr_storage *a)
{
	for (unsigned i = 0; i < p->npred; i++)
		if (same_ip(&p->pred[i], a) && eng_addr_port(&p->pred[i]) == eng_addr_port(a))
			return true;
	return false;
}

static bool peer_behind_nat(const struct rdv_msg *m)
{
	for (unsigned i = 1; i < m->neps; i++) {
		const struct crust_endpoint *a = &m->eps[0], *b = &m->eps[i];
		uint8_t ia[16], ib[16];
		if (b->transport == CRUST_TRANSPORT_TCP && eng_addr_ip_key(&a->addr, ia) &&
		    eng_addr_ip_key(&b->addr, ib) && !memcmp(ia, ib, 16) &&
		    eng_addr_port(&a->addr) == eng_addr_port(&b->addr))
			return false;
	}
	return true;
}

void punch_on_punch(struct rendezvous *r, const struct rdv_msg *m)
{
	struct crust_event ev;
	pthread_mutex_lock(&r->lock);
	struct punch *p = by_req(r, m->req);
	if (!p || !p->ours || !crust_peer_eq(&p->peer, &m->peer)) {
		/* the peer asked for us (or both asked at once: the newer round wins) */
		p = by_peer(r, &m->peer);
		p = p ? p : punch_new(r, &m->peer);
	}
	if (!p || p->phase == PUNCH_DONE) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	/*
	 * Already connected (the peer asked before our connection reached it, or it
	 * came up while the coordinator answered): done at once, both sides told. Looked
	 * up under the lock: a connection coming up after this finds the punch
	 * (punch_established). The peer table's lock is a leaf: safe inside ours.
	 */
	struct peer_ref *ref = peer_lookup(r->svc, &m->peer);
	if (ref) {
		p->req = m->req;
		bool emit = finish(p, ref->via, &ref->addr, 0, NULL, &ev);
		ev.transport = ref->transport;
		peer_put(ref);
		eng_timer_arm(&r->sh->timers, &p->timer, PUNCH_LINGER_MS);
		pthread_mutex_unlock(&r->lock);
		if (emit)
			event_emit(r->svc, &ev);
		return;
	}
	p->req = m->req;
	p->initiate = m->flags & RDV_PUNCH_INITIATE;
	p->relay_ok = m->flags & RDV_PUNCH_RELAY;
	memcpy(p->token, m->token, RDV_TOKEN_LEN);
	memcpy(p->cands, m->eps, m->neps * sizeof(m->eps[0]));
	p->ncands = m->neps;
	memset(p->live, 0, sizeof(p->live));
	p->udp_seen_ok = p->udp_dialed = false;
	p->peer_natted = peer_behind_nat(m);
	predict(p);
	bday_close(&p->bday);
	p->bday_won = p->bday_seen_ok = false;
	p->bday_role = bday_role_for(p);
	p->phase = PUNCH_WAITING;
	p->deadline_ms = r->sh->now_ms + m->start_in_ms + r->svc->cfg.punch_timeout_ms;
	eng_timer_arm(&r->sh->timers, &p->timer, m->start_in_ms);
	if (p->bday_role != BDAY_OFF)
		eng_timer_arm(&r->sh->timers, &p->bday_timer,
			      m->start_in_ms + BDAY_DELAY_MS +
				      (p->bday_role == BDAY_PROBER ? BDAY_PROBER_LAG_MS : 0));
	pthread_mutex_unlock(&r->lock);
}

void punch_on_refused(struct rendezvous *r, const struct rdv_msg *m)
{
	struct crust_event ev;
	bool emit = false;
	pthread_mutex_lock(&r->lock);
	struct punch *p = by_req(r, m->req);
	if (p && p->ours && p->phase == PUNCH_ASKED) {
		char why[CRUST_REASON_LEN];
		snprintf(why, sizeof(why), "coordinator: %s", m->reason);
		emit = finish(p, CRUST_VIA_DIRECT, NULL,
			      m->refusal == RDV_UNKNOWN_PEER ? -EHOSTUNREACH : -EAGAIN, why, &ev);
		eng_timer_arm(&r->sh->timers, &p->timer, PUNCH_LINGER_MS);
	}
	pthread_mutex_unlock(&r->lock);
	if (emit)
		event_emit(r->svc, &ev);
}

/* --- from connections ----------------------------------------------------------- */

/* A running punch with a candidate at from for transport t (exact, else the same IP). */
static struct punch *punch_from(struct rendezvous *r, const struct sockaddr_storage *from,
				enum crust_transport t)
{
	struct punch *ip_match = NULL;
	for (struct punch *p = r->punches; p; p = p->next) {
		if (p->phase != PUNCH_WAITING && p->phase != PUNCH_PUNCHING)
			continue;
		if (t == CRUST_TRANSPORT_RUDP && p->udp_seen_ok && same_ip(&p->udp_seen, from) &&
		    eng_addr_port(&p->udp_seen) == eng_addr_port(from))
			return p;
		for (unsigned i = 0; i < p->ncands; i++) {
			const struct crust_endpoint *c = &p->cands[i];
			if (c->transport != t || !same_ip(&c->addr, from))
				continue;
			if (eng_addr_port(&c->addr) == eng_addr_port(from))
				return p;
			ip_match = ip_match ? ip_match : p;
		}
	}
	return ip_match;
}

void punch_claim(struct crust_service *svc, struct p2p_conn *pc)
{
	struct rendezvous *r = svc->rdv;
	if (!r)
		return;
	enum crust_transport t = pc->tc->t->vt->kind;
	pthread_mutex_lock(&r->lock);
	struct punch *p = punch_from(r, &pc->tc->remote, t);
	if (p) {
		/* the peer's SYN or Initial reached our listener: this connection is the punch's */
		pc->outgoing = p->initiate;
		pc->expect_peer = true;
		pc->expected = p->peer;
		pc->punch_req = p->req;
		pc->punch_cand = PUNCH_CAND_CLAIMED;
		pc->via = via_for(p, &pc->tc->remote, t);
	}
	pthread_mutex_unlock(&r->lock);
	/* it came in through our gateway's forward (a mapping we registered), not a punch */
	if (p && pc->via != CRUST_VIA_DIRECT && portmap_came_through(svc, t, &pc->tc->remote))
		pc->via = CRUST_VIA_UPNP;
}

void punch_established(struct p2p_conn *pc)
{
	struct rendezvous *r = pc->svc->rdv;
	if (!r || pc->rdv_session)
		return;
	struct crust_event ev;
	bool emit = false;
	pthread_mutex_lock(&r->lock);
	struct punch *p = pc->punch_req ? by_req(r, pc->punch_req) : NULL;
	/* the peer came up another way (its own dial, peer exchange, a beacon): a punch
	 * to it has nothing left to do, and its attempts would only lose as duplicates */
	if (!p)
		p = by_peer(r, &pc->ref->id);
	/* its timer on shard 0, always armed until done, frees it when it next fires */
	if (p)
		emit = finish(p, pc->via, &pc->tc->remote, 0, NULL, &ev);
	pthread_mutex_unlock(&r->lock);
	ev.transport = pc->tc->t->vt->kind;
	if (emit)
		event_emit(r->svc, &ev);
}

void punch_attempt_failed(struct p2p_conn *pc)
{
	struct rendezvous *r = pc->svc->rdv;
	if (!r || !pc->punch_req || pc->relay_dial)
		return;
	pthread_mutex_lock(&r->lock);
	struct punch *p = by_req(r, pc->punch_req);
	unsigned i = pc->punch_cand;
	if (p && i == PUNCH_CAND_UDP && !p->bday_won)
		p->udp_dialed = false; /* the next probe dials again (an extra socket is gone) */
	else if (p && pc->tc && pc->tc->outgoing && i < RDV_MAX_EPS)
		p->live[i] = false; /* the next retry dials it again */
	pthread_mutex_unlock(&r->lock);
}

/* --- the API -------------------------------------------------------------------- */

static void reach_on_shard(struct shard *sh, struct eng_mail *mail)
{
	(void)sh;
	struct punch *p = container_of(mail, struct punch, mail);
	struct rendezvous *r = p->r;
	struct crust_event ev;
	bool emit = false;
	pthread_mutex_lock(&r->lock);
	struct rdv_msg m = { .code = RDV_REACH, .req = p->req, .peer = p->peer };
	if (!rdv_send(r, &m)) {
		emit = finish(p, CRUST_VIA_DIRECT, NULL, -ENOTCONN, "no session to the coordinator",
			      &ev);
		eng_timer_arm(&r->sh->timers, &p->timer, PUNCH_LINGER_MS);
	} else {
		eng_timer_arm(&r->sh->timers, &p->timer, PUNCH_ASK_TIMEOUT_MS);
	}
	pthread_mutex_unlock(&r->lock);
	if (emit)
		event_emit(r->svc, &ev);
}

CRUST_API int crust_connect_id(struct crust_service *svc, const struct crust_peer_id *peer)
{
	if (!svc || !peer)
		return -EINVAL;
	struct rendezvous *r = svc->rdv;
	if (!r)
		return -ENOTCONN;
	if (crust_peer_eq(peer, &svc->id))
		return -EINVAL;
	if (blacklist_has_peer(&svc->blacklist, peer))
		return -EPERM;
	struct peer_ref *ref = peer_lookup(svc, peer);
	if (ref) {
		peer_put(ref);
		return -EISCONN;
	}
	pthread_mutex_lock(&r->lock);
	int err = 0;
	struct punch *p = NULL;
	if (!r->registered)
		err = -ENOTCONN;
	else if (by_peer(r, peer))
		err = -EALREADY;
	else if (!(p = punch_new(r, peer)))
		err = -ENOMEM;
	if (p) {
		p->ours = true;
		p->req = ++r->next_req ? r->next_req : ++r->next_req; /* 0 means "no punch" */
		p->phase = PUNCH_ASKED;
		p->mail.fn = reach_on_shard;
	}
	pthread_mutex_unlock(&r->lock);
	if (p)
		eng_post(r->sh, &p->mail);
	return err;
}

static struct punch *by_token(struct rendezvous *r, const uint8_t token[RDV_TOKEN_LEN])
{
	for (struct punch *p = r->punches; p; p = p->next)
		if ((p->phase == PUNCH_WAITING || p->phase == PUNCH_PUNCHING) &&
		    sodium_memcmp(p->token, token, RDV_TOKEN_LEN) == 0)
			return p;
	return NULL;
}

/* --- birthday punching ---------------------------------------------------------- */

/*
 * Under lock, shard 0: a probe of the peer reached our extra socket bs:
 * answer from it (the peer learns the path), close the others, and run
 * the reliable-UDP connection over it (the connection owns it now).
 */
static void bday_win(struct punch *p, struct bday_sock *bs, const struct sockaddr_storage *from,
		     uint8_t flags)
{
	struct crust_service *svc = p->r->svc;
	if (!(flags & PUNCH_PROBE_ANSWER)) {
		uint8_t out[PUNCH_PROBE_LEN];
		probe_encode(p, PUNCH_PROBE_ANSWER | PUNCH_PROBE_PREDICTED | PUNCH_PROBE_BIRTHDAY, out);
		bday_send(bs, from, out, sizeof(out));
	}
	struct tp_sock *s = bday_take(&p->bday, bs);
	bday_close(&p->bday);
	p->udp_seen = *from;
	p->udp_seen_ok = p->predicted = p->bday_won = p->udp_dialed = true;
	struct p2p_conn *pc = attempt_conn(p, CRUST_VIA_PREDICTED);
	if (!pc) {
		svc->rudp->vt->sock_close(s);
		return;
	}
	pc->punch_cand = PUNCH_CAND_UDP;
	struct tp_conn *tc = NULL;
	int err = svc->rudp->vt->connect_on(s, (const struct sockaddr *)from, addr_len(from), pc,
					    &tc);
	if (err) {
		pc->stopping = true;
		conn_discard(pc, p->r->sh);
		return;
	}
	pc->tc = tc;
}

/* Shard 0: the next batch of extra sockets or random probes, until a path is seen. */
static void bday_tick(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct punch *p = ctx;
	struct rendezvous *r = p->r;
	pthread_mutex_lock(&r->lock);
	bool live = p->phase == PUNCH_WAITING || p->phase == PUNCH_PUNCHING;
	if (!live || p->udp_seen_ok) {
		bday_close(&p->bday); /* won, found otherwise, or given up: the sockets go now */
		pthread_mutex_unlock(&r->lock);
		return;
	}
	if (p->bday.role == BDAY_OFF) {
		const struct crust_endpoint *a, *b;
		peer_mappings(p, &a, &b);
		uint8_t probe[PUNCH_PROBE_LEN];
		probe_encode(p, (uint8_t)(PUNCH_PROBE_PREDICTED | (p->bday_role == BDAY_SOCKETS
									   ? PUNCH_PROBE_BIRTHDAY
									   : 0)),
			     probe);
		if (!a || bday_start(&p->bday, p->bday_role, r->svc->rudp, r->sh, &a->addr, probe)) {
			pthread_mutex_unlock(&r->lock);
			return;
		}
	}
	bday_step(&p->bday);
	/* ticking on after the last batch: the sockets close as soon as the punch ends */
	eng_timer_arm(&r->sh->timers, &p->bday_timer, BDAY_TICK_MS);
	pthread_mutex_unlock(&r->lock);
}

/* Under lock, shard 0: a datagram on one of our extra sockets. */
static void bday_probe(struct rendezvous *r, struct bday_sock *bs,
		       const struct sockaddr_storage *from, const struct punch_probe *pp)
{
	struct punch *p = by_token(r, pp->token);
	if (p && crust_peer_eq(&pp->from, &p->peer) && bday_owns(&p->bday, bs) && !p->bday_won)
		bday_win(p, bs, from, pp->flags);
}

/*
 * Under lock, any shard: what a probe of the peer tells about the path it
 * came by, which decides the method both ends name (via_for). Learnt on the
 * shard that read it, before that shard can read the Initial sent after it
 * from the same socket and claim the connection; the rest of the probe's
 * work waits for shard 0.
 */
static struct punch *probe_learn(struct rendezvous *r, const struct sockaddr_storage *from,
				 const struct punch_probe *pp)
{
	struct punch *p = by_token(r, pp->token);
	/* the token came to both of us inside our coordinator sessions: the probe is the peer's */
	if (!p || !crust_peer_eq(&pp->from, &p->peer))
		return NULL;
	if (pp->flags & PUNCH_PROBE_BIRTHDAY) {
		/* from the peer's extra socket: it dials over that, we never do */
		p->bday_seen = *from;
		p->bday_seen_ok = true;
	}
	/* both ends must name the method alike: the one that guessed, and the one
	 * whose port was guessed (told by the flag) */
	if (is_predicted(p, from) || (pp->flags & PUNCH_PROBE_PREDICTED))
		p->predicted = true;
	return p;
}

void punch_probe_seen(struct rendezvous *r, const struct sockaddr_storage *from,
		      const uint8_t *b, uint32_t len)
{
	struct punch_probe pp;
	if (!punch_probe_decode(b, len, &pp) || r->svc->cfg.no_udp_punch)
		return;
	pthread_mutex_lock(&r->lock);
	probe_learn(r, from, &pp);
	pthread_mutex_unlock(&r->lock);
}

void punch_probe(struct rendezvous *r, const struct sockaddr_storage *from, const uint8_t *b,
		 uint32_t len, void *sock_user)
{
	struct punch_probe pp;
	if (!punch_probe_decode(b, len, &pp) || r->svc->cfg.no_udp_punch)
		return; /* neither STUN nor a probe of ours (or UDP punching is off here) */
	pthread_mutex_lock(&r->lock);
	if (sock_user) {
		bday_probe(r, sock_user, from, &pp);
		pthread_mutex_unlock(&r->lock);
		return;
	}
	struct punch *p = probe_learn(r, from, &pp);
	if (p) {
		if (!p->udp_seen_ok || !same_ip(&p->udp_seen, from) ||
		    eng_addr_port(&p->udp_seen) != eng_addr_port(from)) {
			p->udp_seen = *from; /* the source actually seen (peer-reflexive) */
			p->udp_seen_ok = true;
			p->udp_dialed = false;
		}
		if (!(pp.flags & PUNCH_PROBE_ANSWER))
			send_probe(p, from, (uint8_t)(PUNCH_PROBE_ANSWER |
						      (p->predicted ? PUNCH_PROBE_PREDICTED : 0)));
		udp_dial(p);
	}
	pthread_mutex_unlock(&r->lock);
}

void punch_stop(struct rendezvous *r)
{
	pthread_mutex_lock(&r->lock);
	for (struct punch *p = r->punches; p; p = p->next) {
		eng_timer_cancel(&r->sh->timers, &p->timer);
		eng_timer_cancel(&r->sh->timers, &p->bday_timer);
		bday_close(&p->bday);
	}
	pthread_mutex_unlock(&r->lock);
}

void punch_free_all(struct rendezvous *r)
{
	while (r->punches) {
		struct punch *p = r->punches;
		r->punches = p->next;
		free(p);
	}
}
