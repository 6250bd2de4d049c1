/*
 * cache.c - the bootstrap cache file: two checksummed slots in a shared
 * mapping, written alternately (see cache.h for the crash argument).
 *
 * Slot header (64 bytes, integers little-endian):
 *   magic "CRSTBOOT" | u32 version | u32 cap | u64 seq | u32 count |
 *   20 zero bytes | 16-byte BLAKE2b of header[0..48) + the count entries
 * Entry (64 bytes): u8 transport | u8 family (4/6) | u16 port (big-endian) |
 *   u32 failures | 16-byte address (IPv4 in the first 4) | 32-byte peer id |
 *   u64 last success (unix seconds)
 * A new file is written whole to a temporary name, fsynced and renamed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "fileio.h"

#define SUM_OFF 48u
#define SUM_LEN 16u

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

size_t cache_file_size(uint32_t cap)
{
	return 2 * ((size_t)CACHE_HDR_LEN + (size_t)cap * CACHE_ENTRY_LEN);
}

static size_t slot_size(uint32_t cap)
{
	return cache_file_size(cap) / 2;
}

static void checksum(const uint8_t *slot, uint32_t count, uint8_t out[SUM_LEN])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, SUM_LEN);
	crypto_generichash_update(&st, slot, SUM_OFF);
	crypto_generichash_update(&st, slot + CACHE_HDR_LEN, (size_t)count * CACHE_ENTRY_LEN);
	crypto_generichash_final(&st, out, SUM_LEN);
}

static void encode_entry(uint8_t *p, const struct cache_entry *e)
{
	memset(p, 0, CACHE_ENTRY_LEN);
	p[0] = (uint8_t)e->ep.transport;
	const struct sockaddr_storage *ss = &e->ep.addr;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		p[1] = 4;
		memcpy(p + 2, &a->sin_port, 2);
		memcpy(p + 8, &a->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		p[1] = 6;
		memcpy(p + 2, &a->sin6_port, 2);
		memcpy(p + 8, &a->sin6_addr, 16);
	}
	put_u32(p + 4, e->failures);
	memcpy(p + 24, e->id.bytes, CRUST_PEER_ID_LEN);
	put_u64(p + 56, e->last_success);
}

static bool decode_entry(const uint8_t *p, struct cache_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (p[0] > CRUST_TRANSPORT_RUDP) /* 0 = any: TCP, then reliable UDP */
		return false;
	e->ep.transport = (enum crust_transport)p[0];
	if (p[1] == 4) {
		struct sockaddr_in *a = (struct sockaddr_in *)&e->ep.addr;
		a->sin_family = AF_INET;
		memcpy(&a->sin_port, p + 2, 2);
		memcpy(&a->sin_addr, p + 8, 4);
		e->ep.addrlen = sizeof(*a);
	} else if (p[1] == 6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&e->ep.addr;
		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_port, p + 2, 2);
		memcpy(&a->sin6_addr, p + 8, 16);
		e->ep.addrlen = sizeof(*a);
	} else {
		return false;
	}
	e->failures = get_u32(p + 4);
	memcpy(e->id.bytes, p + 24, CRUST_PEER_ID_LEN);
	e->last_success = get_u64(p + 56);
	return true;
}

void cache_encode_slot(uint8_t *slot, uint32_t cap, uint64_t seq, const struct cache_entry *e,
		       uint32_t n)
{
	/* entries first, header (with the checksum that covers them) last */
	for (uint32_t i = 0; i < n; i++)
		encode_entry(slot + CACHE_HDR_LEN + (size_t)i * CACHE_ENTRY_LEN, &e[i]);
	uint8_t hdr[CACHE_HDR_LEN] = { 0 };
	memcpy(hdr, CACHE_MAGIC, 8);
	put_u32(hdr + 8, CACHE_VERSION);
	put_u32(hdr + 12, cap);
	put_u64(hdr + 16, seq);
	put_u32(hdr + 24, n);
	memcpy(slot, hdr, SUM_OFF);
	memset(slot + SUM_OFF, 0, SUM_LEN);
	uint8_t sum[SUM_LEN];
	checksum(slot, n, sum);
	memcpy(slot + SUM_OFF, sum, SUM_LEN);
}

