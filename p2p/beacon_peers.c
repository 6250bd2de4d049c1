/*
 * beacon_peers.c - the beacon's peer memory and pacing rules (see beacon_peers.h).
 *
 * A linear table: BEACON_MAX_PEERS is small, and every lookup happens only
 * after the per-source rate limit, so an attacker cannot make us scan it
 * faster than the limit allows.
 */
#include "beacon_peers.h"

#include <string.h>

#include "engine/addr.h"

void beacon_peers_init(struct beacon_peers *t, uint64_t expire_ms)
{
	memset(t, 0, sizeof(*t));
	t->expire_ms = expire_ms;
}

struct beacon_peer *beacon_peers_find(struct beacon_peers *t, const struct crust_peer_id *id)
{
	for (unsigned i = 0; i < BEACON_MAX_PEERS; i++) {
		struct beacon_peer *p = &t->slots[i];
		if (p->used && crust_peer_eq(&p->id, id))
			return p;
	}
	return NULL;
}

bool beacon_peers_is_replay(struct beacon_peers *t, const struct beacon_msg *m)
{
	const struct beacon_peer *p = beacon_peers_find(t, &m->peer);
	return p && m->ts_ms <= p->last_ts;
}

/* A free slot, else a remembered (not live) one, else the live one heard least recently. */
static struct beacon_peer *take_slot(struct beacon_peers *t)
{
	struct beacon_peer *stale = NULL, *oldest = NULL;
	for (unsigned i = 0; i < BEACON_MAX_PEERS; i++) {
		struct beacon_peer *p = &t->slots[i];
		if (!p->used)
			return p;
		if (!p->live && (!stale || p->last_heard_ms < stale->last_heard_ms))
			stale = p;
		if (!oldest || p->last_heard_ms < oldest->last_heard_ms)
			oldest = p;
	}
	return stale ? stale : oldest;
}

/* The sender's IP with the announced TCP port. */
static void listener_addr(const struct sockaddr_storage *from, uint16_t tcp_port,
			  struct sockaddr_storage *out)
{
	*out = *from;
	eng_addr_set_port(out, tcp_port);
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	uint8_t ka[16], kb[16];
	eng_addr_ip_key(a, ka);
	eng_addr_ip_key(b, kb);
	return memcmp(ka, kb, 16) == 0 && eng_addr_port(a) == eng_addr_port(b);
}

enum beacon_seen beacon_peers_record(struct beacon_peers *t, const struct beacon_msg *m,
				     const struct sockaddr_storage *from, uint64_t now_ms,
				     struct beacon_peer **out)
{
	struct sockaddr_storage addr;
	listener_addr(from, m->tcp_port, &addr);
	struct beacon_peer *p = beacon_peers_find(t, &m->peer);
	enum beacon_seen seen = BEACON_SEEN_AGAIN;
	if (!p) {
		p = take_slot(t);
		memset(p, 0, sizeof(*p));
		p->used = true;
		p->id = m->peer;
	}
	if (!p->live) {
		seen = BEACON_SEEN_NEW;
		p->live = true;
		p->first_seen_ms = now_ms;
		p->dialed = false;
		p->delegated = false;
	} else if (!same_addr(&p->addr, &addr) || p->rudp_port != m->rudp_port) {
		seen = BEACON_SEEN_MOVED;
		p->dialed = false; /* a new address deserves a dial of its own */
		p->delegated = false;
	}
	p->addr = addr;
	p->rudp_port = m->rudp_port;
	p->last_ts = m->ts_ms;
	p->last_heard_ms = now_ms;
	*out = p;
	return seen;
}

unsigned beacon_peers_expire(struct beacon_peers *t, uint64_t now_ms)
{
	unsigned n = 0;
	for (unsigned i = 0; i < BEACON_MAX_PEERS; i++) {
		struct beacon_peer *p = &t->slots[i];
		if (p->live && now_ms - p->last_heard_ms >= t->expire_ms) {
			p->live = false;
			n++;
		}
	}
	return n;
}

unsigned beacon_peers_live(const struct beacon_peers *t)
{
	unsigned n = 0;
	for (unsigned i = 0; i < BEACON_MAX_PEERS; i++)
		n += t->slots[i].live;
	return n;
}

bool beacon_peers_dial(struct beacon_peer *p, const struct crust_peer_id *self, uint64_t now_ms)
{
	if (p->dialed && now_ms - p->last_dial_ms < BEACON_REDIAL_MS)
		return false;
	bool smaller = memcmp(self->bytes, p->id.bytes, CRUST_PEER_ID_LEN) < 0;
	if (!smaller && now_ms - p->first_seen_ms < BEACON_DIAL_GRACE_MS)
		return false;
	p->dialed = true;
	p->last_dial_ms = now_ms;
	return true;
}

enum beacon_answer beacon_peers_answer(struct beacon_peers *t, struct beacon_peer *p,
				       uint64_t now_ms)
{
	if (p->answered && now_ms < p->last_answer_ms + BEACON_ANSWER_GAP_MS)
		return BEACON_ANSWER_NO;
	p->answered = true;
	if (!t->answer_pending &&
	    (!t->answered_ever || now_ms >= t->last_answer_ms + BEACON_ANSWER_GAP_MS)) {
		t->answered_ever = true;
		t->last_answer_ms = now_ms;
		p->last_answer_ms = now_ms;
		return BEACON_ANSWER_NOW;
	}
	t->answer_pending = true;
	p->last_answer_ms = beacon_peers_answer_due(t);
	return BEACON_ANSWER_LATER;
}

uint64_t beacon_peers_answer_due(const struct beacon_peers *t)
{
	return t->last_answer_ms + BEACON_ANSWER_GAP_MS;
}

void beacon_peers_answered(struct beacon_peers *t, uint64_t now_ms)
{
	t->answered_ever = true;
	t->answer_pending = false;
	t->last_answer_ms = now_ms;
}
