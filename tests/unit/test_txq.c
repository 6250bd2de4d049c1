/*
 * test_txq.c - the per-priority send queue (engine/txq.c): lower priority
 * values leave first, FIFO within a priority, frame bytes and count kept.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdlib.h>

#include "engine/txq.h"

static struct crust_msg *mk(uint8_t prio, uint32_t len, uint8_t hdr_len)
{
	struct crust_msg *m = eng_msg_alloc(len);
	cr_assert(not(eq(ptr, m, NULL)));
	m->prio = prio;
	m->hdr_len = hdr_len;
	return m;
}

static void push_ok(struct eng_txq *q, struct crust_msg *m)
{
	cr_assert(zero(int, eng_txq_push(q, m)));
}

Test(txq, empty_queue_has_nothing)
{
	struct eng_txq q = { 0 };
	cr_assert(eng_txq_empty(&q));
	cr_assert(eq(ptr, eng_txq_peek(&q), NULL));
	cr_assert(eq(ptr, eng_txq_pop(&q), NULL));
	eng_txq_release(&q); /* never allocated: harmless */
	cr_assert(eq(ptr, q.fifo, NULL));
}

Test(txq, lower_priority_value_leaves_first)
{
	static const uint8_t in[] = { 5, 1, 200, 0, 64, 63, 255, 128, 127 };
	static const uint8_t out[] = { 0, 1, 5, 63, 64, 127, 128, 200, 255 };
	struct eng_txq q = { 0 };
	for (size_t i = 0; i < sizeof(in); i++)
		push_ok(&q, mk(in[i], 10, 0));
	for (size_t i = 0; i < sizeof(out); i++) {
		struct crust_msg *p = eng_txq_peek(&q);
		struct crust_msg *m = eng_txq_pop(&q);
		cr_assert(eq(ptr, m, p), "peek shows what pop returns");
		cr_assert(not(eq(ptr, m, NULL)));
		cr_assert(eq(u8, m->prio, out[i]));
		eng_msg_free(m);
	}
	cr_assert(eng_txq_empty(&q));
	cr_assert(eq(ptr, eng_txq_pop(&q), NULL));
	eng_txq_release(&q);
}

Test(txq, fifo_within_a_priority)
{
	enum { N = 50 };
	struct eng_txq q = { 0 };
	struct crust_msg *a[N], *b[N];
	/* interleave two priorities; each keeps its own push order */
	for (int i = 0; i < N; i++) {
		a[i] = mk(9, (uint32_t)i, 0);
		b[i] = mk(3, (uint32_t)i, 0);
		push_ok(&q, a[i]);
		push_ok(&q, b[i]);
	}
	for (int i = 0; i < N; i++)
		cr_assert(eq(ptr, eng_txq_pop(&q), b[i]), "prio 3 item %d", i);
	for (int i = 0; i < N; i++)
		cr_assert(eq(ptr, eng_txq_pop(&q), a[i]), "prio 9 item %d", i);
	cr_assert(eng_txq_empty(&q));
	for (int i = 0; i < N; i++) {
		eng_msg_free(a[i]);
		eng_msg_free(b[i]);
	}
	eng_txq_release(&q);
}

Test(txq, urgent_message_overtakes_queued_ones)
{
	struct eng_txq q = { 0 };
	struct crust_msg *bulk1 = mk(100, 1, 0), *bulk2 = mk(100, 1, 0), *ctl = mk(0, 1, 0);
	push_ok(&q, bulk1);
	push_ok(&q, bulk2);
	cr_assert(eq(ptr, eng_txq_pop(&q), bulk1));
	push_ok(&q, ctl);
	cr_assert(eq(ptr, eng_txq_peek(&q), ctl));
	cr_assert(eq(ptr, eng_txq_pop(&q), ctl));
	cr_assert(eq(ptr, eng_txq_pop(&q), bulk2));
	eng_msg_free(bulk1);
	eng_msg_free(bulk2);
	eng_msg_free(ctl);
	eng_txq_release(&q);
}

