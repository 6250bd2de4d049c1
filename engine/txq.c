/* txq.c - per-priority send FIFOs with a bitmap for the most urgent one. */
#include "txq.h"

#include <errno.h>
#include <stdlib.h>

int eng_txq_push(struct eng_txq *q, struct crust_msg *m)
{
	if (!q->fifo) {
		q->fifo = calloc(256, sizeof(*q->fifo));
		if (!q->fifo)
			return -ENOMEM;
	}
	struct eng_txq_fifo *f = &q->fifo[m->prio];
	m->next = NULL;
	if (f->tail)
		f->tail->next = m;
	else
		f->head = m;
	f->tail = m;
	q->nonempty[m->prio >> 6] |= 1ull << (m->prio & 63);
	q->bytes += eng_msg_frame_len(m);
	q->count++;
	return 0;
}

static int first_prio(const struct eng_txq *q)
{
	for (int w = 0; w < 4; w++)
		if (q->nonempty[w])
			return w * 64 + __builtin_ctzll(q->nonempty[w]);
	return -1;
}

struct crust_msg *eng_txq_peek(const struct eng_txq *q)
{
	int p = first_prio(q);
	return p < 0 ? NULL : q->fifo[p].head;
}

struct crust_msg *eng_txq_pop(struct eng_txq *q)
{
	int p = first_prio(q);
	if (p < 0)
		return NULL;
	struct eng_txq_fifo *f = &q->fifo[p];
	struct crust_msg *m = f->head;
	f->head = m->next;
	if (!f->head) {
		f->tail = NULL;
		q->nonempty[p >> 6] &= ~(1ull << (p & 63));
	}
	m->next = NULL;
	q->bytes -= eng_msg_frame_len(m);
	q->count--;
	return m;
}

void eng_txq_release(struct eng_txq *q)
{
	free(q->fifo);
	q->fifo = NULL;
}
