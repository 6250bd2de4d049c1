/*
 * test_beacon.c - the LAN beacon without sockets: the datagram
 * (p2p/beacon_wire.c: encode, the cheap checks in order, the signature,
 * against truncated, oversized, wrong-magic, wrong-version, wrong-type,
 * other-network, tampered and forged input) and the peer memory's rules
 * (p2p/beacon_peers.c, time driven by hand: replay guard, expiry after
 * three intervals, who dials and how often, answer pacing).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/addr.h"
#include "p2p/beacon.h"
#include "p2p/beacon_peers.h"
#include "p2p/beacon_wire.h"
#include "addrs.h"
#include "p2p/handshake.h"

static void make_id(struct identity *id)
{
	cr_assert(ge(int, sodium_init(), 0));
	crypto_sign_keypair(id->pk, id->sk);
}

static struct beacon_msg msg(enum beacon_type type, const char *network, uint64_t ts)
{
	struct beacon_msg m;
	memset(&m, 0, sizeof(m));
	m.type = type;
	hs_network_tag(network, m.network_tag);
	m.ts_ms = ts;
	m.tcp_port = 40000;
	m.rudp_port = 40001;
	return m;
}

static void encoded(const struct identity *id, enum beacon_type type, uint64_t ts,
		    uint8_t out[BEACON_LEN])
{
	struct beacon_msg m = msg(type, "lab", ts);
	beacon_encode(&m, id, out);
}

static const uint8_t *tag_of(const char *network)
{
	static uint8_t tag[8];
	hs_network_tag(network, tag);
	return tag;
}

Test(beacon_wire, round_trip_keeps_every_field_and_verifies)
{
	struct identity id;
	make_id(&id);
	uint8_t p[BEACON_LEN];
	encoded(&id, BEACON_QUERY, 0x0102030405060708ull, p);
	cr_assert(eq(int, memcmp(p, BEACON_MAGIC, 4), 0));
	struct beacon_msg m;
	cr_assert(eq(int, beacon_parse(p, BEACON_LEN, tag_of("lab"), &m), BEACON_OK));
	cr_assert(eq(int, m.type, BEACON_QUERY));
	cr_assert(eq(u64, m.ts_ms, 0x0102030405060708ull));
	cr_assert(eq(u16, m.tcp_port, 40000));
	cr_assert(eq(u16, m.rudp_port, 40001));
	cr_assert(eq(int, memcmp(m.peer.bytes, id.pk, 32), 0), "the peer id is the signer's key");
	cr_assert(eq(int, beacon_verify(p), BEACON_OK));
}

Test(beacon_wire, truncated_at_every_length_is_refused)
{
	struct identity id;
	make_id(&id);
	uint8_t p[BEACON_LEN];
	encoded(&id, BEACON_ANNOUNCE, 1, p);
	struct beacon_msg m;
	for (size_t len = 0; len < BEACON_LEN; len++)
		cr_assert(eq(int, beacon_parse(p, len, tag_of("lab"), &m), BEACON_TRUNCATED),
			  "length %zu", len);
}

Test(beacon_wire, oversized_is_refused_before_anything_else)
{
	struct identity id;
	make_id(&id);
	static uint8_t big[65536];
	encoded(&id, BEACON_ANNOUNCE, 1, big);
	struct beacon_msg m;
	size_t lens[] = { BEACON_LEN + 1, 200, 1400, sizeof(big) };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		cr_assert(eq(int, beacon_parse(big, lens[i], tag_of("lab"), &m), BEACON_OVERSIZED),
			  "length %zu", lens[i]);
	/* garbage of a large size is oversized too, not "bad magic" */
	memset(big, 0xAB, sizeof(big));
	cr_assert(eq(int, beacon_parse(big, 9000, tag_of("lab"), &m), BEACON_OVERSIZED));
}

