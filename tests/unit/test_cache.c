/*
 * test_cache.c - the bootstrap cache file (p2p/cache.c) and the peer
 * exchange list encoding (p2p/pex.c).
 *
 * Each test works on a file in its own mkdtemp directory. The crash
 * argument is checked directly: a slot torn at any byte must leave the
 * previous list readable; unreadable files (empty, truncated, bad magic,
 * other version, both checksums bad) are set aside, never overwritten.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "p2p/cache.h"
#include "p2p/pex.h"

static char dir[64], path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/crust-cache-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cache", dir);
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(cache, .init = setup, .fini = teardown);

static struct crust_endpoint ep_of(const char *s)
{
	struct crust_endpoint ep;
	cr_assert(eq(int, crust_endpoint_parse(s, &ep), 0));
	return ep;
}

static struct crust_peer_id id_of(int k)
{
	struct crust_peer_id id;
	memset(id.bytes, k, sizeof(id.bytes));
	return id;
}

static void open_ok(struct cache *c, uint32_t cap, char *note, size_t n)
{
	int err = cache_open(c, path, cap, note, n);
	cr_assert(eq(int, err, 0), "cache_open: %s", strerror(-err));
}

static void write_bytes(const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0);
	cr_assert(write(fd, p, len) == (ssize_t)len);
	close(fd);
}

static size_t read_bytes(const char *p, uint8_t *buf, size_t cap)
{
	int fd = open(p, O_RDONLY);
	cr_assert(fd >= 0, "open %s", p);
	ssize_t got = read(fd, buf, cap);
	close(fd);
	return (size_t)got;
}

/* The one file named path.corrupt-* in dir, or "" if none. */
static void find_aside(char *out, size_t n)
{
	out[0] = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "cache.corrupt-", 14))
			snprintf(out, n, "%.63s/%.255s", dir, e->d_name);
	closedir(d);
}

Test(cache, new_file_then_move_to_front_and_reload)
{
	struct cache c;
	char note[512];
	open_ok(&c, 4, note, sizeof(note));
	cr_assert(eq(str, note, ""));
	cr_assert(eq(u32, c.count, 0));
	struct crust_endpoint a = ep_of("203.0.113.1:1"), b = ep_of("[2001:db8::2]:2"),
			      d = ep_of("rudp://198.51.100.3:3");
	cr_assert(eq(int, cache_success(&c, &a, &(struct crust_peer_id){ 0 }, 10), 0));
	struct crust_peer_id ia = id_of(1), ib = id_of(2), id = id_of(3);
	cr_assert(eq(int, cache_success(&c, &a, &ia, 11), 0));
	cr_assert(eq(int, cache_success(&c, &b, &ib, 12), 0));
	cr_assert(eq(int, cache_success(&c, &d, &id, 13), 0));
	cr_assert(eq(u32, c.count, 3), "the same endpoint twice is one entry");
	cr_assert(eq(int, cache_success(&c, &a, &ia, 14), 0)); /* a back to the front */
	cache_close(&c);

	open_ok(&c, 4, note, sizeof(note));
	cr_assert(eq(u32, c.count, 3));
	cr_assert(cache_same_endpoint(&c.entries[0].ep, &a));
	cr_assert(cache_same_endpoint(&c.entries[1].ep, &d));
	cr_assert(cache_same_endpoint(&c.entries[2].ep, &b));
	cr_assert(eq(int, c.entries[1].ep.transport, CRUST_TRANSPORT_RUDP));
	cr_assert(eq(int, c.entries[2].ep.addr.ss_family, AF_INET6));
	cr_assert(crust_peer_eq(&c.entries[0].id, &ia));
	cr_assert(eq(u64, c.entries[0].last_success, 14));
	cache_close(&c);
}

Test(cache, capped_least_recent_goes)
{
	struct cache c;
	char note[512], s[64];
	open_ok(&c, 3, note, sizeof(note));
	for (int i = 1; i <= 5; i++) {
		snprintf(s, sizeof(s), "192.0.2.%d:%d", i, i);
		struct crust_endpoint ep = ep_of(s);
		struct crust_peer_id id = id_of(i);
		cr_assert(eq(int, cache_success(&c, &ep, &id, (uint64_t)i), 0));
	}
	cr_assert(eq(u32, c.count, 3));
	cr_assert(crust_peer_eq(&c.entries[0].id, &(struct crust_peer_id){ .bytes = { 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5 } }));
	cr_assert(eq(u64, c.entries[2].last_success, 3));
	cache_close(&c);
}

