/*
 * fuzz_session.c - session records (p2p/session.c): opening and walking the
 * messages of a record. Input: u8 mode | records, each u16 length | bytes.
 *   mode & 3: 0 secure ChaCha20-Poly1305, 1 secure AES-256-GCM, 2 tracer, 3 inner;
 *   mode & 4: each record's bytes are a plaintext that a peer seals first
 *             (so the walk of messages sees arbitrary plaintexts), else the
 *             bytes are the record as received.
 */
#include "fuzz.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "p2p/session.h"

static volatile uint8_t sink;

static void walk(uint8_t *plain, uint32_t len)
{
	uint8_t *cur = plain, *msg;
	const uint8_t *end = plain + len;
	uint32_t mlen;
	bool ctrl;
	int ret;
	while ((ret = session_next_msg(&cur, end, &msg, &mlen, &ctrl)) == 1) {
		FUZZ_CHECK(msg >= plain && msg + mlen <= end && cur == msg + mlen);
		if (mlen) /* read both ends: ASan checks the bounds */
			sink ^= msg[0] ^ msg[mlen - 1];
	}
	FUZZ_CHECK(ret == 0 || ret == -EBADMSG);
}

static void one_record(struct session *tx, struct session *rx, const uint8_t *p, uint32_t n,
		       bool seal)
{
	static uint8_t buf[64 + 65536 + 32];
	uint8_t *plain;
	uint32_t plain_len;
	if (!seal) {
		uint8_t *rec = malloc(n ? n : 1); /* exact size: ASan sees any overread */
		FUZZ_CHECK(rec);
		memcpy(rec, p, n);
		if (session_open(rx, rec, n, &plain, &plain_len) == 0) {
			FUZZ_CHECK(plain >= rec && plain + plain_len <= rec + n);
			walk(plain, plain_len);
		}
		free(rec);
		return;
	}
	uint32_t hdr = session_hdr_room(tx), tag = session_tag_room(tx);
	memcpy(buf + hdr, p, n);
	FUZZ_CHECK(session_seal(tx, buf, n) == 0);
	uint32_t frame = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 |
			 buf[3];
	FUZZ_CHECK(frame == hdr - 4 + n + tag);
	FUZZ_CHECK(session_open(rx, buf + 4, frame, &plain, &plain_len) == 0);
	FUZZ_CHECK(plain_len == n && !memcmp(plain, p, n));
	walk(plain, plain_len);
}

void fuzz_session(const uint8_t *data, size_t size)
{
	static const uint8_t k1[32] = { 1 }, k2[32] = { 2 };
	if (size < 1)
		return;
	FUZZ_CHECK(sodium_init() >= 0);
	uint8_t mode = data[0];
	bool tracer = (mode & 3) == 2, aes = (mode & 3) == 1;
	struct session tx, rx;
	FUZZ_CHECK(session_init(&tx, tracer, aes, k1, k2) == 0);
	FUZZ_CHECK(session_init(&rx, tracer, aes, k2, k1) == 0);
	if ((mode & 3) == 3) {
		session_set_inner(&tx);
		session_set_inner(&rx);
	}
	const uint8_t *p = data + 1, *end = data + size;
	while (end - p >= 2) {
		uint32_t n = (uint32_t)p[0] << 8 | p[1];
		p += 2;
		if (n > (uint32_t)(end - p))
			n = (uint32_t)(end - p);
		one_record(&tx, &rx, p, n, mode & 4);
		p += n;
	}
	session_wipe(&tx);
	session_wipe(&rx);
}
