/*
 * test_mailbox.c - the shard inbox (engine/mailbox.c) on its own and
 * through eng_post() between real shards.
 *
 * Ordering is only promised per producer, so the checks are: every item
 * arrives exactly once, and each producer's items arrive in push order.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdlib.h>
#include <time.h>

#include "engine/engine.h"

struct item {
	struct eng_mail m;
	unsigned producer;
	unsigned seq;
	void *ctx;
};

static struct item *pop_item(struct eng_mailbox *mb)
{
	struct eng_mail *m = eng_mailbox_pop(mb);
	return m ? container_of(m, struct item, m) : NULL;
}

Test(mailbox, empty_pops_null)
{
	struct eng_mailbox mb;
	eng_mailbox_init(&mb);
	cr_assert(eq(ptr, eng_mailbox_pop(&mb), NULL));
	cr_assert(eq(ptr, eng_mailbox_pop(&mb), NULL));
}

Test(mailbox, single_thread_fifo)
{
	enum { N = 1000 };
	struct eng_mailbox mb;
	struct item *it = calloc(N, sizeof(*it));
	cr_assert(not(eq(ptr, it, NULL)));
	eng_mailbox_init(&mb);
	for (unsigned i = 0; i < N; i++) {
		it[i].seq = i;
		eng_mailbox_push(&mb, &it[i].m);
	}
	for (unsigned i = 0; i < N; i++) {
		struct item *x = pop_item(&mb);
		cr_assert(not(eq(ptr, x, NULL)), "item %u missing", i);
		cr_assert(eq(uint, x->seq, i));
	}
	cr_assert(eq(ptr, eng_mailbox_pop(&mb), NULL));
	free(it);
}

Test(mailbox, one_item_at_a_time_reuses_the_stub)
{
	/* push one, pop one: the last item out always goes through the stub re-push */
	struct eng_mailbox mb;
	struct item a = { .seq = 1 }, b = { .seq = 2 };
	eng_mailbox_init(&mb);
	for (unsigned round = 0; round < 100; round++) {
		struct item *x = round % 2 ? &b : &a;
		eng_mailbox_push(&mb, &x->m);
		cr_assert(eq(ptr, pop_item(&mb), x), "round %u", round);
		cr_assert(eq(ptr, eng_mailbox_pop(&mb), NULL), "round %u", round);
	}
}

Test(mailbox, interleaved_push_and_pop_keep_order)
{
	enum { N = 300 };
	struct eng_mailbox mb;
	struct item it[N];
	unsigned next_in = 0, next_out = 0;
	eng_mailbox_init(&mb);
	/* push 3, pop 2, until everything went in; then drain */
	while (next_in < N) {
		for (int k = 0; k < 3 && next_in < N; k++) {
			it[next_in].seq = next_in;
			eng_mailbox_push(&mb, &it[next_in].m);
			next_in++;
		}
		for (int k = 0; k < 2; k++) {
			struct item *x = pop_item(&mb);
			cr_assert(not(eq(ptr, x, NULL)));
			cr_assert(eq(uint, x->seq, next_out));
			next_out++;
		}
	}
	struct item *x;
	while ((x = pop_item(&mb))) {
		cr_assert(eq(uint, x->seq, next_out));
		next_out++;
	}
	cr_assert(eq(uint, next_out, N));
}

#define PRODUCERS 4
#define PER_PRODUCER 100000u

struct mpsc {
	struct eng_mailbox mb;
	struct item *items; /* PRODUCERS * PER_PRODUCER */
	pthread_barrier_t go;
};

struct producer {
	struct mpsc *q;
	unsigned id;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	struct item *mine = &p->q->items[(size_t)p->id * PER_PRODUCER];
	pthread_barrier_wait(&p->q->go);
	for (unsigned i = 0; i < PER_PRODUCER; i++) {
		mine[i].producer = p->id;
		mine[i].seq = i;
		eng_mailbox_push(&p->q->mb, &mine[i].m);
	}
	return NULL;
}

struct consumer_result {
	unsigned next_seq[PRODUCERS];
	unsigned received;
	unsigned bad_producer, out_of_order;
	unsigned char *seen;
	unsigned duplicates;
};

struct consumer {
	struct mpsc *q;
	struct consumer_result res;
};

static void *consume(void *arg)
{
	struct consumer *c = arg;
	struct consumer_result *r = &c->res;
	pthread_barrier_wait(&c->q->go);
	while (r->received < PRODUCERS * PER_PRODUCER) {
		struct item *x = pop_item(&c->q->mb);
		if (!x) {
			sched_yield(); /* empty, or a producer is half-way through a push */
			continue;
		}
		size_t idx = (size_t)(x - c->q->items);
		if (r->seen[idx]++)
			r->duplicates++;
		if (x->producer >= PRODUCERS)
			r->bad_producer++;
		else if (x->seq != r->next_seq[x->producer]++)
			r->out_of_order++;
		r->received++;
	}
	return NULL;
}

