/*
 * pex.c - peer exchange over the secure session (see pex.h): answering
 * asks (rate-limited per connection, bounded in size), turning answers
 * into bootstrap candidates, and asking.
 *
 * Only answers we asked for are read (one outstanding ask per
 * connection; an ask unanswered for PEX_ASK_TIMEOUT_MS, e.g. one the peer
 * ignored as too soon, makes way for the next), so a peer cannot push
 * endpoints at us. Loopback endpoints
 * are taken only from a peer that is itself on loopback: a remote node
 * must not make us dial our own host's ports.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap.h"
#include "engine/addr.h"
#include "node.h"
#include "pex.h"

/* --- the bytes ------------------------------------------------------------------ */

static size_t encode_entry(uint8_t *p, const struct pex_entry *e)
{
	const struct sockaddr_storage *ss = &e->ep.addr;
	p[0] = (uint8_t)e->ep.transport;
	size_t alen = ss->ss_family == AF_INET ? 4 : 16;
	p[1] = ss->ss_family == AF_INET ? 4 : 6;
	uint16_t port = eng_addr_port(ss);
	p[2] = (uint8_t)(port >> 8);
	p[3] = (uint8_t)port;
	if (alen == 4)
		memcpy(p + 4, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	else
		memcpy(p + 4, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	memcpy(p + 4 + alen, e->id.bytes, CRUST_PEER_ID_LEN);
	return 4 + alen + CRUST_PEER_ID_LEN;
}

size_t pex_encode(uint8_t *out, const struct pex_entry *e, size_t n)
{
	out[0] = CTRL_PEX_LIST;
	out[1] = (uint8_t)n;
	size_t len = 2;
	for (size_t i = 0; i < n; i++)
		len += encode_entry(out + len, &e[i]);
	return len;
}

/* One entry at p (end - p bytes left); its length, or 0 if malformed. */
static size_t decode_entry(const uint8_t *p, const uint8_t *end, struct pex_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (end - p < 4 || p[0] > CRUST_TRANSPORT_RUDP) /* 0 = any */
		return 0;
	size_t alen = p[1] == 4 ? 4 : p[1] == 6 ? 16 : 0;
	size_t len = 4 + alen + CRUST_PEER_ID_LEN;
	if (!alen || (size_t)(end - p) < len)
		return 0;
	e->ep.transport = (enum crust_transport)p[0];
	if (alen == 4) {
		struct sockaddr_in *a = (struct sockaddr_in *)&e->ep.addr;
		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, p + 4, 4);
		e->ep.addrlen = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&e->ep.addr;
		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, p + 4, 16);
		e->ep.addrlen = sizeof(*a);
	}
	eng_addr_set_port(&e->ep.addr, (uint16_t)(p[2] << 8 | p[3]));
	memcpy(e->id.bytes, p + 4 + alen, CRUST_PEER_ID_LEN);
	return len;
}

int pex_decode(const uint8_t *p, size_t len, struct pex_entry *out, size_t *n)
{
	if (len < 2 || p[0] != CTRL_PEX_LIST || p[1] > PEX_MAX_ENDPOINTS)
		return -EBADMSG;
	const uint8_t *cur = p + 2, *end = p + len;
	for (*n = 0; *n < p[1]; (*n)++) {
		size_t used = decode_entry(cur, end, &out[*n]);
		if (!used)
			return -EBADMSG;
		cur += used;
	}
	return cur == end ? 0 : -EBADMSG;
}

/* --- answering ------------------------------------------------------------------ */

static bool is_loopback(const struct sockaddr_storage *ss)
{
	uint8_t ip[16];
	static const uint8_t v6_lo[16] = { [15] = 1 };
	if (!eng_addr_ip_key(ss, ip))
		return false;
	if (ip[10] == 0xff && ip[11] == 0xff && !memcmp(ip, "\0\0\0\0\0\0\0\0\0\0", 10))
		return ip[12] == 127;
	return !memcmp(ip, v6_lo, 16);
}

static bool is_usable(const struct sockaddr_storage *ss)
{
	uint8_t ip[16], zero[16] = { 0 };
	if (!eng_addr_ip_key(ss, ip) || eng_addr_port(ss) == 0)
		return false;
	if (ip[10] == 0xff && ip[11] == 0xff && !memcmp(ip, zero, 10))
		return memcmp(ip + 12, zero, 4) && ip[12] < 224; /* not 0.0.0.0, multicast, broadcast */
	return memcmp(ip, zero, 16) && ip[0] != 0xff;
}

static bool has_id(const struct pex_entry *e, size_t n, const struct crust_peer_id *id)
{
	for (size_t i = 0; i < n; i++)
		if (crust_peer_eq(&e[i].id, id))
			return true;
	return false;
}

/* Where a connected peer listens: the address we dialed, or its address with its advertised port. */
static bool listen_endpoint(const struct peer_ref *r, struct pex_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->ep.transport = r->transport;
	e->ep.addr = r->addr;
	e->ep.addrlen = r->addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						       : sizeof(struct sockaddr_in);
	if (!r->we_initiated)
		eng_addr_set_port(&e->ep.addr, r->listen_port);
	if (r->via != CRUST_VIA_DIRECT || r->coordinator)
		return false; /* a NAT's mapping or the relay: nobody else can dial it; the
				 coordinator is configured, not handed around */
	e->id = r->id;
	return is_usable(&e->ep.addr);
}