Test(cache, failures_demote_then_remove)
{
	struct cache c;
	char note[512];
	open_ok(&c, 8, note, sizeof(note));
	struct crust_endpoint a = ep_of("192.0.2.1:1"), b = ep_of("192.0.2.2:2");
	struct crust_peer_id ia = id_of(1), ib = id_of(2);
	cache_success(&c, &a, &ia, 1);
	cache_success(&c, &b, &ib, 2); /* b, a */
	cr_assert(eq(int, cache_failure(&c, &b, 3), 1));
	cr_assert(cache_same_endpoint(&c.entries[0].ep, &a), "b demoted behind a");
	cr_assert(eq(u32, c.entries[1].failures, 1));
	cr_assert(eq(int, cache_failure(&c, &b, 3), 1));
	cr_assert(eq(u32, c.count, 2));
	cr_assert(eq(int, cache_failure(&c, &b, 3), 1));
	cr_assert(eq(u32, c.count, 1), "third failure in a row removes it");
	struct crust_endpoint x = ep_of("192.0.2.9:9");
	cr_assert(eq(int, cache_failure(&c, &x, 3), 0), "unknown endpoint: nothing to do");
	/* a success resets the count */
	cache_failure(&c, &a, 3);
	cache_success(&c, &a, &ia, 5);
	cr_assert(eq(u32, c.entries[0].failures, 0));
	cache_close(&c);
}

/* A torn write into the slot being written, at any byte, leaves the previous list. */
Test(cache, torn_slot_at_any_byte_reads_the_previous_list)
{
	const uint32_t cap = 4;
	size_t len = cache_file_size(cap), slot = len / 2;
	struct cache_entry e[2] = { 0 };
	e[0].ep = ep_of("192.0.2.1:1");
	e[0].id = id_of(1);
	e[1].ep = ep_of("192.0.2.2:2");
	e[1].id = id_of(2);
	uint8_t good[len], next[len], torn[len];
	memset(good, 0, len);
	cache_encode_slot(good, cap, 7, e, 1);           /* slot 0: seq 7, one entry */
	memcpy(next, good, len);
	cache_encode_slot(next + slot, cap, 8, e, 2);    /* slot 1: seq 8, two entries */
	struct cache_entry out[4];
	uint32_t n, fcap;
	uint64_t seq;
	char why[128];
	cr_assert(eq(int, cache_decode(next, len, out, 4, &n, &seq, &fcap, why, sizeof(why)), 1));
	cr_assert(eq(u32, n, 2));
	for (size_t cut = 0; cut < slot; cut++) {
		/* slot 1 written up to byte cut (entries first, header last) over old garbage */
		memcpy(torn, good, len);
		memset(torn + slot, 0xa5, slot);
		memcpy(torn + slot + CACHE_HDR_LEN, next + slot + CACHE_HDR_LEN,
		       cut < slot - CACHE_HDR_LEN ? cut : slot - CACHE_HDR_LEN);
		if (cut >= slot - CACHE_HDR_LEN)
			memcpy(torn + slot, next + slot, cut - (slot - CACHE_HDR_LEN));
		int got = cache_decode(torn, len, out, 4, &n, &seq, &fcap, why, sizeof(why));
		cr_assert(eq(int, got, 0), "cut at %zu: %s", cut, why);
		cr_assert(eq(u64, seq, 7));
		cr_assert(eq(u32, n, 1));
	}
}

Test(cache, writes_alternate_slots)
{
	struct cache c;
	char note[512];
	open_ok(&c, 2, note, sizeof(note));
	struct crust_endpoint a = ep_of("192.0.2.1:1");
	struct crust_peer_id ia = id_of(1);
	int slot = c.cur_slot;
	for (int i = 0; i < 4; i++) {
		cache_success(&c, &a, &ia, (uint64_t)i);
		cr_assert(ne(int, c.cur_slot, slot));
		slot = c.cur_slot;
	}
	cache_close(&c);
}

static void expect_set_aside(const void *bytes, size_t len, const char *want)
{
	write_bytes(bytes, len);
	struct cache c;
	char note[1024], aside[400];
	open_ok(&c, 4, note, sizeof(note));
	cr_assert(strstr(note, path) != NULL, "note names the file: %s", note);
	cr_assert(strstr(note, want) != NULL, "'%s' lacks '%s'", note, want);
	find_aside(aside, sizeof(aside));
	cr_assert(ne(str, aside, ""), "the bad file was set aside");
	cr_assert(strstr(note, aside) != NULL, "note names the set-aside file: %s", note);
	uint8_t back[16384];
	size_t got = read_bytes(aside, back, sizeof(back));
	cr_assert(eq(sz, got, len), "set aside byte for byte");
	cr_assert(eq(int, memcmp(back, bytes, len), 0));
	unlink(aside); /* a second call in the same second must find only its own */
	cr_assert(eq(u32, c.count, 0));
	struct crust_endpoint a = ep_of("192.0.2.1:1");
	struct crust_peer_id ia = id_of(1);
	cr_assert(eq(int, cache_success(&c, &a, &ia, 1), 0), "the rebuilt cache works");
	cache_close(&c);
	open_ok(&c, 4, note, sizeof(note));
	cr_assert(eq(str, note, ""));
	cr_assert(eq(u32, c.count, 1));
	cache_close(&c);
}

Test(cache, zero_length_is_set_aside)
{
	expect_set_aside("", 0, "empty (zero length)");
}

