#define _GNU_SOURCE
/*
 * seeds.c - writes the seed corpora (tests/fuzz/corpus/<target>/) with the
 * library's own encoders, so every seed is a well-formed message a real
 * peer sends (plus the RFC 5769 STUN vectors). `make fuzz-corpus` runs it:
 *   build/fuzz-seeds tests/fuzz/corpus
 * Output is deterministic except where a message carries fresh ephemeral
 * keys (handshake messages, sealed records).
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "p2p/beacon_wire.h"
#include "p2p/cache.h"
#include "p2p/handshake.h"
#include "p2p/pex.h"
#include "p2p/rendezvous_wire.h"
#include "p2p/stun.h"
#include "transports/rudp_wire.h"

static const char *root;

static void put(const char *target, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", root, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
		perror(path);
		exit(1);
	}
}

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

static struct crust_endpoint ep6(const char *ip, uint16_t port, enum crust_transport t)
{
	struct crust_endpoint e;
	memset(&e, 0, sizeof(e));
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)&e.addr;
	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &a->sin6_addr);
	e.addrlen = sizeof(*a);
	e.transport = t;
	return e;
}

static void seed_framing(void)
{
	static const uint8_t one[] = { 3, 7, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o' };
	static const uint8_t several[] = { 3, 1, 0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i', 0, 0, 0, 3,
					   'a', 'b', 'c', 0, 0, 0, 1, 'x' };
	static const uint8_t too_long[] = { 2, 9, 0, 0, 0x40, 0, 'a', 'b' };
	static const uint8_t partial[] = { 4, 200, 0, 0, 1, 0, 1, 2, 3, 4, 5 };
	put("framing", "one", one, sizeof(one));
	put("framing", "several", several, sizeof(several));
	put("framing", "too-long", too_long, sizeof(too_long));
	put("framing", "partial", partial, sizeof(partial));
}

static void seed_handshake(void)
{
	struct identity a, b;
	uint8_t sa[32] = { 0x11 }, sb[32] = { 0x22 };
	crypto_sign_seed_keypair(a.pk, a.sk, sa);
	crypto_sign_seed_keypair(b.pk, b.sk, sb);
	struct hs_config ca = { .id = &a, .listen_port = 4000 }, cb = { .id = &b, .listen_port = 4001 };
	hs_network_tag("fuzz", ca.network_tag);
	hs_network_tag("fuzz", cb.network_tag);
	struct handshake i, r;
	uint8_t m1[HS_MAX_LEN], m2[HS_MAX_LEN], m3[HS_MAX_LEN], buf[600];
	size_t l1, l2, l3;
	char why[128];
	hs_start(&i, &ca, true, m1, &l1);
	hs_start(&r, &cb, false, m2, &l2);
	hs_recv(&r, m1, l1, m2, &l2, why, sizeof(why));
	hs_recv(&i, m2, l2, m3, &l3, why, sizeof(why));
	/* mode 0: msg1 then msg3 to a responder; mode 1: msg2 to a dialer */
	buf[0] = 0, buf[1] = 0, buf[2] = (uint8_t)l1;
	memcpy(buf + 3, m1, l1);
	buf[3 + l1] = (uint8_t)l3;
	memcpy(buf + 4 + l1, m3, l3);
	put("handshake", "responder-msg1-msg3", buf, 4 + l1 + l3);
	buf[0] = 1, buf[2] = (uint8_t)l2;
	memcpy(buf + 3, m2, l2);
	put("handshake", "dialer-msg2", buf, 3 + l2);
	static const uint8_t refusal[] = { 1, 0, 9, 'C', 'R', 'S', 'T', 2, 4, 0, 0, 1 };
	put("handshake", "dialer-refusal", refusal, sizeof(refusal));
	/* modes 2, 3: an honest exchange, untouched or with a byte of msg2 flipped */
	static const uint8_t honest[] = { 2, 0, 0, 0, 0, 0 }, tracer[] = { 6 | 8, 1, 0 };
	static const uint8_t flip[] = { 3, 1 + 3 * 50, 0x80 };
	put("handshake", "honest", honest, sizeof(honest));
	put("handshake", "honest-tracer-expected", tracer, sizeof(tracer));
	put("handshake", "flip-msg2", flip, sizeof(flip));
}

