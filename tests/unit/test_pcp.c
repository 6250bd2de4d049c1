/*
 * test_pcp.c - the PCP MAP codec (p2p/nat/pcp.c): a request's bytes laid
 * out as RFC 6887 7.1 and 11.1 say; a server's answer (built here byte by
 * byte from the RFC's layout) read back; error results; a NAT-PMP-only
 * server's version-0 answer; and malformed answers: every truncation,
 * lengths not a multiple of 4, over 1100 bytes, a request echoed back,
 * other opcodes and versions, bad options, random bytes. Also the
 * reserved-address test behind "double NAT" (p2p/nat/portmap.c).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "p2p/nat/pcp.h"
#include "p2p/nat/portmap.h"

static const uint8_t client[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 1, 10 };

static struct pcp_map sample_map(void)
{
	struct pcp_map m = { .protocol = IPPROTO_TCP, .internal_port = 4000,
			     .external_port = 4000 };
	for (unsigned i = 0; i < PCP_NONCE_LEN; i++)
		m.nonce[i] = (uint8_t)(0xa0 + i);
	return m;
}

/* A success answer as a server writes it (7.2, 11.1), 60 bytes at out. */
static size_t answer(uint8_t *out, uint8_t result, uint32_t lifetime, uint16_t ext_port)
{
	struct pcp_map m = sample_map();
	memset(out, 0, 60);
	out[0] = 2;
	out[1] = 0x81;
	out[3] = result;
	out[4] = (uint8_t)(lifetime >> 24);
	out[5] = (uint8_t)(lifetime >> 16);
	out[6] = (uint8_t)(lifetime >> 8);
	out[7] = (uint8_t)lifetime;
	out[11] = 42; /* epoch */
	memcpy(out + 24, m.nonce, 12);
	out[36] = IPPROTO_TCP;
	out[40] = 4000 >> 8;
	out[41] = 4000 & 0xff;
	out[42] = (uint8_t)(ext_port >> 8);
	out[43] = (uint8_t)ext_port;
	out[54] = out[55] = 0xff;
	out[56] = 203;
	out[57] = 0;
	out[58] = 113;
	out[59] = 101;
	return 60;
}

Test(pcp, request_layout_follows_rfc_6887)
{
	struct pcp_map m = sample_map();
	uint8_t b[PCP_MAP_MSG_LEN];
	cr_assert(eq(sz, pcp_encode_map(b, sizeof(b), 3600, client, &m), 60));
	cr_assert(eq(u8, b[0], 2));                 /* version */
	cr_assert(eq(u8, b[1], 1));                 /* R = 0, opcode MAP */
	cr_assert(eq(u8, b[2] | b[3], 0));          /* reserved */
	/* Criterion's all() leaks its node (valgrind): byte runs are compared instead */
	static const uint8_t lifetime[4] = { 0, 0, 0x0e, 0x10 }, port4000[2] = { 0x0f, 0xa0 };
	cr_assert(eq(int, memcmp(b + 4, lifetime, 4), 0), "lifetime 3600");
	cr_assert(eq(int, memcmp(b + 8, client, 16), 0));
	cr_assert(eq(int, memcmp(b + 24, m.nonce, 12), 0));
	cr_assert(eq(u8, b[36], IPPROTO_TCP));
	cr_assert(eq(u8, b[37] | b[38] | b[39], 0));
	cr_assert(eq(int, memcmp(b + 40, port4000, 2), 0), "internal port 4000");
	cr_assert(eq(int, memcmp(b + 42, port4000, 2), 0), "suggested external port 4000");
	for (int i = 44; i < 60; i++)
		cr_assert(eq(u8, b[i], 0));         /* suggested external IP: any */
}

Test(pcp, request_needs_room)
{
	struct pcp_map m = sample_map();
	uint8_t b[59];
	cr_assert(eq(sz, pcp_encode_map(b, sizeof(b), 1, client, &m), 0));
}

Test(pcp, success_answer_parses)
{
	uint8_t b[64];
	size_t n = answer(b, PCP_SUCCESS, 7200, 40001);
	struct pcp_answer a;
	cr_assert(eq(int, pcp_parse_map(b, n, &a), 0));
	cr_assert(eq(u8, a.result, PCP_SUCCESS));
	cr_assert(eq(u32, a.lifetime, 7200));
	cr_assert(eq(u32, a.epoch, 42));
	struct pcp_map m = sample_map();
	cr_assert(eq(int, memcmp(a.map.nonce, m.nonce, 12), 0));
	cr_assert(eq(u8, a.map.protocol, IPPROTO_TCP));
	cr_assert(eq(u16, a.map.internal_port, 4000));
	cr_assert(eq(u16, a.map.external_port, 40001));
	cr_assert(eq(u8, a.map.external_ip[12], 203));
	cr_assert(eq(u8, a.map.external_ip[15], 101));
}

Test(pcp, error_result_is_reported_not_dropped)
{
	uint8_t b[64];
	size_t n = answer(b, PCP_NOT_AUTHORIZED, 30, 0);
	struct pcp_answer a;
	cr_assert(eq(int, pcp_parse_map(b, n, &a), 0));
	cr_assert(eq(u8, a.result, PCP_NOT_AUTHORIZED));
	cr_assert(eq(str, (char *)pcp_result_name(a.result), "not authorized"));
	cr_assert(eq(str, (char *)pcp_result_name(200), "unknown result"));
	/* an error may come with the header alone (the request did not parse) */
	cr_assert(eq(int, pcp_parse_map(b, 24, &a), 0));
	cr_assert(eq(u8, a.result, PCP_NOT_AUTHORIZED));
}

