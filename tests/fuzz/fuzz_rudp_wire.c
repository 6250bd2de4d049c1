/*
 * fuzz_rudp_wire.c - the reliable-UDP packet and frame codec
 * (transports/rudp_wire.c). Input: one datagram. Its header is parsed
 * (and written back, and parsed again: same fields); then everything
 * after the header is walked as frames, each frame parsed by its own
 * parser and skipped by rudp_skip_frame (both must agree); ACK frames
 * are written back and parsed again (same ranges, descending, disjoint).
 */
#include "fuzz.h"

#include <string.h>

#include "transports/rudp_wire.h"

static void check_ack(const uint8_t *p, const uint8_t *end, const struct rudp_ack *a,
		      const uint8_t *next)
{
	FUZZ_CHECK(next > p && next <= end);
	FUZZ_CHECK(a->nranges >= 1 && a->nranges <= RUDP_MAX_ACK_RANGES);
	for (unsigned i = 0; i < a->nranges; i++) {
		FUZZ_CHECK(a->r[i].lo <= a->r[i].hi);
		if (i)
			FUZZ_CHECK(a->r[i].hi + 2 <= a->r[i - 1].lo); /* a gap of at least one */
	}
	uint8_t buf[1 + 8 * (4 + 2 * RUDP_MAX_ACK_RANGES)];
	struct rudp_ack b;
	if (a->r[0].hi > RUDP_VARINT_MAX)
		return; /* a value only an over-long encoding can carry: not writable */
	uint8_t *w = rudp_write_ack(buf, buf + sizeof(buf), a);
	FUZZ_CHECK(w);
	FUZZ_CHECK(rudp_parse_ack(buf, w, &b) == w);
	FUZZ_CHECK(b.nranges == a->nranges && (b.delay_us >> 3) == (a->delay_us >> 3));
	FUZZ_CHECK(!memcmp(b.r, a->r, sizeof(a->r[0]) * a->nranges));
}

static const uint8_t *one_frame(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *next = NULL;
	struct rudp_ack a;
	struct rudp_stream_frame s;
	struct rudp_close_frame c;
	uint64_t v;
	switch (*p) {
	case RUDP_FR_ACK:
		next = rudp_parse_ack(p, end, &a);
		if (next)
			check_ack(p, end, &a, next);
		break;
	case RUDP_FR_STREAM:
		next = rudp_parse_stream(p, end, &s);
		if (next)
			FUZZ_CHECK(s.data > p && s.data + s.len == next && next <= end &&
				   s.off + s.len <= RUDP_VARINT_MAX);
		break;
	case RUDP_FR_CLOSE:
		next = rudp_parse_close(p, end, &c);
		if (next)
			FUZZ_CHECK(c.reason + c.reason_len == next && c.reason_len <= RUDP_MAX_REASON);
		break;
	case RUDP_FR_MAX_DATA:
		next = rudp_get_varint(p + 1, end, &v);
		break;
	case RUDP_FR_PADDING:
	case RUDP_FR_PING:
		next = p + 1;
		break;
	}
	FUZZ_CHECK(rudp_skip_frame(p, end) == next);
	return next;
}

static void check_hdr(const uint8_t *p, size_t n, const struct rudp_hdr *h, const uint8_t *pl)
{
	FUZZ_CHECK(pl == p + h->hdr_len && h->hdr_len + RUDP_TAG_LEN <= n);
	FUZZ_CHECK(h->token_len <= RUDP_MAX_TOKEN);
	uint8_t buf[128] = { 0 }; /* gcc -O0 -Werror (coverage) wants it set */
	struct rudp_hdr w = *h, back;
	uint8_t *end = rudp_write_hdr(buf, buf + sizeof(buf) - RUDP_TAG_LEN, &w);
	FUZZ_CHECK(end);
	memset(end, 0, RUDP_TAG_LEN);
	FUZZ_CHECK(rudp_parse_hdr(buf, end + RUDP_TAG_LEN, &back) == end);
	FUZZ_CHECK(back.type == h->type && back.dcid == h->dcid && back.scid == h->scid &&
		   back.token_len == h->token_len && back.pn_trunc == h->pn_trunc);
	FUZZ_CHECK(!h->token_len || !memcmp(back.token, h->token, h->token_len));
}

void fuzz_rudp_wire(const uint8_t *data, size_t size)
{
	uint64_t dcid;
	struct rudp_hdr h;
	if (rudp_peek_dcid(data, size, &dcid))
		FUZZ_CHECK(size >= 1 + RUDP_CID_LEN);
	const uint8_t *end = data + size, *p = rudp_parse_hdr(data, end, &h);
	if (p) {
		check_hdr(data, size, &h, p);
		FUZZ_CHECK(dcid == h.dcid);
	} else {
		p = data; /* walk the whole datagram as frames: more of the frame parsers */
	}
	while (p && p < end)
		p = one_frame(p, end);
	if (size >= 12) {
		uint64_t largest;
		memcpy(&largest, data, 8);
		largest &= (1ull << 62) - 1;
		uint32_t trunc = eng_get_be32(data + 8);
		uint64_t pn = rudp_decode_pn(largest, trunc);
		FUZZ_CHECK((uint32_t)pn == trunc);
		uint64_t expected = largest + 1;
		uint64_t dist = pn > expected ? pn - expected : expected - pn;
		/* RFC 9000 A.3: the nearest candidate, unless at the ends of the number space */
		FUZZ_CHECK(dist <= (1ull << 31) || expected < (1ull << 32) ||
			   expected > (1ull << 62) - (1ull << 32));
	}
}
