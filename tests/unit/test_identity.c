/*
 * test_identity.c - the identity file (p2p/identity.c).
 *
 * Every test works in its own mkdtemp directory, removed by the suite's
 * fini. We run as root, so "cannot read" is provoked by paths that fail
 * for root too: a directory, a path under a regular file, a missing
 * directory, a dangling symlink, a FIFO. Malformed files must be refused
 * with -EINVAL, a reason naming the file and the problem, and left
 * byte-for-byte as they were. Racing creators (threads and processes)
 * must all end up with the one identity that was created.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p2p/identity.h"

#define RACERS 8
#define RACE_ROUNDS 25

/* RFC 8032 section 7.1, TEST 1 */
#define RFC_SEED "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
#define RFC_SEED_UPPER "9D61B19DEFFD5A60BA844AF492EC2CC44449C5697B326919703BAC031CAE7F60"
#define RFC_PUBLIC "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
/* another valid key: RFC 8032 TEST 2's public key */
#define OTHER_PUBLIC "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
#define HEX63 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/crust-identity-XXXXXX");
	cr_assert(mkdtemp(dir) != NULL);
}

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p);
}

static void teardown(void)
{
	if (dir[0])
		nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#ifdef CRUST_VALGRIND
#define SUITE_TIMEOUT 400 /* make valgrind: 200 racing processes, each ~50x slower */
#else
#define SUITE_TIMEOUT 20
#endif
TestSuite(identity, .init = setup, .fini = teardown, .timeout = SUITE_TIMEOUT);

/* ---- helpers ---- */

static void path_in_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

static void write_file(const char *path, const void *bytes, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	cr_assert(eq(sz, (size_t)write(fd, bytes, len), len));
	cr_assert(eq(int, fchmod(fd, mode), 0));
	close(fd);
}

/* The whole file into a malloc'd buffer (caller frees); *len its size. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;

	cr_assert(f != NULL, "fopen %s: %s", path, strerror(errno));
	cr_assert(eq(int, fseek(f, 0, SEEK_END), 0));
	*len = (size_t)ftell(f);
	rewind(f);
	buf = malloc(*len + 1);
	cr_assert(buf != NULL);
	cr_assert(eq(sz, fread(buf, 1, *len, f), *len));
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static int entries_in(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *e;
	int n = 0;

	cr_assert(dp != NULL);
	while ((e = readdir(dp)))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(dp);
	return n;
}

static bool is_zero(const void *p, size_t len)
{
	return sodium_is_zero(p, len) == 1;
}

/* The pair is a working Ed25519 key pair whose sk carries pk. */
static void assert_key_pair(const struct identity *id)
{
	static const unsigned char m[] = "crust";
	unsigned char sig[crypto_sign_BYTES];

	cr_assert(not(is_zero(id->pk, sizeof id->pk)));
	cr_assert(eq(int, memcmp(id->sk + 32, id->pk, 32), 0));
	crypto_sign_detached(sig, NULL, m, sizeof m, id->sk);
	cr_assert(eq(int, crypto_sign_verify_detached(sig, m, sizeof m, id->pk), 0));
}

static void hex_of(const uint8_t pk[32], char out[65])
{
	sodium_bin2hex(out, 65, pk, 32);
}

/* ---- creating and loading ---- */

Test(identity, creates_a_private_file_and_loads_the_same_key_back)
{
	char path[128], why[256];
	struct identity a, b;
	struct stat st;
	size_t len1, len2;
	char *before, *after, hex[65], expect[160];

	path_in_dir(path, sizeof path, "id");
	cr_assert(eq(int, identity_load(path, &a, why, sizeof why), 0), "%s", why);
	cr_assert(eq(str, why, ""));
	assert_key_pair(&a);

	cr_assert(eq(int, stat(path, &st), 0));
	cr_assert(eq(int, S_ISREG(st.st_mode), 1));
	cr_assert(eq(u32, (unsigned)(st.st_mode & 07777), 0600));
	cr_assert(eq(int, entries_in(dir), 1), "no temporary file is left behind");

	/* exactly the documented format */
	before = slurp(path, &len1);
	cr_assert(eq(sz, len1, (size_t)159));
	hex_of(a.pk, hex);
	snprintf(expect, sizeof expect, "public %s\n", hex);
	cr_assert(eq(int, strncmp(before, "crust-identity 1\nseed ", 22), 0));
	cr_assert(eq(str, before + 17 + 70, expect));

	cr_assert(eq(int, identity_load(path, &b, why, sizeof why), 0), "%s", why);
	cr_assert(eq(str, why, ""));
	cr_assert(eq(int, memcmp(&a, &b, sizeof a), 0), "the same key pair comes back");
	after = slurp(path, &len2);
	cr_assert(eq(sz, len1, len2));
	cr_assert(eq(int, memcmp(before, after, len1), 0), "loading never rewrites");
	free(before);
	free(after);
	identity_wipe(&a);
	identity_wipe(&b);
}

Test(identity, relative_path_is_created_in_the_current_directory)
{
	struct identity a, b;
	char why[256];

	cr_assert(eq(int, chdir(dir), 0));
	cr_assert(eq(int, identity_load("id", &a, why, sizeof why), 0), "%s", why);
	cr_assert(eq(int, entries_in("."), 1));
	cr_assert(eq(int, identity_load("./id", &b, why, sizeof why), 0), "%s", why);
	cr_assert(eq(int, memcmp(a.pk, b.pk, 32), 0));
}

Test(identity, ephemeral_identity_differs_each_time_and_writes_nothing)
{
	struct identity a, b, c;
	char why[64] = "stale";

	cr_assert(eq(int, chdir(dir), 0));
	cr_assert(eq(int, identity_load(NULL, &a, why, sizeof why), 0));
	cr_assert(eq(str, why, ""));
	cr_assert(eq(int, identity_load("", &b, why, sizeof why), 0));
	cr_assert(eq(int, identity_load(NULL, &c, NULL, 0), 0));
	assert_key_pair(&a);
	assert_key_pair(&b);
	assert_key_pair(&c);
	cr_assert(ne(int, memcmp(a.pk, b.pk, 32), 0));
	cr_assert(ne(int, memcmp(a.pk, c.pk, 32), 0));
	cr_assert(ne(int, memcmp(b.pk, c.pk, 32), 0));
	cr_assert(eq(int, entries_in(dir), 0));
}

Test(identity, known_seed_gives_the_rfc8032_public_key)
{
	static const char *const texts[] = {
		"crust-identity 1\nseed " RFC_SEED "\n",
		"crust-identity 1\nseed " RFC_SEED "\npublic " RFC_PUBLIC "\n",
		"crust-identity 1\npublic " RFC_PUBLIC "\nseed " RFC_SEED "\n",
		"crust-identity 1\nseed " RFC_SEED, /* no final newline */
		"crust-identity 1\nseed " RFC_SEED_UPPER "\n",
	};
	char path[128], why[256], hex[65];
	struct identity id;
	size_t i;

	path_in_dir(path, sizeof path, "id");
	for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		write_file(path, texts[i], strlen(texts[i]), 0600);
		cr_assert(eq(int, identity_load(path, &id, why, sizeof why), 0), "text %zu: %s", i,
			  why);
		cr_assert(eq(str, why, ""));
		hex_of(id.pk, hex);
		cr_assert(eq(str, hex, RFC_PUBLIC), "text %zu", i);
		assert_key_pair(&id);
	}
}

