/*
 * test_blacklist.c - refused peers and addresses (p2p/blacklist.c): ids,
 * IP-only and IP:port entries, IPv4-mapped IPv6, the text parser, and
 * lookups racing adds that grow the sets.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "p2p/blacklist.h"
#include "addrs.h"

static struct crust_peer_id peer(uint32_t n)
{
	struct crust_peer_id id;
	memset(&id, 0xab, sizeof(id));
	memcpy(id.bytes + 7, &n, sizeof(n));
	return id;
}

/* cr_assert(x) in Criterion 2.4 passes only for x == 1: compare bools as ints */
static bool has(struct blacklist *b, struct sockaddr_storage a)
{
	return blacklist_has_addr(b, &a);
}

static void add(struct blacklist *b, struct sockaddr_storage a)
{
	cr_assert(zero(int, blacklist_add_addr(b, &a)));
}

Test(blacklist, peers)
{
	struct blacklist b;
	cr_assert(zero(int, blacklist_init(&b)));
	struct crust_peer_id a = peer(1), other = peer(2);
	cr_assert(eq(int, blacklist_has_peer(&b, &a), false), "empty");
	cr_assert(zero(int, blacklist_add_peer(&b, &a)));
	cr_assert(zero(int, blacklist_add_peer(&b, &a)), "adding twice is fine");
	cr_assert(eq(int, blacklist_has_peer(&b, &a), true));
	cr_assert(eq(int, blacklist_has_peer(&b, &other), false));
	cr_assert(eq(sz, b.peers.count, 1));
	blacklist_destroy(&b);
}

Test(blacklist, peers_grow)
{
	enum { N = 5000 };
	struct blacklist b;
	cr_assert(zero(int, blacklist_init(&b)));
	for (uint32_t i = 0; i < N; i++) {
		struct crust_peer_id id = peer(2 * i);
		cr_assert(zero(int, blacklist_add_peer(&b, &id)));
	}
	for (uint32_t i = 0; i < 2 * N; i++) {
		struct crust_peer_id id = peer(i);
		cr_assert(eq(int, blacklist_has_peer(&b, &id), i % 2 == 0), "id %u", i);
	}
	cr_assert(eq(sz, b.peers.count, N));
	cr_assert(le(sz, 2 * b.peers.count, b.peers.cap));
	blacklist_destroy(&b);
}

Test(blacklist, ip_only_matches_every_port)
{
	struct blacklist b;
	cr_assert(zero(int, blacklist_init(&b)));
	cr_assert(eq(int, has(&b, v4("203.0.113.5", 0)), false), "empty");
	add(&b, v4("203.0.113.5", 0));
	add(&b, v6("2001:db8::1", 0));
	cr_assert(eq(int, has(&b, v4("203.0.113.5", 0)), true));
	cr_assert(eq(int, has(&b, v4("203.0.113.5", 1)), true));
	cr_assert(eq(int, has(&b, v4("203.0.113.5", 65535)), true));
	cr_assert(eq(int, has(&b, v6("2001:db8::1", 443)), true));
	cr_assert(eq(int, has(&b, v4("203.0.113.6", 1)), false));
	cr_assert(eq(int, has(&b, v6("2001:db8::2", 443)), false));
	cr_assert(eq(int, has(&b, v6("::203.0.113.5", 1)), false), "IPv4-compatible is not mapped");
	blacklist_destroy(&b);
}

Test(blacklist, ip_port_matches_that_port)
{
	struct blacklist b;
	cr_assert(zero(int, blacklist_init(&b)));
	add(&b, v4("203.0.113.5", 4000));
	add(&b, v6("2001:db8::1", 4000));
	cr_assert(eq(int, has(&b, v4("203.0.113.5", 4000)), true));
	cr_assert(eq(int, has(&b, v4("203.0.113.5", 4001)), false));
	cr_assert(eq(int, has(&b, v4("203.0.113.5", 0)), false));
	cr_assert(eq(int, has(&b, v6("2001:db8::1", 4000)), true));
	cr_assert(eq(int, has(&b, v6("2001:db8::1", 40)), false));
	/* the IP-only entry, added later, covers the other ports too */
	add(&b, v4("203.0.113.5", 0));
	cr_assert(eq(int, has(&b, v4("203.0.113.5", 4001)), true));
	blacklist_destroy(&b);
}

