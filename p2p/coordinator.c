/*
 * coordinator.c - rendezvous for hole punching (see coordinator.h and
 * docs/PROTOCOL.md "Rendezvous").
 *
 * A node opens an ordinary crust session to the coordinator (so its peer
 * id is proven by the handshake) and registers: the coordinator keeps
 * the address it sees the session come from (the node's public TCP
 * endpoint, the NAT's mapping of its listener port) and the endpoints
 * the node lists (its LAN addresses, its STUN-learned UDP endpoint). A
 * node asks to reach a peer id; both get each other's candidates, the
 * same start delay, the handshake role, and a relay token.
 *
 * Registrations live as long as their session and at most
 * registration_ttl_ms after the last refresh: a stale entry is never
 * handed out (the lookup checks the expiry and that the session is up).
 * Each session has a small budget of control messages (RDV_RATE per
 * second, burst RDV_BURST); over it the request is refused, not queued.
 */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/addr.h"
#include "coordinator.h"
#include "node.h"

#define RDV_RATE 2.0                 /* control messages per second per session */
#define RDV_BURST 8.0
#define SWEEP_MS 1000u

static void fill_defaults(struct crust_coordinator_config *cc)
{
#define DEFAULT(field, v) if (!cc->field) cc->field = (v)
	DEFAULT(registration_ttl_ms, 60000);
	DEFAULT(max_registrations, 10000);
	DEFAULT(max_per_ip, 64);
	DEFAULT(punch_lead_ms, 300);
	DEFAULT(relay_max_pairs, 64);
	DEFAULT(relay_max_bytes, 64ull << 20);
	DEFAULT(relay_rate, 1u << 20);
#undef DEFAULT
}

/* --- the registry --------------------------------------------------------------- */

static unsigned bucket(const struct crust_peer_id *id)
{
	return (unsigned)(id->bytes[0] | id->bytes[1] << 8) % COORD_BUCKETS;
}

static struct coord_reg **find_slot(struct coordinator *c, const struct crust_peer_id *id)
{
	struct coord_reg **pp = &c->regs[bucket(id)];
	while (*pp && !crust_peer_eq(&(*pp)->id, id))
		pp = &(*pp)->next;
	return pp;
}

static void unlink_reg(struct coordinator *c, struct coord_reg **pp)
{
	struct coord_reg *r = *pp;
	*pp = r->next;
	free(r);
	c->nregs--;
	atomic_store(&c->n.registered_now, c->nregs);
}

/* A registration that may be handed out: not expired, its session up. */
static struct coord_reg *live(struct coordinator *c, const struct crust_peer_id *id, uint64_t now)
{
	struct coord_reg *r = *find_slot(c, id);
	if (!r || r->expires_ms <= now || !r->pc || r->pc->state != CONN_UP)
		return NULL;
	return r;
}

static unsigned count_ip(struct coordinator *c, const uint8_t ip[16])
{
	unsigned n = 0;
	for (unsigned b = 0; b < COORD_BUCKETS; b++)
		for (struct coord_reg *r = c->regs[b]; r; r = r->next)
			n += !memcmp(r->ip, ip, 16);
	return n;
}

static void sweep_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct coordinator *c = ctx;
	uint64_t now = c->sh->now_ms;
	for (unsigned b = 0; b < COORD_BUCKETS; b++) {
		struct coord_reg **pp = &c->regs[b];
		while (*pp) {
			if ((*pp)->expires_ms <= now) {
				coord_count(&c->n.expired, 1);
				unlink_reg(c, pp);
			} else {
				pp = &(*pp)->next;
			}
		}
	}
	relay_expire(c, now);
	eng_timer_arm(&c->sh->timers, &c->sweep, SWEEP_MS);
}

/* --- answers -------------------------------------------------------------------- */

static void send_msg(struct p2p_conn *pc, const struct rdv_msg *m)
{
	uint8_t out[RDV_MSG_MAX];
	conn_send_ctrl_data(pc, out, rdv_encode(m, out));
}

static void refuse(struct p2p_conn *pc, uint32_t req, enum rdv_refusal code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void refuse(struct p2p_conn *pc, uint32_t req, enum rdv_refusal code, const char *fmt, ...)
{
	struct rdv_msg m = { .code = RDV_REFUSED, .req = req, .refusal = (uint8_t)code };
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m.reason, sizeof(m.reason), fmt, ap);
	va_end(ap);
	send_msg(pc, &m);
}