/* ---- refusing bad files ---- */

struct bad {
	const char *text;
	size_t len; /* 0: strlen(text) */
	const char *reason;
};

static const struct bad bad_files[] = {
	{ "", 0, "malformed: empty file" },
	{ "hello world\n", 0, "line 1: expected \"crust-identity 1\"" },
	{ "crust-identity 2\nseed " RFC_SEED "\n", 0, "line 1: unsupported version" },
	{ "crust-identity 1\r\nseed " RFC_SEED "\r\n", 0, "line 1: ends with a carriage return" },
	{ "\ncrust-identity 1\nseed " RFC_SEED "\n", 0, "line 1: empty line" },
	{ "crust-identity 1\n", 0, "malformed: missing the \"seed\" line" },
	{ "crust-identity 1\npublic " RFC_PUBLIC "\n", 0, "missing the \"seed\" line" },
	{ "crust-identity 1\nseed abc\n", 0, "line 2: expected 64 hex characters after \"seed\"" },
	{ "crust-identity 1\nseed " HEX63 "\n", 0, "line 2: expected 64 hex characters" },
	{ "crust-identity 1\nseed " HEX63 "g\n", 0, "line 2: expected 64 hex characters" },
	{ "crust-identity 1\nseed " RFC_SEED "00\n", 0, "line 2: expected 64 hex characters" },
	{ "crust-identity 1\nseed  " RFC_SEED "\n", 0, "line 2: expected 64 hex characters" },
	{ "crust-identity 1\nseed " RFC_SEED " \n", 0, "line 2: expected 64 hex characters" },
	{ "crust-identity 1\nseed\n", 0, "line 2: expected 64 hex characters after \"seed\"" },
	{ "crust-identity 1\nseed " RFC_SEED "\0\n", 17 + 5 + 64 + 2,
	  "line 2: expected 64 hex characters" },
	{ "crust-identity 1\nseed " RFC_SEED "\npublic xyz\n", 0,
	  "line 3: expected 64 hex characters after \"public\"" },
	{ "crust-identity 1\nseed " RFC_SEED "\nname alice\n", 0, "line 3: unknown line" },
	{ "crust-identity 1\n" RFC_SEED "\n", 0, "line 2: unknown line" },
	{ "crust-identity 1\nseed " RFC_SEED "\nseed " RFC_SEED "\n", 0,
	  "line 3: second \"seed\" line" },
	{ "crust-identity 1\nseed " RFC_SEED "\npublic " RFC_PUBLIC "\npublic " RFC_PUBLIC "\n", 0,
	  "line 4: second \"public\" line" },
	{ "crust-identity 1\nseed " RFC_SEED "\n\n", 0, "line 3: empty line" },
	{ "crust-identity 1\nseed " RFC_SEED "\npublic " RFC_PUBLIC "\ntrailing", 0,
	  "line 4: unknown line" },
};