Test(blacklist, v4_mapped_is_v4)
{
	struct blacklist b;
	cr_assert(zero(int, blacklist_init(&b)));
	add(&b, v4("198.51.100.7", 0));
	add(&b, v6("::ffff:198.51.100.8", 80));
	cr_assert(eq(int, has(&b, v6("::ffff:198.51.100.7", 9)), true));
	cr_assert(eq(int, has(&b, v4("198.51.100.8", 80)), true));
	cr_assert(eq(int, has(&b, v6("::ffff:198.51.100.8", 80)), true));
	cr_assert(eq(int, has(&b, v4("198.51.100.8", 81)), false));
	cr_assert(eq(int, has(&b, v6("::ffff:198.51.100.9", 80)), false));
	blacklist_destroy(&b);
}

Test(blacklist, other_families)
{
	struct blacklist b;
	struct sockaddr_storage un;
	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	cr_assert(zero(int, blacklist_init(&b)));
	cr_assert(eq(int, blacklist_add_addr(&b, &un), -EAFNOSUPPORT));
	cr_assert(eq(int, blacklist_has_addr(&b, &un), false));
	blacklist_destroy(&b);
}

/* ---- parsing ---- */

static const char HEX_ID[] = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

static void parse_addr(const char *s, int family, const char *ip, uint16_t port)
{
	struct crust_peer_id id;
	struct sockaddr_storage got;
	bool is_peer = true;
	cr_assert(zero(int, blacklist_parse(s, &id, &got, &is_peer)), "%s", s);
	cr_assert(eq(int, is_peer, false), "%s", s);
	struct sockaddr_storage want = family == AF_INET ? v4(ip, port) : v6(ip, port);
	cr_assert(zero(int, memcmp(&got, &want, sizeof(want))), "%s", s);
}

Test(blacklist, parse_accepts)
{
	struct crust_peer_id id, want;
	struct sockaddr_storage addr;
	bool is_peer = false;
	cr_assert(zero(int, blacklist_parse(HEX_ID, &id, &addr, &is_peer)));
	cr_assert(eq(int, is_peer, true));
	cr_assert(zero(int, crust_peer_from_hex(HEX_ID, &want)));
	cr_assert(eq(int, crust_peer_eq(&id, &want), true));

	parse_addr("203.0.113.5", AF_INET, "203.0.113.5", 0);
	parse_addr("203.0.113.5:4000", AF_INET, "203.0.113.5", 4000);
	parse_addr("203.0.113.5:65535", AF_INET, "203.0.113.5", 65535);
	parse_addr("2001:db8::1", AF_INET6, "2001:db8::1", 0);
	parse_addr("[2001:db8::1]", AF_INET6, "2001:db8::1", 0);
	parse_addr("[2001:db8::1]:4000", AF_INET6, "2001:db8::1", 4000);
	parse_addr("::ffff:203.0.113.5", AF_INET6, "::ffff:203.0.113.5", 0);
	parse_addr("[::ffff:203.0.113.5]:1", AF_INET6, "::ffff:203.0.113.5", 1);
	/* without brackets a trailing group is part of the IPv6 address */
	parse_addr("2001:db8::1:80", AF_INET6, "2001:db8::1:80", 0);
}

Test(blacklist, parse_rejects_and_writes_nothing)
{
	static const char *bad[] = {
		"", "nonsense", "203.0.113", "203.0.113.256", " 203.0.113.5", "203.0.113.5 ",
		"203.0.113.5:", "203.0.113.5:0", "203.0.113.5:65536", "203.0.113.5:+80",
		"203.0.113.5: 80", "203.0.113.5:80x", "203.0.113.5:000080", "203.0.113.5:80:80",
		"host.example:80", ":80", "[2001:db8::1", "[2001:db8::1]80", "[2001:db8::1]:",
		"[2001:db8::1]:0", "[203.0.113.5]:80", "[]:80", "[2001:db8::g]",
		"2001:db8:::1", "fe80::1%eth0",
		/* 63, 65 and 64 characters that are not all hex digits */
		"00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",
		"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0",
		"00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg",
	};
	struct crust_peer_id id, id0;
	struct sockaddr_storage addr, addr0;
	bool is_peer = true;
	memset(&id, 0x5a, sizeof(id));
	memset(&addr, 0x5a, sizeof(addr));
	id0 = id;
	addr0 = addr;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert(eq(int, blacklist_parse(bad[i], &id, &addr, &is_peer), -EINVAL),
			  "\"%s\"", bad[i]);
	cr_assert(eq(int, blacklist_parse(NULL, &id, &addr, &is_peer), -EINVAL));
	cr_assert(zero(int, memcmp(&id, &id0, sizeof(id))));
	cr_assert(zero(int, memcmp(&addr, &addr0, sizeof(addr))));
	cr_assert(eq(int, is_peer, true));
}

