/* beacon_wire.c - the beacon datagram (see beacon_wire.h for the layout). */
#include "beacon_wire.h"
#include "engine/bytes.h"

#include <sodium.h>
#include <string.h>

#define CTX_LEN (sizeof(BEACON_SIG_CONTEXT) - 1)

const char *beacon_verdict_name(enum beacon_verdict v)
{
	switch (v) {
	case BEACON_OK: return "ok";
	case BEACON_TRUNCATED: return "truncated";
	case BEACON_OVERSIZED: return "oversized";
	case BEACON_BAD_MAGIC: return "bad magic";
	case BEACON_BAD_VERSION: return "unsupported version";
	case BEACON_BAD_TYPE: return "unknown type";
	case BEACON_OTHER_NETWORK: return "another network";
	case BEACON_BAD_SIGNATURE: return "bad signature";
	}
	return "unknown";
}

/* The signed bytes: a context label (so no other crust signature fits here), then the body. */
static void signed_part(const uint8_t *body, uint8_t out[CTX_LEN + BEACON_SIGNED_LEN])
{
	memcpy(out, BEACON_SIG_CONTEXT, CTX_LEN);
	memcpy(out + CTX_LEN, body, BEACON_SIGNED_LEN);
}

void beacon_encode(const struct beacon_msg *m, const struct identity *id,
		   uint8_t out[BEACON_LEN])
{
	memcpy(out, BEACON_MAGIC, 4);
	out[4] = BEACON_VERSION;
	out[5] = (uint8_t)m->type;
	eng_put_be16(out + 6, 0);
	memcpy(out + 8, m->network_tag, 8);
	memcpy(out + 16, id->pk, 32);
	eng_put_be64(out + 48, m->ts_ms);
	eng_put_be16(out + 56, m->tcp_port);
	eng_put_be16(out + 58, m->rudp_port);
	uint8_t msg[CTX_LEN + BEACON_SIGNED_LEN];
	signed_part(out, msg);
	crypto_sign_detached(out + BEACON_SIGNED_LEN, NULL, msg, sizeof(msg), id->sk);
}

enum beacon_verdict beacon_parse(const uint8_t *p, size_t len, const uint8_t network_tag[8],
				 struct beacon_msg *m)
{
	if (len < BEACON_LEN)
		return BEACON_TRUNCATED;
	if (len > BEACON_LEN)
		return BEACON_OVERSIZED;
	if (memcmp(p, BEACON_MAGIC, 4) != 0)
		return BEACON_BAD_MAGIC;
	if (p[4] != BEACON_VERSION)
		return BEACON_BAD_VERSION;
	if (p[5] < BEACON_ANNOUNCE || p[5] > BEACON_ANSWER)
		return BEACON_BAD_TYPE;
	if (memcmp(p + 8, network_tag, 8) != 0)
		return BEACON_OTHER_NETWORK;
	m->type = (enum beacon_type)p[5];
	memcpy(m->network_tag, p + 8, 8);
	memcpy(m->peer.bytes, p + 16, 32);
	m->ts_ms = eng_get_be64(p + 48);
	m->tcp_port = eng_get_be16(p + 56);
	m->rudp_port = eng_get_be16(p + 58);
	return BEACON_OK;
}

enum beacon_verdict beacon_verify(const uint8_t p[BEACON_LEN])
{
	uint8_t msg[CTX_LEN + BEACON_SIGNED_LEN];
	signed_part(p, msg);
	/* libsodium refuses small-order keys and non-canonical signatures here */
	if (crypto_sign_verify_detached(p + BEACON_SIGNED_LEN, msg, sizeof(msg), p + 16) != 0)
		return BEACON_BAD_SIGNATURE;
	return BEACON_OK;
}
