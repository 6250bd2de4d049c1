#define _GNU_SOURCE
/*
 * test_handshake.c - the key exchange and the records it keys, without
 * sockets: both ends agree on keys and the transcript, identities are
 * proven (a different key than expected is refused), tampering fails,
 * and records reject replay, reordering and bit flips.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#include "p2p/handshake.h"
#include "p2p/session.h"
#include "transports/framing.h"

static void make_id(struct identity *id)
{
	cr_assert_geq(sodium_init(), 0);
	crypto_sign_keypair(id->pk, id->sk);
}

static struct hs_config config(const struct identity *id, bool tracer)
{
	struct hs_config c;
	memset(&c, 0, sizeof(c));
	c.id = id;
	c.tracer = tracer;
	c.listen_port = 4242;
	hs_network_tag("test", c.network_tag);
	return c;
}

/* Run msg1..msg3 between i and r; returns the first failure (or 0). */
static int run(struct handshake *i, struct handshake *r, const struct hs_config *ci,
	       const struct hs_config *cr, char *why, uint8_t *tamper_at)
{
	uint8_t m1[HS_MAX_LEN], m2[HS_MAX_LEN], m3[HS_MAX_LEN];
	size_t l1, l2, l3;
	hs_start(i, ci, true, m1, &l1);
	hs_start(r, cr, false, m2, &l2);
	cr_assert_eq(l1, HS_MSG1_LEN);
	cr_assert_eq(l2, 0);
	int ret = hs_recv(r, m1, l1, m2, &l2, why, 128);
	if (ret < 0)
		return ret;
	cr_assert_eq(l2, HS_MSG2_LEN);
	if (tamper_at)
		m2[*tamper_at] ^= 1;
	ret = hs_recv(i, m2, l2, m3, &l3, why, 128);
	if (ret < 0)
		return ret;
	cr_assert_eq(ret, HS_DONE);
	cr_assert_eq(l3, HS_MSG3_LEN);
	ret = hs_recv(r, m3, l3, m1, &l1, why, 128);
	if (ret < 0)
		return ret;
	cr_assert_eq(ret, HS_DONE);
	return 0;
}

Test(handshake, both_ends_agree_and_learn_each_others_identity)
{
	struct identity a, b;
	make_id(&a);
	make_id(&b);
	struct hs_config ca = config(&a, false), cb = config(&b, false);
	struct handshake i, r;
	char why[128];
	cr_assert_eq(run(&i, &r, &ca, &cb, why, NULL), 0, "%s", why);
	cr_assert(memcmp(i.peer.bytes, b.pk, 32) == 0);
	cr_assert(memcmp(r.peer.bytes, a.pk, 32) == 0);
	cr_assert(memcmp(i.tx_key, r.rx_key, 32) == 0);
	cr_assert(memcmp(i.rx_key, r.tx_key, 32) == 0);
	cr_assert(memcmp(i.tx_key, i.rx_key, 32) != 0);
	cr_assert(memcmp(i.transcript, r.transcript, 32) == 0);
	cr_assert_eq(i.peer_port, 4242);
	cr_assert_eq(i.aes, r.aes);
	cr_assert_eq(i.aes, crypto_aead_aes256gcm_is_available() != 0);
}

Test(handshake, a_different_key_than_the_one_dialed_is_refused)
{
	struct identity a, b, c;
	make_id(&a);
	make_id(&b);
	make_id(&c);
	struct hs_config ca = config(&a, false), cb = config(&b, false);
	ca.has_expected = true;
	memcpy(ca.expected.bytes, c.pk, 32);
	struct handshake i, r;
	char why[128] = "";
	cr_assert_eq(run(&i, &r, &ca, &cb, why, NULL), -EACCES);
	cr_assert(strstr(why, "different key") != NULL, "%s", why);
}

