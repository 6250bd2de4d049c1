/*
 * relay.c - the coordinator's relay: when punching fails, both nodes open
 * a TCP connection to the coordinator's listener, send the relay preamble
 * with the token the rendezvous gave them, and the coordinator splices
 * the two connections frame by frame. The nodes then run the normal crust
 * handshake end to end through it: the coordinator sees only sealed
 * records and cannot read or forge them.
 *
 * Caps (crust_coordinator_config): at most relay_max_pairs tokens and
 * pairs at once; relay_max_bytes per pair (both directions) after which
 * the pair is closed ("relay byte cap reached"); relay_rate bytes per
 * second per direction: frames beyond the rate wait in a queue drained
 * by a timer, and a sender that keeps the queue above one second's worth
 * plus RELAY_SLACK is cut off ("relay rate cap exceeded"). Frames that
 * arrive before the other leg are held, at most RELAY_EARLY bytes.
 *
 * Everything runs on the coordinator's one shard.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator.h"
#include "node.h"

#define RELAY_EARLY (64u << 10)      /* bytes held before the other leg arrives */
#define RELAY_SLACK (256u << 10)
#define RELAY_DRAIN_MS 10u
#define RELAY_IDLE_MS 60000u         /* a pair silent this long is closed */

struct relay_leg {
	struct relay_pair *pair;
	unsigned side;
};

struct relay_pair {
	struct relay_pair *next;
	struct coordinator *c;
	uint8_t token[RDV_TOKEN_LEN];
	uint64_t expires_ms;             /* token: unused until then, it goes */
	uint64_t last_ms;
	struct p2p_conn *legs[2];
	struct relay_leg leg[2];
	bool used, closing;
	uint64_t bytes;
	double tokens[2];                /* per direction, towards legs[d] */
	uint64_t tokens_ms[2];
	struct crust_msg *q_head[2], *q_tail[2];
	uint64_t q_bytes[2];
	struct eng_timer drain;
};

static void drain_cb(struct eng_timer *t, void *ctx);

int relay_token_new(struct coordinator *c, uint8_t token[RDV_TOKEN_LEN])
{
	if (c->npairs >= c->cfg.relay_max_pairs) {
		coord_count(&c->n.relay_refused, 1);
		return -EBUSY;
	}
	struct relay_pair *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	randombytes_buf(p->token, RDV_TOKEN_LEN);
	memcpy(token, p->token, RDV_TOKEN_LEN);
	p->c = c;
	p->expires_ms = c->sh->now_ms + COORD_RELAY_TOKEN_MS;
	eng_timer_init(&p->drain, drain_cb, p);
	p->next = c->pairs;
	c->pairs = p;
	c->npairs++;
	return 0;
}

static struct relay_pair *find(struct coordinator *c, const uint8_t token[RDV_TOKEN_LEN])
{
	for (struct relay_pair *p = c->pairs; p; p = p->next)
		if (!p->closing && sodium_memcmp(p->token, token, RDV_TOKEN_LEN) == 0)
			return p;
	return NULL;
}

static void free_queue(struct relay_pair *p, unsigned d)
{
	struct crust_msg *m = p->q_head[d];
	while (m) {
		struct crust_msg *next = m->next;
		eng_msg_free(m);
		m = next;
	}
	p->q_head[d] = p->q_tail[d] = NULL;
	p->q_bytes[d] = 0;
}

