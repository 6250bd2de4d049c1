/*
 * rudp_stream.h - the connection's byte stream over packets: what we
 * sent and must keep until acknowledged (send side), and what arrived out
 * of order and waits for the gap to fill (receive side). Pure.
 *
 * Send side: bytes live in 64 KiB chunks from `acked` (everything below
 * was acknowledged) to `end`; `sent` is the first byte never sent.
 * Ranges reported lost go to a retransmit set and are sent again (in new
 * packets) before new bytes; parts acknowledged meanwhile are skipped.
 *
 * Receive side: a sorted list of disjoint copied segments above the
 * in-order point `next` (each byte held once, so at most a window).
 */
#ifndef CRUST_RUDP_STREAM_H
#define CRUST_RUDP_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "rudp_ranges.h"

#define RUDP_CHUNK (64u * 1024u)

struct rudp_sendbuf {
	uint8_t **chunks;          /* chunks[0] holds offset chunk_base */
	unsigned nchunks, cap;
	uint64_t chunk_base;
	uint64_t acked, sent, end;
	struct rudp_ranges acked_above; /* acknowledged bytes above `acked` */
	struct rudp_ranges retx;        /* lost bytes to send again */
	uint64_t retx_bytes;            /* counter: bytes sent again */
};

void rudp_sendbuf_init(struct rudp_sendbuf *b);
void rudp_sendbuf_free(struct rudp_sendbuf *b);
/* Append len bytes. 0 or -ENOMEM. */
int rudp_sendbuf_append(struct rudp_sendbuf *b, const void *p, uint32_t len);
/* Reserve len bytes (filled later with rudp_sendbuf_write); returns their offset. */
int rudp_sendbuf_reserve(struct rudp_sendbuf *b, uint32_t len, uint64_t *off);
void rudp_sendbuf_write(struct rudp_sendbuf *b, uint64_t off, const void *p, uint32_t len);
/* Copy len bytes at off (all still held) to dst. */
void rudp_sendbuf_copy(const struct rudp_sendbuf *b, uint64_t off, uint32_t len, uint8_t *dst);
/*
 * What to send next, at most max bytes, none at or above limit (the end
 * of closed records, flow control): a lost range first (*retx true), else
 * new bytes. Returns false if nothing. Marks what it returns as sent.
 */
bool rudp_sendbuf_next(struct rudp_sendbuf *b, uint32_t max, uint64_t limit, uint64_t *off,
		       uint32_t *len, bool *retx);
/* Is there anything to send below limit? */
bool rudp_sendbuf_pending(const struct rudp_sendbuf *b, uint64_t limit);
void rudp_sendbuf_on_acked(struct rudp_sendbuf *b, uint64_t off, uint32_t len);
void rudp_sendbuf_on_lost(struct rudp_sendbuf *b, uint64_t off, uint32_t len);
/* Bytes held (sent or not, unacknowledged). */
static inline uint64_t rudp_sendbuf_held(const struct rudp_sendbuf *b) { return b->end - b->acked; }

struct rudp_seg {
	struct rudp_seg *next;
	uint64_t off;
	uint32_t len;
	uint8_t data[];
};

struct rudp_recvbuf {
	uint64_t next;             /* in-order point: everything below was handed up */
	struct rudp_seg *head, *tail;
	uint64_t held;             /* bytes in segments */
};

void rudp_recvbuf_init(struct rudp_recvbuf *r);
void rudp_recvbuf_free(struct rudp_recvbuf *r);
/* Keep a copy of the bytes (arrived above the in-order point) not held yet. 0 or -ENOMEM. */
int rudp_recvbuf_hold(struct rudp_recvbuf *r, uint64_t off, const uint8_t *p, uint32_t len);
/*
 * The held segment that continues the in-order point (removed from the
 * list; the caller frees it), with *skip bytes of it already delivered;
 * NULL if the gap is still open.
 */
struct rudp_seg *rudp_recvbuf_pop(struct rudp_recvbuf *r, uint32_t *skip);

#endif
