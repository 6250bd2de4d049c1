/*
 * test_stun.c - the STUN codec (p2p/stun.c): the RFC 5769 test vectors
 * (request, IPv4 and IPv6 responses: attributes, FINGERPRINT, XOR
 * decoding), our own encodings read back, error 420, old clients, and
 * malformed input: truncation, wrong lengths, bad padding, wrong
 * FINGERPRINT, huge attribute counts, random bytes.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2p/stun.h"
#include "addrs.h"

/* "00 01 ..." -> bytes; returns the count. */
static size_t hex(const char *s, uint8_t *out)
{
	size_t n = 0;
	unsigned v;
	int used;
	while (sscanf(s, " %2x%n", &v, &used) == 1) {
		out[n++] = (uint8_t)v;
		s += used;
	}
	return n;
}

/* RFC 5769 2.1: SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT */
static const char *rfc_request =
	"00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
	"80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
	"00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36"
	"00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
	"00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
	"80 28 00 04 e5 7a 3b cf";
/* RFC 5769 2.2: XOR-MAPPED-ADDRESS 192.0.2.1:32853 */
static const char *rfc_v4 =
	"01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
	"80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
	"00 20 00 08 00 01 a1 47 e1 12 a6 43"
	"00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7"
	"80 28 00 04 c0 7d 4c 96";
/* RFC 5769 2.3: XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853 */
static const char *rfc_v6 =
	"01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
	"80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
	"00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"
	"00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41"
	"80 28 00 04 c8 fb 0b 4c";

static const uint8_t rfc_txid[12] = { 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
				      0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae };

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	size_t n = a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	return a->ss_family == b->ss_family && !memcmp(a, b, n);
}

Test(stun, rfc5769_request_parses_with_its_fingerprint)
{
	uint8_t b[256];
	size_t n = hex(rfc_request, b);
	cr_assert(eq(sz, n, 108));
	struct stun_msg m;
	const char *why;
	cr_assert(eq(int, stun_parse(b, n, &m, &why), 0), "%s", why);
	cr_assert(eq(u16, m.type, STUN_BINDING_REQUEST));
	cr_assert(m.has_cookie);
	cr_assert(m.has_fingerprint);
	cr_assert(eq(int, memcmp(m.txid, rfc_txid, 12), 0));
	cr_assert(eq(u32, m.nattrs, 6));
	/* PRIORITY, USERNAME and MESSAGE-INTEGRITY are understood; the rest optional */
	cr_assert(eq(u32, m.nunknown, 0));
}

Test(stun, rfc5769_ipv4_response_gives_its_address)
{
	uint8_t b[256];
	size_t n = hex(rfc_v4, b);
	struct stun_msg m;
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), 0));
	cr_assert(eq(u16, m.type, STUN_BINDING_SUCCESS));
	cr_assert(m.has_fingerprint);
	struct sockaddr_storage want = v4("192.0.2.1", 32853);
	cr_assert(same_addr(&m.xor_mapped, &want));
}

Test(stun, rfc5769_ipv6_response_gives_its_address)
{
	uint8_t b[256];
	size_t n = hex(rfc_v6, b);
	struct stun_msg m;
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), 0));
	cr_assert(m.has_fingerprint);
	struct sockaddr_storage want = v6("2001:db8:1234:5678:11:2233:4455:6677", 32853);
	cr_assert(same_addr(&m.xor_mapped, &want));
}

Test(stun, a_flipped_bit_breaks_the_fingerprint)
{
	const char *vec[] = { rfc_request, rfc_v4, rfc_v6 };
	for (int v = 0; v < 3; v++) {
		uint8_t b[256];
		size_t n = hex(vec[v], b);
		for (size_t i = STUN_HDR_LEN; i < n - 8; i += 7) {
			b[i] ^= 0x10;
			struct stun_msg m;
			cr_assert(eq(int, stun_parse(b, n, &m, NULL), -EBADMSG), "vector %d byte %zu", v, i);
			b[i] ^= 0x10;
		}
	}
}

Test(stun, crc32_matches_the_known_value)
{
	/* the CRC-32 check value of "123456789" */
	cr_assert(eq(u32, stun_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u));
}