Test(txq, bytes_and_count_follow_frames)
{
	struct eng_txq q = { 0 };
	struct crust_msg *m1 = mk(2, 100, 4), *m2 = mk(1, 1000, 16), *m3 = mk(2, 0, 8);
	push_ok(&q, m1);
	cr_assert(eq(u64, q.bytes, 104));
	cr_assert(eq(u32, q.count, 1));
	push_ok(&q, m2);
	push_ok(&q, m3);
	cr_assert(eq(u64, q.bytes, 104 + 1016 + 8));
	cr_assert(eq(u32, q.count, 3));
	cr_assert(not(eng_txq_empty(&q)));

	eng_txq_peek(&q);
	cr_assert(eq(u64, q.bytes, 1128), "peek changes nothing");
	cr_assert(eq(u32, q.count, 3));

	cr_assert(eq(ptr, eng_txq_pop(&q), m2));
	cr_assert(eq(u64, q.bytes, 112));
	cr_assert(eq(u32, q.count, 2));
	cr_assert(eq(ptr, eng_txq_pop(&q), m1));
	cr_assert(eq(ptr, eng_txq_pop(&q), m3));
	cr_assert(zero(u64, q.bytes));
	cr_assert(zero(u32, q.count));
	cr_assert(eng_txq_empty(&q));
	eng_msg_free(m1);
	eng_msg_free(m2);
	eng_msg_free(m3);
	eng_txq_release(&q);
}

Test(txq, popped_message_is_unlinked)
{
	struct eng_txq q = { 0 };
	struct crust_msg *a = mk(7, 1, 0), *b = mk(7, 1, 0);
	push_ok(&q, a);
	push_ok(&q, b);
	cr_assert(eq(ptr, eng_txq_pop(&q), a));
	cr_assert(eq(ptr, a->next, NULL), "a popped message carries no queue link");
	cr_assert(eq(ptr, eng_txq_pop(&q), b));
	eng_msg_free(a);
	eng_msg_free(b);
	eng_txq_release(&q);
}

Test(txq, drained_priority_can_be_refilled)
{
	struct eng_txq q = { 0 };
	struct crust_msg *a = mk(70, 1, 0), *b = mk(70, 1, 0), *c = mk(71, 1, 0);
	push_ok(&q, a);
	cr_assert(eq(ptr, eng_txq_pop(&q), a));
	/* the drained fifo must not keep a stale tail or a stale bitmap bit */
	cr_assert(eq(ptr, eng_txq_peek(&q), NULL));
	push_ok(&q, c);
	cr_assert(eq(ptr, eng_txq_peek(&q), c));
	push_ok(&q, b);
	cr_assert(eq(ptr, eng_txq_pop(&q), b));
	cr_assert(eq(ptr, eng_txq_pop(&q), c));
	cr_assert(eq(ptr, eng_txq_pop(&q), NULL));
	/* the same message object can be queued again after it left */
	push_ok(&q, a);
	cr_assert(eq(ptr, eng_txq_pop(&q), a));
	cr_assert(eq(ptr, eng_txq_pop(&q), NULL));
	eng_msg_free(a);
	eng_msg_free(b);
	eng_msg_free(c);
	eng_txq_release(&q);
}

Test(txq, every_priority_in_order)
{
	struct eng_txq q = { 0 };
	struct crust_msg *m[256];
	for (int p = 255; p >= 0; p--) {
		m[p] = mk((uint8_t)p, (uint32_t)p, 1);
		push_ok(&q, m[p]);
	}
	cr_assert(eq(u32, q.count, 256));
	cr_assert(eq(u64, q.bytes, 255 * 256 / 2 + 256));
	for (int p = 0; p < 256; p++)
		cr_assert(eq(ptr, eng_txq_pop(&q), m[p]), "prio %d", p);
	cr_assert(eng_txq_empty(&q));
	cr_assert(zero(u64, q.bytes));
	for (int p = 0; p < 256; p++)
		eng_msg_free(m[p]);
	eng_txq_release(&q);
	cr_assert(eq(ptr, q.fifo, NULL));
}