static bool within_budget(struct p2p_conn *pc, uint64_t now)
{
	if (!pc->rdv_tokens_ms) {
		pc->rdv_tokens_ms = now;
		pc->rdv_tokens = RDV_BURST;
	}
	pc->rdv_tokens += (double)(now - pc->rdv_tokens_ms) * RDV_RATE / 1000.0;
	if (pc->rdv_tokens > RDV_BURST)
		pc->rdv_tokens = RDV_BURST;
	pc->rdv_tokens_ms = now;
	if (pc->rdv_tokens < 1)
		return false;
	pc->rdv_tokens -= 1;
	return true;
}

/* --- register ------------------------------------------------------------------- */

static void fill_reg(struct coord_reg *r, struct p2p_conn *pc, const struct rdv_msg *m)
{
	memset(&r->eps[0], 0, sizeof(r->eps[0]));
	r->eps[0].transport = CRUST_TRANSPORT_TCP;
	r->eps[0].addr = pc->tc->remote;
	r->eps[0].addrlen = pc->tc->remote_len;
	r->neps = 1;
	for (unsigned i = 0; i < m->neps && r->neps < RDV_MAX_EPS; i++)
		r->eps[r->neps++] = m->eps[i];
	eng_addr_ip_key(&pc->tc->remote, r->ip);
	r->pc = pc;
}

static void on_register(struct coordinator *c, struct p2p_conn *pc, const struct rdv_msg *m,
			uint64_t now)
{
	struct coord_reg **pp = find_slot(c, &pc->ref->id);
	struct coord_reg *r = *pp;
	if (!r) {
		uint8_t ip[16];
		eng_addr_ip_key(&pc->tc->remote, ip);
		if (c->nregs >= c->cfg.max_registrations || count_ip(c, ip) >= c->cfg.max_per_ip) {
			coord_count(&c->n.registrations_refused, 1);
			refuse(pc, 0, RDV_TABLE_FULL, "registration table full");
			return;
		}
		r = calloc(1, sizeof(*r));
		if (!r)
			return;
		r->id = pc->ref->id;
		r->next = c->regs[bucket(&r->id)];
		c->regs[bucket(&r->id)] = r;
		c->nregs++;
		atomic_store(&c->n.registered_now, c->nregs);
	} else if (r->pc && r->pc != pc) {
		r->pc = NULL; /* the id moved to a new session: the old one no longer speaks for it */
	}
	fill_reg(r, pc, m);
	r->expires_ms = now + c->cfg.registration_ttl_ms;
	pc->maintained = true; /* a registered session is kept, not dropped as provisional */
	coord_count(&c->n.registrations, 1);
	struct rdv_msg ok = { .code = RDV_REGISTERED, .ttl_ms = c->cfg.registration_ttl_ms };
	ok.eps[0] = r->eps[0];
	ok.neps = 1;
	/* where STUN answers: a node asking two addresses learns whether its NAT's mapping
	 * depends on the destination (symmetric) and by how much it moves (prediction) */
	for (unsigned i = 0; i < c->nstun_eps && ok.neps < RDV_MAX_EPS; i++)
		ok.eps[ok.neps++] = c->stun_eps[i];
	send_msg(pc, &ok);
}

/* --- reach ---------------------------------------------------------------------- */

static void send_punch(struct p2p_conn *to, uint32_t req, bool initiate, bool relay,
		       const struct coord_reg *other, const uint8_t *token, uint32_t lead)
{
	struct rdv_msg m = { .code = RDV_PUNCH, .req = req, .peer = other->id, .start_in_ms = lead };
	m.flags = (uint8_t)((initiate ? RDV_PUNCH_INITIATE : 0) | (relay ? RDV_PUNCH_RELAY : 0));
	memcpy(m.token, token, RDV_TOKEN_LEN);
	memcpy(m.eps, other->eps, other->neps * sizeof(other->eps[0]));
	m.neps = other->neps;
	send_msg(to, &m);
}

static void on_reach(struct coordinator *c, struct p2p_conn *pc, const struct rdv_msg *m,
		     uint64_t now)
{
	char hex[CRUST_PEER_HEX_LEN + 1];
	crust_peer_to_hex(&m->peer, hex);
	struct coord_reg *me = live(c, &pc->ref->id, now);
	if (!me) {
		refuse(pc, m->req, RDV_NOT_REGISTERED, "register before asking for a peer");
		return;
	}
	struct coord_reg *them = live(c, &m->peer, now);
	if (!them || them == me) {
		coord_count(&c->n.rendezvous_unknown, 1);
		refuse(pc, m->req, RDV_UNKNOWN_PEER, "unknown peer %.16s: not registered here", hex);
		return;
	}
	uint8_t token[RDV_TOKEN_LEN] = { 0 };
	bool relay = !c->cfg.relay_off && relay_token_new(c, token) == 0;
	coord_count(&c->n.rendezvous, 1);
	/* the asker initiates the handshake on whatever connection forms */
	send_punch(pc, m->req, true, relay, them, token, c->cfg.punch_lead_ms);
	send_punch(them->pc, m->req, false, relay, me, token, c->cfg.punch_lead_ms);
}