Test(beacon_wire, wrong_magic_version_and_type_are_refused)
{
	struct identity id;
	make_id(&id);
	uint8_t p[BEACON_LEN], q[BEACON_LEN];
	struct beacon_msg m;
	encoded(&id, BEACON_ANNOUNCE, 1, p);
	memcpy(q, p, BEACON_LEN);
	memcpy(q, "CRST", 4); /* the handshake's magic is not a beacon's */
	cr_assert(eq(int, beacon_parse(q, BEACON_LEN, tag_of("lab"), &m), BEACON_BAD_MAGIC));
	memcpy(q, p, BEACON_LEN);
	q[4] = 2;
	cr_assert(eq(int, beacon_parse(q, BEACON_LEN, tag_of("lab"), &m), BEACON_BAD_VERSION));
	uint8_t bad_types[] = { 0, 4, 255 };
	for (size_t i = 0; i < sizeof(bad_types); i++) {
		memcpy(q, p, BEACON_LEN);
		q[5] = bad_types[i];
		cr_assert(eq(int, beacon_parse(q, BEACON_LEN, tag_of("lab"), &m), BEACON_BAD_TYPE),
			  "type %u", bad_types[i]);
	}
}

Test(beacon_wire, another_network_is_refused_without_a_signature_check)
{
	struct identity id;
	make_id(&id);
	uint8_t p[BEACON_LEN];
	encoded(&id, BEACON_ANNOUNCE, 1, p);
	struct beacon_msg m;
	cr_assert(eq(int, beacon_parse(p, BEACON_LEN, tag_of("other"), &m), BEACON_OTHER_NETWORK));
	cr_assert(eq(int, beacon_parse(p, BEACON_LEN, tag_of(NULL), &m), BEACON_OTHER_NETWORK));
	/* the signature is fine: only the network tells them apart */
	cr_assert(eq(int, beacon_verify(p), BEACON_OK));
}

Test(beacon_wire, any_flipped_bit_breaks_the_signature)
{
	struct identity id;
	make_id(&id);
	uint8_t p[BEACON_LEN], q[BEACON_LEN];
	encoded(&id, BEACON_ANNOUNCE, 12345, p);
	struct beacon_msg m;
	for (size_t byte = 0; byte < BEACON_LEN; byte++) {
		memcpy(q, p, BEACON_LEN);
		q[byte] ^= 0x10;
		if (beacon_parse(q, BEACON_LEN, tag_of("lab"), &m) != BEACON_OK)
			continue; /* caught by a cheap check already */
		cr_assert(eq(int, beacon_verify(q), BEACON_BAD_SIGNATURE), "byte %zu", byte);
	}
}

Test(beacon_wire, forged_sender_and_foreign_signature_are_refused)
{
	struct identity a, b;
	make_id(&a);
	make_id(&b);
	uint8_t p[BEACON_LEN], q[BEACON_LEN];
	encoded(&a, BEACON_ANNOUNCE, 7, p);
	/* claim to be b, keep a's signature */
	memcpy(q, p, BEACON_LEN);
	memcpy(q + 16, b.pk, 32);
	struct beacon_msg m;
	cr_assert(eq(int, beacon_parse(q, BEACON_LEN, tag_of("lab"), &m), BEACON_OK));
	cr_assert(eq(int, beacon_verify(q), BEACON_BAD_SIGNATURE));
	/* random signature bytes */
	memcpy(q, p, BEACON_LEN);
	randombytes_buf(q + BEACON_SIGNED_LEN, 64);
	cr_assert(eq(int, beacon_verify(q), BEACON_BAD_SIGNATURE));
	/* an all-zero (small-order) key with a zero signature */
	memcpy(q, p, BEACON_LEN);
	memset(q + 16, 0, 32);
	memset(q + BEACON_SIGNED_LEN, 0, 64);
	cr_assert(eq(int, beacon_verify(q), BEACON_BAD_SIGNATURE));
	/* a signature over the bare body (without the context label) does not fit */
	memcpy(q, p, BEACON_LEN);
	crypto_sign_detached(q + BEACON_SIGNED_LEN, NULL, q, BEACON_SIGNED_LEN, a.sk);
	cr_assert(eq(int, beacon_verify(q), BEACON_BAD_SIGNATURE));
}

Test(beacon_wire, random_garbage_never_passes)
{
	cr_assert(ge(int, sodium_init(), 0));
	uint8_t p[BEACON_LEN];
	struct beacon_msg m;
	for (int i = 0; i < 2000; i++) {
		randombytes_buf(p, sizeof(p));
		size_t len = randombytes_uniform(BEACON_LEN + 1);
		enum beacon_verdict v = beacon_parse(p, len, tag_of("lab"), &m);
		if (v == BEACON_OK)
			v = beacon_verify(p);
		cr_assert(ne(int, v, BEACON_OK));
	}
}

/* --- the peer memory --------------------------------------------------------------- */