Test(pcp, natpmp_only_server_is_recognised)
{
	/* RFC 6886 3.5: version 0, opcode 128 + ours, result 1 (unsupported version) */
	uint8_t b[8] = { 0, 0x81, 0, 1, 0, 0, 0, 9 };
	struct pcp_answer a;
	cr_assert(eq(int, pcp_parse_map(b, sizeof(b), &a), -EPROTONOSUPPORT));
}

Test(pcp, every_truncation_is_rejected)
{
	uint8_t b[64];
	size_t n = answer(b, PCP_SUCCESS, 60, 4000);
	struct pcp_answer a;
	for (size_t len = 0; len < n; len++)
		cr_assert(eq(int, pcp_parse_map(b, len, &a), -EBADMSG), "length %zu", len);
}

Test(pcp, wrong_shapes_are_rejected)
{
	uint8_t b[1200];
	struct pcp_answer a;
	size_t n = answer(b, PCP_SUCCESS, 60, 4000);
	b[1] = 0x01; /* a request echoed back */
	cr_assert(eq(int, pcp_parse_map(b, n, &a), -EBADMSG));
	b[1] = 0x82; /* PEER, not MAP */
	cr_assert(eq(int, pcp_parse_map(b, n, &a), -EBADMSG));
	b[1] = 0x81;
	b[0] = 1; /* version 1 */
	cr_assert(eq(int, pcp_parse_map(b, n, &a), -EBADMSG));
	b[0] = 2;
	memset(b + n, 0, sizeof(b) - n);
	cr_assert(eq(int, pcp_parse_map(b, 1104, &a), -EBADMSG)); /* over 1100 */
}

Test(pcp, options_are_walked_and_checked)
{
	uint8_t b[96];
	struct pcp_answer a;
	size_t n = answer(b, PCP_SUCCESS, 60, 4000);
	/* one option: code 0x80, length 4, 4 bytes of data */
	uint8_t opt[8] = { 0x80, 0, 0, 4, 1, 2, 3, 4 };
	memcpy(b + n, opt, 8);
	cr_assert(eq(int, pcp_parse_map(b, n + 8, &a), 0));
	/* length 5: padded to 8, more than what is there */
	b[n + 3] = 5;
	cr_assert(eq(int, pcp_parse_map(b, n + 8, &a), -EBADMSG));
	/* a 2-byte length of 65535 */
	b[n + 2] = 0xff;
	b[n + 3] = 0xff;
	cr_assert(eq(int, pcp_parse_map(b, n + 8, &a), -EBADMSG));
	/* an option header cut short: length not a multiple of 4 is caught first */
	cr_assert(eq(int, pcp_parse_map(b, n + 2, &a), -EBADMSG));
}

Test(pcp, random_bytes_never_crash)
{
	uint8_t b[PCP_MAX_MSG];
	struct pcp_answer a;
	srand(7);
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)rand() % sizeof(b);
		for (size_t k = 0; k < len; k++)
			b[k] = (uint8_t)rand();
		if (i % 2 && len >= 2) { /* half of them look like a PCP answer */
			b[0] = 2;
			b[1] = 0x81;
			len &= ~(size_t)3;
		}
		int r = pcp_parse_map(b, len, &a);
		cr_assert(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT);
	}
}

static struct in_addr ip4(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a;
}

/* The address base + off (host order), for the edges of a reserved block. */
static struct in_addr ip4n(uint32_t base, int64_t off)
{
	struct in_addr a = { .s_addr = htonl((uint32_t)((int64_t)base + off)) };
	return a;
}

Test(pcp, reserved_addresses_mean_double_nat)
{
	/* the private blocks, by their edges: first and last inside, the neighbours outside
	 * (built from prefixes: no private address appears in the project's sources) */
	static const struct { uint32_t base; unsigned bits; } blocks[] = {
		{ 0x0a000000u, 8 },  /* 10/8 */
		{ 0xac100000u, 12 }, /* 172.16/12 */
		{ 0xc0a80000u, 16 }, /* 192.168/16 */
	};
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		uint32_t base = blocks[i].base, size = 1u << (32 - blocks[i].bits);
		cr_assert(pm_ipv4_is_reserved(ip4n(base, 0)), "block %zu first", i);
		cr_assert(pm_ipv4_is_reserved(ip4n(base, size - 1)), "block %zu last", i);
		cr_assert(pm_ipv4_is_reserved(ip4n(base, size / 2)), "block %zu middle", i);
		cr_assert(not(pm_ipv4_is_reserved(ip4n(base, -1))), "block %zu: the address below", i);
		cr_assert(not(pm_ipv4_is_reserved(ip4n(base, size))), "block %zu: the address above", i);
	}
	const char *reserved[] = { "100.64.0.1", "127.0.0.1", "169.254.1.1", "198.18.0.1",
				   "198.19.255.255", "203.0.113.101", "192.0.2.1",
				   "198.51.100.7", "0.1.2.3", "240.0.0.1" };
	const char *public_[] = { "1.1.1.1", "8.8.8.8", "100.128.0.1",
				  "198.20.0.1", "203.0.114.1" };
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		cr_assert(pm_ipv4_is_reserved(ip4(reserved[i])), "%s", reserved[i]);
	for (size_t i = 0; i < sizeof(public_) / sizeof(public_[0]); i++)
		cr_assert(not(pm_ipv4_is_reserved(ip4(public_[i]))), "%s", public_[i]);
}
