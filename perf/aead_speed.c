/*
 * aead_speed.c - the AEAD ceiling on one core: how many bytes per second
 * crust's record ciphers seal and open in place, with the calls
 * p2p/session.c makes.
 *
 *   cc -O2 perf/aead_speed.c -lcrypto -lsodium -lpthread -o build/aead_speed
 *   build/aead_speed [--seconds S] [--sizes N,N...] [--memory warm|cold|fresh] [--other-cpu C]
 *
 * Ciphers (one JSON object per cipher, size and operation on stdout):
 *   aes-256-gcm on OpenSSL EVP: what crust uses when both ends have AES-NI.
 *     One EVP_CIPHER_CTX keyed once per direction; per record: IV, one byte
 *     of associated data, the body in place, the tag after it - the same
 *     call sequence as aes_seal / aes_open in p2p/session.c.
 *   chacha20-poly1305-ietf on libsodium: crust's other record cipher.
 *   aes-256-gcm on libsodium 1.0.18 (precomputed key): the previous record
 *     cipher, kept for reference.
 * Sizes: 131072 (a tcp-bulk message is one record of that size) and 65536
 * (the staging chunk batches of small messages are sealed in).
 *
 * Method: each iteration seals a record in place, then opens it in place
 * (checking the tag), timing each call on its own; seal and open rates are
 * bytes over the time spent in that call. Every call works on data the
 * previous call just wrote, as in crust, where the receiver opens a record
 * it has just received. --memory changes that (diagnostics, see
 * docs/BENCHMARKS.md "Where the time goes"):
 *   warm   one buffer per record size, in cache (default)
 *   cold   a ring of buffers totalling 64 MiB (crust's default send-queue
 *          budget), each written once beforehand: every call misses the
 *          caches, as a sender sealing a message queued long ago does
 *   fresh  like cold, but each buffer's pages are given back to the kernel
 *          (MADV_DONTNEED) before it is sealed: the seal reads never-written
 *          pages (the zero page) and writes them (copy-on-write faults),
 *          as glibc does to a freed and trimmed heap
 * --other-cpu C runs a second thread of this process on cpu C meanwhile,
 * doing --other-load:
 *   spin   a busy loop: then every copy-on-write fault flushes that cpu's
 *          TLB with an IPI, as in crust, whose shards run on both cpus
 *   copy   memcpy between two 32 MiB buffers: the other cpu competes for
 *          the shared cache and memory, as crust's receiving shard does
 */
#define _GNU_SOURCE
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define TAG_LEN 16
#define COLD_BYTES (64u << 20)
#define MAX_SIZES 8

enum cipher { EVP_AES, SODIUM_CHACHA, SODIUM_AES, NCIPHERS };
enum memory { WARM, COLD, FRESH };

static const struct {
	const char *name, *impl;
} ciphers[NCIPHERS] = {
	[EVP_AES] = { "aes-256-gcm", "openssl-evp" },
	[SODIUM_CHACHA] = { "chacha20-poly1305-ietf", "libsodium" },
	[SODIUM_AES] = { "aes-256-gcm", "libsodium" },
};
static const char *memory_names[] = { "warm", "cold", "fresh" };

static uint8_t key[32];
static EVP_CIPHER_CTX *seal_ctx, *open_ctx;
static crypto_aead_aes256gcm_state sodium_aes;
static atomic_bool spin_stop;
static bool other_copies;   /* --other-load copy */
#define OTHER_COPY_BYTES (32u << 20)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nonce_of(uint64_t counter, uint8_t nonce[12])
{
	memset(nonce, 0, 4);
	for (int i = 11; i >= 4; i--, counter >>= 8)
		nonce[i] = (uint8_t)counter;
}

