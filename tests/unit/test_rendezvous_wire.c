/*
 * test_rendezvous_wire.c - the rendezvous control messages and the relay
 * preamble (p2p/rendezvous_wire.c): every message round-trips, and
 * anything that does not parse exactly (truncated, trailing bytes, too
 * many endpoints, unknown transport or family, a reason longer than its
 * message) is refused.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "p2p/rendezvous_wire.h"

static struct crust_endpoint ep4(const char *ip, uint16_t port, enum crust_transport t)
{
	struct crust_endpoint e;
	memset(&e, 0, sizeof(e));
	struct sockaddr_in *a = (struct sockaddr_in *)&e.addr;
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	inet_pton(AF_INET, ip, &a->sin_addr);
	e.addrlen = sizeof(*a);
	e.transport = t;
	return e;
}

static struct crust_endpoint ep6(const char *ip, uint16_t port)
{
	struct crust_endpoint e;
	memset(&e, 0, sizeof(e));
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)&e.addr;
	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &a->sin6_addr);
	e.addrlen = sizeof(*a);
	e.transport = CRUST_TRANSPORT_TCP;
	return e;
}

static void same_eps(const struct rdv_msg *a, const struct rdv_msg *b)
{
	cr_assert(eq(u32, a->neps, b->neps));
	for (unsigned i = 0; i < a->neps; i++) {
		cr_assert(eq(int, a->eps[i].transport, b->eps[i].transport));
		cr_assert(eq(u32, a->eps[i].addrlen, b->eps[i].addrlen));
		cr_assert(eq(int, memcmp(&a->eps[i].addr, &b->eps[i].addr, a->eps[i].addrlen), 0));
	}
}

Test(rendezvous_wire, punch_round_trips)
{
	struct rdv_msg m = { .code = RDV_PUNCH, .req = 0x01020304, .start_in_ms = 300,
			     .flags = RDV_PUNCH_INITIATE | RDV_PUNCH_RELAY };
	memset(m.peer.bytes, 0xab, 32);
	memset(m.token, 0x5a, RDV_TOKEN_LEN);
	m.eps[0] = ep4("203.0.113.1", 4000, CRUST_TRANSPORT_TCP);
	m.eps[1] = ep4("198.18.1.10", 4000, CRUST_TRANSPORT_TCP);
	m.eps[2] = ep4("203.0.113.1", 4001, CRUST_TRANSPORT_RUDP);
	m.eps[3] = ep6("2001:db8::1", 9);
	m.neps = 4;
	uint8_t b[RDV_MSG_MAX];
	size_t n = rdv_encode(&m, b);
	struct rdv_msg d;
	cr_assert(eq(int, rdv_decode(b, n, &d), 0));
	cr_assert(eq(u32, d.req, m.req));
	cr_assert(eq(u32, d.start_in_ms, 300));
	cr_assert(eq(u8, d.flags, m.flags));
	cr_assert(eq(int, memcmp(d.peer.bytes, m.peer.bytes, 32), 0));
	cr_assert(eq(int, memcmp(d.token, m.token, RDV_TOKEN_LEN), 0));
	same_eps(&m, &d);
	/* every truncation and one trailing byte are refused */
	for (size_t len = 0; len < n; len++)
		cr_assert(eq(int, rdv_decode(b, len, &d), -EBADMSG), "length %zu", len);
	b[n] = 0;
	cr_assert(eq(int, rdv_decode(b, n + 1, &d), -EBADMSG));
}

Test(rendezvous_wire, register_registered_reach_refused_round_trip)
{
	struct rdv_msg r = { .code = RDV_REGISTER, .neps = 1 };
	r.eps[0] = ep4("198.18.1.10", 5000, CRUST_TRANSPORT_TCP);
	struct rdv_msg ok = { .code = RDV_REGISTERED, .ttl_ms = 60000, .neps = 3 };
	ok.eps[0] = ep4("203.0.113.1", 5000, CRUST_TRANSPORT_TCP);
	ok.eps[1] = ep4("203.0.113.10", 3478, CRUST_TRANSPORT_RUDP);
	ok.eps[2] = ep4("203.0.113.11", 3478, CRUST_TRANSPORT_RUDP);
	struct rdv_msg reach = { .code = RDV_REACH, .req = 9 };
	memset(reach.peer.bytes, 7, 32);
	struct rdv_msg no = { .code = RDV_REFUSED, .req = 9, .refusal = RDV_UNKNOWN_PEER };
	strcpy(no.reason, "unknown peer");
	const struct rdv_msg *all[] = { &r, &ok, &reach, &no };
	for (int i = 0; i < 4; i++) {
		uint8_t b[RDV_MSG_MAX];
		size_t n = rdv_encode(all[i], b);
		struct rdv_msg d;
		cr_assert(eq(int, rdv_decode(b, n, &d), 0), "message %d", i);
		cr_assert(eq(int, d.code, all[i]->code));
		cr_assert(eq(u32, d.req, all[i]->req));
		cr_assert(eq(u32, d.ttl_ms, all[i]->ttl_ms));
		cr_assert(eq(str, d.reason, (char *)all[i]->reason));
		same_eps(all[i], &d);
	}
}

Test(rendezvous_wire, malformed_is_refused)
{
	struct rdv_msg d;
	uint8_t too_many[2] = { RDV_REGISTER, RDV_MAX_EPS + 1 };
	cr_assert(eq(int, rdv_decode(too_many, 2, &d), -EBADMSG));
	uint8_t bad_transport[10] = { RDV_REGISTER, 1, 3, 4, 0, 1, 1, 2, 3, 4 };
	cr_assert(eq(int, rdv_decode(bad_transport, 10, &d), -EBADMSG));
	uint8_t bad_family[10] = { RDV_REGISTER, 1, 1, 5, 0, 1, 1, 2, 3, 4 };
	cr_assert(eq(int, rdv_decode(bad_family, 10, &d), -EBADMSG));
	uint8_t long_reason[9] = { RDV_REFUSED, 0, 0, 0, 1, 1, 200, 'a', 'b' };
	cr_assert(eq(int, rdv_decode(long_reason, 9, &d), -EBADMSG));
	uint8_t unknown[1] = { 42 };
	cr_assert(eq(int, rdv_decode(unknown, 1, &d), -EBADMSG));
	cr_assert(eq(int, rdv_decode(unknown, 0, &d), -EBADMSG));
}

Test(rendezvous_wire, refusal_reason_is_made_printable)
{
	uint8_t b[10] = { RDV_REFUSED, 0, 0, 0, 1, 1, 3, 'a', '\n', 0x7f };
	struct rdv_msg d;
	cr_assert(eq(int, rdv_decode(b, 10, &d), 0));
	cr_assert(eq(str, d.reason, "a??"));
}

Test(rendezvous_wire, relay_preamble)
{
	uint8_t token[RDV_TOKEN_LEN], out[RELAY_PREAMBLE_LEN], back[RDV_TOKEN_LEN];
	memset(token, 0x33, sizeof(token));
	relay_preamble_encode(token, out);
	cr_assert(relay_preamble_decode(out, sizeof(out), back));
	cr_assert(eq(int, memcmp(token, back, sizeof(token)), 0));
	cr_assert(not(relay_preamble_decode(out, sizeof(out) - 1, back)));
	out[0] = 'X';
	cr_assert(not(relay_preamble_decode(out, sizeof(out), back)));
	/* a handshake msg1 is not a preamble */
	uint8_t msg1[48] = { 'C', 'R', 'S', 'T', 2, 1 };
	cr_assert(not(relay_preamble_decode(msg1, sizeof(msg1), back)));
}