static void seed_session(void)
{
	/* sealed modes (4..7): plaintexts of messages (u32 header | bytes), one with a control bit */
	uint8_t buf[64];
	static const uint8_t plain[] = { 0, 0, 0, 2, 'h', 'i', 0x80, 0, 0, 1, 7 };
	for (int mode = 4; mode < 8; mode++) {
		buf[0] = (uint8_t)mode, buf[1] = 0, buf[2] = sizeof(plain);
		memcpy(buf + 3, plain, sizeof(plain));
		buf[3 + sizeof(plain)] = 0, buf[4 + sizeof(plain)] = 0; /* an empty record too */
		char name[32];
		snprintf(name, sizeof(name), "sealed-mode%d", mode);
		put("session", name, buf, 5 + sizeof(plain));
	}
	/* received records: tracer with counter 0, inner, a secure one that fails to open */
	static const uint8_t tracer[] = { 2, 0, 19, 'C', 'R', 'T', 'R', 0x20, 0, 0, 0, 0, 0, 0, 0, 0,
					  0, 0, 0, 2, 'h', 'i' };
	static const uint8_t inner[] = { 3, 0, 7, 0x30, 0, 0, 0, 2, 'h', 'i' };
	uint8_t secure[3 + 1 + 6 + 16] = { 0, 0, 23, 0x10 };
	put("session", "tracer", tracer, sizeof(tracer));
	put("session", "inner", inner, sizeof(inner));
	put("session", "secure-forged", secure, sizeof(secure));
}

/* Frames after a header: ACK with three ranges, STREAM, MAX_DATA, PING, CLOSE, padding. */
static uint8_t *frames(uint8_t *p, const uint8_t *end)
{
	struct rudp_ack a = { .delay_us = 800, .nranges = 3,
			      .r = { { 90, 100 }, { 50, 80 }, { 3, 10 } } };
	p = rudp_write_ack(p, end, &a);
	p = rudp_write_stream_hdr(p, end, 0, 9);
	memcpy(p, "\0\0\0\5hello", 9);
	p += 9;
	p = rudp_write_max_data(p, end, 1u << 22);
	*p++ = RUDP_FR_PING;
	p = rudp_write_close(p, end, 104, "bye");
	*p++ = RUDP_FR_PADDING;
	return p;
}

static void seed_rudp_wire(void)
{
	uint8_t buf[1500];
	static const uint8_t token[20] = { 1, 2, 3 };
	struct rudp_hdr h = { .type = RUDP_PKT_INITIAL, .dcid = 0x0102030405060708ull,
			      .scid = 0x1112131415161718ull, .token = token, .token_len = 20,
			      .pn_trunc = 7 };
	uint8_t *end = buf + sizeof(buf);
	uint8_t *p = frames(rudp_write_hdr(buf, end, &h), end);
	memset(p, 0xaa, RUDP_TAG_LEN);
	put("rudp_wire", "initial", buf, (size_t)(p - buf) + RUDP_TAG_LEN);
	h.type = RUDP_PKT_SHORT;
	p = frames(rudp_write_hdr(buf, end, &h), end);
	memset(p, 0xaa, RUDP_TAG_LEN);
	put("rudp_wire", "short", buf, (size_t)(p - buf) + RUDP_TAG_LEN);
	h.type = RUDP_PKT_RETRY;
	p = rudp_write_hdr(buf, end, &h);
	memset(p, 0xaa, RUDP_TAG_LEN);
	put("rudp_wire", "retry", buf, (size_t)(p - buf) + RUDP_TAG_LEN);
}

/* One rudp_recv packet: u8 length | u32 pn | frames. */
static uint8_t *recv_pkt(uint8_t *p, uint32_t pn, const uint8_t *f, size_t n)
{
	*p++ = (uint8_t)n;
	eng_put_be32(p, pn);
	memcpy(p + 4, f, n);
	return p + 4 + n;
}

