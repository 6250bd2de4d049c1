/*
 * test_rudp_wire.c - the reliable-UDP codec: varints, headers, packet
 * number decoding, ACK ranges (edge cases), stream and close frames, and
 * that every truncation of a valid frame is refused rather than misread.
 * Also the range sets behind ACKs, the stream's send/receive sides, and
 * packet protection (number, header and key bound; key epochs) and retry
 * tokens.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "transports/rudp_crypto.h"
#include "transports/rudp_ranges.h"
#include "transports/rudp_stream.h"
#include "transports/rudp_wire.h"

Test(rudp_wire, varints_round_trip_at_every_length_boundary)
{
	static const uint64_t v[] = { 0, 63, 64, 16383, 16384, (1u << 30) - 1, 1u << 30,
				      RUDP_VARINT_MAX };
	static const unsigned len[] = { 1, 1, 2, 2, 4, 4, 8, 8 };
	for (unsigned i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint8_t buf[8];
		uint8_t *e = rudp_put_varint(buf, buf + 8, v[i]);
		cr_assert(eq(sz, (size_t)(e - buf), len[i]));
		uint64_t got;
		cr_assert(eq(ptr, (void *)rudp_get_varint(buf, e, &got), (void *)e));
		cr_assert(eq(u64, got, v[i]));
		cr_assert(eq(ptr, (void *)rudp_get_varint(buf, e - 1, &got), NULL), "truncated");
	}
	uint8_t buf[8];
	cr_assert(eq(ptr, rudp_put_varint(buf, buf + 8, RUDP_VARINT_MAX + 1), NULL));
	cr_assert(eq(ptr, rudp_put_varint(buf, buf + 1, 64), NULL), "no room");
}

Test(rudp_wire, long_and_short_headers_round_trip)
{
	uint8_t buf[256], tok[20];
	memset(tok, 7, sizeof(tok));
	struct rudp_hdr h = { .type = RUDP_PKT_INITIAL, .dcid = 0x0102030405060708ull,
			      .scid = 0xa1a2a3a4a5a6a7a8ull, .token = tok, .token_len = 20,
			      .pn_trunc = 0xdeadbeef };
	uint8_t *p = rudp_write_hdr(buf, buf + sizeof(buf), &h);
	cr_assert(not(eq(ptr, p, NULL)));
	memset(p, 0, RUDP_TAG_LEN);
	struct rudp_hdr g;
	cr_assert(eq(ptr, (void *)rudp_parse_hdr(buf, p + RUDP_TAG_LEN, &g), (void *)p));
	cr_assert(eq(u64, g.dcid, h.dcid));
	cr_assert(eq(u64, g.scid, h.scid));
	cr_assert(eq(u32, g.token_len, 20));
	cr_assert(zero(int, memcmp(g.token, tok, 20)));
	cr_assert(eq(u32, g.pn_trunc, 0xdeadbeef));
	cr_assert(eq(u32, g.hdr_len, (uint32_t)(p - buf)));
	uint64_t d;
	cr_assert(rudp_peek_dcid(buf, (size_t)(p - buf), &d));
	cr_assert(eq(u64, d, h.dcid));
	/* no room for the tag: refused */
	cr_assert(eq(ptr, (void *)rudp_parse_hdr(buf, p + RUDP_TAG_LEN - 1, &g), NULL));

	struct rudp_hdr s = { .type = RUDP_PKT_SHORT, .dcid = 42, .pn_trunc = 9 };
	p = rudp_write_hdr(buf, buf + sizeof(buf), &s);
	cr_assert(eq(u32, s.hdr_len, 1 + RUDP_CID_LEN + RUDP_PN_LEN));
	cr_assert(not(eq(ptr, (void *)rudp_parse_hdr(buf, p + RUDP_TAG_LEN, &g), NULL)));
	cr_assert(eq(u64, g.dcid, 42));
}

