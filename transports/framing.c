/* framing.c - length-prefixed framing (see framing.h). */
#include "framing.h"

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
	d->have = 0;
	d->hdr_have = 0;
}

bool frame_decoder_mid_frame(const struct frame_decoder *d)
{
	return d->hdr_have > 0 || d->partial;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void frame_encode(struct crust_msg *m)
{
	uint8_t *h = m->data - FRAME_HDR_LEN;
	h[0] = (uint8_t)(m->len >> 24);
	h[1] = (uint8_t)(m->len >> 16);
	h[2] = (uint8_t)(m->len >> 8);
	h[3] = (uint8_t)m->len;
	m->hdr_len = FRAME_HDR_LEN;
}

/* Continue a reassembly with up to n bytes; returns bytes used. */
static uint32_t fill_partial(struct frame_decoder *d, const uint8_t *p, uint32_t n)
{
	uint32_t want = d->partial->len - d->have;
	uint32_t take = n < want ? n : want;
	memcpy(d->partial->data + d->have, p, take);
	d->have += take;
	return take;
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
	d->partial = eng_msg_alloc(len);
	if (!d->partial)
		return -ENOMEM;
	d->have = 0;
	*used = fill_partial(d, p, n);
	if (d->have == len) {
		*whole = d->partial;
		d->partial = NULL;
	}
	return 0;
}

int frame_decode(struct frame_decoder *d, struct eng_rxbuf *b, uint8_t *p, uint32_t n,
		 frame_sink_fn sink, void *ctx)
{
	while (n) {
		struct crust_msg *whole = NULL;
		uint32_t used;
		if (d->partial) {
			used = fill_partial(d, p, n);
			if (d->have == d->partial->len) {
				whole = d->partial;
				d->partial = NULL;
			}
		} else if (d->hdr_have < FRAME_HDR_LEN) {
			used = FRAME_HDR_LEN - d->hdr_have;
			if (used > n)
				used = n;
			memcpy(d->hdr + d->hdr_have, p, used);
			d->hdr_have = (uint8_t)(d->hdr_have + used);
			if (d->hdr_have == FRAME_HDR_LEN) {
				uint32_t body = 0;
				d->hdr_have = 0;
				int err = start_frame(d, b, p + used, n - used, get_be32(d->hdr), &body,
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