Test(stun, request_and_success_round_trip_v4_and_v6)
{
	uint8_t txid[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	struct sockaddr_storage srcs[2] = { v4("203.0.113.7", 40001), v6("2001:db8::7", 5) };
	for (int fp = 0; fp < 2; fp++) {
		for (int s = 0; s < 2; s++) {
			uint8_t req[64], resp[128];
			size_t rl = stun_encode_request(req, sizeof(req), txid, fp);
			cr_assert(eq(sz, rl, fp ? 28 : 20));
			struct stun_msg r, a;
			cr_assert(eq(int, stun_parse(req, rl, &r, NULL), 0));
			cr_assert(eq(int, r.has_fingerprint, fp));
			size_t al = stun_encode_success(resp, sizeof(resp), &r, &srcs[s]);
			cr_assert(gt(sz, al, 0));
			cr_assert(le(sz, al, 3 * 20), "answer %zu bytes to a 20-byte request", al);
			cr_assert(eq(int, stun_parse(resp, al, &a, NULL), 0));
			cr_assert(eq(u16, a.type, STUN_BINDING_SUCCESS));
			cr_assert(eq(int, memcmp(a.txid, txid, 12), 0));
			cr_assert(same_addr(&a.xor_mapped, &srcs[s]));
			cr_assert(eq(int, a.has_fingerprint, fp));
		}
	}
}

Test(stun, old_clients_without_the_cookie_get_mapped_address)
{
	uint8_t req[20] = { 0x00, 0x01, 0x00, 0x00 };
	for (int i = 4; i < 20; i++)
		req[i] = (uint8_t)(0xA0 + i);
	struct stun_msg r, a;
	cr_assert(eq(int, stun_parse(req, 20, &r, NULL), 0));
	cr_assert(not(r.has_cookie));
	struct sockaddr_storage src = v4("198.51.100.9", 1234);
	uint8_t resp[128];
	size_t al = stun_encode_success(resp, sizeof(resp), &r, &src);
	cr_assert(eq(int, stun_parse(resp, al, &a, NULL), 0));
	cr_assert(eq(int, memcmp(resp + 4, req + 4, 16), 0), "the 16-byte transaction id echoed");
	cr_assert(same_addr(&a.mapped, &src));
	cr_assert(eq(int, a.xor_mapped.ss_family, 0));
}

/* A request carrying the given attribute (type, 4-byte value), with or without FINGERPRINT. */
static size_t request_with(uint8_t *b, uint16_t type, bool fp)
{
	uint8_t txid[12] = { 0 };
	size_t n = stun_encode_request(b, 128, txid, false);
	b[n] = (uint8_t)(type >> 8);
	b[n + 1] = (uint8_t)type;
	b[n + 2] = 0;
	b[n + 3] = 4;
	memset(b + n + 4, 0, 4);
	n += 8;
	b[2] = 0;
	b[3] = (uint8_t)(n - 20);
	if (fp) {
		b[3] = (uint8_t)(n + 8 - 20);
		uint32_t crc = stun_crc32(b, n) ^ STUN_FINGERPRINT_XOR;
		uint8_t f[8] = { 0x80, 0x28, 0, 4, (uint8_t)(crc >> 24), (uint8_t)(crc >> 16),
				 (uint8_t)(crc >> 8), (uint8_t)crc };
		memcpy(b + n, f, 8);
		n += 8;
	}
	return n;
}

Test(stun, unknown_required_attribute_gets_420_with_its_type)
{
	uint8_t b[128], resp[256];
	size_t n = request_with(b, STUN_ATTR_CHANGE_REQUEST, true);
	struct stun_msg r, a;
	cr_assert(eq(int, stun_parse(b, n, &r, NULL), 0));
	cr_assert(eq(u32, r.nunknown, 1));
	cr_assert(eq(u16, r.unknown[0], STUN_ATTR_CHANGE_REQUEST));
	size_t al = stun_encode_unknown(resp, sizeof(resp), &r);
	cr_assert(gt(sz, al, 0));
	cr_assert(eq(int, stun_parse(resp, al, &a, NULL), 0));
	cr_assert(eq(u16, a.type, STUN_BINDING_ERROR));
	cr_assert(eq(u16, a.error_code, 420));
	cr_assert(a.has_fingerprint);
	/* UNKNOWN-ATTRIBUTES follows ERROR-CODE ("Unknown Attribute": 4 + 17, padded to 24) */
	cr_assert(eq(u16, (uint16_t)(resp[20 + 28] << 8 | resp[20 + 29]), STUN_ATTR_UNKNOWN_ATTRIBUTES));
	cr_assert(eq(u16, (uint16_t)(resp[20 + 32] << 8 | resp[20 + 33]), STUN_ATTR_CHANGE_REQUEST));
}

Test(stun, unknown_optional_attribute_is_ignored)
{
	uint8_t b[128];
	size_t n = request_with(b, 0x8123, false);
	struct stun_msg r;
	cr_assert(eq(int, stun_parse(b, n, &r, NULL), 0));
	cr_assert(eq(u32, r.nunknown, 0));
}

Test(stun, every_truncation_is_refused)
{
	uint8_t b[256];
	size_t n = hex(rfc_request, b);
	for (size_t len = 0; len < n; len++) {
		struct stun_msg m;
		const char *why = NULL;
		cr_assert(eq(int, stun_parse(b, len, &m, &why), -EBADMSG), "length %zu", len);
		cr_assert(not(eq(ptr, (void *)why, NULL)));
	}
}

Test(stun, length_field_must_match_the_datagram)
{
	uint8_t b[256];
	size_t n = hex(rfc_v4, b);
	struct stun_msg m;
	b[3] += 4; /* claims more than there is */
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), -EBADMSG));
	b[3] -= 8; /* claims less */
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), -EBADMSG));
	b[3] += 4;
	b[3] += 1; /* not a multiple of 4 */
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), -EBADMSG));
}