Test(blacklist, parsed_entries_work)
{
	static const char *entries[] = { "203.0.113.5", "[2001:db8::1]:4000", HEX_ID };
	struct blacklist b;
	cr_assert(zero(int, blacklist_init(&b)));
	for (size_t i = 0; i < 3; i++) {
		struct crust_peer_id id;
		struct sockaddr_storage addr;
		bool is_peer;
		cr_assert(zero(int, blacklist_parse(entries[i], &id, &addr, &is_peer)));
		cr_assert(zero(int, is_peer ? blacklist_add_peer(&b, &id) : blacklist_add_addr(&b, &addr)));
	}
	struct crust_peer_id id;
	cr_assert(zero(int, crust_peer_from_hex(HEX_ID, &id)));
	cr_assert(eq(int, blacklist_has_peer(&b, &id), true));
	cr_assert(eq(int, has(&b, v6("::ffff:203.0.113.5", 7)), true));
	cr_assert(eq(int, has(&b, v6("2001:db8::1", 4000)), true));
	cr_assert(eq(int, has(&b, v6("2001:db8::1", 4001)), false));
	blacklist_destroy(&b);
}

/* ---- threads ---- */

enum { READERS = 3, ADDED = 20000 };

struct race {
	struct blacklist *b;
	struct sockaddr_storage absent;
	atomic_uint published;         /* entries [0, published) are in */
	atomic_bool done;
	atomic_ulong lookups, wrong;   /* readers count; only the test's thread asserts */
};

/* entry i: 10.x.y.z, every port for even i, one port for odd i; and the id peer(i) */
static struct sockaddr_storage entry_addr(uint32_t i)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *a = (struct sockaddr_in *)&ss;
	memset(&ss, 0, sizeof(ss));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(10u << 24 | i);
	a->sin_port = htons(i % 2 ? (uint16_t)(1 + i % 60000) : 0);
	return ss;
}

static void *reader(void *arg)
{
	struct race *r = arg;
	unsigned x = 88172645u;
	while (!atomic_load(&r->done)) {
		unsigned n = atomic_load(&r->published);
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		uint32_t i = n ? x % n : 0;
		struct sockaddr_storage a = entry_addr(i);
		struct crust_peer_id id = peer(i), never = peer(ADDED + i);
		bool ok = !blacklist_has_peer(r->b, &never) && !blacklist_has_addr(r->b, &r->absent);
		if (n)
			ok = ok && blacklist_has_addr(r->b, &a) && blacklist_has_peer(r->b, &id);
		if (!ok)
			atomic_fetch_add(&r->wrong, 1);
		atomic_fetch_add(&r->lookups, 1);
	}
	return NULL;
}

Test(blacklist, readers_race_a_writer, .timeout = 60)
{
	struct blacklist b;
	struct race r = { .b = &b, .absent = v6("2001:db8::dead", 1) };
	pthread_t tid[READERS];
	cr_assert(zero(int, blacklist_init(&b)));
	for (int i = 0; i < READERS; i++)
		cr_assert(zero(int, pthread_create(&tid[i], NULL, reader, &r)));
	int add_err = 0;
	for (uint32_t i = 0; i < ADDED && !add_err; i++) {
		struct sockaddr_storage a = entry_addr(i);
		struct crust_peer_id id = peer(i);
		add_err = blacklist_add_addr(&b, &a);
		if (!add_err)
			add_err = blacklist_add_peer(&b, &id);
		if (!add_err)
			atomic_store(&r.published, i + 1);
	}
	/* readers use b and r on this stack: join them before any assertion can end the test */
	atomic_store(&r.done, true);
	for (int i = 0; i < READERS; i++)
		cr_assert(zero(int, pthread_join(tid[i], NULL)));
	cr_assert(zero(int, add_err));
	cr_log_info("%lu lookups during %d adds", atomic_load(&r.lookups), ADDED);
	cr_assert(gt(u64, atomic_load(&r.lookups), 0));
	cr_assert(zero(u64, atomic_load(&r.wrong)));
	cr_assert(eq(sz, b.addrs.count, ADDED));
	cr_assert(eq(sz, b.peers.count, ADDED));
	blacklist_destroy(&b);
}