static void seed_rudp_recv(void)
{
	uint8_t buf[1024], fr[256], *p = buf;
	*p++ = 40; /* packets in flight */
	/* stream bytes out of order: [9, 18) then [0, 9); then ACKs with gaps, then a close */
	uint8_t *q = rudp_write_stream_hdr(fr, fr + sizeof(fr), 9, 9);
	memcpy(q, "\0\0\0\5world", 9);
	p = recv_pkt(p, 0, fr, (size_t)(q + 9 - fr));
	q = rudp_write_stream_hdr(fr, fr + sizeof(fr), 0, 9);
	memcpy(q, "\0\0\0\5hello", 9);
	p = recv_pkt(p, 2, fr, (size_t)(q + 9 - fr));
	struct rudp_ack a = { .delay_us = 1000, .nranges = 2, .r = { { 20, 30 }, { 0, 10 } } };
	q = rudp_write_ack(fr, fr + sizeof(fr), &a);
	p = recv_pkt(p, 1, fr, (size_t)(q - fr));
	a = (struct rudp_ack){ .delay_us = 0, .nranges = 1, .r = { { 11, 39 } } };
	q = rudp_write_ack(fr, fr + sizeof(fr), &a);
	*q++ = RUDP_FR_PING;
	p = recv_pkt(p, 3, fr, (size_t)(q - fr));
	q = rudp_write_close(fr, fr + sizeof(fr), 0, NULL);
	p = recv_pkt(p, 4, fr, (size_t)(q - fr));
	put("rudp_recv", "stream-acks-close", buf, (size_t)(p - buf));
	buf[0] = 0x80 | 10; /* bbr */
	put("rudp_recv", "bbr", buf, (size_t)(p - buf));
}

/*
 * rudp_conn: op scripts of short exchanges (the op codes are in
 * tests/fuzz/fuzz_rudp_conn.c); the harness seals them with the real keys.
 */
struct script {
	uint8_t b[2048];
	size_t n;
};

static void op(struct script *s, size_t n, const uint8_t *p)
{
	memcpy(s->b + s->n, p, n);
	s->n += n;
}
#define OP(s, ...)                                                                     \
	do {                                                                           \
		const uint8_t o_[] = { __VA_ARGS__ };                                  \
		op(s, sizeof(o_), o_);                                                 \
	} while (0)

enum { PKT = 0, PKT2 = 1, RAW = 2, KEYS = 3, SEND = 4, TIMER = 5, RETRY = 6, LOCAL = 7 };
enum { F_LONG = 1, F_ALT = 2, F_CORRUPT = 4, F_PN = 8, F_PAD = 16 };
enum { S_STREAM = 0, S_ACK = 1, S_RAW = 2, S_PING = 3, S_MAXDATA = 4, S_CLOSE = 5, S_PAD = 6,
       S_NEXT = 7 };
#define PKTF(f) (uint8_t)(PKT | (f) << 3)

