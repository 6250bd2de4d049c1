/*
 * fault.c - the fault injector of the faults build (see fault.h).
 *
 * Each decision draws the next number of one process-wide sequence
 * (splitmix64 of seed + call index): a seed names a run, although which
 * call gets which number depends on how the shard threads interleave.
 * The wrappers fail the way the real call fails (NULL/ENOMEM, -errno,
 * -1/errno) without calling it, so nothing is half done.
 * Normal builds compile this file to nothing.
 */
#ifdef CRUST_FAULTS
#define _GNU_SOURCE
#include "fault.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static uint64_t threshold;  /* a draw below this fails; 0 = never */
static uint64_t seed = 1;
static bool kind_on[CRUST_FAULT_KINDS] = { true, true, true };
static atomic_bool enabled;
static _Atomic uint64_t draws;
static _Atomic uint64_t injected[CRUST_FAULT_KINDS];
static const char *const kind_names[CRUST_FAULT_KINDS] = { "alloc", "uring", "sock" };

static void report(void)
{
	fprintf(stderr, "crust-faults: %llu draws, injected alloc=%llu uring=%llu sock=%llu\n",
		(unsigned long long)atomic_load(&draws),
		(unsigned long long)atomic_load(&injected[CRUST_FAULT_ALLOC]),
		(unsigned long long)atomic_load(&injected[CRUST_FAULT_URING]),
		(unsigned long long)atomic_load(&injected[CRUST_FAULT_SOCK]));
}

static void parse_kinds(const char *list)
{
	for (int k = 0; k < CRUST_FAULT_KINDS; k++)
		kind_on[k] = false;
	char buf[64];
	snprintf(buf, sizeof(buf), "%s", list);
	char *save = NULL;
	for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		int k = 0;
		while (k < CRUST_FAULT_KINDS && strcmp(w, kind_names[k]) != 0)
			k++;
		if (k == CRUST_FAULT_KINDS) {
			fprintf(stderr, "crust-faults: CRUST_FAULT_KINDS: unknown kind '%s'\n", w);
			abort();
		}
		kind_on[k] = true;
	}
}

static void load_env(void)
{
	const char *rate = getenv("CRUST_FAULT_RATE");
	const char *s = getenv("CRUST_FAULT_SEED");
	const char *kinds = getenv("CRUST_FAULT_KINDS");
	double p = rate ? strtod(rate, NULL) : 0.0;
	if (p > 0.0)
		threshold = p >= 1.0 ? UINT64_MAX : (uint64_t)(p * 18446744073709551616.0);
	if (s)
		seed = strtoull(s, NULL, 0);
	if (kinds)
		parse_kinds(kinds);
	atomic_store(&enabled, threshold != 0);
	if (threshold)
		atexit(report);
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

bool crust_fault_hit(enum crust_fault_kind kind)
{
	pthread_once(&once, load_env);
	if (!atomic_load_explicit(&enabled, memory_order_relaxed) || !kind_on[kind])
		return false;
	uint64_t n = atomic_fetch_add_explicit(&draws, 1, memory_order_relaxed);
	if (splitmix64(seed * 0x100000001b3ull + n) >= threshold)
		return false;
	atomic_fetch_add_explicit(&injected[kind], 1, memory_order_relaxed);
	return true;
}

uint64_t crust_fault_count(enum crust_fault_kind kind)
{
	return atomic_load(&injected[kind]);
}

void crust_fault_enable(bool on)
{
	pthread_once(&once, load_env);
	atomic_store(&enabled, on && threshold != 0);
}

/* --- the wrappers: the library's calls land here (fault.syms) --------------- */

#define FAIL_ERRNO(kind, err, ret)             \
	do {                                   \
		if (crust_fault_hit(kind)) {   \
			errno = (err);         \
			return ret;            \
		}                              \
	} while (0)

/* hidden: only the library's own objects call these */
#define WRAP __attribute__((visibility("hidden")))

WRAP void *crust_fault_malloc(size_t n)
{
	FAIL_ERRNO(CRUST_FAULT_ALLOC, ENOMEM, NULL);
	return malloc(n);
}

WRAP void *crust_fault_calloc(size_t n, size_t size)
{
	FAIL_ERRNO(CRUST_FAULT_ALLOC, ENOMEM, NULL);
	return calloc(n, size);
}

WRAP void *crust_fault_realloc(void *p, size_t n)
{
	FAIL_ERRNO(CRUST_FAULT_ALLOC, ENOMEM, NULL);
	return realloc(p, n);
}

WRAP void *crust_fault_aligned_alloc(size_t align, size_t n)
{
	FAIL_ERRNO(CRUST_FAULT_ALLOC, ENOMEM, NULL);
	return aligned_alloc(align, n);
}

WRAP int crust_fault_posix_memalign(void **p, size_t align, size_t n)
{
	if (crust_fault_hit(CRUST_FAULT_ALLOC))
		return ENOMEM;
	return posix_memalign(p, align, n);
}

WRAP char *crust_fault_strdup(const char *s)
{
	FAIL_ERRNO(CRUST_FAULT_ALLOC, ENOMEM, NULL);
	return strdup(s);
}

WRAP char *crust_fault_strndup(const char *s, size_t n)
{
	FAIL_ERRNO(CRUST_FAULT_ALLOC, ENOMEM, NULL);
	return strndup(s, n);
}

WRAP void *crust_fault_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	FAIL_ERRNO(CRUST_FAULT_ALLOC, ENOMEM, MAP_FAILED);
	return mmap(addr, len, prot, flags, fd, off);
}

