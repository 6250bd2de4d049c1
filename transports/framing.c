/* framing.c - length-prefixed framing (see framing.h). */
#include "framing.h"
#include "engine/bytes.h"

#include <errno.h>
#include <string.h>

void frame_decoder_init(struct frame_decoder *d, uint32_t max_len)
{
	memset(d, 0, sizeof(*d));
	d->max_len = max_len;
}

void frame_decoder_reset(struct frame_decoder *d)
{
	eng_msg_free(d->partial);
	d->partial = NULL;
	d->have = d->want = d->cap = 0;
	d->hdr_have = 0;
}

bool frame_decoder_mid_frame(const struct frame_decoder *d)
{
	return d->hdr_have > 0 || d->partial;
}

void frame_encode(struct crust_msg *m)
{
	uint8_t *h = m->data - FRAME_HDR_LEN;
	uint32_t v = m->len | (m->flags & ENG_MSG_CTRL ? FRAME_CTRL_BIT : 0);
	h[0] = (uint8_t)(v >> 24);
	h[1] = (uint8_t)(v >> 16);
	h[2] = (uint8_t)(v >> 8);
	h[3] = (uint8_t)v;
	m->hdr_len = FRAME_HDR_LEN;
}

#define FRAME_FIRST_ALLOC (64u * 1024u)

/* Grow the reassembly to hold at least need bytes (doubling, capped at want). */
static int grow(struct frame_decoder *d, uint32_t need)
{
	if (need <= d->cap)
		return 0;
	uint64_t cap = d->cap ? (uint64_t)d->cap * 2 : FRAME_FIRST_ALLOC;
	if (cap < need)
		cap = need;
	if (cap > d->want)
		cap = d->want;
	struct crust_msg *m = eng_msg_realloc(d->partial, cap);
	if (!m)
		return -ENOMEM;
	d->partial = m;
	d->cap = (uint32_t)cap;
	return 0;
}

/*
 * Continue a reassembly with up to n bytes; returns bytes used or -ENOMEM.
 * Memory follows the bytes that arrived, so a peer that announces a huge
 * frame and stalls costs only what it actually sent.
 */
static int64_t fill_partial(struct frame_decoder *d, const uint8_t *p, uint32_t n)
{
	uint32_t left = d->want - d->have;
	uint32_t take = n < left ? n : left;
	if (grow(d, d->have + take))
		return -ENOMEM;
	memcpy(d->partial->data + d->have, p, take);
	d->have += take;
	return take;
}

/* The reassembly is complete: hand it out. */
static struct crust_msg *finish_partial(struct frame_decoder *d)
{
	struct crust_msg *m = d->partial;
	m->len = d->want;
	d->partial = NULL;
	d->have = d->cap = d->want = 0;
	return m;
}

/* A header is complete: start the frame of len bytes with what follows at p. */
static int start_frame(struct frame_decoder *d, struct eng_rxbuf *b, uint8_t *p, uint32_t n,
		       uint32_t len, uint32_t *used, struct crust_msg **whole)
{
	if (len > d->max_len)
		return -EMSGSIZE;
	if (b && len <= n) {
		*whole = eng_msg_view(b, p, len);
		*used = len;
		return *whole ? 0 : -ENOMEM;
	}
	d->want = len;
	d->have = 0;
	d->cap = len < FRAME_FIRST_ALLOC ? len : FRAME_FIRST_ALLOC;
	d->partial = eng_msg_alloc(d->cap);
	if (!d->partial)
		return -ENOMEM;
	int64_t got = fill_partial(d, p, n);
	if (got < 0)
		return (int)got;
	*used = (uint32_t)got;
	if (d->have == len)
		*whole = finish_partial(d);
	return 0;
}

int frame_decode(struct frame_decoder *d, struct eng_rxbuf *b, uint8_t *p, uint32_t n,
		 frame_sink_fn sink, void *ctx)
{
	while (n) {
		struct crust_msg *whole = NULL;
		uint32_t used;
		if (d->partial) {
			int64_t got = fill_partial(d, p, n);
			if (got < 0)
				return (int)got;
			used = (uint32_t)got;
			if (d->have == d->want)
				whole = finish_partial(d);
		} else if (d->hdr_have < FRAME_HDR_LEN) {
			used = FRAME_HDR_LEN - d->hdr_have;
			if (used > n)
				used = n;
			memcpy(d->hdr + d->hdr_have, p, used);
			d->hdr_have = (uint8_t)(d->hdr_have + used);
			if (d->hdr_have == FRAME_HDR_LEN) {
				uint32_t body = 0;
				d->hdr_have = 0;
				int err = start_frame(d, b, p + used, n - used, eng_get_be32(d->hdr), &body,
						      &whole);
				if (err)
					return err;
				used += body;
			}
		} else {
			return -EINVAL; /* unreachable: hdr_have resets when full */
		}
		p += used;
		n -= used;
		if (whole) {
			int ret = sink(ctx, whole);
			if (ret)
				return ret;
		}
	}
	return 0;
}
