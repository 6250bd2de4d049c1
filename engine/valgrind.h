/*
 * valgrind.h - what `make valgrind` (mk/valgrind.mk, -DCRUST_VALGRIND) needs
 * from the engine; empty in every other build.
 *
 * valgrind 3.19 (Debian 12) runs io_uring_enter() as a syscall that never
 * blocks, so a shard waiting in it keeps valgrind's one big lock and every
 * other thread of the process stalls (the tests hang). Under valgrind a
 * shard therefore waits at most VG_MAX_WAIT_MS per loop iteration.
 * Memory the kernel fills through io_uring comes from anonymous mappings
 * (receive buffers) or calloc, which memcheck already counts as defined;
 * eng_vg_defined() marks the rest if it ever shows up as undefined.
 */
#ifndef CRUST_ENGINE_VALGRIND_H
#define CRUST_ENGINE_VALGRIND_H

#include <stddef.h>
#include <stdint.h>

#ifdef CRUST_VALGRIND
#include <valgrind/memcheck.h>

#define VG_MAX_WAIT_MS 5

static inline int64_t eng_vg_wait_ms(int64_t wait)
{
	if (RUNNING_ON_VALGRIND && (wait < 0 || wait > VG_MAX_WAIT_MS))
		return VG_MAX_WAIT_MS;
	return wait;
}

static inline void eng_vg_defined(const void *p, size_t n)
{
	(void)VALGRIND_MAKE_MEM_DEFINED(p, n);
}
#else
static inline int64_t eng_vg_wait_ms(int64_t wait)
{
	return wait;
}

static inline void eng_vg_defined(const void *p, size_t n)
{
	(void)p;
	(void)n;
}
#endif

#endif