Test(rudp_wire, bad_headers_are_refused)
{
	uint8_t buf[64];
	struct rudp_hdr g;
	memset(buf, 0, sizeof(buf));
	buf[0] = 0x77;
	cr_assert(eq(ptr, (void *)rudp_parse_hdr(buf, buf + 64, &g), NULL), "unknown type");
	struct rudp_hdr h = { .type = RUDP_PKT_INITIAL, .dcid = 1, .scid = 2 };
	rudp_write_hdr(buf, buf + 64, &h);
	buf[4] ^= 1;
	cr_assert(eq(ptr, (void *)rudp_parse_hdr(buf, buf + 64, &g), NULL), "wrong version");
	buf[4] ^= 1;
	buf[21] = 0x3f; /* token length 63 > what follows */
	cr_assert(eq(ptr, (void *)rudp_parse_hdr(buf, buf + 40, &g), NULL), "token past end");
	uint64_t d;
	cr_assert(rudp_peek_dcid(buf, 4 + RUDP_CID_LEN, &d) == false, "long header cut inside the DCID");
	buf[0] = RUDP_PKT_SHORT;
	cr_assert(rudp_peek_dcid(buf, RUDP_CID_LEN, &d) == false, "short header cut inside the DCID");
}

Test(rudp_wire, packet_numbers_decode_near_the_expected_one)
{
	/* RFC 9000 A.3's example: largest 0xa82f30ea, truncated 0x9b32 over 16 bits */
	cr_assert(eq(u64, rudp_decode_pn(0xa82f30ea, 0xa82f9b32u), 0xa82f9b32ull));
	cr_assert(eq(u64, rudp_decode_pn(0, 5), 5));
	/* across the 32-bit wrap, both ways */
	uint64_t big = (1ull << 32) + 10;
	cr_assert(eq(u64, rudp_decode_pn(big - 20, 10), big));
	cr_assert(eq(u64, rudp_decode_pn(big, 0xfffffff0u), (1ull << 32) - 16));
}

static void ack_round_trip(const struct rudp_ack *a)
{
	uint8_t buf[1024];
	uint8_t *e = rudp_write_ack(buf, buf + sizeof(buf), a);
	cr_assert(not(eq(ptr, e, NULL)));
	struct rudp_ack g;
	cr_assert(eq(ptr, (void *)rudp_parse_ack(buf, e, &g), (void *)e));
	cr_assert(eq(u32, g.nranges, a->nranges));
	cr_assert(eq(u64, g.delay_us, a->delay_us & ~7ull));
	for (unsigned i = 0; i < a->nranges; i++) {
		cr_assert(eq(u64, g.r[i].lo, a->r[i].lo));
		cr_assert(eq(u64, g.r[i].hi, a->r[i].hi));
	}
	/* every truncation is refused */
	for (uint8_t *t = buf; t < e; t++)
		cr_assert(eq(ptr, (void *)rudp_parse_ack(buf, t, &g), NULL));
}

Test(rudp_wire, ack_ranges_round_trip_including_edges)
{
	struct rudp_ack a = { .delay_us = 1234, .nranges = 1, .r = { { 0, 0 } } };
	ack_round_trip(&a); /* just packet 0 */
	a = (struct rudp_ack){ .nranges = 3, .r = { { 100, 200 }, { 50, 98 }, { 0, 0 } } };
	ack_round_trip(&a); /* gaps of one number (gap field 0) down to packet 0 */
	a.nranges = RUDP_MAX_ACK_RANGES;
	for (unsigned i = 0; i < a.nranges; i++) {
		uint64_t hi = 1000000 - i * 3;
		a.r[i].hi = hi;
		a.r[i].lo = hi - 1;
	}
	ack_round_trip(&a); /* the most ranges a frame may carry */
	a = (struct rudp_ack){ .nranges = 1, .r = { { 0, RUDP_VARINT_MAX } } };
	ack_round_trip(&a); /* the whole number space */
}

