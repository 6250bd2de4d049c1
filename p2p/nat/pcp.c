/*
 * pcp.c - the PCP MAP codec (RFC 6887 sections 7 and 11). Requests carry
 * no options (we map our own address: no THIRD_PARTY, and a plain MAP
 * without FILTER accepts any remote peer). Answers are checked for shape
 * only; what they must match (nonce, protocol, port) is the caller's.
 */
#include <errno.h>
#include <string.h>

#include "pcp.h"
#include "engine/bytes.h"

size_t pcp_encode_map(uint8_t *out, size_t cap, uint32_t lifetime, const uint8_t client_ip[16],
		      const struct pcp_map *m)
{
	if (cap < PCP_MAP_MSG_LEN)
		return 0;
	memset(out, 0, PCP_MAP_MSG_LEN);
	/* 7.1: version, R=0 + opcode, 16 reserved bits, lifetime, client IP */
	out[0] = PCP_VERSION;
	out[1] = PCP_OP_MAP;
	eng_put_be32(out + 4, lifetime);
	memcpy(out + 8, client_ip, 16);
	/* 11.1: nonce, protocol, 24 reserved bits, internal port, suggested external */
	uint8_t *b = out + PCP_HEADER_LEN;
	memcpy(b, m->nonce, PCP_NONCE_LEN);
	b[12] = m->protocol;
	eng_put_be16(b + 16, m->internal_port);
	eng_put_be16(b + 18, m->external_port);
	memcpy(b + 20, m->external_ip, 16);
	return PCP_MAP_MSG_LEN;
}

/* Options follow the MAP body: code, reserved, length, data padded to 4 (7.3). */
static int check_options(const uint8_t *p, size_t len)
{
	size_t off = PCP_MAP_MSG_LEN;
	while (off < len) {
		if (len - off < 4)
			return -EBADMSG;
		size_t olen = eng_get_be16(p + off + 2);
		size_t padded = (olen + 3) & ~(size_t)3;
		if (padded > len - off - 4)
			return -EBADMSG;
		off += 4 + padded;
	}
	return 0;
}

int pcp_parse_map(const uint8_t *p, size_t len, struct pcp_answer *a)
{
	/* a NAT-PMP-only server answers any version it does not know with
	 * version 0, result "unsupported version" (RFC 6887 9, RFC 6886 3.5) */
	if (len >= 4 && p[0] == 0 && (p[1] & PCP_RESPONSE_BIT))
		return -EPROTONOSUPPORT;
	if (len < PCP_HEADER_LEN || len > PCP_MAX_MSG || len % 4)
		return -EBADMSG;
	if (p[0] != PCP_VERSION || p[1] != (PCP_RESPONSE_BIT | PCP_OP_MAP))
		return -EBADMSG;
	memset(a, 0, sizeof(*a));
	a->result = p[3];
	a->lifetime = eng_get_be32(p + 4);
	a->epoch = eng_get_be32(p + 8);
	if (len < PCP_MAP_MSG_LEN) {
		/* 7.2: an error answer may come without the opcode body only if
		 * the request could not be parsed; a success needs the body */
		return a->result == PCP_SUCCESS ? -EBADMSG : 0;
	}
	const uint8_t *b = p + PCP_HEADER_LEN;
	memcpy(a->map.nonce, b, PCP_NONCE_LEN);
	a->map.protocol = b[12];
	a->map.internal_port = eng_get_be16(b + 16);
	a->map.external_port = eng_get_be16(b + 18);
	memcpy(a->map.external_ip, b + 20, 16);
	return check_options(p, len);
}

const char *pcp_result_name(uint8_t result)
{
	static const char *const names[] = {
		"success", "unsupported version", "not authorized", "malformed request",
		"unsupported opcode", "unsupported option", "malformed option",
		"network failure", "no resources", "unsupported protocol",
		"user exceeded quota", "cannot provide external", "address mismatch",
		"excessive remote peers",
	};
	return result < sizeof(names) / sizeof(names[0]) ? names[result] : "unknown result";
}
