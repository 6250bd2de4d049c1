/*
 * rendezvous_wire.c - encoding and decoding of the rendezvous control
 * messages and the relay preamble (see rendezvous_wire.h).
 */
#include "rendezvous_wire.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "engine/addr.h"
#include "engine/bytes.h"

static size_t put_ep(uint8_t *p, const struct crust_endpoint *ep)
{
	const struct sockaddr_storage *ss = &ep->addr;
	p[0] = (uint8_t)ep->transport;
	p[1] = ss->ss_family == AF_INET ? 4 : 6;
	uint16_t port = eng_addr_port(ss);
	p[2] = (uint8_t)(port >> 8);
	p[3] = (uint8_t)port;
	if (ss->ss_family == AF_INET) {
		memcpy(p + 4, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return 8;
	}
	memcpy(p + 4, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	return 20;
}

/* One endpoint from p (left bytes); its length or 0 if malformed. */
static size_t get_ep(const uint8_t *p, size_t left, struct crust_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (left < 4 || (p[0] != CRUST_TRANSPORT_TCP && p[0] != CRUST_TRANSPORT_RUDP))
		return 0;
	size_t alen = p[1] == 4 ? 4 : p[1] == 6 ? 16 : 0;
	if (!alen || left < 4 + alen)
		return 0;
	ep->transport = (enum crust_transport)p[0];
	if (alen == 4) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ep->addr;
		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, p + 4, 4);
		ep->addrlen = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ep->addr;
		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, p + 4, 16);
		ep->addrlen = sizeof(*a);
	}
	eng_addr_set_port(&ep->addr, (uint16_t)(p[2] << 8 | p[3]));
	return 4 + alen;
}

static size_t put_eps(uint8_t *p, const struct rdv_msg *m)
{
	unsigned n = 0;
	size_t len = 1;
	for (unsigned i = 0; i < m->neps && n < RDV_MAX_EPS; i++) {
		sa_family_t f = m->eps[i].addr.ss_family;
		if (f != AF_INET && f != AF_INET6)
			continue;
		len += put_ep(p + len, &m->eps[i]);
		n++;
	}
	p[0] = (uint8_t)n;
	return len;
}

size_t rdv_encode(const struct rdv_msg *m, uint8_t *out)
{
	out[0] = (uint8_t)m->code;
	switch (m->code) {
	case RDV_REGISTER:
		return 1 + put_eps(out + 1, m);
	case RDV_REGISTERED:
		eng_put_be32(out + 1, m->ttl_ms);
		return 5 + put_eps(out + 5, m);
	case RDV_REACH:
		eng_put_be32(out + 1, m->req);
		memcpy(out + 5, m->peer.bytes, 32);
		return 37;
	case RDV_PUNCH:
		eng_put_be32(out + 1, m->req);
		out[5] = m->flags;
		memcpy(out + 6, m->peer.bytes, 32);
		eng_put_be32(out + 38, m->start_in_ms);
		memcpy(out + 42, m->token, RDV_TOKEN_LEN);
		return 42 + RDV_TOKEN_LEN + put_eps(out + 42 + RDV_TOKEN_LEN, m);
	case RDV_REFUSED: {
		eng_put_be32(out + 1, m->req);
		out[5] = m->refusal;
		size_t rl = strnlen(m->reason, RDV_REASON_MAX);
		out[6] = (uint8_t)rl;
		memcpy(out + 7, m->reason, rl);
		return 7 + rl;
	}
	}
	return 0;
}

static int get_eps(const uint8_t *p, size_t left, struct rdv_msg *m)
{
	if (left < 1 || p[0] > RDV_MAX_EPS)
		return -EBADMSG;
	size_t off = 1;
	for (m->neps = 0; m->neps < p[0]; m->neps++) {
		size_t used = get_ep(p + off, left - off, &m->eps[m->neps]);
		if (!used)
			return -EBADMSG;
		off += used;
	}
	return off == left ? 0 : -EBADMSG;
}

int rdv_decode(const uint8_t *p, size_t len, struct rdv_msg *m)
{
	memset(m, 0, sizeof(*m));
	if (len < 1)
		return -EBADMSG;
	m->code = (enum rdv_code)p[0];
	switch (m->code) {
	case RDV_REGISTER:
		return get_eps(p + 1, len - 1, m);
	case RDV_REGISTERED:
		if (len < 5)
			return -EBADMSG;
		m->ttl_ms = eng_get_be32(p + 1);
		return get_eps(p + 5, len - 5, m) < 0 || m->neps < 1 ? -EBADMSG : 0;
	case RDV_REACH:
		if (len != 37)
			return -EBADMSG;
		m->req = eng_get_be32(p + 1);
		memcpy(m->peer.bytes, p + 5, 32);
		return 0;
	case RDV_PUNCH:
		if (len < 42 + RDV_TOKEN_LEN + 1)
			return -EBADMSG;
		m->req = eng_get_be32(p + 1);
		m->flags = p[5];
		memcpy(m->peer.bytes, p + 6, 32);
		m->start_in_ms = eng_get_be32(p + 38);
		memcpy(m->token, p + 42, RDV_TOKEN_LEN);
		return get_eps(p + 42 + RDV_TOKEN_LEN, len - 42 - RDV_TOKEN_LEN, m);
	case RDV_REFUSED:
		if (len < 7 || p[6] > RDV_REASON_MAX || len != 7u + p[6])
			return -EBADMSG;
		m->req = eng_get_be32(p + 1);
		m->refusal = p[5];
		memcpy(m->reason, p + 7, p[6]);
		for (size_t i = 0; i < p[6]; i++) /* shown to users: printable ASCII only */
			if (m->reason[i] < 0x20 || m->reason[i] > 0x7e)
				m->reason[i] = '?';
		return 0;
	}
	return -EBADMSG;
}

bool rdv_is_code(uint8_t code)
{
	return code >= RDV_REGISTER && code <= RDV_REFUSED;
}

void relay_preamble_encode(const uint8_t token[RDV_TOKEN_LEN], uint8_t out[RELAY_PREAMBLE_LEN])
{
	memcpy(out, "CRLY", 4);
	out[4] = 1;
	out[5] = 0;
	memcpy(out + 6, token, RDV_TOKEN_LEN);
}

bool relay_preamble_decode(const uint8_t *p, size_t len, uint8_t token[RDV_TOKEN_LEN])
{
	if (len != RELAY_PREAMBLE_LEN || memcmp(p, "CRLY", 4) || p[4] != 1)
		return false;
	memcpy(token, p + 6, RDV_TOKEN_LEN);
	return true;
}

void punch_probe_encode(const struct punch_probe *pp, uint8_t out[PUNCH_PROBE_LEN])
{
	out[0] = 0x3f;
	memcpy(out + 1, "crpb", 4);
	out[5] = 1;
	out[6] = pp->flags;
	memcpy(out + 7, pp->token, RDV_TOKEN_LEN);
	memcpy(out + 7 + RDV_TOKEN_LEN, pp->from.bytes, CRUST_PEER_ID_LEN);
}

bool punch_probe_decode(const uint8_t *p, size_t len, struct punch_probe *pp)
{
	if (len != PUNCH_PROBE_LEN || p[0] != 0x3f || memcmp(p + 1, "crpb", 4) || p[5] != 1)
		return false;
	pp->flags = p[6];
	memcpy(pp->token, p + 7, RDV_TOKEN_LEN);
	memcpy(pp->from.bytes, p + 7 + RDV_TOKEN_LEN, CRUST_PEER_ID_LEN);
	return true;
}