Test(rudp_wire, ack_ranges_that_go_below_zero_are_refused)
{
	/* largest 5, first range 10: below zero */
	uint8_t bad1[] = { RUDP_FR_ACK, 5, 0, 0, 10 };
	struct rudp_ack g;
	cr_assert(eq(ptr, (void *)rudp_parse_ack(bad1, bad1 + sizeof(bad1), &g), NULL));
	/* largest 10, first 2 (8..10), gap 6 -> next hi would be 0, len 1 -> -1 */
	uint8_t bad2[] = { RUDP_FR_ACK, 10, 0, 1, 2, 6, 1 };
	cr_assert(eq(ptr, (void *)rudp_parse_ack(bad2, bad2 + sizeof(bad2), &g), NULL));
	/* gap too large */
	uint8_t bad3[] = { RUDP_FR_ACK, 10, 0, 1, 2, 7, 0 };
	cr_assert(eq(ptr, (void *)rudp_parse_ack(bad3, bad3 + sizeof(bad3), &g), NULL));
	/* too many ranges claimed */
	uint8_t bad4[] = { RUDP_FR_ACK, 10, 0, RUDP_MAX_ACK_RANGES, 0 };
	cr_assert(eq(ptr, (void *)rudp_parse_ack(bad4, bad4 + sizeof(bad4), &g), NULL));
	/* the same with a range exactly reaching 0 is fine */
	uint8_t ok[] = { RUDP_FR_ACK, 10, 0, 1, 2, 6, 0 };
	cr_assert(not(eq(ptr, (void *)rudp_parse_ack(ok, ok + sizeof(ok), &g), NULL)));
	cr_assert(eq(u64, g.r[1].lo, 0));
}

Test(rudp_wire, stream_close_and_max_data_frames_round_trip)
{
	uint8_t buf[256];
	uint8_t *p = rudp_write_stream_hdr(buf, buf + sizeof(buf), 123456789, 5);
	memcpy(p, "hello", 5);
	p += 5;
	p = rudp_write_close(p, buf + sizeof(buf), 104, "bye");
	p = rudp_write_max_data(p, buf + sizeof(buf), 1ull << 40);
	const uint8_t *q = buf;
	struct rudp_stream_frame f;
	q = rudp_parse_stream(q, p, &f);
	cr_assert(eq(u64, f.off, 123456789));
	cr_assert(eq(u32, f.len, 5));
	cr_assert(zero(int, memcmp(f.data, "hello", 5)));
	struct rudp_close_frame c;
	q = rudp_parse_close(q, p, &c);
	cr_assert(eq(u64, c.code, 104));
	cr_assert(eq(u32, c.reason_len, 3));
	q = rudp_skip_frame(q, p);
	cr_assert(eq(ptr, (void *)q, (void *)p));
	/* a stream frame claiming more bytes than the packet has */
	uint8_t *e = rudp_write_stream_hdr(buf, buf + sizeof(buf), 0, 100);
	cr_assert(eq(ptr, (void *)rudp_parse_stream(buf, e + 10, &f), NULL));
	uint8_t unknown = 0x3f;
	cr_assert(eq(ptr, (void *)rudp_skip_frame(&unknown, &unknown + 1), NULL));
}

Test(rudp_ranges, merge_split_cap_and_drop)
{
	struct rudp_ranges s;
	rudp_ranges_init(&s, 4);
	cr_assert(eq(int, rudp_ranges_add(&s, 10, 10), 1));
	cr_assert(eq(int, rudp_ranges_add(&s, 12, 12), 1));
	cr_assert(eq(u32, s.n, 2));
	cr_assert(eq(int, rudp_ranges_add(&s, 11, 11), 1), "fills the hole");
	cr_assert(eq(u32, s.n, 1));
	cr_assert(eq(int, rudp_ranges_add(&s, 10, 12), 0), "nothing new");
	for (uint64_t v = 20; v < 40; v += 2)
		rudp_ranges_add(&s, v, v);
	cr_assert(eq(u32, s.n, 4), "capped, the lowest forgotten");
	cr_assert(eq(u64, s.r[0].lo, 32));
	cr_assert(rudp_ranges_has(&s, 38));
	cr_assert(not(rudp_ranges_has(&s, 37)));
	rudp_ranges_add(&s, 0, 100);
	cr_assert(eq(u32, s.n, 1), "one range swallows all");
	rudp_ranges_drop_below(&s, 50);
	cr_assert(eq(u64, s.r[0].lo, 50));
	rudp_ranges_free(&s);
}