static void unlink_pair(struct relay_pair *p)
{
	struct coordinator *c = p->c;
	for (struct relay_pair **pp = &c->pairs; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	c->npairs--;
	eng_timer_cancel(&c->sh->timers, &p->drain);
	free_queue(p, 0);
	free_queue(p, 1);
	free(p);
}

/* Close both legs; the pair goes when the last one has closed. */
static void close_pair(struct relay_pair *p, const char *reason)
{
	if (p->closing)
		return;
	p->closing = true;
	svc_log(p->c->svc, CRUST_LOG_INFO, "relay: %s", reason);
	bool any = false;
	for (unsigned d = 0; d < 2; d++) {
		if (p->legs[d]) {
			any = true;
			conn_close(p->legs[d], -ECONNABORTED, reason);
		}
	}
	if (!any)
		unlink_pair(p);
}

bool relay_first_frame(struct p2p_conn *pc, const uint8_t *b, size_t len)
{
	struct coordinator *c = pc->svc->coord;
	uint8_t token[RDV_TOKEN_LEN];
	if (!c || !relay_preamble_decode(b, len, token))
		return false;
	pc->stopping = true; /* a relay leg is no peer of ours: no events about it */
	struct relay_pair *p = find(c, token);
	if (!p || (p->legs[0] && p->legs[1]) || c->cfg.relay_off) {
		coord_count(&c->n.relay_refused, 1);
		conn_close(pc, -EPERM, "unknown, used or expired relay token");
		return true;
	}
	unsigned side = p->legs[0] ? 1 : 0;
	p->legs[side] = pc;
	p->leg[side].pair = p;
	p->leg[side].side = side;
	pc->relay = &p->leg[side];
	p->used = true;
	p->last_ms = pc->tc->sh->now_ms;
	eng_timer_cancel(&pc->tc->sh->timers, &pc->hs_timer);
	if (pc->limited) {
		limiter_release(&pc->svc->limiter, &pc->tc->remote);
		pc->limited = false;
	}
	if (side == 1) {
		coord_count(&c->n.relay_pairs, 1);
		eng_timer_arm(&c->sh->timers, &p->drain, 1); /* flush what the first leg sent early */
	}
	return true;
}

static void refill(struct relay_pair *p, unsigned d, uint64_t now)
{
	double rate = p->c->cfg.relay_rate;
	if (!p->tokens_ms[d]) {
		p->tokens_ms[d] = now;
		p->tokens[d] = rate;
	}
	p->tokens[d] += (double)(now - p->tokens_ms[d]) * rate / 1000.0;
	if (p->tokens[d] > rate)
		p->tokens[d] = rate;
	p->tokens_ms[d] = now;
}

/* Send queued frames towards legs[d] while the rate allows. */
static void flush(struct relay_pair *p, unsigned d, uint64_t now)
{
	struct p2p_conn *to = p->legs[d];
	if (!to || to->state == CONN_CLOSING)
		return;
	refill(p, d, now);
	struct crust_msg *m;
	while ((m = p->q_head[d]) && p->tokens[d] >= 1) {
		p->q_head[d] = m->next;
		if (!p->q_head[d])
			p->q_tail[d] = NULL;
		m->next = NULL;
		p->q_bytes[d] -= m->len;
		p->tokens[d] -= m->len;
		if (to->tc->t->vt->send(to->tc, m) < 0) {
			eng_msg_free(m);
			close_pair(p, "relay: send failed");
			return;
		}
	}
}

static void drain_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct relay_pair *p = ctx;
	uint64_t now = p->c->sh->now_ms;
	flush(p, 0, now);
	flush(p, 1, now);
	if (!p->closing && (p->q_head[0] || p->q_head[1]))
		eng_timer_arm(&p->c->sh->timers, &p->drain, RELAY_DRAIN_MS);
}

static void enqueue(struct relay_pair *p, unsigned d, struct crust_msg *m)
{
	m->next = NULL;
	if (p->q_tail[d])
		p->q_tail[d]->next = m;
	else
		p->q_head[d] = m;
	p->q_tail[d] = m;
	p->q_bytes[d] += m->len;
}

void relay_received(struct p2p_conn *pc, struct crust_msg *in)
{
	struct relay_pair *p = pc->relay->pair;
	struct coordinator *c = p->c;
	unsigned d = 1 - pc->relay->side; /* towards the other leg */
	struct crust_msg *m = p->closing ? NULL : eng_msg_alloc(in->len);
	if (m) {
		memcpy(m->data, in->data, in->len);
		m->flags |= ENG_MSG_RAW; /* records of the two ends: forwarded as they are */
	}
	eng_msg_free(in);
	if (!m)
		return;
	uint64_t now = pc->tc->sh->now_ms;
	p->last_ms = now;
	p->bytes += m->len;
	coord_count(&c->n.relay_bytes, m->len);
	enqueue(p, d, m);
	if (p->bytes > c->cfg.relay_max_bytes) {
		coord_count(&c->n.relay_capped, 1);
		close_pair(p, "relay byte cap reached");
		return;
	}
	uint64_t limit = p->legs[d] ? (uint64_t)c->cfg.relay_rate + RELAY_SLACK : RELAY_EARLY;
	if (p->q_bytes[d] > limit) {
		coord_count(&c->n.relay_capped, 1);
		close_pair(p, p->legs[d] ? "relay rate cap exceeded"
					 : "relay: too much sent before the other side came");
		return;
	}
	flush(p, d, now);
	if (p->q_head[d] && !eng_timer_armed(&p->drain))
		eng_timer_arm(&c->sh->timers, &p->drain, RELAY_DRAIN_MS);
}

void relay_leg_closed(struct p2p_conn *pc)
{
	struct relay_pair *p = pc->relay->pair;
	unsigned side = pc->relay->side;
	p->legs[side] = NULL;
	pc->relay = NULL;
	if (p->legs[1 - side]) {
		/* what is queued for the other side still goes, then it closes */
		struct p2p_conn *o = p->legs[1 - side];
		flush(p, 1 - side, p->c->sh->now_ms);
		if (!p->closing && o->state != CONN_CLOSING) {
			p->closing = true;
			o->state = CONN_CLOSING;
			o->tc->t->vt->shutdown(o->tc, 0, "relay: the other side left");
		}
		return;
	}
	unlink_pair(p);
}

void relay_expire(struct coordinator *c, uint64_t now)
{
	struct relay_pair *p = c->pairs;
	while (p) {
		struct relay_pair *next = p->next;
		bool complete = p->legs[0] && p->legs[1];
		if (!complete && !p->closing && p->expires_ms <= now)
			close_pair(p, "relay token expired");
		else if (complete && !p->closing && now - p->last_ms > RELAY_IDLE_MS)
			close_pair(p, "relay pair idle");
		p = next;
	}
}

void relay_free_all(struct coordinator *c)
{
	while (c->pairs) {
		struct relay_pair *p = c->pairs;
		p->legs[0] = p->legs[1] = NULL;
		unlink_pair(p);
	}
}