Test(identity, malformed_files_are_refused_naming_the_problem_and_left_untouched)
{
	char path[128], why[512], prefix[160];
	struct identity id;
	size_t i;

	path_in_dir(path, sizeof path, "id");
	snprintf(prefix, sizeof prefix, "identity file %s: ", path);
	for (i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
		const struct bad *b = &bad_files[i];
		size_t len = b->len ? b->len : strlen(b->text), n1, n2;
		char *before, *after;

		write_file(path, b->text, len, 0600);
		before = slurp(path, &n1);
		memset(&id, 0xa5, sizeof id);
		cr_assert(eq(int, identity_load(path, &id, why, sizeof why), -EINVAL), "case %zu", i);
		cr_assert(eq(int, strncmp(why, prefix, strlen(prefix)), 0), "case %zu: %s", i, why);
		cr_assert(strstr(why, b->reason) != NULL, "case %zu: want \"%s\" in \"%s\"", i,
			  b->reason, why);
		cr_assert(strstr(why, RFC_SEED) == NULL, "the secret is never echoed");
		cr_assert(is_zero(&id, sizeof id), "case %zu: out is zeroed on error", i);
		after = slurp(path, &n2);
		cr_assert(eq(sz, n1, n2), "case %zu", i);
		cr_assert(eq(int, memcmp(before, after, n1), 0), "case %zu: file untouched", i);
		cr_assert(eq(int, entries_in(dir), 1), "case %zu: nothing else created", i);
		free(before);
		free(after);
	}
}

Test(identity, oversized_file_is_refused)
{
	char path[128], why[256], big[IDENTITY_MAX_FILE + 100];
	struct identity id;
	int n;

	path_in_dir(path, sizeof path, "id");
	n = snprintf(big, sizeof big, "crust-identity 1\nseed %s\n", RFC_SEED);
	memset(big + n, 'x', sizeof big - (size_t)n);
	write_file(path, big, sizeof big, 0600);
	cr_assert(eq(int, identity_load(path, &id, why, sizeof why), -EINVAL));
	cr_assert(strstr(why, "malformed: larger than 1024 bytes") != NULL, "%s", why);
}

Test(identity, public_key_mismatch_is_refused)
{
	static const char text[] = "crust-identity 1\nseed " RFC_SEED "\npublic " OTHER_PUBLIC "\n";
	char path[128], why[256], expect[200];
	struct identity id;
	size_t n;
	char *after;

	path_in_dir(path, sizeof path, "id");
	write_file(path, text, sizeof text - 1, 0600);
	cr_assert(eq(int, identity_load(path, &id, why, sizeof why), -EINVAL));
	snprintf(expect, sizeof expect, "identity file %s: public key does not match the secret key",
		 path);
	cr_assert(eq(int, strncmp(why, expect, strlen(expect)), 0), "%s", why);
	cr_assert(is_zero(&id, sizeof id));
	after = slurp(path, &n);
	cr_assert(eq(str, after, (char *)text));
	free(after);
}