enum slot_state { SLOT_OK, SLOT_BAD_MAGIC, SLOT_BAD_VERSION, SLOT_BAD_CAP, SLOT_BAD_SUM };

static enum slot_state check_slot(const uint8_t *slot, uint32_t cap, uint32_t *version)
{
	if (memcmp(slot, CACHE_MAGIC, 8))
		return SLOT_BAD_MAGIC;
	*version = get_u32(slot + 8);
	if (*version != CACHE_VERSION)
		return SLOT_BAD_VERSION;
	uint32_t count = get_u32(slot + 24);
	if (get_u32(slot + 12) != cap || count > cap)
		return SLOT_BAD_CAP;
	uint8_t sum[SUM_LEN];
	checksum(slot, count, sum);
	return sodium_memcmp(sum, slot + SUM_OFF, SUM_LEN) ? SLOT_BAD_SUM : SLOT_OK;
}

/* The capacity a file of len bytes has, or false if no capacity gives len. */
static bool cap_of_len(size_t len, uint32_t *cap)
{
	if (len < cache_file_size(0) || len % (2 * CACHE_ENTRY_LEN))
		return false;
	size_t c = (len / 2 - CACHE_HDR_LEN) / CACHE_ENTRY_LEN;
	if (c > CACHE_MAX_CAP)
		return false;
	*cap = (uint32_t)c;
	return true;
}

static int decode_slot(const uint8_t *slot, struct cache_entry *out, uint32_t outcap, uint32_t *n)
{
	uint32_t count = get_u32(slot + 24);
	*n = 0;
	for (uint32_t i = 0; i < count && *n < outcap; i++) {
		if (!decode_entry(slot + CACHE_HDR_LEN + (size_t)i * CACHE_ENTRY_LEN, &out[*n]))
			return -EINVAL;
		(*n)++;
	}
	return 0;
}

static void explain(const enum slot_state st[2], uint32_t version, char *why, size_t wlen)
{
	if (st[0] == SLOT_BAD_VERSION || st[1] == SLOT_BAD_VERSION)
		snprintf(why, wlen, "unsupported version %u (this build reads %u)", version,
			 CACHE_VERSION);
	else if (st[0] == SLOT_BAD_MAGIC && st[1] == SLOT_BAD_MAGIC)
		snprintf(why, wlen, "bad magic (not a crust bootstrap cache)");
	else if (st[0] == SLOT_BAD_CAP || st[1] == SLOT_BAD_CAP)
		snprintf(why, wlen, "truncated or damaged (header does not match the file size)");
	else
		snprintf(why, wlen, "corrupt (checksum mismatch in both copies)");
}

int cache_decode(const uint8_t *file, size_t len, struct cache_entry *out, uint32_t outcap,
		 uint32_t *n, uint64_t *seq, uint32_t *cap, char *why, size_t wlen)
{
	if (len == 0) {
		snprintf(why, wlen, "empty (zero length)");
		return -EINVAL;
	}
	if (!cap_of_len(len, cap)) {
		if (len >= 8 && memcmp(file, CACHE_MAGIC, 8))
			snprintf(why, wlen, "bad magic (not a crust bootstrap cache)");
		else
			snprintf(why, wlen, "truncated (%zu bytes is no valid cache size)", len);
		return -EINVAL;
	}
	enum slot_state st[2];
	uint32_t version = 0;
	int best = -1;
	uint64_t best_seq = 0;
	for (int i = 0; i < 2; i++) {
		const uint8_t *slot = file + (size_t)i * slot_size(*cap);
		st[i] = check_slot(slot, *cap, &version);
		if (st[i] == SLOT_OK && (best < 0 || get_u64(slot + 16) > best_seq)) {
			best = i;
			best_seq = get_u64(slot + 16);
		}
	}
	if (best < 0) {
		explain(st, version, why, wlen);
		return -EINVAL;
	}
	if (decode_slot(file + (size_t)best * slot_size(*cap), out, outcap, n) < 0) {
		snprintf(why, wlen, "corrupt (an entry has an unknown transport or family)");
		return -EINVAL;
	}
	*seq = best_seq;
	return best;
}