WRAP int crust_fault_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
						  struct io_uring_params *p)
{
	if (crust_fault_hit(CRUST_FAULT_URING))
		return -ENOMEM;
	return io_uring_queue_init_params(entries, ring, p);
}

/* a refused submit leaves the SQEs queued, as the kernel's -EAGAIN/-EBUSY do */
WRAP int crust_fault_io_uring_submit(struct io_uring *ring)
{
	if (crust_fault_hit(CRUST_FAULT_URING))
		return -EAGAIN;
	return io_uring_submit(ring);
}

WRAP int crust_fault_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
	if (crust_fault_hit(CRUST_FAULT_URING))
		return -EAGAIN;
	return io_uring_submit_and_wait(ring, wait_nr);
}

WRAP int crust_fault_io_uring_submit_and_wait_timeout(struct io_uring *ring,
							struct io_uring_cqe **cqe_ptr,
							unsigned wait_nr,
							struct __kernel_timespec *ts,
							sigset_t *sigmask)
{
	if (crust_fault_hit(CRUST_FAULT_URING))
		return -EAGAIN;
	return io_uring_submit_and_wait_timeout(ring, cqe_ptr, wait_nr, ts, sigmask);
}

WRAP int crust_fault_io_uring_register_buffers(struct io_uring *ring, const struct iovec *iov,
					       unsigned n)
{
	if (crust_fault_hit(CRUST_FAULT_URING))
		return -ENOMEM;
	return io_uring_register_buffers(ring, iov, n);
}

WRAP int crust_fault_io_uring_register_ring_fd(struct io_uring *ring)
{
	if (crust_fault_hit(CRUST_FAULT_URING))
		return -EINVAL;
	return io_uring_register_ring_fd(ring);
}

WRAP int crust_fault_io_uring_register_buf_ring(struct io_uring *ring,
						struct io_uring_buf_reg *reg, unsigned flags)
{
	if (crust_fault_hit(CRUST_FAULT_URING))
		return -ENOMEM;
	return io_uring_register_buf_ring(ring, reg, flags);
}

WRAP int crust_fault_socket(int domain, int type, int protocol)
{
	FAIL_ERRNO(CRUST_FAULT_SOCK, EMFILE, -1);
	return socket(domain, type, protocol);
}

WRAP int crust_fault_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	FAIL_ERRNO(CRUST_FAULT_SOCK, EADDRINUSE, -1);
	return bind(fd, addr, len);
}

WRAP int crust_fault_listen(int fd, int backlog)
{
	FAIL_ERRNO(CRUST_FAULT_SOCK, EADDRINUSE, -1);
	return listen(fd, backlog);
}

WRAP int crust_fault_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	FAIL_ERRNO(CRUST_FAULT_SOCK, ENOBUFS, -1);
	return setsockopt(fd, level, name, val, len);
}

WRAP int crust_fault_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	FAIL_ERRNO(CRUST_FAULT_SOCK, ECONNREFUSED, -1);
	return connect(fd, addr, len);
}

WRAP int crust_fault_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	FAIL_ERRNO(CRUST_FAULT_SOCK, EMFILE, -1);
	return accept(fd, addr, len);
}

WRAP int crust_fault_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	FAIL_ERRNO(CRUST_FAULT_SOCK, EMFILE, -1);
	return accept4(fd, addr, len, flags);
}

#else
/* ISO C wants a translation unit to declare something */
typedef int crust_fault_unused;
#endif