Test(rudp_stream, lost_ranges_go_again_and_acks_free_memory)
{
	struct rudp_sendbuf b;
	rudp_sendbuf_init(&b);
	uint8_t *data = malloc(300000);
	for (int i = 0; i < 300000; i++)
		data[i] = (uint8_t)(i * 7);
	cr_assert(zero(int, rudp_sendbuf_append(&b, data, 300000)));
	uint64_t off;
	uint32_t len;
	bool retx;
	uint8_t pkt[1000];
	cr_assert(rudp_sendbuf_next(&b, 1000, UINT64_MAX, &off, &len, &retx));
	cr_assert(eq(u64, off, 0));
	cr_assert(eq(u32, len, 1000));
	rudp_sendbuf_copy(&b, off, len, pkt);
	cr_assert(zero(int, memcmp(pkt, data, 1000)));
	cr_assert(rudp_sendbuf_next(&b, 1000, UINT64_MAX, &off, &len, &retx));
	cr_assert(eq(u64, off, 1000));
	rudp_sendbuf_on_lost(&b, 0, 1000);
	rudp_sendbuf_on_acked(&b, 1000, 1000);
	cr_assert(rudp_sendbuf_next(&b, 600, UINT64_MAX, &off, &len, &retx));
	cr_assert(retx && off == 0 && len == 600, "the lost range first");
	rudp_sendbuf_on_acked(&b, 0, 1000); /* acked meanwhile (a spurious loss) */
	cr_assert(rudp_sendbuf_next(&b, 600, UINT64_MAX, &off, &len, &retx));
	cr_assert(retx == false && off == 2000, "acked bytes are not sent again");
	cr_assert(eq(u64, b.acked, 2000));
	/* a limit (flow control) stops new bytes */
	cr_assert(not(rudp_sendbuf_next(&b, 600, 2600, &off, &len, &retx)));
	/* crossing a chunk boundary reads the right bytes */
	rudp_sendbuf_copy(&b, 65530, 20, pkt);
	cr_assert(zero(int, memcmp(pkt, data + 65530, 20)));
	rudp_sendbuf_on_acked(&b, 2000, 200000);
	cr_assert(eq(u64, b.chunk_base, 196608), "acknowledged chunks are freed");
	rudp_sendbuf_free(&b);
	free(data);
}

Test(rudp_stream, out_of_order_segments_wait_for_the_gap)
{
	struct rudp_recvbuf r;
	rudp_recvbuf_init(&r);
	cr_assert(zero(int, rudp_recvbuf_hold(&r, 20, (const uint8_t *)"cccc", 4)));
	cr_assert(zero(int, rudp_recvbuf_hold(&r, 10, (const uint8_t *)"bbbbbbbbbb", 10)));
	cr_assert(zero(int, rudp_recvbuf_hold(&r, 12, (const uint8_t *)"bb", 2)));
	uint32_t skip;
	cr_assert(eq(ptr, rudp_recvbuf_pop(&r, &skip), NULL), "gap 0..10 still open");
	r.next = 10;
	struct rudp_seg *s = rudp_recvbuf_pop(&r, &skip);
	cr_assert(s && s->off == 10 && skip == 0);
	r.next = 20;
	free(s);
	s = rudp_recvbuf_pop(&r, &skip); /* the duplicate at 12 is dropped on the way */
	cr_assert(s && s->off == 20);
	free(s);
	cr_assert(zero(u64, r.held));
	rudp_recvbuf_free(&r);
}

/* A peer repeating data above a gap (in new packets) must not grow what we hold. */
Test(rudp_stream, repeated_or_shifted_data_above_a_gap_is_held_once)
{
	struct rudp_recvbuf r;
	rudp_recvbuf_init(&r);
	uint8_t data[64];
	for (int i = 0; i < 64; i++)
		data[i] = (uint8_t)i;
	for (int i = 0; i < 1000; i++)
		cr_assert(zero(int, rudp_recvbuf_hold(&r, 100, data, 32)));
	for (int i = 0; i < 32; i++) /* each shifted by a byte: one new byte each */
		cr_assert(zero(int, rudp_recvbuf_hold(&r, 100 + (uint64_t)i, data + i, 32)));
	cr_assert(zero(int, rudp_recvbuf_hold(&r, 90, data, 64))); /* adds [90, 100) */
	cr_assert(eq(u64, r.held, 73), "each byte of [90, 163) held once");
	r.next = 90;
	uint64_t at = 90;
	uint32_t skip;
	struct rudp_seg *s;
	while ((s = rudp_recvbuf_pop(&r, &skip))) {
		cr_assert(eq(u64, s->off, at));
		for (uint32_t k = 0; k < s->len; k++) /* the first copy of every byte is kept */
			cr_assert(eq(u8, s->data[k], data[s->off + k < 100 ? s->off + k - 90 : s->off + k - 100]));
		at += s->len;
		r.next = at;
		free(s);
	}
	cr_assert(eq(u64, at, 163));
	cr_assert(zero(u64, r.held));
	rudp_recvbuf_free(&r);
}

