/*
 * bufring.h - a provided-buffer ring: the receive buffers of one shard.
 *
 * The kernel picks a buffer for each multishot receive completion; the
 * buffer then belongs to user space until eng_rxbuf_put() drops the last
 * reference, which hands it back to the kernel. References may be dropped
 * from any thread: off-shard puts go to a lock-free return stack that the
 * owning shard drains (eng_bufring_reclaim) every loop iteration.
 */
#ifndef CRUST_ENGINE_BUFRING_H
#define CRUST_ENGINE_BUFRING_H

#include <liburing.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct eng_bufring;

struct eng_rxbuf {
	atomic_uint refs;             /* 0 = owned by the kernel */
	uint16_t bid;
	struct eng_bufring *ring;
	struct eng_rxbuf *next_free;  /* return-stack link */
	uint8_t *data;
};

struct eng_bufring {
	struct io_uring *uring;
	struct io_uring_buf_ring *br;
	uint8_t *mem;
	uint32_t buf_size, count;
	int bgid;
	struct eng_rxbuf *bufs;
	uint32_t in_kernel;           /* buffers the kernel may fill */
	unsigned pending_adds;        /* added but not yet published */
	_Atomic(struct eng_rxbuf *) returned; /* off-thread puts */
	_Atomic uint32_t returned_n;  /* how many wait there (an idle shard may not look for long) */
	atomic_bool starved;          /* a receive is waiting for buffers */
	_Atomic uint64_t heap_held;   /* bytes of reassembled messages the user holds */
	pthread_t owner;              /* thread allowed to recycle directly */
	void (*wake)(void *ctx);      /* called when an off-thread put may unblock */
	void *wake_ctx;
};

/* Create and register count (power of two) buffers of buf_size bytes. */
int eng_bufring_init(struct eng_bufring *r, struct io_uring *uring, int bgid,
		     uint32_t buf_size, uint32_t count);
/*
 * Free the memory. Call after the io_uring itself has exited (which
 * unregisters the ring) and after every reference was dropped: buffers
 * may be referenced from other threads until the whole engine stops.
 */
void eng_bufring_destroy(struct eng_bufring *r);

/* The buffer a completion's IORING_CQE_F_BUFFER names; takes one reference. */
struct eng_rxbuf *eng_bufring_take(struct eng_bufring *r, uint32_t cqe_flags);
/* Add a reference (any thread, while holding one). */
void eng_rxbuf_get(struct eng_rxbuf *b);
/* Drop a reference (any thread); the last one returns the buffer. */
void eng_rxbuf_put(struct eng_rxbuf *b);

/* A reassembled message of n bytes was freed (any thread): wake a paused shard. */
void eng_bufring_heap_release(struct eng_bufring *r, uint64_t n);

/* Owner thread: take back buffers returned from other threads and publish. */
void eng_bufring_reclaim(struct eng_bufring *r);
/* Owner thread: publish buffers recycled since the last flush. */
void eng_bufring_flush(struct eng_bufring *r);
/* Buffers available to the kernel now (owner thread). */
static inline uint32_t eng_bufring_available(const struct eng_bufring *r)
{
	return r->in_kernel + r->pending_adds;
}

#endif
