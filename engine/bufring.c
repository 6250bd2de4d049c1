/*
 * bufring.c - provided-buffer ring (see bufring.h for the lifecycle).
 *
 * Invariant: a buffer is either in the kernel's ring (refs == 0 and
 * counted in in_kernel/pending_adds) or held by user space (refs > 0).
 */
#define _GNU_SOURCE
#include "bufring.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "compat.h"

int eng_bufring_init(struct eng_bufring *r, struct io_uring *uring, int bgid,
		     uint32_t buf_size, uint32_t count)
{
	if (count == 0 || count > 32768 || (count & (count - 1)))
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->uring = uring;
	r->bgid = bgid;
	r->buf_size = buf_size;
	r->count = count;
	r->owner = pthread_self();
	size_t total = (size_t)buf_size * count;
	r->mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (r->mem == MAP_FAILED)
		return -ENOMEM;
	r->bufs = calloc(count, sizeof(*r->bufs));
	if (!r->bufs)
		goto err_unmap;
	int err;
	r->br = compat_setup_buf_ring(uring, count, bgid, 0, &err);
	if (!r->br)
		goto err_free;
	for (uint32_t i = 0; i < count; i++) {
		struct eng_rxbuf *b = &r->bufs[i];
		b->bid = (uint16_t)i;
		b->ring = r;
		b->data = r->mem + (size_t)i * buf_size;
		io_uring_buf_ring_add(r->br, b->data, buf_size, b->bid, io_uring_buf_ring_mask(count),
				      (int)i);
	}
	compat_buf_ring_advance(r->br, (int)count);
	r->in_kernel = count;
	return 0;

err_free:
	free(r->bufs);
	munmap(r->mem, total);
	return err;
err_unmap:
	munmap(r->mem, total);
	return -ENOMEM;
}

void eng_bufring_destroy(struct eng_bufring *r)
{
	if (!r->br)
		return;
	/* the ring is gone (its exit unregistered us): only memory is left */
	munmap(r->br, r->count * sizeof(struct io_uring_buf));
	free(r->bufs);
	munmap(r->mem, (size_t)r->buf_size * r->count);
	r->br = NULL;
}

struct eng_rxbuf *eng_bufring_take(struct eng_bufring *r, uint32_t cqe_flags)
{
	uint16_t bid = (uint16_t)(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
	struct eng_rxbuf *b = &r->bufs[bid % r->count];
	atomic_store_explicit(&b->refs, 1, memory_order_relaxed);
	r->in_kernel--;
	return b;
}

void eng_rxbuf_get(struct eng_rxbuf *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

/* Owner thread: hand b back to the kernel (published at the next flush). */
static void recycle(struct eng_bufring *r, struct eng_rxbuf *b)
{
	io_uring_buf_ring_add(r->br, b->data, r->buf_size, b->bid, io_uring_buf_ring_mask(r->count),
			      (int)r->pending_adds);
	r->pending_adds++;
}

void eng_rxbuf_put(struct eng_rxbuf *b)
{
	/* acq_rel: the last holder must see every other holder's reads done */
	if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	struct eng_bufring *r = b->ring;
	if (pthread_equal(pthread_self(), r->owner)) {
		recycle(r, b);
		return;
	}
	/* counted before the push (which releases it): the drain never subtracts first */
	atomic_fetch_add_explicit(&r->returned_n, 1, memory_order_relaxed);
	struct eng_rxbuf *head = atomic_load_explicit(&r->returned, memory_order_relaxed);
	do {
		b->next_free = head;
	} while (!atomic_compare_exchange_weak(&r->returned, &head, b));
	/*
	 * seq_cst on both sides: either the owner's drain (after it set
	 * starved) sees our push, or we see starved and wake it.
	 */
	if (atomic_load(&r->starved) && r->wake)
		r->wake(r->wake_ctx);
}

void eng_bufring_heap_release(struct eng_bufring *r, uint64_t n)
{
	atomic_fetch_sub(&r->heap_held, n);
	if (!pthread_equal(pthread_self(), r->owner) && atomic_load(&r->starved) && r->wake)
		r->wake(r->wake_ctx);
}

void eng_bufring_reclaim(struct eng_bufring *r)
{
	struct eng_rxbuf *b = atomic_exchange(&r->returned, NULL);
	uint32_t n = 0;
	while (b) {
		struct eng_rxbuf *next = b->next_free;
		recycle(r, b);
		b = next;
		n++;
	}
	if (n)
		atomic_fetch_sub_explicit(&r->returned_n, n, memory_order_relaxed);
	eng_bufring_flush(r);
}

void eng_bufring_flush(struct eng_bufring *r)
{
	if (!r->pending_adds)
		return;
	compat_buf_ring_advance(r->br, (int)r->pending_adds);
	r->in_kernel += r->pending_adds;
	r->pending_adds = 0;
}
