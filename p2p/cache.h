/*
 * cache.h - the bootstrap cache: a memory-mapped file of endpoints this
 * node reached directly (docs/CONFIG.md, "Bootstrap cache", has the bytes).
 *
 * The file holds two slots, each a full copy of the list with its own
 * sequence number and checksum. An update writes the slot that does not
 * hold the current list and msyncs it, so a SIGKILL (or power loss) at any
 * moment leaves the previous slot intact: the reader takes the valid slot
 * with the higher sequence number. A file neither slot of which is valid
 * is renamed aside and rebuilt, never overwritten in place.
 *
 * Not thread-safe: one owner (the bootstrap thread). cache_decode and
 * cache_encode_slot are pure, for tests and tools.
 */
#ifndef CRUST_P2P_CACHE_H
#define CRUST_P2P_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crust.h"

#define CACHE_MAGIC "CRSTBOOT"
#define CACHE_VERSION 1u
#define CACHE_HDR_LEN 64u
#define CACHE_ENTRY_LEN 64u
#define CACHE_MAX_CAP 4096u

struct cache_entry {
	struct crust_endpoint ep;
	struct crust_peer_id id;
	uint64_t last_success;          /* unix seconds */
	uint32_t failures;              /* failed dials since the last success */
};

struct cache {
	char *path;
	int fd;
	uint8_t *map;
	size_t map_len;
	uint32_t cap;
	int cur_slot;                   /* slot holding the current list, -1 if none */
	uint64_t seq;
	struct cache_entry *entries;    /* most recent success first */
	uint32_t count;
};

/* Bytes of a cache file holding up to cap entries. */
size_t cache_file_size(uint32_t cap);

/*
 * Open (or create) the cache at path for up to cap entries, and lock it
 * (flock) for this process. An unreadable file (empty, truncated, corrupt,
 * another version) is renamed to path.corrupt-<unix time> and a new one
 * made; note then says so, naming both files (the caller logs it). A file
 * of another capacity is rewritten with the new one. Returns 0, -EBUSY if
 * another process holds the cache, or -errno (why set) if it cannot be
 * made.
 */
int cache_open(struct cache *c, const char *path, uint32_t cap, char *note, size_t notelen);
void cache_close(struct cache *c);

/* A direct connection to ep (peer id) succeeded: put it first. 0 or -errno (write failed). */
int cache_success(struct cache *c, const struct crust_endpoint *ep, const struct crust_peer_id *id,
		  uint64_t now_s);
/*
 * A dial to ep failed: count it and move the entry last; at max_failures
 * in a row it is removed. Returns 1 if ep is in the cache, 0 if not, -errno.
 */
int cache_failure(struct cache *c, const struct crust_endpoint *ep, uint32_t max_failures);

/* Same address and port, and the same transport (or "any" on either side: the dial that ended on either). */
bool cache_same_endpoint(const struct crust_endpoint *a, const struct crust_endpoint *b);

/* Encode one slot (CACHE_HDR_LEN + cap * CACHE_ENTRY_LEN bytes) holding n entries. */
void cache_encode_slot(uint8_t *slot, uint32_t cap, uint64_t seq, const struct cache_entry *e,
		       uint32_t n);

/*
 * Read a whole file image: the newest valid slot's entries (up to outcap)
 * into out. Returns the slot index (0/1) or -EINVAL with why ("empty",
 * "truncated ...", "bad magic", "unsupported version", "checksum ...").
 * *cap is the file's capacity.
 */
int cache_decode(const uint8_t *file, size_t len, struct cache_entry *out, uint32_t outcap,
		 uint32_t *n, uint64_t *seq, uint32_t *cap, char *why, size_t wlen);

#endif