/* --- the file ------------------------------------------------------------------- */

/* Write a new file holding entries (slot 0, seq 1) under path: temp, fsync, rename. */
static int create_file(const char *path, uint32_t cap, const struct cache_entry *e, uint32_t n)
{
	size_t len = cache_file_size(cap);
	uint8_t *img = calloc(1, len);
	size_t plen = strlen(path) + 16;
	char *tmp = malloc(plen);
	int err = img && tmp ? 0 : -ENOMEM;
	int fd = -1;
	if (!err) {
		snprintf(tmp, plen, "%s.tmp-XXXXXX", path);
		fd = mkostemp(tmp, O_CLOEXEC);
		err = fd < 0 ? -errno : 0;
	}
	if (!err) {
		cache_encode_slot(img, cap, 1, e, n);
		err = fio_write_all(fd, img, len);
	}
	if (!err && (fchmod(fd, 0600) < 0 || fsync(fd) < 0))
		err = -errno;
	/*
	 * close before rename, and check it: a close that reports EIO (or
	 * EINTR: the descriptor is gone either way, never close it again)
	 * fails the save and keeps the old file, found by fault injection
	 */
	if (fd >= 0 && close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (fd >= 0 && err)
		unlink(tmp);
	if (!err)
		err = fio_sync_dir(path);
	free(img);
	free(tmp);
	return err;
}

/* Rename an unreadable file to path.corrupt-<time>[-k], never replacing anything. */
static int set_aside(const char *path, char *aside, size_t alen)
{
	long t = (long)time(NULL);
	for (int k = 0; k < 100; k++) {
		if (k)
			snprintf(aside, alen, "%s.corrupt-%ld-%d", path, t, k);
		else
			snprintf(aside, alen, "%s.corrupt-%ld", path, t);
		if (renameat2(AT_FDCWD, path, AT_FDCWD, aside, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

static int map_file(struct cache *c)
{
	struct stat st;
	if (fstat(c->fd, &st) < 0)
		return -errno;
	c->map_len = (size_t)st.st_size;
	if (!c->map_len)
		return 0;
	void *m = mmap(NULL, c->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	c->map = m;
	return 0;
}

static void unmap(struct cache *c)
{
	if (c->map)
		munmap(c->map, c->map_len);
	c->map = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Open path, lock it, map it. -ENOENT if it does not exist, -EBUSY if locked. */
static int open_locked(struct cache *c)
{
	c->fd = open(c->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (c->fd < 0)
		return -errno;
	if (flock(c->fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		unmap(c);
		return err;
	}
	int err = map_file(c);
	if (err)
		unmap(c);
	return err;
}

/* Replace the file with a fresh one holding the current entries, and reopen it. */
static int rebuild(struct cache *c)
{
	unmap(c);
	int err = create_file(c->path, c->cap, c->entries, c->count);
	if (!err)
		err = open_locked(c);
	c->cur_slot = 0;
	c->seq = 1;
	return err;
}

/* Load what the mapped file holds; false (why set) if it is unreadable. */
static bool load(struct cache *c, uint32_t *file_cap, char *why, size_t wlen)
{
	uint64_t seq = 0;
	int slot = cache_decode(c->map, c->map_len, c->entries, c->cap, &c->count, &seq, file_cap,
				why, wlen);
	if (slot < 0) {
		c->count = 0;
		return false;
	}
	c->cur_slot = slot;
	c->seq = seq;
	return true;
}

int cache_open(struct cache *c, const char *path, uint32_t cap, char *note, size_t notelen)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->cur_slot = -1;
	note[0] = 0;
	if (!cap || cap > CACHE_MAX_CAP)
		return -EINVAL;
	c->cap = cap;
	c->path = strdup(path);
	c->entries = calloc(cap, sizeof(*c->entries));
	if (!c->path || !c->entries) {
		cache_close(c);
		return -ENOMEM;
	}
	int err = open_locked(c);
	if (err == -ENOENT) {
		err = rebuild(c);
	} else if (!err) {
		char why[128];
		uint32_t file_cap = 0;
		if (!load(c, &file_cap, why, sizeof(why))) {
			char aside[4096];
			err = set_aside(path, aside, sizeof(aside));
			if (!err)
				snprintf(note, notelen, "bootstrap cache %s: %s; set aside as %s, "
					 "starting with an empty cache", path, why, aside);
			if (!err)
				err = rebuild(c);
		} else if (file_cap != cap) {
			err = rebuild(c); /* another capacity: rewrite the kept entries whole */
		}
	}
	if (err)
		cache_close(c);
	return err;
}

void cache_close(struct cache *c)
{
	unmap(c);
	free(c->path);
	free(c->entries);
	c->path = NULL;
	c->entries = NULL;
	c->count = 0;
}

/* Write the list to the slot not holding the current one, and make it durable. */
static int persist(struct cache *c)
{
	if (!c->map)
		return -EBADF;
	int target = c->cur_slot == 0 ? 1 : 0;
	uint8_t *slot = c->map + (size_t)target * slot_size(c->cap);
	cache_encode_slot(slot, c->cap, c->seq + 1, c->entries, c->count);
	long page = sysconf(_SC_PAGESIZE);
	size_t start = ((size_t)(slot - c->map) / (size_t)page) * (size_t)page;
	size_t end = (size_t)(slot - c->map) + slot_size(c->cap);
	if (msync(c->map + start, end - start, MS_SYNC) < 0)
		return -errno;
	c->cur_slot = target;
	c->seq++;
	return 0;
}

bool cache_same_endpoint(const struct crust_endpoint *a, const struct crust_endpoint *b)
{
	/* "any" (TCP, then UDP on that port) is the dial that ended on either */
	bool same_transport = a->transport == b->transport || a->transport == CRUST_TRANSPORT_ANY ||
			      b->transport == CRUST_TRANSPORT_ANY;
	if (!same_transport || a->addr.ss_family != b->addr.ss_family)
		return false;
	if (a->addr.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;
	return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

static int find(const struct cache *c, const struct crust_endpoint *ep)
{
	for (uint32_t i = 0; i < c->count; i++)
		if (cache_same_endpoint(&c->entries[i].ep, ep))
			return (int)i;
	return -1;
}

static void remove_at(struct cache *c, uint32_t i)
{
	memmove(&c->entries[i], &c->entries[i + 1], (c->count - i - 1) * sizeof(c->entries[0]));
	c->count--;
}

int cache_success(struct cache *c, const struct crust_endpoint *ep, const struct crust_peer_id *id,
		  uint64_t now_s)
{
	if (ep->addr.ss_family != AF_INET && ep->addr.ss_family != AF_INET6)
		return -EAFNOSUPPORT;
	int i = find(c, ep);
	if (i >= 0)
		remove_at(c, (uint32_t)i);
	else if (c->count == c->cap)
		c->count--; /* the least recent goes */
	memmove(&c->entries[1], &c->entries[0], c->count * sizeof(c->entries[0]));
	struct cache_entry *e = &c->entries[0];
	memset(e, 0, sizeof(*e));
	e->ep = *ep;
	e->id = *id;
	e->last_success = now_s;
	c->count++;
	return persist(c);
}

int cache_failure(struct cache *c, const struct crust_endpoint *ep, uint32_t max_failures)
{
	int i = find(c, ep);
	if (i < 0)
		return 0;
	struct cache_entry e = c->entries[i];
	remove_at(c, (uint32_t)i);
	if (++e.failures < max_failures)
		c->entries[c->count++] = e; /* demoted: tried last next time */
	int err = persist(c);
	return err ? err : 1;
}
