/*
 * valgrind.h - what `make valgrind` (mk/valgrind.mk, -DCRUST_VALGRIND) needs
 * from the engine; empty in every other build.
 *
 * valgrind 3.19 (Debian 12) runs io_uring_enter() as a syscall that never
 * blocks, so a shard waiting in it keeps valgrind's one big lock and every
 * other thread of the process stalls (the tests hang). Under valgrind a
 * shard therefore submits without waiting and blocks in poll() on the
 * ring's descriptor instead (poll releases the lock), at most
 * VG_MAX_WAIT_MS at a time: with DEFER_TASKRUN, newer kernels wake the
 * ring's task for deferred completions only when it waits inside
 * io_uring_enter, so poll alone can miss them. Then it reaps with a zero
 * wait, which runs that deferred work.
 * Memory the kernel fills through io_uring comes from anonymous mappings
 * (receive buffers) or calloc, which memcheck already counts as defined;
 * eng_vg_defined() marks the rest if it ever shows up as undefined.
 */
#ifndef CRUST_ENGINE_VALGRIND_H
#define CRUST_ENGINE_VALGRIND_H

#include <stddef.h>
#include <stdint.h>

#ifdef CRUST_VALGRIND
#include <liburing.h>
#include <poll.h>
#include <valgrind/memcheck.h>

#define VG_MAX_WAIT_MS 5

/* Wait up to wait ms (< 0: no limit) the valgrind way; returns the wait left for io_uring: 0. */
static inline int64_t eng_vg_wait_ms(struct io_uring *ring, int64_t wait)
{
	if (!RUNNING_ON_VALGRIND)
		return wait;
	io_uring_submit(ring);
	struct pollfd pfd = { .fd = ring->ring_fd, .events = POLLIN };
	if (!io_uring_cq_ready(ring))
		(void)poll(&pfd, 1, wait < 0 || wait > VG_MAX_WAIT_MS ? VG_MAX_WAIT_MS : (int)wait);
	return 0;
}

static inline void eng_vg_defined(const void *p, size_t n)
{
	(void)VALGRIND_MAKE_MEM_DEFINED(p, n);
}
#else
struct io_uring;
static inline int64_t eng_vg_wait_ms(struct io_uring *ring, int64_t wait)
{
	(void)ring;
	return wait;
}

static inline void eng_vg_defined(const void *p, size_t n)
{
	(void)p;
	(void)n;
}
#endif

#endif
