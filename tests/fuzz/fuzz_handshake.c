/*
 * fuzz_handshake.c - the key exchange (p2p/handshake.c) with fixed identities.
 * Input: u8 mode | u8 where | bytes.
 *   mode & 3 == 0: a responder takes the bytes as msg1, then msg3, then more
 *                  (each message: u8 length | bytes);
 *   mode & 3 == 1: a dialer sends msg1 and takes the messages as msg2 and on;
 *   mode & 3 >= 2: an honest exchange whose message (where % 3) is XORed with
 *                  the bytes from offset where: it must fail exactly when a
 *                  byte changed, and agree on keys and identities when none did.
 *   mode & 4: tracer mode (both ends); mode & 8: the dialer expects the responder's id.
 */
#include "fuzz.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "p2p/handshake.h"

static struct identity ids[2];

static void init_ids(void)
{
	static bool done;
	if (done)
		return;
	FUZZ_CHECK(sodium_init() >= 0);
	for (int i = 0; i < 2; i++) {
		uint8_t seed[32];
		memset(seed, 0x11 * (i + 1), sizeof(seed));
		crypto_sign_seed_keypair(ids[i].pk, ids[i].sk, seed);
	}
	done = true;
}

static struct hs_config config(int who, uint8_t mode)
{
	struct hs_config c;
	memset(&c, 0, sizeof(c));
	c.id = &ids[who];
	c.tracer = mode & 4;
	c.listen_port = (uint16_t)(4000 + who);
	hs_network_tag("fuzz", c.network_tag);
	if (who == 0 && (mode & 8)) {
		c.has_expected = true;
		memcpy(c.expected.bytes, ids[1].pk, 32);
	}
	return c;
}

/* Feed length-prefixed messages to hs until the input or the handshake ends. */
static void feed(struct handshake *hs, const uint8_t *p, size_t n)
{
	uint8_t out[HS_MAX_LEN];
	char why[128];
	while (n > 0) {
		size_t len = p[0];
		p++, n--;
		if (len > n)
			len = n;
		size_t outlen = 99999;
		why[0] = 0;
		int ret = hs_recv(hs, p, len, out, &outlen, why, sizeof(why));
		FUZZ_CHECK(outlen <= HS_MAX_LEN);
		FUZZ_CHECK(ret == HS_CONTINUE || ret == HS_DONE || ret == -EPROTO ||
			   ret == -EACCES || ret == -ECONNREFUSED);
		FUZZ_CHECK(ret >= 0 || why[0]);
		FUZZ_CHECK(memchr(why, 0, sizeof(why)));
		p += len, n -= len;
	}
}

static bool exchange(struct handshake *i, struct handshake *r, const struct hs_config *ci,
		     const struct hs_config *cr, const uint8_t *mask, size_t n, unsigned which,
		     size_t at)
{
	uint8_t m[3][HS_MAX_LEN];
	size_t len[3], l0 = 0;
	char why[128];
	size_t lens[3] = { HS_MSG1_LEN, HS_MSG2_LEN, HS_MSG3_LEN };
	bool changed = false;
	for (size_t k = 0; k < n && at + k < lens[which]; k++)
		changed |= mask[k] != 0;
	FUZZ_CHECK(hs_start(r, cr, false, m[1], &l0) == 0 && l0 == 0);
	FUZZ_CHECK(hs_start(i, ci, true, m[0], &len[0]) == 0 && len[0] == HS_MSG1_LEN);
	int ret = 0;
	for (unsigned s = 0; s < 3 && ret >= 0; s++) {
		if (s == which)
			for (size_t k = 0; k < n && at + k < len[s]; k++)
				m[s][at + k] ^= mask[k];
		struct handshake *to = s == 1 ? i : r;
		uint8_t *reply = s < 2 ? m[s + 1] : m[0];
		ret = hs_recv(to, m[s], len[s], reply, s < 2 ? &len[s + 1] : &l0, why, sizeof(why));
	}
	FUZZ_CHECK(changed == (ret < 0));
	if (ret < 0)
		return false;
	FUZZ_CHECK(!memcmp(i->tx_key, r->rx_key, 32) && !memcmp(i->rx_key, r->tx_key, 32));
	FUZZ_CHECK(!memcmp(i->transcript, r->transcript, 32));
	FUZZ_CHECK(!memcmp(i->peer.bytes, ids[1].pk, 32) && !memcmp(r->peer.bytes, ids[0].pk, 32));
	FUZZ_CHECK(i->peer_port == 4001 && r->peer_port == 4000 && i->aes == r->aes);
	return true;
}

void fuzz_handshake(const uint8_t *data, size_t size)
{
	if (size < 2)
		return;
	init_ids();
	uint8_t mode = data[0], where = data[1];
	struct hs_config ci = config(0, mode), cr = config(1, mode);
	struct handshake i, r;
	uint8_t out[HS_MAX_LEN];
	size_t outlen;
	char why[128];
	memset(&i, 0, sizeof(i));
	memset(&r, 0, sizeof(r));
	switch (mode & 3) {
	case 0:
		FUZZ_CHECK(hs_precheck_msg1(data + 2, size - 2, &cr, why, sizeof(why)) <= 0);
		hs_start(&r, &cr, false, out, &outlen);
		feed(&r, data + 2, size - 2);
		break;
	case 1:
		hs_start(&i, &ci, true, out, &outlen);
		feed(&i, data + 2, size - 2);
		break;
	default:
		if (exchange(&i, &r, &ci, &cr, data + 2, size - 2, where % 3u, where / 3u))
			feed(&r, data + 2, size - 2); /* anything after the end is refused */
	}
	hs_wipe(&i);
	hs_wipe(&r);
}
