/*
 * stun.c - the STUN Binding codec (see stun.h). RFC 8489 section 5
 * (header), 14 (attributes); RFC 5389 section 12.2 for clients without
 * the magic cookie; RFC 5769 has the test vectors the unit tests use.
 */
#include "stun.h"
#include "engine/bytes.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

uint32_t stun_crc32(const uint8_t *p, size_t len)
{
	/* bitwise CRC-32, reflected polynomial 0xEDB88320: messages are tiny */
	uint32_t crc = 0xFFFFFFFFu;
	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

bool stun_is_message(const uint8_t *p, size_t len)
{
	return len >= STUN_HDR_LEN && (p[0] & 0xC0) == 0 && (len & 3) == 0 &&
	       eng_get_be16(p + 2) == len - STUN_HDR_LEN;
}

/* --- parsing -------------------------------------------------------------------- */

/* MAPPED-ADDRESS or XOR-MAPPED-ADDRESS value v (alen bytes); xor_with NULL for the plain one. */
static int parse_addr(const uint8_t *v, uint16_t alen, const uint8_t *xor_with,
		      struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	/* the length first: an empty attribute at the end of the datagram has no family or port */
	if (alen < 4)
		return -EBADMSG;
	uint16_t port = eng_get_be16(v + 2);
	uint8_t ip[16];
	size_t iplen = v[1] == 1 ? 4 : v[1] == 2 ? 16 : 0;
	if (!iplen || alen != 4 + iplen)
		return -EBADMSG;
	memcpy(ip, v + 4, iplen);
	if (xor_with) {
		/* RFC 8489 14.2: port ^ top 16 bits of the cookie; address ^ cookie || txid */
		port ^= (uint16_t)(STUN_MAGIC >> 16);
		for (size_t i = 0; i < iplen; i++)
			ip[i] ^= xor_with[i];
	}
	if (iplen == 4) {
		struct sockaddr_in *a = (struct sockaddr_in *)out;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		memcpy(&a->sin_addr, ip, 4);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		memcpy(&a->sin6_addr, ip, 16);
	}
	return 0;
}

/* Comprehension-required attributes a Binding server may see and safely ignore. */
static bool understood(uint16_t type)
{
	switch (type) {
	case STUN_ATTR_MAPPED_ADDRESS: case STUN_ATTR_USERNAME: case STUN_ATTR_MESSAGE_INTEGRITY:
	case STUN_ATTR_ERROR_CODE: case STUN_ATTR_UNKNOWN_ATTRIBUTES: case STUN_ATTR_REALM:
	case STUN_ATTR_NONCE: case STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
	case STUN_ATTR_PASSWORD_ALGORITHM: case STUN_ATTR_USERHASH:
	case STUN_ATTR_XOR_MAPPED_ADDRESS: case STUN_ATTR_PRIORITY: case STUN_ATTR_USE_CANDIDATE:
		return true;
	default:
		return false;
	}
}

/* One attribute at offset off of p (whole message len bytes). Returns 0 or -EBADMSG. */
static int parse_attr(const uint8_t *p, size_t len, size_t off, uint16_t type, uint16_t alen,
		      struct stun_msg *m, const char **why)
{
	const uint8_t *v = p + off + 4;
	uint8_t xor_key[16];
	switch (type) {
	case STUN_ATTR_XOR_MAPPED_ADDRESS:
		if (!m->has_cookie)
			return 0; /* meaningless without the cookie; RFC 3489 had no such thing */
		memcpy(xor_key, p + 4, 16); /* cookie || transaction id */
		*why = "malformed XOR-MAPPED-ADDRESS";
		return parse_addr(v, alen, xor_key, &m->xor_mapped);
	case STUN_ATTR_MAPPED_ADDRESS:
		*why = "malformed MAPPED-ADDRESS";
		return parse_addr(v, alen, NULL, &m->mapped);
	case STUN_ATTR_FINGERPRINT:
		*why = "FINGERPRINT of the wrong length, not last, or wrong";
		if (alen != 4 || off + 8 != len ||
		    eng_get_be32(v) != (stun_crc32(p, off) ^ STUN_FINGERPRINT_XOR))
			return -EBADMSG;
		m->has_fingerprint = true;
		return 0;
	case STUN_ATTR_ERROR_CODE:
		*why = "malformed ERROR-CODE";
		if (alen < 4 || (v[2] & 7) < 3 || (v[2] & 7) > 6 || v[3] > 99)
			return -EBADMSG;
		m->error_code = (uint16_t)((v[2] & 7) * 100 + v[3]);
		return 0;
	case STUN_ATTR_MESSAGE_INTEGRITY:
		*why = "MESSAGE-INTEGRITY of the wrong length";
		return alen == 20 ? 0 : -EBADMSG;
	default:
		if (type < 0x8000 && !understood(type) && m->nunknown < STUN_MAX_UNKNOWN)
			m->unknown[m->nunknown++] = type;
		return 0;
	}
}

int stun_parse(const uint8_t *p, size_t len, struct stun_msg *m, const char **why)
{
	/* on the stack: every shard parses at once (a shared static was a data race, TSan) */
	const char *ignored;
	if (!why)
		why = &ignored;
	memset(m, 0, sizeof(*m));
	*why = "not a STUN message (short, top bits, or length field)";
	if (len > STUN_MAX_LEN) {
		*why = "longer than a STUN message may be";
		return -EBADMSG;
	}
	if (!stun_is_message(p, len))
		return -EBADMSG;
	m->type = eng_get_be16(p);
	m->has_cookie = eng_get_be32(p + 4) == STUN_MAGIC;
	if (m->has_cookie)
		memcpy(m->txid, p + 8, STUN_TXID_LEN);
	else
		memcpy(m->txid, p + 4, 16);
	for (size_t off = STUN_HDR_LEN; off < len;) {
		*why = "truncated attribute";
		if (len - off < 4)
			return -EBADMSG;
		uint16_t type = eng_get_be16(p + off), alen = eng_get_be16(p + off + 2);
		size_t padded = ((size_t)alen + 3) & ~(size_t)3;
		if (padded > len - off - 4)
			return -EBADMSG;
		if (++m->nattrs > STUN_MAX_ATTRS) {
			*why = "too many attributes";
			return -EBADMSG;
		}
		if (parse_attr(p, len, off, type, alen, m, why) < 0)
			return -EBADMSG;
		off += 4 + padded;
	}
	*why = NULL;
	return 0;
}

/* --- encoding ------------------------------------------------------------------- */

static void header(uint8_t *out, uint16_t type, const struct stun_msg *req)
{
	eng_put_be16(out, type);
	eng_put_be16(out + 2, 0);
	if (req->has_cookie) {
		eng_put_be32(out + 4, STUN_MAGIC);
		memcpy(out + 8, req->txid, STUN_TXID_LEN);
	} else {
		memcpy(out + 4, req->txid, 16);
	}
}

/* Append an attribute header; returns the value pointer. */
static uint8_t *attr(uint8_t *out, size_t *len, uint16_t type, uint16_t alen)
{
	uint8_t *a = out + *len;
	eng_put_be16(a, type);
	eng_put_be16(a + 2, alen);
	memset(a + 4, 0, ((size_t)alen + 3) & ~(size_t)3);
	*len += 4 + (((size_t)alen + 3) & ~(size_t)3);
	return a + 4;
}

static size_t addr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? 8 : 20;
}

