/*
 * framing.h - length-prefixed message framing for stream transports.
 *
 * A frame is a 4-byte big-endian payload length followed by the payload.
 * The decoder is pure (no I/O): it takes bytes as they arrive, in any
 * split or coalescing, and hands out whole messages. A frame that lies
 * entirely inside one receive buffer becomes a VIEW of that buffer (no
 * copy); one that spans buffers is reassembled into a HEAP message.
 */
#ifndef CRUST_FRAMING_H
#define CRUST_FRAMING_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/msg.h"

#define FRAME_HDR_LEN 4u
/* set in the header of control messages inside records (never in outer frames) */
#define FRAME_CTRL_BIT 0x80000000u

struct frame_decoder {
	uint32_t max_len;
	uint8_t hdr[FRAME_HDR_LEN];
	uint8_t hdr_have;
	struct crust_msg *partial; /* payload being reassembled */
	uint32_t want;             /* its full length */
	uint32_t have;             /* payload bytes in partial */
	uint32_t cap;              /* bytes allocated: grows with what arrives, not the header's claim */
};

/* Receives each whole message (owns it). Non-zero stops decoding. */
typedef int (*frame_sink_fn)(void *ctx, struct crust_msg *m);

void frame_decoder_init(struct frame_decoder *d, uint32_t max_len);
/* Free a half-reassembled message. */
void frame_decoder_reset(struct frame_decoder *d);
/* True between a frame's first byte and its last. */
bool frame_decoder_mid_frame(const struct frame_decoder *d);

/*
 * Feed n bytes at p inside b (b may be NULL: every frame is then copied).
 * Returns 0, -EMSGSIZE (a length above max_len: the stream is unusable),
 * -ENOMEM, or the sink's non-zero value.
 */
int frame_decode(struct frame_decoder *d, struct eng_rxbuf *b, uint8_t *p, uint32_t n,
		 frame_sink_fn sink, void *ctx);

/* Write m's frame header into its headroom (HEAP messages only). */
void frame_encode(struct crust_msg *m);

#endif