Test(handshake, a_flipped_bit_anywhere_in_msg2_fails)
{
	struct identity a, b;
	make_id(&a);
	make_id(&b);
	struct hs_config ca = config(&a, false), cb = config(&b, false);
	for (uint8_t at = 8; at < HS_MSG2_LEN; at += 7) {
		struct handshake i, r;
		char why[128];
		cr_assert_lt(run(&i, &r, &ca, &cb, why, &at), 0, "flip at %u accepted", at);
	}
}

Test(handshake, mismatches_are_refused_with_a_reason)
{
	struct identity a, b;
	make_id(&a);
	make_id(&b);
	struct hs_config ca = config(&a, true), cb = config(&b, false);
	struct handshake i, r;
	char why[128] = "";
	cr_assert_eq(run(&i, &r, &ca, &cb, why, NULL), -EPROTO);
	cr_assert(strstr(why, "tracer mode mismatch") != NULL, "%s", why);
	ca = config(&a, false);
	hs_network_tag("other", ca.network_tag);
	cr_assert_eq(run(&i, &r, &ca, &cb, why, NULL), -EPROTO);
	cr_assert(strstr(why, "another network") != NULL, "%s", why);
	uint8_t junk[HS_MSG1_LEN] = "GET / HTTP/1.1";
	uint8_t out[HS_MAX_LEN];
	size_t outlen;
	hs_start(&r, &cb, false, out, &outlen);
	cr_assert_eq(hs_recv(&r, junk, sizeof(junk), out, &outlen, why, sizeof(why)), -EPROTO);
	cr_assert(strstr(why, "bad magic") != NULL, "%s", why);
}

/* A sealed record of the given messages, as it would leave the engine. */
static uint32_t seal_msgs(struct session *s, uint8_t *buf, const char **msgs, int n)
{
	uint32_t hdr = session_hdr_room(s), body = 0;
	for (int k = 0; k < n; k++) {
		uint32_t len = (uint32_t)strlen(msgs[k]);
		uint8_t *p = buf + hdr + body;
		p[0] = 0, p[1] = 0, p[2] = (uint8_t)(len >> 8), p[3] = (uint8_t)len;
		memcpy(p + 4, msgs[k], len);
		body += 4 + len;
	}
	cr_assert_eq(session_seal(s, buf, body), 0);
	return hdr + body + session_tag_room(s);
}

static void pair(struct session *tx, struct session *rx, bool tracer, bool aes)
{
	uint8_t k1[32], k2[32];
	randombytes_buf(k1, 32);
	randombytes_buf(k2, 32);
	session_init(tx, tracer, aes, k1, k2);
	session_init(rx, tracer, aes, k2, k1);
}

static void records_round_trip(bool tracer, bool aes)
{
	struct session tx, rx;
	pair(&tx, &rx, tracer, aes);
	const char *msgs[] = { "hello", "", "world" };
	uint8_t buf[256];
	for (int round = 0; round < 3; round++) {
		uint32_t len = seal_msgs(&tx, buf, msgs, 3);
		uint8_t *plain, *m;
		uint32_t plain_len, mlen;
		bool ctrl;
		cr_assert_eq(session_open(&rx, buf + 4, len - 4, &plain, &plain_len), 0);
		uint8_t *cur = plain;
		for (int k = 0; k < 3; k++) {
			cr_assert_eq(session_next_msg(&cur, plain + plain_len, &m, &mlen, &ctrl), 1);
			cr_assert_eq(mlen, strlen(msgs[k]));
			cr_assert(memcmp(m, msgs[k], mlen) == 0);
			cr_assert(!ctrl);
		}
		cr_assert_eq(session_next_msg(&cur, plain + plain_len, &m, &mlen, &ctrl), 0);
	}
}

Test(session, records_round_trip_in_every_mode)
{
	records_round_trip(false, false);
	if (crypto_aead_aes256gcm_is_available())
		records_round_trip(false, true);
	records_round_trip(true, false);
}