Test(rudp_crypto, packets_open_only_with_their_number_header_and_key)
{
	uint8_t secret[32], other[32];
	memset(secret, 1, sizeof(secret));
	memset(other, 2, sizeof(other));
	struct rudp_aead tx, rx, wrong;
	cr_assert(zero(int, rudp_aead_init(&tx, true, true, secret)));
	cr_assert(zero(int, rudp_aead_init(&rx, true, false, secret)));
	cr_assert(zero(int, rudp_aead_init(&wrong, true, false, other)));
	/* across a key epoch: the last packet of epoch 0, the first of epoch 1, then epoch 0 again */
	uint64_t pns[] = { 5, (1ull << RUDP_EPOCH_SHIFT) - 1, 1ull << RUDP_EPOCH_SHIFT, 7 };
	for (unsigned i = 0; i < 4; i++) {
		uint8_t pkt[64 + RUDP_TAG_LEN];
		memset(pkt, 0xab, 13);        /* header */
		memcpy(pkt + 13, "payload bytes", 13);
		cr_assert(zero(int, rudp_aead_seal(&tx, pns[i], pkt, 13, 13)));
		cr_assert(not(zero(int, memcmp(pkt + 13, "payload bytes", 13))), "encrypted");
		uint8_t copy[sizeof(pkt)];
		memcpy(copy, pkt, sizeof(pkt));
		cr_assert(eq(int, rudp_aead_open(&rx, pns[i] + 1, copy, 13, 13 + RUDP_TAG_LEN),
			     -EBADMSG), "another packet number");
		memcpy(copy, pkt, sizeof(pkt));
		copy[3] ^= 1;
		cr_assert(eq(int, rudp_aead_open(&rx, pns[i], copy, 13, 13 + RUDP_TAG_LEN), -EBADMSG),
			  "a changed header");
		memcpy(copy, pkt, sizeof(pkt));
		cr_assert(eq(int, rudp_aead_open(&wrong, pns[i], copy, 13, 13 + RUDP_TAG_LEN),
			     -EBADMSG), "another key");
		cr_assert(zero(int, rudp_aead_open(&rx, pns[i], pkt, 13, 13 + RUDP_TAG_LEN)));
		cr_assert(zero(int, memcmp(pkt + 13, "payload bytes", 13)));
	}
	rudp_aead_free(&tx);
	rudp_aead_free(&rx);
	rudp_aead_free(&wrong);
}

Test(rudp_crypto, retry_tokens_bind_address_id_and_time)
{
	uint8_t secret[32];
	memset(secret, 9, sizeof(secret));
	struct sockaddr_storage a = { 0 }, b = { 0 };
	((struct sockaddr_in *)&a)->sin_family = AF_INET;
	((struct sockaddr_in *)&a)->sin_port = htons(4000);
	b = a;
	((struct sockaddr_in *)&b)->sin_port = htons(4001);
	uint8_t tok[RUDP_TOKEN_LEN];
	rudp_token_make(secret, &a, 77, 1000, tok);
	cr_assert(rudp_token_check(secret, &a, 77, 1005, tok, sizeof(tok)));
	cr_assert(rudp_token_check(secret, &b, 77, 1005, tok, sizeof(tok)) == false, "other port");
	cr_assert(rudp_token_check(secret, &a, 78, 1005, tok, sizeof(tok)) == false, "other id");
	cr_assert(rudp_token_check(secret, &a, 77, 1000 + RUDP_TOKEN_LIFETIME_S + 1, tok,
				   sizeof(tok)) == false, "expired");
	cr_assert(rudp_token_check(secret, &a, 77, 1005, tok, sizeof(tok) - 1) == false);
}
