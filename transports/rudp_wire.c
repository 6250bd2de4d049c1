/* rudp_wire.c - packet and frame codec (see rudp_wire.h, docs/PROTOCOL.md). */
#include "rudp_wire.h"

#include <string.h>

unsigned rudp_varint_len(uint64_t v)
{
	return v < 64 ? 1 : v < 16384 ? 2 : v < (1u << 30) ? 4 : 8;
}

uint8_t *rudp_put_varint(uint8_t *p, const uint8_t *end, uint64_t v)
{
	if (!p || v > RUDP_VARINT_MAX)
		return NULL;
	unsigned n = rudp_varint_len(v);
	if ((size_t)(end - p) < n)
		return NULL;
	static const uint8_t prefix[9] = { 0, 0x00, 0x40, 0, 0x80, 0, 0, 0, 0xc0 };
	for (unsigned i = n; i-- > 0; v >>= 8)
		p[i] = (uint8_t)v;
	p[0] |= prefix[n];
	return p + n;
}

const uint8_t *rudp_get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
	if (!p || p >= end)
		return NULL;
	unsigned n = 1u << (p[0] >> 6);
	if ((size_t)(end - p) < n)
		return NULL;
	uint64_t x = p[0] & 0x3f;
	for (unsigned i = 1; i < n; i++)
		x = x << 8 | p[i];
	*v = x;
	return p + n;
}

void rudp_put_cid(uint8_t *p, uint64_t cid)
{
	for (int i = 7; i >= 0; i--, cid >>= 8)
		p[i] = (uint8_t)cid;
}