static struct beacon_msg from_peer(uint8_t first_byte, uint64_t ts)
{
	struct beacon_msg m = msg(BEACON_ANNOUNCE, "lab", ts);
	memset(m.peer.bytes, 0x55, 32);
	m.peer.bytes[0] = first_byte;
	return m;
}

Test(beacon_peers, discovery_takes_the_senders_ip_and_the_announced_port)
{
	static struct beacon_peers t;
	beacon_peers_init(&t, 90000);
	struct beacon_msg m = from_peer(1, 100);
	struct sockaddr_storage src = v4("198.18.0.12", 5483);
	struct beacon_peer *p;
	cr_assert(eq(int, beacon_peers_record(&t, &m, &src, 1000, &p), BEACON_SEEN_NEW));
	struct sockaddr_in *a = (struct sockaddr_in *)&p->addr;
	cr_assert(eq(u16, ntohs(a->sin_port), 40000), "TCP port, not the beacon's source port");
	cr_assert(eq(u32, a->sin_addr.s_addr, ((struct sockaddr_in *)&src)->sin_addr.s_addr));
	cr_assert(eq(u16, p->rudp_port, 40001));
	m.ts_ms = 101;
	cr_assert(eq(int, beacon_peers_record(&t, &m, &src, 2000, &p), BEACON_SEEN_AGAIN));
	m.ts_ms = 102;
	m.tcp_port = 40002;
	cr_assert(eq(int, beacon_peers_record(&t, &m, &src, 3000, &p), BEACON_SEEN_MOVED),
		  "a new port is news");
	m.ts_ms = 103;
	src = v4("198.18.0.13", 5483);
	cr_assert(eq(int, beacon_peers_record(&t, &m, &src, 4000, &p), BEACON_SEEN_MOVED),
		  "a new address is news");
	cr_assert(eq(u32, beacon_peers_live(&t), 1));
}

Test(beacon_peers, replays_and_older_timestamps_are_caught)
{
	static struct beacon_peers t;
	beacon_peers_init(&t, 90000);
	struct beacon_msg m = from_peer(1, 500);
	struct sockaddr_storage src = v4("198.18.0.12", 5483);
	struct beacon_peer *p;
	cr_assert(not(beacon_peers_is_replay(&t, &m)), "unknown peers are not replays");
	beacon_peers_record(&t, &m, &src, 1000, &p);
	cr_assert(beacon_peers_is_replay(&t, &m), "the same datagram again");
	m.ts_ms = 499;
	cr_assert(beacon_peers_is_replay(&t, &m), "an older one");
	m.ts_ms = 501;
	cr_assert(not(beacon_peers_is_replay(&t, &m)));
	/* still remembered after it expired */
	beacon_peers_expire(&t, 1000 + 90000);
	m.ts_ms = 500;
	cr_assert(beacon_peers_is_replay(&t, &m));
}

Test(beacon_peers, peers_expire_after_three_intervals_and_return_as_new)
{
	static struct beacon_peers t;
	beacon_peers_init(&t, 3 * 30000);
	struct beacon_msg m = from_peer(1, 1);
	struct sockaddr_storage src = v4("198.18.0.12", 5483);
	struct beacon_peer *p;
	beacon_peers_record(&t, &m, &src, 0, &p);
	cr_assert(eq(u32, beacon_peers_expire(&t, 89999), 0), "two missed intervals: still there");
	cr_assert(eq(u32, beacon_peers_live(&t), 1));
	cr_assert(eq(u32, beacon_peers_expire(&t, 90000), 1), "three: gone");
	cr_assert(eq(u32, beacon_peers_live(&t), 0));
	m.ts_ms = 2;
	cr_assert(eq(int, beacon_peers_record(&t, &m, &src, 100000, &p), BEACON_SEEN_NEW));
}