static void seed_rudp_conn(void)
{
	struct script s = { .n = 0 };
	/* a server: the client's padded Initial with stream data, keys, short packets */
	OP(&s, 0x01, 5);
	OP(&s, PKTF(F_LONG | F_PAD), 3, S_NEXT, 100, S_PING);
	OP(&s, KEYS, SEND | 5 << 3, 10);
	OP(&s, PKTF(0), 3, S_ACK, S_NEXT, 0xa0);
	OP(&s, PKTF(0), 2, S_NEXT, 0xc0, TIMER);
	OP(&s, PKTF(0), 3, S_ACK, S_NEXT, 0x90);
	OP(&s, PKTF(F_PN), 0, 2, S_NEXT, 40);             /* a replayed number: a duplicate */
	OP(&s, PKTF(F_CORRUPT), 17, 2, S_NEXT, 40);       /* fails authentication */
	OP(&s, PKTF(0), 1, S_ACK, SEND, 3, PKTF(0), 1, S_ACK);
	OP(&s, PKTF(0), 6, S_CLOSE, 0, 3, 'b', 'y', 'e');
	put("rudp_conn", "server-exchange", s.b, s.n);

	/* a client: the server's long answer, keys, short packets, a rebinding, a key epoch */
	s.n = 0;
	OP(&s, 0x02, 2);
	OP(&s, PKTF(F_LONG), 3, S_ACK, S_NEXT, 0x90);
	OP(&s, KEYS, SEND | 1 << 3, 20, SEND, 2);
	OP(&s, PKTF(F_LONG), 1, S_ACK);
	OP(&s, PKTF(0), 3, S_ACK, S_NEXT, 200);
	OP(&s, PKT2, 2, S_NEXT, 50);                      /* from another address */
	OP(&s, TIMER, PKTF(0), 1, S_ACK);
	OP(&s, PKTF(F_PN), 0x97, 0, 1, 3, S_ACK, S_NEXT, 60); /* 2^23 later: the next key epoch */
	OP(&s, PKTF(0), 2, S_ACK, S_PING, LOCAL);
	put("rudp_conn", "client-exchange", s.b, s.n);

	/* a client that gets a Retry, then its answer; shuts down */
	s.n = 0;
	OP(&s, 0x00, 3);
	OP(&s, RETRY, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20);
	OP(&s, TIMER, PKTF(F_LONG), 3, S_ACK, S_NEXT, 40, KEYS, SEND, 8);
	OP(&s, PKTF(0), 1, S_ACK, LOCAL | 8, PKTF(0), 1, S_ACK, TIMER);
	put("rudp_conn", "client-retry", s.b, s.n);

	/* a server: raw datagrams, a short Initial (dropped), then frames written raw */
	s.n = 0;
	OP(&s, 0x03, 1);
	uint8_t raw[240];
	struct rudp_hdr h = { .type = RUDP_PKT_INITIAL, .dcid = 0x0102030405060708ull,
			      .scid = 0x1112131415161718ull };
	uint8_t *q = rudp_write_hdr(raw, raw + sizeof(raw), &h);
	q = rudp_write_stream_hdr(q, raw + sizeof(raw), 0, 9);
	memcpy(q, "\0\0\0\5hello", 9);
	memset(q + 9, 0, (size_t)(raw + sizeof(raw) - q - 9));
	OP(&s, RAW, 40);
	op(&s, 240, raw);
	OP(&s, PKTF(F_LONG), 2, S_NEXT, 20);
	OP(&s, PKTF(F_LONG | F_PAD), 2, S_NEXT, 20);
	OP(&s, RAW | 8, 40);
	op(&s, 240, raw);
	uint8_t fr[64];
	struct rudp_ack a = { .delay_us = 100, .nranges = 1, .r = { { 0, 0 } } };
	q = rudp_write_ack(fr, fr + sizeof(fr), &a);
	q = rudp_write_max_data(q, fr + sizeof(fr), 1u << 23);
	q = rudp_write_stream_hdr(q, fr + sizeof(fr), 0, 9);
	memcpy(q, "\0\0\0\5world", 9);
	q += 9;
	q = rudp_write_close(q, fr + sizeof(fr), 104, "reset");
	OP(&s, PKTF(F_LONG | F_PAD), (uint8_t)(2 + (q - fr)), S_RAW, (uint8_t)(q - fr));
	op(&s, (size_t)(q - fr), fr);
	put("rudp_conn", "server-raw", s.b, s.n);
}

static void seed_beacon(void)
{
	struct identity id;
	uint8_t seed[32] = { 9 }, out[BEACON_LEN];
	crypto_sign_seed_keypair(id.pk, id.sk, seed);
	struct beacon_msg m = { .type = BEACON_ANNOUNCE, .ts_ms = 1700000000000ull,
				.tcp_port = 5483, .rudp_port = 5484 };
	hs_network_tag("fuzz", m.network_tag);
	beacon_encode(&m, &id, out);
	put("beacon", "announce", out, sizeof(out));
	m.type = BEACON_QUERY;
	beacon_encode(&m, &id, out);
	out[BEACON_LEN - 1] ^= 1;
	put("beacon", "query-bad-signature", out, sizeof(out));
	hs_network_tag("other", m.network_tag);
	beacon_encode(&m, &id, out);
	put("beacon", "other-network", out, sizeof(out));
}

