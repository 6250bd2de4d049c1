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

#include "p2p/cache.h"

void fuzz_cache(const uint8_t *data, size_t size)
{
	static const uint32_t caps[] = { 1, 2, 8, 64 };
	static struct cache_entry out[CACHE_MAX_CAP];
	if (size < 1)
		return;
	uint32_t cap = caps[data[0] % 4], n = 0, file_cap = 0;
	uint64_t seq = 0;
	char why[128] = "", note[512];
	int slot = cache_decode(data + 1, size - 1, out, CACHE_MAX_CAP, &n, &seq, &file_cap, why,
				sizeof(why));
	FUZZ_CHECK(slot == 0 || slot == 1 || (slot == -EINVAL && why[0]));
	if (slot >= 0)
		FUZZ_CHECK(n <= file_cap && file_cap <= CACHE_MAX_CAP);

	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/cache", fuzz_tmpdir());
	FUZZ_CHECK(fuzz_write_file(path, data + 1, size - 1) == 0);
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
