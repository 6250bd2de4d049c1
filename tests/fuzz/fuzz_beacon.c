/*
 * fuzz_beacon.c - the LAN beacon datagram (p2p/beacon_wire.c): the cheap
 * checks, then the signature of what passed them. Input: one datagram.
 * An accepted beacon is encoded again with a fixed key and must parse to
 * the same fields.
 */
#include "fuzz.h"

#include <sodium.h>
#include <string.h>

#include "p2p/beacon_wire.h"
#include "p2p/handshake.h"

void fuzz_beacon(const uint8_t *data, size_t size)
{
	static struct identity id;
	static uint8_t tag[8];
	static bool ready;
	if (!ready) {
		uint8_t seed[32] = { 7 };
		FUZZ_CHECK(sodium_init() >= 0);
		crypto_sign_seed_keypair(id.pk, id.sk, seed);
		hs_network_tag("fuzz", tag);
		ready = true;
	}
	struct beacon_msg m, back;
	enum beacon_verdict v = beacon_parse(data, size, tag, &m);
	FUZZ_CHECK(beacon_verdict_name(v) != NULL);
	if (v != BEACON_OK)
		return;
	FUZZ_CHECK(size == BEACON_LEN);
	v = beacon_verify(data);
	FUZZ_CHECK(v == BEACON_OK || v == BEACON_BAD_SIGNATURE);
	uint8_t out[BEACON_LEN];
	beacon_encode(&m, &id, out);
	FUZZ_CHECK(beacon_parse(out, sizeof(out), tag, &back) == BEACON_OK);
	FUZZ_CHECK(beacon_verify(out) == BEACON_OK);
	FUZZ_CHECK(back.type == m.type && back.ts_ms == m.ts_ms && back.tcp_port == m.tcp_port &&
		   back.rudp_port == m.rudp_port && !memcmp(back.peer.bytes, id.pk, 32));
}
