#define _GNU_SOURCE
/*
 * test_fuzz_replay.c - every committed fuzz input (tests/fuzz/corpus/<target>/
 * seeds and tests/fuzz/regress/<target>/ crashes found and fixed) through
 * the same harness libFuzzer runs (tests/fuzz/fuzz_<target>.c), compiled
 * here with gcc: a fixed bug that comes back fails `make test` (and
 * `make asan` sees any memory error), without clang or libFuzzer. Each
 * input ends at an inaccessible page, so over-reads fault in plain builds.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

/*
 * n bytes ending right before an inaccessible page: reading past the input
 * faults even without ASan, so an over-read fails plain `make test` too.
 */
struct guarded {
	uint8_t *map;
	size_t len;
};

static uint8_t *guarded_copy(struct guarded *g, const uint8_t *p, size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t data_pages = (n + page - 1) / page + 1;
	g->len = (data_pages + 1) * page;
	g->map = mmap(NULL, g->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(g->map != MAP_FAILED);
	cr_assert_eq(mprotect(g->map + data_pages * page, page, PROT_NONE), 0);
	uint8_t *at = g->map + data_pages * page - n;
	memcpy(at, p, n);
	return at;
}

/* tests/fuzz, from this file's path (the tests run from the repository root) */
static void fuzz_dir(char *out, size_t n, const char *sub, const char *target)
{
	char here[] = __FILE__;
	char *slash = strrchr(here, '/');
	*slash = 0;             /* tests/unit */
	slash = strrchr(here, '/');
	*slash = 0;             /* tests */
	snprintf(out, n, "%s/fuzz/%s/%s", here, sub, target);
}

/* Each file of dir into fn, in an allocation of exactly its size; the count replayed. */
static unsigned replay_dir(const char *dir, fuzz_fn fn)
{
	DIR *d = opendir(dir);
	if (!d) {
		cr_assert_eq(errno, ENOENT, "%s: %s", dir, strerror(errno));
		return 0;
	}
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		FILE *f = fopen(path, "rb");
		cr_assert(f, "%s: %s", path, strerror(errno));
		fseek(f, 0, SEEK_END);
		long size = ftell(f);
		rewind(f);
		uint8_t *buf = malloc(size ? (size_t)size : 1);
		cr_assert(buf);
		cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size, "%s", path);
		fclose(f);
		/* aborts on a broken invariant; faults on an over-read (ASan sees the rest) */
		struct guarded g;
		fn(guarded_copy(&g, buf, (size_t)size), (size_t)size);
		munmap(g.map, g.len);
		free(buf);
		n++;
	}
	closedir(d);
	return n;
}

static void replay(const char *target)
{
	static const struct fuzz_target all[] = { FUZZ_TARGETS };
	fuzz_fn fn = NULL;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (!strcmp(all[i].name, target))
			fn = all[i].fn;
	cr_assert(fn, "no harness named %s", target);
	char dir[4096];
	fuzz_dir(dir, sizeof(dir), "corpus", target);
	unsigned seeds = replay_dir(dir, fn);
	cr_assert_gt(seeds, 0, "%s: no seed corpus (make fuzz-corpus)", dir);
	fuzz_dir(dir, sizeof(dir), "regress", target);
	replay_dir(dir, fn);
}

Test(fuzz_replay, framing, .timeout = 60) { replay("framing"); }
Test(fuzz_replay, handshake, .timeout = 60) { replay("handshake"); }
Test(fuzz_replay, session, .timeout = 60) { replay("session"); }
Test(fuzz_replay, rudp_wire, .timeout = 60) { replay("rudp_wire"); }
Test(fuzz_replay, rudp_recv, .timeout = 60) { replay("rudp_recv"); }
Test(fuzz_replay, rudp_conn, .timeout = 60) { replay("rudp_conn"); }
Test(fuzz_replay, beacon, .timeout = 60) { replay("beacon"); }
Test(fuzz_replay, stun, .timeout = 60) { replay("stun"); }
Test(fuzz_replay, rendezvous, .timeout = 60) { replay("rendezvous"); }
Test(fuzz_replay, pex, .timeout = 60) { replay("pex"); }
Test(fuzz_replay, cache, .timeout = 60) { replay("cache"); }
Test(fuzz_replay, config, .timeout = 60) { replay("config"); }
Test(fuzz_replay, identity, .timeout = 60) { replay("identity"); }