uint64_t rudp_get_cid(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

uint8_t *rudp_write_hdr(uint8_t *p, const uint8_t *end, struct rudp_hdr *h)
{
	uint8_t *start = p;
	bool lng = h->type & 0x80;
	size_t need = 1 + RUDP_CID_LEN + (lng ? 4 + RUDP_CID_LEN : 0) + RUDP_PN_LEN;
	if ((size_t)(end - p) < need)
		return NULL;
	*p++ = h->type;
	if (lng) {
		eng_put_be32(p, RUDP_VERSION);
		p += 4;
	}
	rudp_put_cid(p, h->dcid);
	p += RUDP_CID_LEN;
	if (lng) {
		rudp_put_cid(p, h->scid);
		p += RUDP_CID_LEN;
		p = rudp_put_varint(p, end, h->token_len);
		if (!p || (size_t)(end - p) < h->token_len + RUDP_PN_LEN)
			return NULL;
		if (h->token_len)
			memcpy(p, h->token, h->token_len);
		p += h->token_len;
	}
	if (h->type != RUDP_PKT_RETRY) {
		eng_put_be32(p, h->pn_trunc);
		p += RUDP_PN_LEN;
	}
	h->hdr_len = (uint32_t)(p - start);
	return p;
}

const uint8_t *rudp_parse_hdr(const uint8_t *p, const uint8_t *end, struct rudp_hdr *h)
{
	const uint8_t *start = p;
	memset(h, 0, sizeof(*h));
	if (p >= end)
		return NULL;
	h->type = *p++;
	bool lng = h->type & 0x80;
	if (h->type != RUDP_PKT_SHORT && h->type != RUDP_PKT_INITIAL && h->type != RUDP_PKT_RETRY)
		return NULL;
	if ((size_t)(end - p) < (lng ? 4 + 2 * RUDP_CID_LEN : RUDP_CID_LEN))
		return NULL;
	if (lng) {
		if (eng_get_be32(p) != RUDP_VERSION)
			return NULL;
		p += 4;
	}
	h->dcid = rudp_get_cid(p);
	p += RUDP_CID_LEN;
	if (lng) {
		h->scid = rudp_get_cid(p);
		p += RUDP_CID_LEN;
		uint64_t tl;
		p = rudp_get_varint(p, end, &tl);
		if (!p || tl > RUDP_MAX_TOKEN || (uint64_t)(end - p) < tl)
			return NULL;
		h->token = tl ? p : NULL;
		h->token_len = (uint32_t)tl;
		p += tl;
	}
	if (h->type != RUDP_PKT_RETRY) {
		if ((size_t)(end - p) < RUDP_PN_LEN)
			return NULL;
		h->pn_trunc = eng_get_be32(p);
		p += RUDP_PN_LEN;
	}
	if ((size_t)(end - p) < RUDP_TAG_LEN)
		return NULL;
	h->hdr_len = (uint32_t)(p - start);
	return p;
}

bool rudp_peek_dcid(const uint8_t *p, size_t len, uint64_t *dcid)
{
	size_t off = (p[0] & 0x80) ? 5 : 1;
	if (len < off + RUDP_CID_LEN)
		return false;
	*dcid = rudp_get_cid(p + off);
	return true;
}

uint64_t rudp_decode_pn(uint64_t largest_rx, uint32_t trunc)
{
	const uint64_t win = 1ull << 32, hwin = win / 2, mask = win - 1;
	uint64_t expected = largest_rx + 1;
	uint64_t cand = (expected & ~mask) | trunc;
	if (cand + hwin <= expected && cand < (1ull << 62) - win)
		return cand + win;
	if (cand > expected + hwin && cand >= win)
		return cand - win;
	return cand;
}

uint8_t *rudp_write_ack(uint8_t *p, const uint8_t *end, const struct rudp_ack *a)
{
	if (!p || a->nranges == 0 || p >= end)
		return NULL;
	*p++ = RUDP_FR_ACK;
	p = rudp_put_varint(p, end, a->r[0].hi);
	p = rudp_put_varint(p, end, a->delay_us >> 3);
	p = rudp_put_varint(p, end, a->nranges - 1);
	p = rudp_put_varint(p, end, a->r[0].hi - a->r[0].lo);
	for (unsigned i = 1; i < a->nranges && p; i++) {
		/* gap counts the missing numbers minus one, as in QUIC */
		p = rudp_put_varint(p, end, a->r[i - 1].lo - a->r[i].hi - 2);
		p = rudp_put_varint(p, end, a->r[i].hi - a->r[i].lo);
	}
	return p;
}

const uint8_t *rudp_parse_ack(const uint8_t *p, const uint8_t *end, struct rudp_ack *a)
{
	uint64_t largest, delay, count, first;
	if (!p || p >= end || *p++ != RUDP_FR_ACK)
		return NULL;
	p = rudp_get_varint(p, end, &largest);
	p = rudp_get_varint(p, end, &delay);
	p = rudp_get_varint(p, end, &count);
	p = rudp_get_varint(p, end, &first);
	if (!p || first > largest || count >= RUDP_MAX_ACK_RANGES)
		return NULL;
	a->delay_us = delay << 3;
	a->nranges = (unsigned)count + 1;
	a->r[0].hi = largest;
	a->r[0].lo = largest - first;
	for (unsigned i = 1; i < a->nranges; i++) {
		uint64_t gap, len;
		p = rudp_get_varint(p, end, &gap);
		p = rudp_get_varint(p, end, &len);
		uint64_t below = a->r[i - 1].lo;
		if (!p || below < gap + 2 || below - gap - 2 < len)
			return NULL;
		a->r[i].hi = below - gap - 2;
		a->r[i].lo = a->r[i].hi - len;
	}
	return p;
}

uint8_t *rudp_write_stream_hdr(uint8_t *p, const uint8_t *end, uint64_t off, uint32_t len)
{
	if (!p || p >= end)
		return NULL;
	*p++ = RUDP_FR_STREAM;
	p = rudp_put_varint(p, end, off);
	return rudp_put_varint(p, end, len);
}

const uint8_t *rudp_parse_stream(const uint8_t *p, const uint8_t *end, struct rudp_stream_frame *f)
{
	uint64_t off, len;
	if (!p || p >= end || *p++ != RUDP_FR_STREAM)
		return NULL;
	p = rudp_get_varint(p, end, &off);
	p = rudp_get_varint(p, end, &len);
	if (!p || (uint64_t)(end - p) < len || off + len > RUDP_VARINT_MAX)
		return NULL;
	f->off = off;
	f->len = (uint32_t)len;
	f->data = p;
	return p + len;
}

uint8_t *rudp_write_close(uint8_t *p, const uint8_t *end, uint64_t code, const char *reason)
{
	size_t rl = reason ? strnlen(reason, RUDP_MAX_REASON) : 0;
	if (!p || p >= end)
		return NULL;
	*p++ = RUDP_FR_CLOSE;
	p = rudp_put_varint(p, end, code);
	p = rudp_put_varint(p, end, rl);
	if (!p || (size_t)(end - p) < rl)
		return NULL;
	memcpy(p, reason, rl);
	return p + rl;
}

const uint8_t *rudp_parse_close(const uint8_t *p, const uint8_t *end, struct rudp_close_frame *f)
{
	uint64_t code, rl;
	if (!p || p >= end || *p++ != RUDP_FR_CLOSE)
		return NULL;
	p = rudp_get_varint(p, end, &code);
	p = rudp_get_varint(p, end, &rl);
	if (!p || rl > RUDP_MAX_REASON || (uint64_t)(end - p) < rl)
		return NULL;
	f->code = code;
	f->reason_len = (uint32_t)rl;
	f->reason = p;
	return p + rl;
}

uint8_t *rudp_write_max_data(uint8_t *p, const uint8_t *end, uint64_t max)
{
	if (!p || p >= end)
		return NULL;
	*p++ = RUDP_FR_MAX_DATA;
	return rudp_put_varint(p, end, max);
}

const uint8_t *rudp_skip_frame(const uint8_t *p, const uint8_t *end)
{
	uint64_t v;
	struct rudp_ack a;
	struct rudp_stream_frame s;
	struct rudp_close_frame c;
	if (!p || p >= end)
		return NULL;
	switch (*p) {
	case RUDP_FR_PADDING:
	case RUDP_FR_PING:
		return p + 1;
	case RUDP_FR_ACK:
		return rudp_parse_ack(p, end, &a);
	case RUDP_FR_STREAM:
		return rudp_parse_stream(p, end, &s);
	case RUDP_FR_MAX_DATA:
		return rudp_get_varint(p + 1, end, &v);
	case RUDP_FR_CLOSE:
		return rudp_parse_close(p, end, &c);
	default:
		return NULL;
	}
}
