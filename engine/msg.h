/*
 * msg.h - struct crust_msg, the unit that crosses the public API.
 *
 * A message is either HEAP (its own allocation, with headroom in front of
 * the payload so a frame header can be written without copying) or VIEW
 * (a slice of a receive buffer, holding one reference to it). Whoever
 * holds a message owns it: the sender until crust_send_msg, the engine
 * until the bytes are on the wire, the receiver until crust_msg_release.
 * Releasing is thread-safe.
 */
#ifndef CRUST_ENGINE_MSG_H
#define CRUST_ENGINE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "bufring.h"
#include "mailbox.h"

#define ENG_MSG_HEADROOM 32u  /* frame header + record header go here */
#define ENG_MSG_TAILROOM 16u  /* an AEAD tag goes here */
#define ENG_MSG_RAW 1u        /* flags: send as a plain frame, never sealed */
#define ENG_MSG_CTRL 2u       /* flags: a control message (the frame header's top bit) */

enum eng_msg_kind { ENG_MSG_HEAP = 1, ENG_MSG_VIEW = 2 };

struct crust_msg {
	struct eng_mail mail;     /* on its way to a shard (no allocation per send) */
	struct crust_msg *next;   /* send-queue link while queued */
	uint8_t *data;
	uint32_t len;
	uint8_t kind;
	uint8_t prio;
	uint8_t hdr_len;          /* frame header bytes right before data (tx) */
	uint8_t flags;            /* ENG_MSG_RAW */
	struct eng_rxbuf *rxbuf;  /* VIEW: the buffer data points into */
	void *acct;               /* tx: the queue this message is charged to */
	struct eng_bufring *rx_acct; /* rx HEAP: the shard whose held-bytes count it is in */
	uint8_t storage[];        /* HEAP: ENG_MSG_HEADROOM + len bytes */
};

/* A HEAP message with room for len payload bytes (+ head- and tailroom); NULL if out of memory. */
struct crust_msg *eng_msg_alloc(size_t len);
/*
 * Resize a HEAP message's storage to cap payload bytes (len is left to
 * the caller). Returns the moved message or NULL (m is then unchanged).
 */
struct crust_msg *eng_msg_realloc(struct crust_msg *m, size_t cap);
/* Count a received HEAP message in r's held bytes until it is freed. */
void eng_msg_charge_rx(struct crust_msg *m, struct eng_bufring *r);
/* A VIEW of len bytes at p inside b; takes a reference to b. */
struct crust_msg *eng_msg_view(struct eng_rxbuf *b, uint8_t *p, uint32_t len);
/* Messages allocated and not yet freed, in the whole process (any thread). */
int64_t eng_msgs_live(void);
/* Free a message (any thread); a VIEW drops its buffer reference. */
void eng_msg_free(struct crust_msg *m);

/* The frame as it goes on the wire: header + payload, contiguous. */
static inline uint8_t *eng_msg_frame(const struct crust_msg *m)
{
	return m->data - m->hdr_len;
}
static inline uint32_t eng_msg_frame_len(const struct crust_msg *m)
{
	return m->len + m->hdr_len;
}

#endif
