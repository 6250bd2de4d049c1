/*
 * fuzz_cache.c - the bootstrap cache file (p2p/cache.c). Input: u8 capacity
 * selector | a file image. The image is decoded in memory, then written to
 * a scratch file and opened as a node would at start-up (a corrupt file is
 * set aside and rebuilt); the opened cache is then used (a success and a
 * failure recorded), closed and opened again: it must read back.
 */
#include "fuzz.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>

#include <sodium.h>

#include "p2p/cache.h"

#define SUM_OFF 48u   /* docs/CONFIG.md: the header's last 16 bytes */
#define SUM_LEN 16u

/* Each slot's checksum as the format defines it, where its count fits the file. */
static void seal_slots(uint8_t *file, size_t len)
{
	if (len < 2 * CACHE_HDR_LEN || len % (2 * CACHE_ENTRY_LEN))
		return;
	size_t slot = len / 2, cap = (slot - CACHE_HDR_LEN) / CACHE_ENTRY_LEN;
	for (int i = 0; i < 2; i++) {
		uint8_t *s = file + (size_t)i * slot;
		uint32_t count = (uint32_t)s[24] | (uint32_t)s[25] << 8 | (uint32_t)s[26] << 16 |
				 (uint32_t)s[27] << 24;
		if (count > cap)
			continue;
		crypto_generichash_state st;
		crypto_generichash_init(&st, NULL, 0, SUM_LEN);
		crypto_generichash_update(&st, s, SUM_OFF);
		crypto_generichash_update(&st, s + CACHE_HDR_LEN, (size_t)count * CACHE_ENTRY_LEN);
		crypto_generichash_final(&st, s + SUM_OFF, SUM_LEN);
	}
}

void fuzz_cache(const uint8_t *data, size_t size)
{
	static const uint32_t caps[] = { 1, 2, 8, 64 };
	static struct cache_entry out[CACHE_MAX_CAP];
	if (size < 1)
		return;
	uint32_t cap = caps[data[0] % 4], n = 0, file_cap = 0;
	uint64_t seq = 0;
	char why[128] = "", note[512];
	FUZZ_CHECK(sodium_init() >= 0);
	uint8_t *image = malloc(size);
	FUZZ_CHECK(image);
	memcpy(image, data + 1, size - 1);
	if (data[0] & 0x80)
		seal_slots(image, size - 1);
	int slot = cache_decode(image, size - 1, out, CACHE_MAX_CAP, &n, &seq, &file_cap, why,
				sizeof(why));
	FUZZ_CHECK(slot == 0 || slot == 1 || (slot == -EINVAL && why[0]));
	if (slot >= 0)
		FUZZ_CHECK(n <= file_cap && file_cap <= CACHE_MAX_CAP);

	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/cache", fuzz_tmpdir());
	FUZZ_CHECK(fuzz_write_file(path, image, size - 1) == 0);
	free(image);
	struct cache c;
	int err = cache_open(&c, path, cap, note, sizeof(note));
	FUZZ_CHECK(err == 0);
	FUZZ_CHECK(c.count <= cap);
	struct crust_endpoint ep;
	memset(&ep, 0, sizeof(ep));
	struct sockaddr_in *a = (struct sockaddr_in *)&ep.addr;
	a->sin_family = AF_INET;
	a->sin_port = htons(7000);
	a->sin_addr.s_addr = htonl(0xc0000201);
	ep.addrlen = sizeof(*a);
	ep.transport = CRUST_TRANSPORT_TCP;
	struct crust_peer_id id = { { 1 } };
	FUZZ_CHECK(cache_success(&c, &ep, &id, 1700000000) == 0);
	FUZZ_CHECK(c.count >= 1 && cache_same_endpoint(&c.entries[0].ep, &ep));
	FUZZ_CHECK(cache_failure(&c, &ep, 3) == 1);
	uint32_t count = c.count;
	cache_close(&c);
	FUZZ_CHECK(cache_open(&c, path, cap, note, sizeof(note)) == 0);
	FUZZ_CHECK(!note[0] && c.count == count);
	cache_close(&c);
	fuzz_clean_tmpdir();
}
