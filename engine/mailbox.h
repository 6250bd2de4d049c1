/*
 * mailbox.h - a shard's inbox: an intrusive multi-producer, single-consumer
 * queue (Vyukov's non-blocking MPSC). Producers are any threads; the
 * consumer is the owning shard. Items from one producer come out in the
 * order they went in. The doorbell that wakes the consumer is the
 * engine's business (eng_post), not the queue's.
 */
#ifndef CRUST_ENGINE_MAILBOX_H
#define CRUST_ENGINE_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>

struct shard;
struct eng_mail;
typedef void (*eng_mail_fn)(struct shard *sh, struct eng_mail *m);

/* Embed in a message; fn runs on the shard and owns m from then on. */
struct eng_mail {
	_Atomic(struct eng_mail *) next;
	eng_mail_fn fn;
};

struct eng_mailbox {
	_Atomic(struct eng_mail *) head; /* producers swap themselves in here */
	struct eng_mail *tail;           /* consumer side */
	struct eng_mail stub;
	atomic_bool doorbell_rung;       /* set by posters, cleared by the consumer */
};

void eng_mailbox_init(struct eng_mailbox *mb);
/* Any thread. */
void eng_mailbox_push(struct eng_mailbox *mb, struct eng_mail *m);
/*
 * Consumer only. Returns the next item or NULL. NULL can also mean a
 * producer is half-way through a push; that producer rings the doorbell
 * after it, so the consumer will be woken to look again.
 */
struct eng_mail *eng_mailbox_pop(struct eng_mailbox *mb);

#endif