Test(identity, reason_is_optional_and_truncated_safely)
{
	static const char text[] = "garbage\n";
	char path[128], why[12];
	struct identity id;

	path_in_dir(path, sizeof path, "id");
	write_file(path, text, sizeof text - 1, 0600);
	cr_assert(eq(int, identity_load(path, &id, NULL, 0), -EINVAL));
	memset(why, 'z', sizeof why);
	cr_assert(eq(int, identity_load(path, &id, why, sizeof why), -EINVAL));
	cr_assert(eq(str, why, "identity fi"));
}

/* ---- permissions ---- */

Test(identity, file_open_to_group_or_others_loads_with_a_warning)
{
	static const mode_t modes[] = { 0640, 0604, 0620, 0644 };
	char path[128], why[512], mode[16];
	struct identity a, b;
	size_t i;

	path_in_dir(path, sizeof path, "id");
	cr_assert(eq(int, identity_load(path, &a, why, sizeof why), 0), "%s", why);
	for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		cr_assert(eq(int, chmod(path, modes[i]), 0));
		cr_assert(eq(int, identity_load(path, &b, why, sizeof why), 0), "%s", why);
		cr_assert(eq(int, memcmp(&a, &b, sizeof a), 0));
		snprintf(mode, sizeof mode, "mode %04o", (unsigned)modes[i]);
		cr_assert(strstr(why, path) != NULL, "%s", why);
		cr_assert(strstr(why, mode) != NULL, "%s", why);
		cr_assert(strstr(why, "chmod 600") != NULL, "%s", why);
	}
	cr_assert(eq(int, chmod(path, 0400), 0));
	cr_assert(eq(int, identity_load(path, &b, why, sizeof why), 0), "%s", why);
	cr_assert(eq(str, why, ""), "owner-only modes are quiet");
}

/* ---- paths that fail even for root ---- */

Test(identity, directory_path_fails_clearly)
{
	char why[256], expect[200];
	struct identity id;

	cr_assert(eq(int, identity_load(dir, &id, why, sizeof why), -EISDIR));
	snprintf(expect, sizeof expect, "identity file %s: is a directory", dir);
	cr_assert(eq(str, why, expect));
	cr_assert(is_zero(&id, sizeof id));
}

Test(identity, path_under_a_regular_file_fails_clearly)
{
	char file[128], path[160], why[256], expect[256];
	struct identity id;

	path_in_dir(file, sizeof file, "plain");
	write_file(file, "x", 1, 0600);
	snprintf(path, sizeof path, "%s/id", file);
	cr_assert(eq(int, identity_load(path, &id, why, sizeof why), -ENOTDIR));
	snprintf(expect, sizeof expect, "identity file %s: cannot open: Not a directory", path);
	cr_assert(eq(str, why, expect));
	cr_assert(eq(int, entries_in(dir), 1));
}

Test(identity, missing_directory_fails_clearly)
{
	char path[160], why[512], expect[300];
	struct identity id;

	path_in_dir(path, sizeof path, "nowhere/id");
	cr_assert(eq(int, identity_load(path, &id, why, sizeof why), -ENOENT));
	snprintf(expect, sizeof expect,
		 "identity file %s: cannot create: No such file or directory "
		 "(does its directory exist?)",
		 path);
	cr_assert(eq(str, why, expect));
	cr_assert(eq(int, entries_in(dir), 0));
}

Test(identity, dangling_symlink_is_refused_and_its_target_not_created)
{
	char path[128], target[128], why[256], expect[256];
	struct identity id;

	path_in_dir(path, sizeof path, "id");
	path_in_dir(target, sizeof target, "target");
	cr_assert(eq(int, symlink(target, path), 0));
	cr_assert(eq(int, identity_load(path, &id, why, sizeof why), -ENOENT));
	snprintf(expect, sizeof expect,
		 "identity file %s: is a symbolic link to a file that does not exist", path);
	cr_assert(eq(str, why, expect));
	cr_assert(eq(int, access(target, F_OK), -1));
	cr_assert(eq(int, entries_in(dir), 1));
}

Test(identity, symlink_to_an_identity_file_is_followed)
{
	char path[128], target[128], why[256];
	struct identity a, b;

	path_in_dir(target, sizeof target, "real");
	path_in_dir(path, sizeof path, "id");
	cr_assert(eq(int, identity_load(target, &a, why, sizeof why), 0), "%s", why);
	cr_assert(eq(int, symlink(target, path), 0));
	cr_assert(eq(int, identity_load(path, &b, why, sizeof why), 0), "%s", why);
	cr_assert(eq(int, memcmp(&a, &b, sizeof a), 0));
}

