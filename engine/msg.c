/* msg.c - allocation and release of struct crust_msg (see msg.h). */
#include "msg.h"

#include <stdatomic.h>
#include <stdlib.h>

/* messages alive in this process (relaxed: a gauge for leak checks, not a lock) */
static _Atomic int64_t msgs_live;

int64_t eng_msgs_live(void)
{
	return atomic_load_explicit(&msgs_live, memory_order_relaxed);
}

struct crust_msg *eng_msg_alloc(size_t len)
{
	if (len > UINT32_MAX - ENG_MSG_HEADROOM - ENG_MSG_TAILROOM)
		return NULL;
	struct crust_msg *m = malloc(sizeof(*m) + ENG_MSG_HEADROOM + len + ENG_MSG_TAILROOM);
	if (!m)
		return NULL;
	m->next = NULL;
	m->data = m->storage + ENG_MSG_HEADROOM;
	m->len = (uint32_t)len;
	m->kind = ENG_MSG_HEAP;
	m->prio = 0;
	m->hdr_len = 0;
	m->flags = 0;
	m->rxbuf = NULL;
	m->acct = NULL;
	m->rx_acct = NULL;
	atomic_fetch_add_explicit(&msgs_live, 1, memory_order_relaxed);
	return m;
}

struct crust_msg *eng_msg_realloc(struct crust_msg *m, size_t cap)
{
	if (cap > UINT32_MAX - ENG_MSG_HEADROOM - ENG_MSG_TAILROOM)
		return NULL;
	struct crust_msg *n = realloc(m, sizeof(*m) + ENG_MSG_HEADROOM + cap + ENG_MSG_TAILROOM);
	if (!n)
		return NULL;
	n->data = n->storage + ENG_MSG_HEADROOM;
	return n;
}

void eng_msg_charge_rx(struct crust_msg *m, struct eng_bufring *r)
{
	m->rx_acct = r;
	atomic_fetch_add_explicit(&r->heap_held, m->len, memory_order_relaxed);
}

struct crust_msg *eng_msg_view(struct eng_rxbuf *b, uint8_t *p, uint32_t len)
{
	struct crust_msg *m = malloc(sizeof(*m));
	if (!m)
		return NULL;
	eng_rxbuf_get(b);
	m->next = NULL;
	m->data = p;
	m->len = len;
	m->kind = ENG_MSG_VIEW;
	m->prio = 0;
	m->hdr_len = 0;
	m->flags = 0;
	m->rxbuf = b;
	m->acct = NULL;
	m->rx_acct = NULL;
	atomic_fetch_add_explicit(&msgs_live, 1, memory_order_relaxed);
	return m;
}

void eng_msg_free(struct crust_msg *m)
{
	if (!m)
		return;
	if (m->kind == ENG_MSG_VIEW)
		eng_rxbuf_put(m->rxbuf);
	else if (m->rx_acct)
		eng_bufring_heap_release(m->rx_acct, m->len);
	atomic_fetch_sub_explicit(&msgs_live, 1, memory_order_relaxed);
	free(m);
}