Test(session, secure_records_hide_the_text_and_tracer_records_show_it)
{
	struct session tx, rx;
	const char *msgs[] = { "secret-text" };
	uint8_t buf[128];
	pair(&tx, &rx, false, false);
	uint32_t len = seal_msgs(&tx, buf, msgs, 1);
	cr_assert(memmem(buf, len, "secret-text", 11) == NULL);
	pair(&tx, &rx, true, false);
	len = seal_msgs(&tx, buf, msgs, 1);
	cr_assert(memmem(buf, len, "secret-text", 11) != NULL);
	cr_assert(memcmp(buf + 4, REC_TRACER_MAGIC, 4) == 0);
}

Test(session, tampered_replayed_and_reordered_records_fail)
{
	struct session tx, rx;
	pair(&tx, &rx, false, false);
	const char *msgs[] = { "one" };
	uint8_t r1[64], r2[64], copy[64];
	uint32_t l1 = seal_msgs(&tx, r1, msgs, 1);
	uint32_t l2 = seal_msgs(&tx, r2, msgs, 1);
	uint8_t *plain;
	uint32_t plain_len;
	/* reordered: the second record first */
	memcpy(copy, r2, l2);
	cr_assert_eq(session_open(&rx, copy + 4, l2 - 4, &plain, &plain_len), -EBADMSG);
	/* flipped bit */
	memcpy(copy, r1, l1);
	copy[l1 / 2] ^= 0x20;
	cr_assert_eq(session_open(&rx, copy + 4, l1 - 4, &plain, &plain_len), -EBADMSG);
	/* the genuine first record still opens (failures consumed no counter) */
	memcpy(copy, r1, l1);
	cr_assert_eq(session_open(&rx, copy + 4, l1 - 4, &plain, &plain_len), 0);
	/* replayed */
	memcpy(copy, r1, l1);
	cr_assert_eq(session_open(&rx, copy + 4, l1 - 4, &plain, &plain_len), -EBADMSG);
}

Test(session, both_ends_rekey_at_the_same_record)
{
	struct session tx, rx;
	pair(&tx, &rx, false, false);
	/* jump close to the rekey boundary on both ends, as if that many records had passed */
	tx.tx.counter = rx.rx.counter = SESSION_REKEY_RECORDS - 2;
	const char *msgs[] = { "x" };
	uint8_t buf[64];
	uint8_t before[32];
	memcpy(before, tx.tx.key, 32);
	for (int k = 0; k < 5; k++) {
		uint32_t len = seal_msgs(&tx, buf, msgs, 1);
		uint8_t *plain;
		uint32_t plain_len;
		cr_assert_eq(session_open(&rx, buf + 4, len - 4, &plain, &plain_len), 0, "record %d", k);
	}
	cr_assert(memcmp(before, tx.tx.key, 32) != 0, "the key never changed");
}

Test(session, a_message_length_past_the_end_is_malformed)
{
	uint8_t plain[8] = { 0, 0, 0, 9, 'a', 'b', 'c', 'd' };
	uint8_t *cur = plain, *m;
	uint32_t len;
	bool ctrl;
	cr_assert_eq(session_next_msg(&cur, plain + sizeof(plain), &m, &len, &ctrl), -EBADMSG);
}

Test(handshake, nothing_is_accepted_after_a_refused_msg1)
{
	/* a dialer refused at msg1 must not complete with a msg3 built from empty state */
	struct identity a, b;
	make_id(&a);
	make_id(&b);
	struct hs_config ca = config(&a, false), cb = config(&b, false);
	hs_network_tag("other", ca.network_tag);
	struct handshake i, r;
	uint8_t m1[HS_MAX_LEN], out[HS_MAX_LEN], zero_m3[HS_MSG3_LEN] = "CRST\x02\x03";
	size_t l1, outlen;
	char why[128];
	hs_start(&i, &ca, true, m1, &l1);
	hs_start(&r, &cb, false, out, &outlen);
	cr_assert_eq(hs_recv(&r, m1, l1, out, &outlen, why, sizeof(why)), -EPROTO);
	cr_assert_eq(outlen, HS_REFUSAL_LEN, "a refusal is sent");
	cr_assert_lt(hs_recv(&r, zero_m3, sizeof(zero_m3), out, &outlen, why, sizeof(why)), 0);
}