Test(identity, fifo_is_refused_without_blocking, .timeout = 5)
{
	char path[128], why[256], expect[200];
	struct identity id;

	path_in_dir(path, sizeof path, "id");
	cr_assert(eq(int, mkfifo(path, 0600), 0));
	cr_assert(eq(int, identity_load(path, &id, why, sizeof why), -EINVAL));
	snprintf(expect, sizeof expect, "identity file %s: not a regular file", path);
	cr_assert(eq(str, why, expect));
}

/* ---- racing creators ---- */

struct racer {
	const char *path;
	pthread_barrier_t *go;
	int rc;
	struct identity id;
	char why[256];
};

static void *race(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->go);
	r->rc = identity_load(r->path, &r->id, r->why, sizeof r->why);
	return NULL;
}

Test(identity, concurrent_creation_by_threads_yields_one_identity)
{
	struct racer r[RACERS];
	pthread_t t[RACERS];
	pthread_barrier_t go;
	char path[128], name[16];
	int round, i;

	for (round = 0; round < RACE_ROUNDS; round++) {
		snprintf(name, sizeof name, "id%d", round);
		path_in_dir(path, sizeof path, name);
		pthread_barrier_init(&go, NULL, RACERS);
		for (i = 0; i < RACERS; i++) {
			r[i] = (struct racer){ .path = path, .go = &go };
			cr_assert(eq(int, pthread_create(&t[i], NULL, race, &r[i]), 0));
		}
		for (i = 0; i < RACERS; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&go);
		for (i = 0; i < RACERS; i++) {
			cr_assert(eq(int, r[i].rc, 0), "round %d racer %d: %s", round, i, r[i].why);
			cr_assert(eq(int, memcmp(&r[i].id, &r[0].id, sizeof r[0].id), 0),
				  "round %d racer %d disagrees", round, i);
		}
		cr_assert(eq(int, entries_in(dir), round + 1), "no temporary files left");
	}
}

struct verdict {
	int rc;
	uint8_t pk[32];
};

/* In a child: wait for the start, load, report (one write, atomic on a pipe), exit. */
static void child(const char *path, int go, int out)
{
	struct verdict v = { 0 };
	struct identity id;
	char c;

	if (read(go, &c, 1) != 0)
		_exit(3);
	v.rc = identity_load(path, &id, NULL, 0);
	memcpy(v.pk, id.pk, 32);
	_exit(write(out, &v, sizeof v) == sizeof v ? 0 : 2);
}

static void race_processes(const char *path, struct verdict v[RACERS])
{
	int go[2], res[2], i, status;
	pid_t pid[RACERS];

	cr_assert(eq(int, pipe(go), 0));
	cr_assert(eq(int, pipe(res), 0));
	for (i = 0; i < RACERS; i++) {
		pid[i] = fork();
		cr_assert(pid[i] >= 0);
		if (pid[i] == 0) {
			close(go[1]);
			close(res[0]);
			child(path, go[0], res[1]);
		}
	}
	close(go[0]);
	close(res[1]);
	close(go[1]); /* every child's read returns 0 at once: start */
	for (i = 0; i < RACERS; i++)
		cr_assert(eq(sz, (size_t)read(res[0], &v[i], sizeof v[i]), sizeof v[i]));
	close(res[0]);
	for (i = 0; i < RACERS; i++) {
		cr_assert(eq(int, waitpid(pid[i], &status, 0), pid[i]));
		cr_assert(eq(int, status, 0), "child status %#x", status);
	}
}

Test(identity, concurrent_creation_by_processes_yields_one_identity)
{
	struct verdict v[RACERS];
	struct identity mine;
	char path[128], name[16], why[256];
	int round, i;

	for (round = 0; round < RACE_ROUNDS; round++) {
		snprintf(name, sizeof name, "id%d", round);
		path_in_dir(path, sizeof path, name);
		race_processes(path, v);
		cr_assert(eq(int, identity_load(path, &mine, why, sizeof why), 0), "%s", why);
		for (i = 0; i < RACERS; i++) {
			cr_assert(eq(int, v[i].rc, 0), "round %d racer %d: %d", round, i, v[i].rc);
			cr_assert(eq(int, memcmp(v[i].pk, mine.pk, 32), 0),
				  "round %d racer %d disagrees with the file", round, i);
		}
		cr_assert(eq(int, entries_in(dir), round + 1), "no temporary files left");
	}
}

Test(identity, wipe_zeroes_the_key_pair)
{
	struct identity id;

	cr_assert(eq(int, identity_load(NULL, &id, NULL, 0), 0));
	identity_wipe(&id);
	cr_assert(is_zero(&id, sizeof id));
}