void coord_control(struct p2p_conn *pc, const uint8_t *p, uint32_t len)
{
	struct coordinator *c = pc->svc->coord;
	if (!c || pc->state != CONN_UP || !pc->ref)
		return;
	struct rdv_msg m;
	if (rdv_decode(p, len, &m) < 0 || (m.code != RDV_REGISTER && m.code != RDV_REACH)) {
		conn_abuse(pc, -EBADMSG, "malformed rendezvous message");
		return;
	}
	uint64_t now = pc->tc->sh->now_ms;
	if (!within_budget(pc, now)) {
		coord_count(&c->n.registrations_refused, m.code == RDV_REGISTER);
		refuse(pc, m.req, RDV_RATE_LIMITED, "too many rendezvous messages: slow down");
		return;
	}
	if (m.code == RDV_REGISTER)
		on_register(c, pc, &m, now);
	else
		on_reach(c, pc, &m, now);
}

void coord_conn_closed(struct p2p_conn *pc)
{
	struct coordinator *c = pc->svc->coord;
	if (!c)
		return;
	if (pc->relay) {
		relay_leg_closed(pc);
		return;
	}
	if (!pc->ref)
		return;
	struct coord_reg **pp = find_slot(c, &pc->ref->id);
	if (*pp && (*pp)->pc == pc)
		unlink_reg(c, pp); /* its session is gone: nobody can reach it through us */
}

/* --- lifecycle ------------------------------------------------------------------ */

static void start_on_shard(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct coordinator *c = container_of(m, struct coordinator, start_mail);
	coord_stun_start(c);
	eng_timer_arm(&c->sh->timers, &c->sweep, SWEEP_MS);
}

CRUST_API int crust_coordinator_start(struct crust_service *svc,
				      const struct crust_coordinator_config *cc)
{
	if (!svc || !cc || cc->nstun > COORD_MAX_STUN)
		return -EINVAL;
	if (svc->eng->nshards != 1)
		return -EINVAL; /* the relay splices two connections on one shard */
	if (svc->coord || svc->rdv)
		return -EALREADY;
	struct coordinator *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->svc = svc;
	c->sh = &svc->eng->shards[0];
	c->cfg = *cc;
	c->cfg.stun = NULL;
	for (size_t i = 0; i < cc->nstun && i < COORD_MAX_STUN; i++) {
		c->stun_eps[c->nstun_eps] = cc->stun[i];
		c->stun_eps[c->nstun_eps++].transport = CRUST_TRANSPORT_RUDP;
	}
	fill_defaults(&c->cfg);
	eng_timer_init(&c->sweep, sweep_cb, c);
	int err = coord_stun_bind(c, cc->stun, cc->nstun);
	if (err) {
		coord_stun_free(c);
		free(c);
		return err;
	}
	svc->coord = c;
	c->start_mail.fn = start_on_shard;
	eng_post(c->sh, &c->start_mail);
	return 0;
}

void coord_stop_shard(struct crust_service *svc, struct shard *sh)
{
	struct coordinator *c = svc->coord;
	if (!c || sh != c->sh)
		return;
	eng_timer_cancel(&sh->timers, &c->sweep);
	coord_stun_close(c);
}

void coord_free(struct crust_service *svc)
{
	struct coordinator *c = svc->coord;
	if (!c)
		return;
	coord_stun_free(c);
	for (unsigned b = 0; b < COORD_BUCKETS; b++)
		while (c->regs[b])
			unlink_reg(c, &c->regs[b]);
	relay_free_all(c);
	free(c);
	svc->coord = NULL;
}

CRUST_API void crust_coordinator_stats(struct crust_service *svc,
				       struct crust_coordinator_stats *out)
{
	memset(out, 0, sizeof(*out));
	struct coordinator *c = svc ? svc->coord : NULL;
	if (!c)
		return;
#define LOAD(x) out->x = atomic_load_explicit(&c->n.x, memory_order_relaxed)
	LOAD(stun_requests); LOAD(stun_answers); LOAD(stun_errors); LOAD(stun_dropped);
	LOAD(registrations); LOAD(registrations_refused); LOAD(expired);
	LOAD(rendezvous); LOAD(rendezvous_unknown);
	LOAD(relay_pairs); LOAD(relay_bytes); LOAD(relay_refused); LOAD(relay_capped);
	LOAD(registered_now);
#undef LOAD
}