/* p2p/session.c aes_seal: rec[0] is the record type (the associated data), the body follows. */
static int evp_seal(const uint8_t nonce[12], const uint8_t *ad, uint8_t *body, uint32_t len)
{
	int n;
	if (EVP_EncryptInit_ex(seal_ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(seal_ctx, NULL, &n, ad, 1) != 1 ||
	    EVP_EncryptUpdate(seal_ctx, body, &n, body, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(seal_ctx, body + len, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(seal_ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, body + len) != 1)
		return -1;
	return 0;
}

/* p2p/session.c aes_open */
static int evp_open(const uint8_t nonce[12], const uint8_t *ad, uint8_t *body, uint32_t len)
{
	int n;
	if (EVP_DecryptInit_ex(open_ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(open_ctx, NULL, &n, ad, 1) != 1 ||
	    EVP_DecryptUpdate(open_ctx, body, &n, body, (int)len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(open_ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, body + len) != 1)
		return -1;
	uint8_t none[16];
	return EVP_DecryptFinal_ex(open_ctx, none, &n) == 1 ? 0 : -1;
}

/* rec: 1 type byte (associated data), len body bytes, TAG_LEN tag bytes. */
static int seal(enum cipher c, uint8_t *rec, uint32_t len, uint64_t counter)
{
	uint8_t nonce[12];
	nonce_of(counter, nonce);
	uint8_t *body = rec + 1;
	switch (c) {
	case EVP_AES:
		return evp_seal(nonce, rec, body, len);
	case SODIUM_CHACHA:
		return crypto_aead_chacha20poly1305_ietf_encrypt_detached(
			body, body + len, NULL, body, len, rec, 1, NULL, nonce, key);
	default:
		return crypto_aead_aes256gcm_encrypt_detached_afternm(body, body + len, NULL, body, len,
								      rec, 1, NULL, nonce, &sodium_aes);
	}
}

static int open_rec(enum cipher c, uint8_t *rec, uint32_t len, uint64_t counter)
{
	uint8_t nonce[12];
	nonce_of(counter, nonce);
	uint8_t *body = rec + 1;
	switch (c) {
	case EVP_AES:
		return evp_open(nonce, rec, body, len);
	case SODIUM_CHACHA:
		return crypto_aead_chacha20poly1305_ietf_decrypt_detached(body, NULL, body, len,
									  body + len, rec, 1, nonce, key);
	default:
		return crypto_aead_aes256gcm_decrypt_detached_afternm(body, NULL, body, len, body + len,
								      rec, 1, nonce, &sodium_aes);
	}
}

/*
 * The records: one buffer (warm) or a ring of them totalling COLD_BYTES.
 * Each record starts one byte before a 64-byte boundary, so the body is
 * cache-line aligned (a heap message's payload is at least 16-aligned).
 */
struct ring {
	uint8_t *mem;
	size_t stride, count, bytes;
};

static void ring_init(struct ring *r, enum memory mem, uint32_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	r->stride = (64 + len + TAG_LEN + page - 1) / page * page;
	r->count = mem == WARM ? 1 : (COLD_BYTES + r->stride - 1) / r->stride;
	r->bytes = r->stride * r->count;
	r->mem = mmap(NULL, r->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r->mem == MAP_FAILED) {
		perror("aead_speed: mmap");
		exit(1);
	}
	for (size_t i = 0; i < r->bytes; i += 64)
		r->mem[i] = (uint8_t)i; /* every page present, every line written */
}

static uint8_t *rec_at(const struct ring *r, size_t i)
{
	return r->mem + (i % r->count) * r->stride + 63;
}

static void emit(enum cipher c, const char *op, uint32_t len, enum memory mem, double bytes,
		 double secs, int other_cpu)
{
	printf("{\"cipher\":\"%s\",\"impl\":\"%s\",\"op\":\"%s\",\"size\":%u,\"memory\":\"%s\","
	       "\"other_cpu\":%d,\"other_load\":\"%s\",\"gbyte_s\":%.3f}\n",
	       ciphers[c].name, ciphers[c].impl, op, len, memory_names[mem], other_cpu,
	       other_cpu < 0 ? "none" : other_copies ? "copy" : "spin",
	       secs > 0 ? bytes / secs / 1e9 : 0);
	fflush(stdout);
}

/*
 * Seal then open, each call timed on its own, for run_s seconds. Cold and
 * fresh walk the ring: a whole pass of seals, then a pass of opens (so
 * each open, too, finds its record out of cache).
 */
static void measure(enum cipher c, uint32_t len, enum memory mem, double run_s, int other_cpu)
{
	struct ring r;
	ring_init(&r, mem, len);
	double t_seal = 0, t_open = 0, t0, t1, end = now_s() + run_s;
	uint64_t seals = 0, opens = 0;
	size_t batch = mem == WARM ? 1 : r.count;
	do {
		for (size_t i = 0; i < batch; i++) {
			uint8_t *rec = rec_at(&r, i);
			if (mem == FRESH)
				madvise(rec - 63, r.stride, MADV_DONTNEED);
			t0 = now_s();
			int err = seal(c, rec, len, seals + i);
			t1 = now_s();
			t_seal += t1 - t0;
			if (err) {
				fprintf(stderr, "aead_speed: %s seal failed\n", ciphers[c].name);
				exit(1);
			}
		}
		for (size_t i = 0; i < batch; i++) {
			t0 = now_s();
			int err = open_rec(c, rec_at(&r, i), len, seals + i);
			t1 = now_s();
			t_open += t1 - t0;
			if (err) {
				fprintf(stderr, "aead_speed: %s open failed\n", ciphers[c].name);
				exit(1);
			}
		}
		seals += batch;
		opens += batch;
	} while (now_s() < end);
	emit(c, "seal", len, mem, (double)seals * len, t_seal, other_cpu);
	emit(c, "open", len, mem, (double)opens * len, t_open, other_cpu);
	munmap(r.mem, r.bytes);
}

static void *spin_main(void *arg)
{
	int cpu = (int)(intptr_t)arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	uint8_t *a = other_copies ? malloc(OTHER_COPY_BYTES) : NULL;
	uint8_t *b = other_copies ? malloc(OTHER_COPY_BYTES) : NULL;
	if (a && b) {
		memset(a, 1, OTHER_COPY_BYTES);
		memset(b, 2, OTHER_COPY_BYTES);
	}
	while (!atomic_load_explicit(&spin_stop, memory_order_relaxed))
		if (a && b)
			memcpy(a, b, OTHER_COPY_BYTES);
	free(a);
	free(b);
	return NULL;
}

static void usage(void)
{
	fputs("usage: aead_speed [--seconds S] [--sizes N,N...] [--memory warm|cold|fresh]\n"
	      "                  [--ciphers all|evp] [--other-cpu C] [--other-load spin|copy]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	double run_s = 1.0;
	uint32_t sizes[MAX_SIZES] = { 131072, 65536 };
	unsigned nsizes = 2;
	enum memory mem = WARM;
	bool evp_only = false;
	int other_cpu = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--seconds")) {
			run_s = atof(v);
		} else if (!strcmp(a, "--sizes")) {
			nsizes = 0;
			for (char *s = strdup(v), *tok = strtok(s, ","); tok && nsizes < MAX_SIZES;
			     tok = strtok(NULL, ","))
				sizes[nsizes++] = (uint32_t)strtoul(tok, NULL, 10);
		} else if (!strcmp(a, "--memory")) {
			mem = !strcmp(v, "cold") ? COLD : !strcmp(v, "fresh") ? FRESH : WARM;
		} else if (!strcmp(a, "--ciphers")) {
			evp_only = !strcmp(v, "evp");
		} else if (!strcmp(a, "--other-cpu")) {
			other_cpu = atoi(v);
		} else if (!strcmp(a, "--other-load")) {
			other_copies = !strcmp(v, "copy");
		} else {
			usage();
		}
	}
	if (sodium_init() < 0 || run_s <= 0 || nsizes == 0)
		return 1;
	randombytes_buf(key, sizeof(key));
	seal_ctx = EVP_CIPHER_CTX_new();
	open_ctx = EVP_CIPHER_CTX_new();
	if (!seal_ctx || !open_ctx ||
	    EVP_EncryptInit_ex(seal_ctx, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
	    EVP_DecryptInit_ex(open_ctx, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
		fputs("aead_speed: EVP AES-256-GCM unavailable\n", stderr);
		return 1;
	}
	bool sodium_aes_ok = crypto_aead_aes256gcm_is_available();
	if (sodium_aes_ok)
		crypto_aead_aes256gcm_beforenm(&sodium_aes, key);
	pthread_t spinner;
	if (other_cpu >= 0 && pthread_create(&spinner, NULL, spin_main, (void *)(intptr_t)other_cpu))
		return 1;
	for (unsigned s = 0; s < nsizes; s++)
		for (int c = 0; c < NCIPHERS; c++) {
			if (evp_only && c != EVP_AES)
				continue;
			if (c == SODIUM_AES && !sodium_aes_ok)
				continue;
			measure((enum cipher)c, sizes[s], mem, run_s, other_cpu);
		}
	if (other_cpu >= 0) {
		atomic_store(&spin_stop, true);
		pthread_join(spinner, NULL);
	}
	printf("{\"libsodium\":\"%s\",\"openssl\":\"%s\",\"aesni\":%s}\n", sodium_version_string(),
	       OpenSSL_version(OPENSSL_VERSION), sodium_aes_ok ? "true" : "false");
	EVP_CIPHER_CTX_free(seal_ctx);
	EVP_CIPHER_CTX_free(open_ctx);
	return 0;
}