Test(stun, attribute_longer_than_the_message_is_refused)
{
	uint8_t b[128];
	size_t n = request_with(b, STUN_ATTR_PRIORITY, false);
	b[23] = 8; /* PRIORITY claims 8 bytes, 4 are there */
	struct stun_msg m;
	const char *why;
	cr_assert(eq(int, stun_parse(b, n, &m, &why), -EBADMSG));
	cr_assert(eq(str, (char *)why, "truncated attribute"));
	b[22] = 0xff; /* 65k */
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), -EBADMSG));
}

Test(stun, wrongly_sized_addresses_are_refused)
{
	uint8_t b[256];
	size_t n = hex(rfc_v4, b);
	/* drop FINGERPRINT so the edits are judged on their own */
	n -= 8;
	b[3] = (uint8_t)(n - 20);
	struct stun_msg m;
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), 0));
	b[20 + 16 + 5] = 3; /* XOR-MAPPED-ADDRESS family 3 */
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), -EBADMSG));
	b[20 + 16 + 5] = 2; /* family IPv6 with an IPv4-sized value */
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), -EBADMSG));
}

Test(stun, fingerprint_must_be_last)
{
	uint8_t b[128];
	size_t n = request_with(b, STUN_ATTR_PRIORITY, true);
	/* append another attribute after FINGERPRINT */
	uint8_t extra[8] = { 0x80, 0x22, 0, 4, 'a', 'b', 'c', 'd' };
	memcpy(b + n, extra, 8);
	n += 8;
	b[3] = (uint8_t)(n - 20);
	struct stun_msg m;
	cr_assert(eq(int, stun_parse(b, n, &m, NULL), -EBADMSG));
}

Test(stun, huge_attribute_counts_are_refused_after_the_cap)
{
	/* 300 empty SOFTWARE attributes: each 4 bytes, all well formed */
	uint8_t b[STUN_MAX_LEN];
	uint8_t txid[12] = { 0 };
	size_t n = stun_encode_request(b, sizeof(b), txid, false);
	while (n + 4 <= 1200) {
		uint8_t a[4] = { 0x80, 0x22, 0, 0 };
		memcpy(b + n, a, 4);
		n += 4;
	}
	b[2] = (uint8_t)((n - 20) >> 8);
	b[3] = (uint8_t)(n - 20);
	struct stun_msg m;
	const char *why;
	cr_assert(eq(int, stun_parse(b, n, &m, &why), -EBADMSG));
	cr_assert(eq(str, (char *)why, "too many attributes"));
	cr_assert(eq(u32, m.nattrs, STUN_MAX_ATTRS + 1), "stopped right after the cap");
}

Test(stun, oversized_datagram_is_refused)
{
	static uint8_t b[STUN_MAX_LEN + 4];
	memset(b, 0, sizeof(b));
	b[1] = 1;
	b[2] = (uint8_t)((sizeof(b) - 20) >> 8);
	b[3] = (uint8_t)(sizeof(b) - 20);
	struct stun_msg m;
	cr_assert(eq(int, stun_parse(b, sizeof(b), &m, NULL), -EBADMSG));
}

Test(stun, random_bytes_never_crash)
{
	uint8_t b[256];
	srand(7);
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(rand() % 256);
		for (size_t k = 0; k < n; k++)
			b[k] = (uint8_t)rand();
		if (n >= 4 && i % 2) { /* make half of them pass the cheap header test */
			b[0] &= 0x3f;
			n &= ~(size_t)3;
			b[2] = (uint8_t)((n - 20) >> 8);
			b[3] = (uint8_t)(n - 20);
		}
		struct stun_msg m;
		stun_parse(b, n, &m, NULL);
	}
}

Test(stun, encoders_refuse_small_buffers)
{
	uint8_t txid[12] = { 0 }, b[16];
	cr_assert(eq(sz, stun_encode_request(b, sizeof(b), txid, true), 0));
	struct stun_msg r = { .has_cookie = true };
	struct sockaddr_storage src = v4("203.0.113.1", 1);
	cr_assert(eq(sz, stun_encode_success(b, sizeof(b), &r, &src), 0));
	cr_assert(eq(sz, stun_encode_unknown(b, sizeof(b), &r), 0));
}