Test(cache, truncated_is_set_aside)
{
	uint8_t img[4096] = { 0 };
	size_t len = cache_file_size(4);
	struct cache_entry e = { .ep = ep_of("192.0.2.1:1") };
	cache_encode_slot(img, 4, 1, &e, 1);
	expect_set_aside(img, len - 100, "truncated");
}

Test(cache, wrong_version_is_set_aside)
{
	uint8_t img[4096] = { 0 };
	size_t len = cache_file_size(4);
	cache_encode_slot(img, 4, 1, NULL, 0);
	img[8] = 9; /* version 9 */
	expect_set_aside(img, len, "unsupported version 9");
}

Test(cache, bad_magic_is_set_aside)
{
	uint8_t img[1024];
	memset(img, 'x', sizeof(img));
	expect_set_aside(img, cache_file_size(4), "bad magic");
	expect_set_aside("hello, world\n", 13, "bad magic");
}

Test(cache, both_checksums_bad_is_set_aside)
{
	uint8_t img[4096] = { 0 };
	size_t len = cache_file_size(4);
	struct cache_entry e = { .ep = ep_of("192.0.2.1:1") };
	cache_encode_slot(img, 4, 1, &e, 1);
	cache_encode_slot(img + len / 2, 4, 2, &e, 1);
	img[CACHE_HDR_LEN + 9] ^= 1;
	img[len / 2 + CACHE_HDR_LEN + 9] ^= 1;
	expect_set_aside(img, len, "checksum");
}

Test(cache, another_capacity_keeps_the_entries)
{
	struct cache c;
	char note[512], s[64];
	open_ok(&c, 8, note, sizeof(note));
	for (int i = 1; i <= 5; i++) {
		snprintf(s, sizeof(s), "192.0.2.%d:%d", i, i);
		struct crust_endpoint ep = ep_of(s);
		struct crust_peer_id id = id_of(i);
		cache_success(&c, &ep, &id, (uint64_t)i);
	}
	cache_close(&c);
	open_ok(&c, 3, note, sizeof(note));
	cr_assert(eq(u32, c.count, 3), "the 3 most recent kept");
	cr_assert(eq(u64, c.entries[0].last_success, 5));
	cache_close(&c);
	struct stat st;
	stat(path, &st);
	cr_assert(eq(sz, (size_t)st.st_size, cache_file_size(3)));
	char aside[400];
	find_aside(aside, sizeof(aside));
	cr_assert(eq(str, aside, ""), "a resize is not corruption");
}

Test(cache, second_opener_is_refused_with_ebusy)
{
	struct cache c1, c2;
	char note[512];
	open_ok(&c1, 4, note, sizeof(note));
	cr_assert(eq(int, cache_open(&c2, path, 4, note, sizeof(note)), -EBUSY));
	cache_close(&c1);
	open_ok(&c2, 4, note, sizeof(note));
	cache_close(&c2);
}

Test(cache, missing_directory_is_an_error)
{
	struct cache c;
	char note[512];
	snprintf(path, sizeof(path), "%s/no/such/dir/cache", dir);
	cr_assert(eq(int, cache_open(&c, path, 4, note, sizeof(note)), -ENOENT));
}

Test(pex, list_round_trips_and_malformed_lists_are_refused)
{
	struct pex_entry e[3] = { 0 }, out[PEX_MAX_ENDPOINTS];
	e[0].ep = ep_of("192.0.2.1:1");
	e[0].id = id_of(1);
	e[1].ep = ep_of("[2001:db8::7]:65535");
	e[1].id = id_of(2);
	e[2].ep = ep_of("rudp://198.51.100.9:5483");
	e[2].id = id_of(3);
	uint8_t msg[PEX_LIST_MAX];
	size_t len = pex_encode(msg, e, 3);
	cr_assert(eq(sz, len, 2 + 40 + 52 + 40));
	size_t n;
	cr_assert(eq(int, pex_decode(msg, len, out, &n), 0));
	cr_assert(eq(sz, n, 3));
	for (int i = 0; i < 3; i++) {
		cr_assert(cache_same_endpoint(&out[i].ep, &e[i].ep), "entry %d", i);
		cr_assert(crust_peer_eq(&out[i].id, &e[i].id));
	}
	for (size_t cut = 0; cut < len; cut++)
		cr_assert(eq(int, pex_decode(msg, cut, out, &n), -EBADMSG), "cut at %zu", cut);
	uint8_t longer[PEX_LIST_MAX + 1];
	memcpy(longer, msg, len);
	longer[len] = 0;
	cr_assert(eq(int, pex_decode(longer, len + 1, out, &n), -EBADMSG), "trailing byte");
	msg[1] = PEX_MAX_ENDPOINTS + 1;
	cr_assert(eq(int, pex_decode(msg, len, out, &n), -EBADMSG), "count above the bound");
	msg[1] = 3;
	msg[2 + 1] = 5; /* family 5 */
	cr_assert(eq(int, pex_decode(msg, len, out, &n), -EBADMSG));
	msg[2 + 1] = 4;
	msg[2] = 9; /* transport 9 */
	cr_assert(eq(int, pex_decode(msg, len, out, &n), -EBADMSG));
}