Test(beacon_peers, a_full_table_gives_the_least_recently_heard_slot_away)
{
	static struct beacon_peers t;
	beacon_peers_init(&t, 90000);
	struct sockaddr_storage src = v4("198.18.0.12", 5483);
	struct beacon_peer *p;
	for (unsigned i = 0; i < BEACON_MAX_PEERS; i++) {
		struct beacon_msg m = from_peer(0, 1);
		memcpy(m.peer.bytes, &i, sizeof(i));
		beacon_peers_record(&t, &m, &src, 1000 + i, &p);
	}
	cr_assert(eq(u32, beacon_peers_live(&t), BEACON_MAX_PEERS));
	struct beacon_msg extra = from_peer(0xEE, 1);
	cr_assert(eq(int, beacon_peers_record(&t, &extra, &src, 5000, &p), BEACON_SEEN_NEW));
	cr_assert(eq(u32, beacon_peers_live(&t), BEACON_MAX_PEERS));
	struct beacon_msg first = from_peer(0, 1);
	unsigned zero = 0;
	memcpy(first.peer.bytes, &zero, sizeof(zero));
	cr_assert(eq(ptr, beacon_peers_find(&t, &first.peer), NULL), "the oldest went");
	cr_assert(not(eq(ptr, beacon_peers_find(&t, &extra.peer), NULL)));
}

Test(beacon_peers, the_smaller_id_dials_at_once_the_larger_after_a_grace)
{
	static struct beacon_peers t;
	beacon_peers_init(&t, 90000);
	struct crust_peer_id small, large;
	memset(&small, 0x10, sizeof(small));
	memset(&large, 0xF0, sizeof(large));
	struct sockaddr_storage src = v4("198.18.0.12", 5483);
	struct beacon_peer *p, *q;
	struct beacon_msg m = from_peer(0xF0, 1);
	m.peer = large;
	beacon_peers_record(&t, &m, &src, 1000, &p);
	cr_assert(beacon_peers_dial(p, &small, 1000), "we are smaller: dial now");
	cr_assert(not(beacon_peers_dial(p, &small, 1000 + BEACON_REDIAL_MS - 1)), "not again soon");
	cr_assert(beacon_peers_dial(p, &small, 1000 + BEACON_REDIAL_MS), "again later");

	struct beacon_msg n = from_peer(0x10, 1);
	n.peer = small;
	beacon_peers_record(&t, &n, &src, 1000, &q);
	cr_assert(not(beacon_peers_dial(q, &large, 1000)), "we are larger: wait");
	cr_assert(not(beacon_peers_dial(q, &large, 1000 + BEACON_DIAL_GRACE_MS - 1)));
	cr_assert(beacon_peers_dial(q, &large, 1000 + BEACON_DIAL_GRACE_MS), "then dial anyway");
}

Test(beacon_peers, answers_at_most_once_per_second_overall_and_per_peer)
{
	static struct beacon_peers t;
	beacon_peers_init(&t, 90000);
	struct sockaddr_storage src = v4("198.18.0.12", 5483);
	struct beacon_peer *a, *b;
	struct beacon_msg ma = from_peer(1, 1), mb = from_peer(2, 1);
	beacon_peers_record(&t, &ma, &src, 0, &a);
	beacon_peers_record(&t, &mb, &src, 0, &b);
	cr_assert(eq(int, beacon_peers_answer(&t, a, 10000), BEACON_ANSWER_NOW));
	/* a floods: nothing more for a within the second */
	for (uint64_t now = 10000; now < 11000; now += 10)
		cr_assert(eq(int, beacon_peers_answer(&t, a, now), BEACON_ANSWER_NO), "at %lu", now);
	/* b asks in the same second: one answer later, shared by everyone who asks meanwhile */
	cr_assert(eq(int, beacon_peers_answer(&t, b, 10500), BEACON_ANSWER_LATER));
	cr_assert(eq(u64, beacon_peers_answer_due(&t), 11000));
	cr_assert(eq(int, beacon_peers_answer(&t, b, 10600), BEACON_ANSWER_NO));
	beacon_peers_answered(&t, 11000);
	/* b's answer was the one at 11000: b waits until 12000 */
	cr_assert(eq(int, beacon_peers_answer(&t, b, 11500), BEACON_ANSWER_NO));
	cr_assert(eq(int, beacon_peers_answer(&t, a, 11500), BEACON_ANSWER_LATER),
		  "a's second is over, the overall one is not");
	beacon_peers_answered(&t, 12000);
	cr_assert(eq(int, beacon_peers_answer(&t, b, 13100), BEACON_ANSWER_NOW));

	/* count: a query every 10 ms from two peers for 10 s gives at most 11 answers */
	static struct beacon_peers u;
	beacon_peers_init(&u, 90000);
	beacon_peers_record(&u, &ma, &src, 0, &a);
	beacon_peers_record(&u, &mb, &src, 0, &b);
	unsigned sent = 0;
	for (uint64_t now = 0; now <= 10000; now += 10) {
		if (u.answer_pending && now >= beacon_peers_answer_due(&u)) {
			beacon_peers_answered(&u, now);
			sent++;
		}
		for (int k = 0; k < 2; k++)
			if (beacon_peers_answer(&u, k ? b : a, now) == BEACON_ANSWER_NOW)
				sent++;
	}
	cr_assert(le(u32, sent, 11), "%u answers in 10 s", sent);
	cr_assert(ge(u32, sent, 9), "%u answers in 10 s: queries still get answers", sent);
}

