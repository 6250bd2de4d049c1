/*
 * tsan.h - ThreadSanitizer annotations; empty in every other build.
 *
 * liburing maps and unmaps its rings with raw system calls that TSan does
 * not see. When a shard's ring is torn down and a later ring (any shard,
 * any service) is mapped at the same address, TSan still remembers the
 * old thread's accesses there and reports the new thread's first writes
 * to the SQ array as a race. No memory is shared: the address was
 * unmapped in between. A release before every ring exit and an acquire
 * after every ring setup tell TSan so (docs/QUALITY.md, ThreadSanitizer).
 */
#ifndef CRUST_ENGINE_TSAN_H
#define CRUST_ENGINE_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define ENG_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ENG_TSAN 1
#endif
#endif

#ifdef ENG_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define eng_tsan_acquire(p) __tsan_acquire(p)
#define eng_tsan_release(p) __tsan_release(p)
#else
#define eng_tsan_acquire(p) ((void)(p))
#define eng_tsan_release(p) ((void)(p))
#endif

#endif