/* Up to max connected peers (but the asker), then cache entries not already there. */
static size_t gather(struct crust_service *svc, const struct crust_peer_id *asker,
		     struct pex_entry *out, size_t max)
{
	size_t n = 0;
	pthread_rwlock_rdlock(&svc->peers_lock);
	for (unsigned b = 0; b < PEER_BUCKETS && n < max; b++)
		for (struct peer_ref *r = svc->peers[b]; r && n < max; r = r->next)
			if (!crust_peer_eq(&r->id, asker) && listen_endpoint(r, &out[n]))
				n++;
	pthread_rwlock_unlock(&svc->peers_lock);
	struct cache_entry cached[PEX_MAX_ENDPOINTS];
	size_t nc = boot_cached(svc, cached, PEX_MAX_ENDPOINTS);
	for (size_t i = 0; i < nc && n < max; i++) {
		if (crust_peer_eq(&cached[i].id, asker) || has_id(out, n, &cached[i].id))
			continue;
		out[n].ep = cached[i].ep;
		out[n].id = cached[i].id;
		n++;
	}
	return n;
}

/* Keep a random k of the n entries (partial Fisher-Yates). */
static void sample(struct pex_entry *e, size_t n, size_t k)
{
	for (size_t i = 0; i < k && i < n; i++) {
		size_t j = i + randombytes_uniform((uint32_t)(n - i));
		struct pex_entry t = e[i];
		e[i] = e[j];
		e[j] = t;
	}
}

static void answer(struct p2p_conn *pc)
{
	struct crust_service *svc = pc->svc;
	uint64_t now = pc->tc->sh->now_ms;
	if (pc->pex_served_ms && now - pc->pex_served_ms < PEX_SERVE_MIN_MS) {
		svc_log(svc, CRUST_LOG_DEBUG, "peer exchange: ask within %u ms of the last: ignored",
			PEX_SERVE_MIN_MS);
		return;
	}
	pc->pex_served_ms = now;
	struct pex_entry all[2 * PEX_MAX_ENDPOINTS];
	/* a coordinator hands out peers only to those who ask it for one by id */
	size_t n = svc->coord ? 0 : gather(svc, &pc->ref->id, all, 2 * PEX_MAX_ENDPOINTS);
	size_t k = n < svc->cfg.pex_max_endpoints ? n : svc->cfg.pex_max_endpoints;
	sample(all, n, k);
	uint8_t msg[PEX_LIST_MAX];
	conn_send_ctrl_data(pc, msg, pex_encode(msg, all, k));
}

/* --- learning ------------------------------------------------------------------- */

static void discovered(struct p2p_conn *pc, const struct pex_entry *e)
{
	struct crust_event ev;
	event_init(&ev, CRUST_EV_PEER_DISCOVERED);
	ev.transport = e->ep.transport;
	ev.addr = e->ep.addr;
	ev.peer = e->id;
	char hex[CRUST_PEER_HEX_LEN + 1];
	crust_peer_to_hex(&pc->ref->id, hex);
	snprintf(ev.reason, sizeof(ev.reason), "peer exchange via %.16s", hex);
	event_emit(pc->svc, &ev);
}

static void learn(struct p2p_conn *pc, const uint8_t *p, uint32_t len)
{
	struct crust_service *svc = pc->svc;
	struct pex_entry e[PEX_MAX_ENDPOINTS];
	size_t n;
	if (pex_decode(p, len, e, &n) < 0) {
		conn_abuse(pc, -EBADMSG, "malformed peer-exchange list");
		return;
	}
	bool peer_on_loopback = is_loopback(&pc->tc->remote);
	for (size_t i = 0; i < n; i++) {
		if (!is_usable(&e[i].ep.addr) || (is_loopback(&e[i].ep.addr) && !peer_on_loopback) ||
		    crust_peer_eq(&e[i].id, &svc->id))
			continue;
		if (boot_add(svc, &e[i].ep, &e[i].id, BOOT_PEX) == 1)
			discovered(pc, &e[i]);
	}
}

void pex_control(struct p2p_conn *pc, const uint8_t *p, uint32_t len)
{
	if (pc->state != CONN_UP || !pc->ref)
		return;
	if (p[0] == CTRL_PEX_ASK && len == 1) {
		answer(pc);
	} else if (p[0] == CTRL_PEX_LIST) {
		if (!pc->pex_asked_ms) {
			svc_log(pc->svc, CRUST_LOG_DEBUG, "peer exchange: unasked list ignored");
			return;
		}
		pc->pex_asked_ms = 0;
		learn(pc, p, len);
	}
}

/* --- asking --------------------------------------------------------------------- */

static void ask(struct p2p_conn *pc)
{
	uint64_t now = pc->tc->sh->now_ms;
	if (pc->state != CONN_UP || (pc->pex_asked_ms && now - pc->pex_asked_ms < PEX_ASK_TIMEOUT_MS))
		return;
	pc->pex_asked_ms = now ? now : 1;
	conn_send_ctrl(pc, CTRL_PEX_ASK);
}

void pex_on_up(struct p2p_conn *pc)
{
	if (pc->outgoing && !pc->svc->cfg.no_pex)
		ask(pc);
}

struct ask_mail {
	struct eng_mail m;
	struct peer_ref *ref;
};

static void ask_on_shard(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct ask_mail *am = (struct ask_mail *)m;
	if (am->ref->conn)
		ask(am->ref->conn);
	peer_put(am->ref);
	free(am);
}

void pex_ask_random(struct crust_service *svc)
{
	struct crust_peer_id ids[64];
	int total = peer_list(svc, ids, 64);
	if (total <= 0)
		return;
	size_t n = total < 64 ? (size_t)total : 64;
	struct peer_ref *ref = peer_lookup(svc, &ids[randombytes_uniform((uint32_t)n)]);
	struct ask_mail *am = ref ? malloc(sizeof(*am)) : NULL;
	if (!am) {
		peer_put(ref);
		return;
	}
	am->m.fn = ask_on_shard;
	am->ref = ref;
	eng_post(ref->sh, &am->m);
}
