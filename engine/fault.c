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
#include <fcntl.h>
#include <jansson.h>
#include <liburing.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t threshold; /* a draw below this fails; 0 = never */
static uint64_t seed = 1;
static atomic_uint kinds_on = (1u << CRUST_FAULT_KINDS) - 1;
static atomic_bool enabled;
static atomic_bool file_closes_fail;
static _Atomic uint64_t draws;
static _Atomic uint64_t injected[CRUST_FAULT_KINDS];
static _Atomic uint64_t file_closes_failed, bad_closes;
static const char *const kind_names[CRUST_FAULT_KINDS] = { "alloc", "uring", "sock",
							    "json",  "ssl",   "close" };

static void report(void)
{
	fprintf(stderr, "crust-faults: %llu draws, injected", (unsigned long long)atomic_load(&draws));
	for (int k = 0; k < CRUST_FAULT_KINDS; k++)
		fprintf(stderr, " %s=%llu", kind_names[k], (unsigned long long)atomic_load(&injected[k]));
	fprintf(stderr, "\n");
}

static void parse_kinds(const char *list)
{
	unsigned mask = 0;
	char buf[128];
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
		mask |= 1u << k;
	}
	atomic_store(&kinds_on, mask);
}

static uint64_t threshold_of(double p)
{
	return p <= 0.0 ? 0 : p >= 1.0 ? UINT64_MAX : (uint64_t)(p * 18446744073709551616.0);
}

static void load_env(void)
{
	const char *rate = getenv("CRUST_FAULT_RATE");
	const char *s = getenv("CRUST_FAULT_SEED");
	const char *kinds = getenv("CRUST_FAULT_KINDS");
	double p = rate ? strtod(rate, NULL) : 0.0;
	if (p > 0.0)
		threshold = threshold_of(p);
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
	if (!atomic_load_explicit(&enabled, memory_order_relaxed) ||
	    !(atomic_load_explicit(&kinds_on, memory_order_relaxed) & (1u << kind)))
		return false;
	uint64_t n = atomic_fetch_add_explicit(&draws, 1, memory_order_relaxed);
	uint64_t limit = atomic_load_explicit(&threshold, memory_order_relaxed);
	if (splitmix64(seed * 0x100000001b3ull + n) >= limit)
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

double crust_fault_set_rate(double p)
{
	pthread_once(&once, load_env);
	uint64_t old = atomic_exchange(&threshold, threshold_of(p));
	return (double)old / 18446744073709551616.0;
}

unsigned crust_fault_set_kinds(unsigned mask)
{
	pthread_once(&once, load_env);
	return atomic_exchange(&kinds_on, mask);
}

void crust_fault_fail_file_closes(bool on)
{
	atomic_store(&file_closes_fail, on);
}

uint64_t crust_fault_file_closes_failed(void)
{
	return atomic_load(&file_closes_failed);
}

uint64_t crust_fault_bad_closes(void)
{
	return atomic_load(&bad_closes);
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

/*
 * close: the descriptor is really closed first and the failure reported
 * after, as Linux does for EINTR and EIO (the number is free again, so a
 * caller that retries closes someone else's descriptor, or gets EBADF).
 */
static bool writable_file(int fd)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL);
	return fl >= 0 && (fl & O_ACCMODE) != O_RDONLY && fstat(fd, &st) == 0 &&
	       S_ISREG(st.st_mode);
}

WRAP int crust_fault_close(int fd)
{
	bool file_eio = atomic_load(&file_closes_fail) && writable_file(fd);
	int r = close(fd);
	if (r < 0 && errno == EBADF) {
		atomic_fetch_add(&bad_closes, 1);
		fprintf(stderr, "crust-faults: close(%d): EBADF: closed twice or never open\n", fd);
		errno = EBADF;
		return r;
	}
	if (r == 0 && file_eio) {
		atomic_fetch_add(&file_closes_failed, 1);
		errno = EIO;
		return -1;
	}
	if (r == 0 && crust_fault_hit(CRUST_FAULT_CLOSE)) {
		errno = atomic_load(&injected[CRUST_FAULT_CLOSE]) & 1 ? EINTR : EIO;
		return -1;
	}
	return r;
}

/*
 * The dependencies' allocators: process-wide hooks, so they also serve
 * the driver's own jansson/OpenSSL calls (it makes none). OpenSSL's
 * default allocator returns NULL for 0 bytes; these do the same.
 */
static void *json_fault_malloc(size_t n)
{
	FAIL_ERRNO(CRUST_FAULT_JSON, ENOMEM, NULL);
	return malloc(n);
}

static void *ssl_fault_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	if (n == 0)
		return NULL;
	FAIL_ERRNO(CRUST_FAULT_SSL, ENOMEM, NULL);
	return malloc(n);
}

static void *ssl_fault_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	if (n == 0) {
		free(p);
		return NULL;
	}
	FAIL_ERRNO(CRUST_FAULT_SSL, ENOMEM, NULL);
	return realloc(p, n);
}

static void ssl_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	free(p);
}

/*
 * OpenSSL takes its hooks only before its first allocation, so they go in
 * before main; a refusal means something allocated earlier and the runs
 * would silently not reach OpenSSL: stop instead.
 */
__attribute__((constructor)) static void install_dependency_hooks(void)
{
	json_set_alloc_funcs(json_fault_malloc, free);
	if (CRYPTO_set_mem_functions(ssl_fault_malloc, ssl_fault_realloc, ssl_free) != 1) {
		fprintf(stderr, "crust-faults: CRYPTO_set_mem_functions refused: OpenSSL "
				"allocated before the hooks\n");
		abort();
	}
	/*
	 * OpenSSL's one-time set-up (default library context, providers, the
	 * two ciphers) runs here with faults off: OpenSSL 3.0 does not survive
	 * a failed allocation there (a NULL lock dereferenced later in
	 * EVP_CIPHER_fetch; seen in make faults-unit), which is its bug, not
	 * a crust error path.
	 */
	pthread_once(&once, load_env);
	bool was = atomic_exchange(&enabled, false);
	if (OPENSSL_init_crypto(0, NULL) != 1)
		abort();
	EVP_CIPHER_free(EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL));
	EVP_CIPHER_free(EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL));
	atomic_store(&enabled, was);
}

#else
/* ISO C wants a translation unit to declare something */
typedef int crust_fault_unused;
#endif