Test(mailbox, four_producers_one_consumer_exactly_once_in_order, .timeout = 60)
{
	struct mpsc q;
	struct consumer c = { .q = &q };
	struct producer p[PRODUCERS];
	pthread_t pt[PRODUCERS], ct;
	q.items = calloc((size_t)PRODUCERS * PER_PRODUCER, sizeof(*q.items));
	c.res.seen = calloc((size_t)PRODUCERS * PER_PRODUCER, 1);
	cr_assert(q.items && c.res.seen);
	eng_mailbox_init(&q.mb);
	pthread_barrier_init(&q.go, NULL, PRODUCERS + 1);
	cr_assert(zero(int, pthread_create(&ct, NULL, consume, &c)));
	for (unsigned i = 0; i < PRODUCERS; i++) {
		p[i] = (struct producer){ .q = &q, .id = i };
		cr_assert(zero(int, pthread_create(&pt[i], NULL, produce, &p[i])));
	}
	for (unsigned i = 0; i < PRODUCERS; i++)
		pthread_join(pt[i], NULL);
	pthread_join(ct, NULL);

	cr_assert(eq(uint, c.res.received, PRODUCERS * PER_PRODUCER));
	cr_assert(zero(uint, c.res.duplicates));
	cr_assert(zero(uint, c.res.bad_producer));
	cr_assert(zero(uint, c.res.out_of_order));
	for (unsigned i = 0; i < PRODUCERS; i++)
		cr_assert(eq(uint, c.res.next_seq[i], PER_PRODUCER), "producer %u", i);
	for (size_t i = 0; i < (size_t)PRODUCERS * PER_PRODUCER; i++)
		if (c.res.seen[i] != 1)
			cr_fatal("item %zu seen %u times", i, c.res.seen[i]);
	cr_assert(eq(ptr, eng_mailbox_pop(&q.mb), NULL), "nothing left over");
	pthread_barrier_destroy(&q.go);
	free(c.res.seen);
	free(q.items);
}

/* ---- through the engine: eng_post to shard 1 from two senders ---- */

enum { FROM_TEST = 0, FROM_SHARD0 = 1, SENDERS = 2 };
#define POSTS 2000u

struct post_test {
	struct eng *e;
	struct item items[SENDERS][POSTS];
	/* written only on shard 1 */
	unsigned next_seq[SENDERS];
	unsigned received, out_of_order, wrong_shard;
	/* written only on shard 0 */
	unsigned self_ran;
	struct eng_mail kick, self_mail;
	sem_t done;
};

static void record(struct shard *sh, struct eng_mail *m)
{
	struct item *x = container_of(m, struct item, m);
	struct post_test *t = x->ctx;
	if (sh->id != 1 || eng_current_shard() != sh)
		t->wrong_shard++;
	if (x->seq != t->next_seq[x->producer]++)
		t->out_of_order++;
	if (++t->received == SENDERS * POSTS)
		sem_post(&t->done);
}

/* On shard 0: post our items to shard 1 (doorbells go by MSG_RING). */
static void post_from_shard0(struct shard *sh, struct eng_mail *m)
{
	struct post_test *t = container_of(m, struct post_test, self_mail);
	struct shard *target = &sh->eng->shards[1];
	t->self_ran++;
	for (unsigned i = 0; i < POSTS; i++)
		eng_post(target, &t->items[FROM_SHARD0][i].m);
}

/* On shard 0: post to ourselves first, so a shard's self-post is covered. */
static void kick_shard0(struct shard *sh, struct eng_mail *m)
{
	struct post_test *t = container_of(m, struct post_test, kick);
	t->self_mail.fn = post_from_shard0;
	eng_post(sh, &t->self_mail);
}

Test(mailbox, eng_post_keeps_order_per_sender_across_shards, .timeout = 20)
{
	struct post_test *t = calloc(1, sizeof(*t));
	cr_assert(not(eq(ptr, t, NULL)));
	sem_init(&t->done, 0, 0);
	for (unsigned s = 0; s < SENDERS; s++)
		for (unsigned i = 0; i < POSTS; i++)
			t->items[s][i] = (struct item){ .m.fn = record, .producer = s, .seq = i, .ctx = t };
	struct eng_config cfg = {
		.shards = 2,
		.sq_entries = 64,
		.rx_buffer_size = 4096,
		.rx_buffer_count = 16,
		.tx_arena_size = 64 * 1024,
	};
	cr_assert(zero(int, eng_new(&cfg, &t->e)));
	cr_assert(eq(uint, t->e->nshards, 2));
	struct shard *s0 = &t->e->shards[0], *s1 = &t->e->shards[1];

	t->kick.fn = kick_shard0;
	eng_post(s0, &t->kick);
	/* the test thread posts at the same time, waking shard 1 by eventfd */
	for (unsigned i = 0; i < POSTS; i++) {
		eng_post(s1, &t->items[FROM_TEST][i].m);
		if (i % 256 == 0)
			sched_yield();
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	int ret;
	while ((ret = sem_timedwait(&t->done, &ts)) < 0 && errno == EINTR)
		;
	cr_assert(zero(int, ret), "only %u of %u mails arrived", t->received, SENDERS * POSTS);
	eng_free(t->e); /* joins the shards: their writes are visible now */

	cr_assert(eq(uint, t->self_ran, 1), "a shard's post to itself must run once");
	cr_assert(eq(uint, t->received, SENDERS * POSTS));
	cr_assert(zero(uint, t->wrong_shard));
	cr_assert(zero(uint, t->out_of_order));
	cr_assert(eq(uint, t->next_seq[FROM_TEST], POSTS));
	cr_assert(eq(uint, t->next_seq[FROM_SHARD0], POSTS));
	sem_destroy(&t->done);
	free(t);
}