static void put_addr(uint8_t *v, const struct sockaddr_storage *ss, const uint8_t *xor_with)
{
	uint16_t port;
	const uint8_t *ip;
	size_t iplen;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		port = ntohs(a->sin_port);
		ip = (const uint8_t *)&a->sin_addr;
		iplen = 4;
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		port = ntohs(a->sin6_port);
		ip = (const uint8_t *)&a->sin6_addr;
		iplen = 16;
	}
	v[1] = iplen == 4 ? 1 : 2;
	eng_put_be16(v + 2, xor_with ? (uint16_t)(port ^ (STUN_MAGIC >> 16)) : port);
	for (size_t i = 0; i < iplen; i++)
		v[4 + i] = xor_with ? (uint8_t)(ip[i] ^ xor_with[i]) : ip[i];
}

/* Set the length field, then FINGERPRINT if asked (its length counted before the CRC). */
static size_t finish(uint8_t *out, size_t len, bool fingerprint)
{
	if (fingerprint) {
		eng_put_be16(out + 2, (uint16_t)(len + 8 - STUN_HDR_LEN));
		size_t before = len;
		uint8_t *v = attr(out, &len, STUN_ATTR_FINGERPRINT, 4);
		eng_put_be32(v, stun_crc32(out, before) ^ STUN_FINGERPRINT_XOR);
	}
	eng_put_be16(out + 2, (uint16_t)(len - STUN_HDR_LEN));
	return len;
}

size_t stun_encode_request(uint8_t *out, size_t cap, const uint8_t txid[STUN_TXID_LEN],
			   bool fingerprint)
{
	if (cap < STUN_HDR_LEN + 8)
		return 0;
	struct stun_msg req = { .has_cookie = true };
	memcpy(req.txid, txid, STUN_TXID_LEN);
	header(out, STUN_BINDING_REQUEST, &req);
	return finish(out, STUN_HDR_LEN, fingerprint);
}

size_t stun_encode_success(uint8_t *out, size_t cap, const struct stun_msg *req,
			   const struct sockaddr_storage *src)
{
	if (src->ss_family != AF_INET && src->ss_family != AF_INET6)
		return 0;
	size_t alen = addr_len(src);
	if (cap < STUN_HDR_LEN + 4 + alen + 8)
		return 0;
	header(out, STUN_BINDING_SUCCESS, req);
	size_t len = STUN_HDR_LEN;
	if (req->has_cookie) {
		uint8_t key[16];
		memcpy(key, out + 4, 16); /* cookie || transaction id */
		put_addr(attr(out, &len, STUN_ATTR_XOR_MAPPED_ADDRESS, (uint16_t)alen), src, key);
	} else {
		put_addr(attr(out, &len, STUN_ATTR_MAPPED_ADDRESS, (uint16_t)alen), src, NULL);
	}
	return finish(out, len, req->has_fingerprint);
}

size_t stun_encode_unknown(uint8_t *out, size_t cap, const struct stun_msg *req)
{
	static const char reason[] = "Unknown Attribute";
	size_t rlen = sizeof(reason) - 1;
	size_t need = STUN_HDR_LEN + 4 + ((4 + rlen + 3) & ~3u) + 4 + 2 * STUN_MAX_UNKNOWN + 8;
	if (cap < need)
		return 0;
	header(out, STUN_BINDING_ERROR, req);
	size_t len = STUN_HDR_LEN;
	uint8_t *v = attr(out, &len, STUN_ATTR_ERROR_CODE, (uint16_t)(4 + rlen));
	v[2] = 4;   /* class 4 */
	v[3] = 20;  /* number 20: 420 */
	memcpy(v + 4, reason, rlen);
	v = attr(out, &len, STUN_ATTR_UNKNOWN_ATTRIBUTES, (uint16_t)(2 * req->nunknown));
	for (unsigned i = 0; i < req->nunknown; i++)
		eng_put_be16(v + 2 * i, req->unknown[i]);
	return finish(out, len, req->has_fingerprint);
}