/* --- the service side (no beacon may reach the host's network here) --------------- */

static void quiet(void *ctx, enum crust_log_level level, const char *m)
{
	(void)ctx;
	(void)level;
	(void)m;
}

static uint16_t beacon_port_after_listen(const char *bind, bool no_beacon)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cr_assert(eq(u16, cfg.beacon_port, CRUST_BEACON_PORT_DEFAULT), "port 5483 by default");
	cr_assert(not(cfg.no_beacon), "on by default");
	cfg.shards = 1;
	cfg.pin_shards = false;
	cfg.bind_addr = bind;
	cfg.no_beacon = no_beacon;
	cfg.port_mapping = "off"; /* no gateway traffic from the host's namespace */
	cfg.log = quiet;
	struct crust_service *svc;
	cr_assert(eq(int, crust_service_new(&cfg, &svc), 0));
	cr_assert(eq(u16, crust_beacon_port(svc), 0), "nothing before listening");
	cr_assert(eq(int, crust_start_listening(svc), 0));
	uint16_t port = crust_beacon_port(svc);
	crust_service_free(svc);
	return port;
}

Test(beacon_service, off_when_bound_to_loopback_or_turned_off, .timeout = 20)
{
	cr_assert(eq(u16, beacon_port_after_listen("127.0.0.1", false), 0));
	cr_assert(eq(u16, beacon_port_after_listen("::1", false), 0));
	cr_assert(eq(u16, beacon_port_after_listen("127.0.0.1", true), 0));
	cr_assert(eq(u16, crust_beacon_port(NULL), 0));
}

/*
 * Two services in a private network namespace (unshare: it exists only for
 * this forked test process and vanishes with it) on one end of a veth pair with
 * a 198.18.0.0/24 address: their broadcasts loop back to each other.
 */
struct hook_seen {
	atomic_int calls;
	struct beacon_candidate last;
};

static bool take_candidate(void *ctx, const struct beacon_candidate *c)
{
	struct hook_seen *h = ctx;
	h->last = *c;
	atomic_fetch_add(&h->calls, 1);
	return false; /* let the beacon dial as usual */
}

static bool keep_candidate(void *ctx, const struct beacon_candidate *c)
{
	take_candidate(ctx, c);
	return true; /* the hook dials (here: nobody does) */
}

static struct crust_service *lan_service(void)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.shards = 1;
	cfg.pin_shards = false;
	cfg.bind_addr = "0.0.0.0";
	cfg.beacon_interval_ms = 1000;
	cfg.port_mapping = "off"; /* no gateway traffic from the host's namespace */
	cfg.log = quiet;
	struct crust_service *svc;
	cr_assert(eq(int, crust_service_new(&cfg, &svc), 0));
	return svc;
}

static bool wait_event(struct crust_service *svc, enum crust_event_type type,
		       const struct crust_peer_id *peer, struct crust_event *out)
{
	for (int i = 0; i < 200; i++) {
		struct crust_event ev;
		if (crust_poll(svc, &ev, 1, 100) != 1)
			continue;
		crust_msg_release(ev.msg);
		if (ev.type == type && crust_peer_eq(&ev.peer, peer)) {
			*out = ev;
			return true;
		}
	}
	return false;
}

static void private_link(void)
{
	if (unshare(CLONE_NEWNET) != 0)
		cr_skip_test("cannot make a network namespace (not root?)");
	int rc = system("ip link set lo up && ip link add d0 type veth peer name d1 && "
			"ip link set d1 up && ip addr add 198.18.0.1/24 dev d0 && ip link set d0 up");
	if (rc != 0)
		cr_skip_test("no veth interface here (ip link add d0 type veth: %d)", rc);
}