static void seed_stun(void)
{
	/* RFC 5769 2.1 (request), 2.2 (IPv4 response), 2.3 (IPv6 response) */
	static const char *rfc[][2] = {
		{ "rfc5769-request",
		  "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
		  "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
		  "00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36"
		  "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
		  "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
		  "80 28 00 04 e5 7a 3b cf" },
		{ "rfc5769-response-v4",
		  "01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
		  "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
		  "00 20 00 08 00 01 a1 47 e1 12 a6 43"
		  "00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7"
		  "80 28 00 04 c0 7d 4c 96" },
		{ "rfc5769-response-v6",
		  "01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
		  "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
		  "00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"
		  "00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41"
		  "80 28 00 04 c8 fb 0b 4c" },
	};
	uint8_t buf[STUN_MAX_LEN];
	for (size_t i = 0; i < sizeof(rfc) / sizeof(rfc[0]); i++)
		put("stun", rfc[i][0], buf, hex(rfc[i][1], buf));
	static const uint8_t txid[STUN_TXID_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	put("stun", "request", buf, stun_encode_request(buf, sizeof(buf), txid, false));
	put("stun", "request-fingerprint", buf, stun_encode_request(buf, sizeof(buf), txid, true));
	/* an RFC 3489 request (no cookie) with CHANGE-REQUEST (answered 420) */
	static const uint8_t old[] = { 0, 1, 0, 8, 9, 9, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
				       0, 3, 0, 4, 0, 0, 0, 6 };
	put("stun", "rfc3489-change-request", old, sizeof(old));
}

static void seed_rendezvous(void)
{
	uint8_t out[RDV_MSG_MAX];
	struct rdv_msg m;
	memset(&m, 0, sizeof(m));
	m.code = RDV_REGISTER;
	m.eps[0] = ep4("198.51.100.7", 5483, CRUST_TRANSPORT_TCP);
	m.eps[1] = ep6("2001:db8::1", 5484, CRUST_TRANSPORT_RUDP);
	m.neps = 2;
	put("rendezvous", "register", out, rdv_encode(&m, out));
	m.code = RDV_REGISTERED;
	m.ttl_ms = 60000;
	put("rendezvous", "registered", out, rdv_encode(&m, out));
	m.code = RDV_REACH;
	m.req = 42;
	memset(m.peer.bytes, 0x5a, 32);
	put("rendezvous", "reach", out, rdv_encode(&m, out));
	m.code = RDV_PUNCH;
	m.flags = RDV_PUNCH_INITIATE | RDV_PUNCH_RELAY;
	m.start_in_ms = 250;
	memset(m.token, 0x33, sizeof(m.token));
	put("rendezvous", "punch", out, rdv_encode(&m, out));
	m.code = RDV_REFUSED;
	m.refusal = RDV_UNKNOWN_PEER;
	strcpy(m.reason, "no such peer");
	put("rendezvous", "refused", out, rdv_encode(&m, out));
	uint8_t pre[RELAY_PREAMBLE_LEN];
	relay_preamble_encode(m.token, pre);
	put("rendezvous", "relay-preamble", pre, sizeof(pre));
	struct punch_probe pp = { .flags = PUNCH_PROBE_ANSWER | PUNCH_PROBE_PREDICTED };
	memcpy(pp.token, m.token, sizeof(pp.token));
	uint8_t probe[PUNCH_PROBE_LEN];
	punch_probe_encode(&pp, probe);
	put("rendezvous", "punch-probe", probe, sizeof(probe));
}

static void seed_pex(void)
{
	struct pex_entry e[3];
	memset(e, 0, sizeof(e));
	e[0].ep = ep4("203.0.113.5", 5483, CRUST_TRANSPORT_TCP);
	e[1].ep = ep6("2001:db8::2", 5483, CRUST_TRANSPORT_RUDP);
	e[2].ep = ep4("192.0.2.9", 1, CRUST_TRANSPORT_RUDP);
	for (int i = 0; i < 3; i++)
		memset(e[i].id.bytes, 0x40 + i, 32);
	uint8_t out[PEX_LIST_MAX];
	put("pex", "three", out, pex_encode(out, e, 3));
	put("pex", "empty", out, pex_encode(out, e, 0));
}

static void seed_cache(void)
{
	struct cache_entry e[3];
	memset(e, 0, sizeof(e));
	e[0].ep = ep4("203.0.113.5", 5483, CRUST_TRANSPORT_TCP);
	e[1].ep = ep6("2001:db8::3", 5483, CRUST_TRANSPORT_RUDP);
	e[2].ep = ep4("198.51.100.1", 7000, CRUST_TRANSPORT_ANY);
	for (int i = 0; i < 3; i++) {
		memset(e[i].id.bytes, 0x70 + i, 32);
		e[i].last_success = 1700000000 + (uint64_t)i;
		e[i].failures = (uint32_t)i;
	}
	/* capacity 8 (selector 2): both slots, the second newer; then one slot torn */
	uint8_t file[1 + 2 * (CACHE_HDR_LEN + 8 * CACHE_ENTRY_LEN)];
	size_t slot = CACHE_HDR_LEN + 8 * CACHE_ENTRY_LEN;
	memset(file, 0, sizeof(file)); /* unused entries: zero, as a node writes them */
	file[0] = 2;
	cache_encode_slot(file + 1, 8, 1, e, 2);
	cache_encode_slot(file + 1 + slot, 8, 2, e, 3);
	put("cache", "two-slots", file, sizeof(file));
	file[0] = 0x82; /* the harness rewrites the checksums: mutations reach the entries */
	put("cache", "two-slots-resealed", file, sizeof(file));
	file[0] = 2;
	file[1 + slot + 100] ^= 0xff;
	put("cache", "second-slot-torn", file, sizeof(file));
	file[0] = 0; /* opened with capacity 1: rewritten */
	put("cache", "other-capacity", file, sizeof(file));
	put("cache", "truncated", file, 1 + CACHE_HDR_LEN + 10);
}

static void seed_text(void)
{
	static const char *cfg[][2] = {
		{ "every-key",
		  "{\n  \"network_name\": \"my-network\",\n  \"identity_file\": \"/var/lib/crust/identity\",\n"
		  "  \"hard_coded_contacts\": [\"203.0.113.5:5483\", \"[2001:db8::1]:5483\", \"rudp://198.51.100.7:5483\"],\n"
		  "  \"tcp_port\": 0, \"rudp_port\": 0, \"rudp_cc\": \"bbr\", \"rudp_retry_pending\": 64,\n"
		  "  \"bind_addr\": \"0.0.0.0\", \"beacon\": true, \"beacon_port\": 5483,\n"
		  "  \"beacon_interval_ms\": 30000, \"pex\": true, \"cache_file\": \"/tmp/x.cache\",\n"
		  "  \"cache_max_entries\": 64, \"cache_max_failures\": 5, \"bootstrap_parallel\": 8,\n"
		  "  \"bootstrap_retry_min_ms\": 1000, \"bootstrap_retry_max_ms\": 60000,\n"
		  "  \"pex_interval_ms\": 60000, \"pex_max_endpoints\": 32, \"auto_connect_max\": 32,\n"
		  "  \"rebind_interval_ms\": 0, \"shards\": 0, \"pin_shards\": true, \"first_cpu\": 0,\n"
		  "  \"tracer\": false, \"max_msg_size\": 16777216, \"max_send_queue\": 67108864,\n"
		  "  \"handshake_timeout_ms\": 10000, \"frame_timeout_ms\": 30000,\n"
		  "  \"connect_timeout_ms\": 10000, \"keepalive_ms\": 10000, \"idle_timeout_ms\": 30000,\n"
		  "  \"provisional_grace_ms\": 120000, \"max_rx_msgs_per_s\": 0, \"hs_rate_per_s\": 50,\n"
		  "  \"hs_burst\": 100, \"hs_max_pending\": 16, \"rx_buffer_size\": 66048,\n"
		  "  \"rx_buffer_count\": 256, \"tx_arena_size\": 4194304, \"rx_held_limit\": 67108864,\n"
		  "  \"zerocopy_min\": 0, \"log_level\": \"warn\"\n}\n" },
		{ "wrong-type", "{\n \"network_name\": \"x\",\n \"tcp_port\": \"80\"\n}" },
		{ "unknown-key", "{ \"beacon_prot\": 1 }" },
		{ "bad-contact", "{ \"hard_coded_contacts\": [\"203.0.113.5:1\", \"nowhere\"] }" },
		{ "duplicate", "{ \"tcp_port\": 1, \"tcp_port\": 2 }" },
		{ "escaped-key", "{ \"tcp_\\u0070ort\": -1 }" },
		{ "not-object", "[1, 2]" },
		{ "syntax", "{ \"tcp_port\": , }" },
	};
	for (size_t i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++)
		put("config", cfg[i][0], cfg[i][1], strlen(cfg[i][1]));
	static const char *ids[][2] = {
		{ "rfc8032-key",
		  "crust-identity 1\nseed 9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\n"
		  "public d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\n" },
		{ "seed-only",
		  "crust-identity 1\nseed 9D61B19DEFFD5A60BA844AF492EC2CC44449C5697B326919703BAC031CAE7F60" },
		{ "public-mismatch",
		  "crust-identity 1\npublic d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511b\n"
		  "seed 9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\n" },
		{ "version-2", "crust-identity 2\n" },
	};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		put("identity", ids[i][0], ids[i][1], strlen(ids[i][1]));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR (tests/fuzz/corpus)\n", argv[0]);
		return 2;
	}
	root = argv[1];
	mkdir(root, 0755);
	if (sodium_init() < 0)
		return 1;
	seed_framing();
	seed_handshake();
	seed_session();
	seed_rudp_wire();
	seed_rudp_recv();
	seed_rudp_conn();
	seed_beacon();
	seed_stun();
	seed_rendezvous();
	seed_pex();
	seed_cache();
	seed_text();
	return 0;
}
