/*
 * aead_speed.c - the AEAD ceiling on this machine: how many bytes per
 * second one core seals and opens in place with libsodium's AES-256-GCM
 * and ChaCha20-Poly1305 (IETF), the two record ciphers of crust's secure
 * sessions (p2p/session.c uses the same calls).
 *
 *   cc -O2 perf/aead_speed.c -lsodium -o build/aead_speed && build/aead_speed [SIZE]
 *
 * One JSON object per cipher and direction on stdout. SIZE defaults to
 * 131072 (a tcp-bulk message is one record of that size).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUN_S 1.0

enum cipher { AES, CHACHA };

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static crypto_aead_aes256gcm_state aes_state;
static uint8_t key[32];

static void seal(enum cipher c, uint8_t *buf, size_t len, uint64_t n)
{
	uint8_t nonce[12] = { 0 };
	memcpy(nonce, &n, sizeof(n));
	if (c == AES)
		crypto_aead_aes256gcm_encrypt_detached_afternm(buf, buf + len, NULL, buf, len, NULL, 0,
							       NULL, nonce, &aes_state);
	else
		crypto_aead_chacha20poly1305_ietf_encrypt_detached(buf, buf + len, NULL, buf, len, NULL,
								   0, NULL, nonce, key);
}

static int open_rec(enum cipher c, uint8_t *buf, size_t len, uint64_t n)
{
	uint8_t nonce[12] = { 0 };
	memcpy(nonce, &n, sizeof(n));
	if (c == AES)
		return crypto_aead_aes256gcm_decrypt_detached_afternm(buf, NULL, buf, len, buf + len,
								      NULL, 0, nonce, &aes_state);
	return crypto_aead_chacha20poly1305_ietf_decrypt_detached(buf, NULL, buf, len, buf + len,
								  NULL, 0, nonce, key);
}

/* Seal for RUN_S seconds; then open what the last seal made, as often. */
static void measure(enum cipher c, const char *name, uint8_t *buf, size_t len)
{
	uint64_t n = 0;
	double t0 = now_s(), t;
	do {
		seal(c, buf, len, n++);
	} while ((t = now_s()) - t0 < RUN_S);
	printf("{\"cipher\":\"%s\",\"op\":\"seal\",\"size\":%zu,\"gbyte_s\":%.3f}\n", name, len,
	       (double)n * (double)len / (t - t0) / 1e9);
	/* open one sealed record repeatedly: same work as opening fresh ones */
	seal(c, buf, len, 0);
	uint8_t *copy = malloc(len + 16);
	if (!copy)
		exit(1);
	uint64_t m = 0;
	t0 = now_s();
	do {
		memcpy(copy, buf, len + 16);
		if (open_rec(c, copy, len, 0) != 0) {
			fprintf(stderr, "aead_speed: %s: open failed\n", name);
			exit(1);
		}
		m++;
	} while ((t = now_s()) - t0 < RUN_S);
	printf("{\"cipher\":\"%s\",\"op\":\"open+memcpy\",\"size\":%zu,\"gbyte_s\":%.3f}\n", name, len,
	       (double)m * (double)len / (t - t0) / 1e9);
	free(copy);
}

int main(int argc, char **argv)
{
	size_t len = argc > 1 ? strtoul(argv[1], NULL, 10) : 131072;
	if (sodium_init() < 0 || len == 0)
		return 1;
	uint8_t *buf = calloc(1, len + 16);
	if (!buf)
		return 1;
	randombytes_buf(key, sizeof(key));
	if (crypto_aead_aes256gcm_is_available()) {
		crypto_aead_aes256gcm_beforenm(&aes_state, key);
		measure(AES, "aes256gcm", buf, len);
	} else {
		printf("{\"cipher\":\"aes256gcm\",\"available\":false}\n");
	}
	measure(CHACHA, "chacha20poly1305_ietf", buf, len);
	printf("{\"libsodium\":\"%s\"}\n", sodium_version_string());
	free(buf);
	return 0;
}
