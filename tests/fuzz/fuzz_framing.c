/*
 * fuzz_framing.c - the stream transports' frame decoder (transports/framing.c).
 * Input: u8 max_len selector | u8 split seed | the TCP byte stream. The
 * stream is decoded twice, in one piece and in pieces of pseudo-random
 * sizes; both must yield the same messages and the same verdict.
 */
#include "fuzz.h"

#include <errno.h>
#include <string.h>

#include "transports/framing.h"

struct collect {
	uint32_t max_len;
	uint8_t out[1 << 16];
	size_t n;               /* bytes in out: each message's u32 length then its bytes */
	unsigned msgs;
};

static int sink(void *ctx, struct crust_msg *m)
{
	struct collect *c = ctx;
	FUZZ_CHECK(m->len <= c->max_len);
	if (c->n + 4 + m->len <= sizeof(c->out)) {
		memcpy(c->out + c->n, &m->len, 4);
		memcpy(c->out + c->n + 4, m->data, m->len);
		c->n += 4 + m->len;
	}
	c->msgs++;
	eng_msg_free(m);
	return 0;
}

/* Decode in chunks; chunk 0 means "all at once". */
static int decode(struct collect *c, const uint8_t *p, size_t n, uint8_t seed, bool split)
{
	struct frame_decoder d;
	uint8_t buf[4096];
	int err = 0;
	frame_decoder_init(&d, c->max_len);
	uint32_t x = seed | 1u;
	while (n && !err) {
		size_t take = n;
		if (split) {
			x = x * 1103515245u + 12345u;
			take = 1 + (x >> 16) % 300;
			if (take > n)
				take = n;
		}
		if (take > sizeof(buf))
			take = sizeof(buf);
		memcpy(buf, p, take); /* the decoder may not read past what it was given */
		err = frame_decode(&d, NULL, buf, (uint32_t)take, sink, c);
		p += take;
		n -= take;
	}
	FUZZ_CHECK(err == 0 || err == -EMSGSIZE);
	frame_decoder_reset(&d);
	FUZZ_CHECK(!frame_decoder_mid_frame(&d));
	return err;
}

void fuzz_framing(const uint8_t *data, size_t size)
{
	static const uint32_t maxes[] = { 0, 1, 16, 1024, 65536, 16u << 20 };
	static struct collect whole, pieces;
	if (size < 2)
		return;
	whole.max_len = pieces.max_len = maxes[data[0] % 6];
	whole.n = pieces.n = 0;
	whole.msgs = pieces.msgs = 0;
	int e1 = decode(&whole, data + 2, size - 2, data[1], false);
	int e2 = decode(&pieces, data + 2, size - 2, data[1], true);
	FUZZ_CHECK(e1 == e2);
	FUZZ_CHECK(whole.msgs == pieces.msgs);
	FUZZ_CHECK(whole.n == pieces.n && !memcmp(whole.out, pieces.out, whole.n));
}
