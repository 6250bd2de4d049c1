/*
 * mailbox.c - Vyukov's intrusive MPSC queue
 * (1024cores.net, "Intrusive MPSC node-based queue").
 *
 * push: one atomic exchange on head, then link the previous head to the
 * new node. pop: follow next pointers from tail; a stub node keeps the
 * queue non-empty so producers never touch the consumer's tail.
 */
#include "mailbox.h"

#include <stddef.h>

void eng_mailbox_init(struct eng_mailbox *mb)
{
	atomic_store(&mb->stub.next, NULL);
	atomic_store(&mb->head, &mb->stub);
	mb->tail = &mb->stub;
	atomic_store(&mb->doorbell_rung, false);
}

void eng_mailbox_push(struct eng_mailbox *mb, struct eng_mail *m)
{
	atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
	/* acq_rel: publishes m's contents to whoever follows prev->next */
	struct eng_mail *prev = atomic_exchange_explicit(&mb->head, m, memory_order_acq_rel);
	atomic_store_explicit(&prev->next, m, memory_order_release);
}

struct eng_mail *eng_mailbox_pop(struct eng_mailbox *mb)
{
	struct eng_mail *tail = mb->tail;
	struct eng_mail *next = atomic_load_explicit(&tail->next, memory_order_acquire);
	if (tail == &mb->stub) {
		if (!next)
			return NULL;
		mb->tail = next;
		tail = next;
		next = atomic_load_explicit(&next->next, memory_order_acquire);
	}
	if (next) {
		mb->tail = next;
		return tail;
	}
	if (tail != atomic_load_explicit(&mb->head, memory_order_acquire))
		return NULL; /* a push is in progress */
	eng_mailbox_push(mb, &mb->stub);
	next = atomic_load_explicit(&tail->next, memory_order_acquire);
	if (next) {
		mb->tail = next;
		return tail;
	}
	return NULL;
}