Test(beacon_service, two_services_on_one_link_find_each_other_and_the_hook_hears, .timeout = 40)
{
	private_link();
	struct crust_service *a = lan_service(), *b = lan_service();
	static struct hook_seen seen;
	cr_assert(eq(int, beacon_set_hook(a, take_candidate, &seen), 0));
	cr_assert(eq(int, crust_start_listening(a), 0));
	cr_assert(eq(int, crust_start_listening(b), 0));
	cr_assert(eq(u16, crust_beacon_port(a), CRUST_BEACON_PORT_DEFAULT));
	struct crust_peer_id ida, idb;
	crust_own_id(a, &ida);
	crust_own_id(b, &idb);
	struct crust_endpoint eb;
	cr_assert(eq(int, crust_own_endpoints(b, &eb, 1), 1));

	struct crust_event ev;
	cr_assert(wait_event(a, CRUST_EV_PEER_DISCOVERED, &idb, &ev), "a discovered b");
	char addr[CRUST_ADDRSTRLEN], want[CRUST_ADDRSTRLEN];
	crust_addr_format(&ev.addr, addr, sizeof(addr));
	snprintf(want, sizeof(want), "198.18.0.1:%u", ntohs(((struct sockaddr_in *)&eb.addr)->sin_port));
	cr_assert(eq(str, addr, want));
	cr_assert(ge(int, atomic_load(&seen.calls), 1), "the hook heard of b");
	cr_assert(crust_peer_eq(&seen.last.peer, &idb));
	cr_assert(eq(int, seen.last.tcp.transport, CRUST_TRANSPORT_TCP));
	/* b listens on UDP where it listens on TCP (the default): both are announced */
	cr_assert(eq(int, seen.last.rudp.transport, CRUST_TRANSPORT_RUDP), "b's UDP port announced");
	cr_assert(eq(u16, eng_addr_port(&seen.last.rudp.addr), eng_addr_port(&seen.last.tcp.addr)));
	cr_assert(wait_event(a, CRUST_EV_NEW_CONNECTION, &idb, &ev), "a connected to b");
	cr_assert(wait_event(b, CRUST_EV_NEW_CONNECTION, &ida, &ev), "b connected to a");

	struct crust_stats s;
	crust_stats(a, &s);
	cr_assert(ge(u64, s.beacon_accepted, 1));
	cr_assert(eq(u64, s.beacon_off_link, 0), "looped-back broadcasts keep TTL 255");
	cr_assert(eq(u64, s.beacon_bad_signature, 0));
	crust_service_free(a);
	crust_service_free(b);
}

Test(beacon_service, a_hook_that_takes_over_stops_the_beacon_dialing, .timeout = 40)
{
	private_link();
	struct crust_service *a = lan_service(), *b = lan_service();
	static struct hook_seen seen_a, seen_b;
	cr_assert(eq(int, beacon_set_hook(a, keep_candidate, &seen_a), 0));
	cr_assert(eq(int, beacon_set_hook(b, keep_candidate, &seen_b), 0));
	cr_assert(eq(int, crust_start_listening(a), 0));
	cr_assert(eq(int, crust_start_listening(b), 0));
	struct crust_peer_id ida, idb;
	crust_own_id(a, &ida);
	crust_own_id(b, &idb);
	struct crust_event ev;
	cr_assert(wait_event(a, CRUST_EV_PEER_DISCOVERED, &idb, &ev));
	cr_assert(wait_event(b, CRUST_EV_PEER_DISCOVERED, &ida, &ev));
	/* past the larger id's dial grace, with announcements every second: nobody dialed */
	struct crust_stats s;
	for (int i = 0; i < 5; i++) {
		usleep(1000 * 1000);
		crust_stats(a, &s);
		cr_assert(eq(u64, s.connections, 0), "a's hook kept the beacon from dialing");
		crust_stats(b, &s);
		cr_assert(eq(u64, s.connections, 0), "b's hook kept the beacon from dialing");
	}
	cr_assert(ge(int, atomic_load(&seen_a.calls), 1));
	cr_assert(ge(int, atomic_load(&seen_b.calls), 1));
	/* hooks gone: the beacons dial again */
	cr_assert(eq(int, beacon_set_hook(a, NULL, NULL), 0));
	cr_assert(eq(int, beacon_set_hook(b, NULL, NULL), 0));
	cr_assert(wait_event(a, CRUST_EV_NEW_CONNECTION, &idb, &ev), "connected once the hooks left");
	crust_service_free(a);
	crust_service_free(b);
}
