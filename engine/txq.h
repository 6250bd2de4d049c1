/*
 * txq.h - a send queue with one FIFO per priority (u8, lower = more
 * urgent). The per-priority heads are allocated on first use, so a
 * connection that never sends pays nothing. Owner thread only.
 */
#ifndef CRUST_ENGINE_TXQ_H
#define CRUST_ENGINE_TXQ_H

#include <stdbool.h>
#include <stdint.h>

#include "msg.h"

struct eng_txq_fifo {
	struct crust_msg *head, *tail;
};

struct eng_txq {
	struct eng_txq_fifo *fifo;  /* 256 entries once allocated */
	uint64_t nonempty[4];       /* bit p set: fifo[p] has messages */
	uint64_t bytes;             /* frame bytes queued */
	uint32_t count;
};

/* Append m (at m->prio). -ENOMEM if the fifo table cannot be allocated. */
int eng_txq_push(struct eng_txq *q, struct crust_msg *m);
/* The most urgent message, or NULL. */
struct crust_msg *eng_txq_peek(const struct eng_txq *q);
/* Remove and return the most urgent message, or NULL. */
struct crust_msg *eng_txq_pop(struct eng_txq *q);
static inline bool eng_txq_empty(const struct eng_txq *q) { return q->count == 0; }
/* Free the fifo table (the queue must be empty). */
void eng_txq_release(struct eng_txq *q);

#endif
