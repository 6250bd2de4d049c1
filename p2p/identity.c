/*
 * identity.c - load or create the node's Ed25519 identity file (see identity.h).
 *
 * Format, version 1 (lines end with '\n'; the last one may omit it):
 *   line 1   "crust-identity 1"
 *   then     "seed <64 hex>"    required: the 32-byte Ed25519 seed
 *            "public <64 hex>"  optional: must equal the key derived from the seed
 * in any order, each at most once. Hex is read in either case and written
 * in lower case. Nothing else is accepted: no blank lines, comments, extra
 * spaces or carriage returns. Errors name the line, never its content
 * (which may hold the secret).
 *
 * Invariants:
 *  - an existing file is never opened for writing;
 *  - a new file appears under its final name only complete and on disk:
 *    written to "<path>.tmp-XXXXXX" (mode 0600, O_EXCL), fsynced, then
 *    link(2)ed to path - which fails with EEXIST rather than replace a file
 *    another process created meanwhile, and then that file is loaded;
 *  - secrets on the stack are wiped before return.
 * A crash may leave a "<path>.tmp-XXXXXX" behind (a key never used; safe to delete).
 */
#define _GNU_SOURCE
#include "identity.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* create, then load, at most this often if files keep appearing and disappearing */
#define ATTEMPTS 4
#define TEXT_LEN (sizeof(IDENTITY_HEADER "\nseed \npublic \n") - 1 + 2 * 64)

struct parsed {
	uint8_t seed[32];
	uint8_t pk[32];
	bool has_seed, has_pk;
};

/* Write a reason into why (may be NULL); returns -EINVAL. */
static __attribute__((format(printf, 3, 4))) int
say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Write "identity file <path>: <reason>" into why; returns err. */
static __attribute__((format(printf, 5, 6))) int
fail(char *why, size_t whylen, const char *path, int err, const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	if (why && whylen)
		snprintf(why, whylen, "identity file %s: %s", path, reason);
	return err;
}

/* ---- parsing: bytes in, key material out, no I/O ---- */

static bool keyword_is(const char *s, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(s, word, len) == 0;
}

static int parse_header(const char *s, size_t len, char *err, size_t errlen)
{
	static const char prefix[] = "crust-identity ";

	if (keyword_is(s, len, IDENTITY_HEADER))
		return 0;
	if (len > sizeof prefix - 1 && memcmp(s, prefix, sizeof prefix - 1) == 0)
		return say(err, errlen, "line 1: unsupported version (this build reads \"%s\")",
			   IDENTITY_HEADER);
	return say(err, errlen, "line 1: expected \"%s\" (not an identity file?)",
		   IDENTITY_HEADER);
}

/* Exactly 64 hex digits into 32 bytes. */
static int hex32(const char *hex, size_t len, uint8_t out[32])
{
	size_t n = 0;

	if (len != 64 || sodium_hex2bin(out, 32, hex, len, NULL, &n, NULL) != 0 || n != 32)
		return -EINVAL;
	return 0;
}

/* One line after the header, without its '\n'. */
static int parse_field(const char *s, size_t len, unsigned line, struct parsed *p, char *err,
		       size_t errlen)
{
	const char *space = memchr(s, ' ', len);
	size_t klen = space ? (size_t)(space - s) : len;
	const char *name;
	uint8_t *dst;
	bool *seen;

	if (keyword_is(s, klen, "seed")) {
		name = "seed", dst = p->seed, seen = &p->has_seed;
	} else if (keyword_is(s, klen, "public")) {
		name = "public", dst = p->pk, seen = &p->has_pk;
	} else {
		return say(err, errlen,
			   "line %u: unknown line (expected \"seed <hex>\" or \"public <hex>\")", line);
	}
	if (*seen)
		return say(err, errlen, "line %u: second \"%s\" line", line, name);
	if (!space || hex32(space + 1, len - klen - 1, dst) != 0)
		return say(err, errlen, "line %u: expected 64 hex characters after \"%s\"", line,
			   name);
	*seen = true;
	return 0;
}

static int parse_line(const char *s, size_t len, unsigned line, struct parsed *p, char *err,
		      size_t errlen)
{
	if (len == 0)
		return say(err, errlen, "line %u: empty line", line);
	if (s[len - 1] == '\r')
		return say(err, errlen, "line %u: ends with a carriage return (DOS line endings?)",
			   line);
	if (line == 1)
		return parse_header(s, len, err, errlen);
	return parse_field(s, len, line, p, err, errlen);
}

/* The whole file; on error the reason (naming the line) goes into err. */
static int parse(const char *buf, size_t len, struct parsed *p, char *err, size_t errlen)
{
	const char *s = buf, *end = buf + len;
	unsigned line = 0;

	if (len == 0)
		return say(err, errlen, "empty file");
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t l = nl ? (size_t)(nl - s) : (size_t)(end - s);
		int rc = parse_line(s, l, ++line, p, err, errlen);

		if (rc)
			return rc;
		s += l + (nl != NULL);
	}
	if (!p->has_seed)
		return say(err, errlen, "missing the \"seed\" line");
	return 0;
}

/* Parse and derive the key pair; checks the public line when present. */
static int decode(const char *buf, size_t len, const char *path, struct identity *out,
		  char *why, size_t whylen)
{
	struct parsed p = { 0 };
	char err[128];
	int rc;

	rc = parse(buf, len, &p, err, sizeof err);
	if (rc) {
		rc = fail(why, whylen, path, rc, "malformed: %s", err);
		goto wipe;
	}
	crypto_sign_seed_keypair(out->pk, out->sk, p.seed);
	if (p.has_pk && sodium_memcmp(p.pk, out->pk, sizeof p.pk) != 0) {
		identity_wipe(out);
		rc = fail(why, whylen, path, -EINVAL,
			  "public key does not match the secret key (file damaged?)");
	}
wipe:
	sodium_memzero(&p, sizeof p);
	return rc;
}

/* ---- reading ---- */

/* Up to cap - 1 bytes; -EFBIG if the file holds more. */
static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;

	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*len = n;
	return n == cap ? -EFBIG : 0;
}

static void warn_if_shared(const struct stat *st, const char *path, char *why, size_t whylen)
{
	if (st->st_mode & 077)
		fail(why, whylen, path, 0,
		     "group or others may access it (mode %04o); the secret key should be "
		     "private: chmod 600 %s",
		     (unsigned)(st->st_mode & 07777), path);
}

/* Load from an opened file; closes fd. */
static int load_fd(int fd, const char *path, struct identity *out, char *why, size_t whylen)
{
	char buf[IDENTITY_MAX_FILE + 1];
	struct stat st;
	size_t len = 0;
	int rc;

	if (fstat(fd, &st) < 0)
		rc = fail(why, whylen, path, -errno, "cannot stat: %s", strerror(errno));
	else if (S_ISDIR(st.st_mode))
		rc = fail(why, whylen, path, -EISDIR, "is a directory");
	else if (!S_ISREG(st.st_mode))
		rc = fail(why, whylen, path, -EINVAL, "not a regular file");
	else if ((rc = read_all(fd, buf, sizeof buf, &len)) == -EFBIG)
		rc = fail(why, whylen, path, -EINVAL, "malformed: larger than %d bytes",
			  IDENTITY_MAX_FILE);
	else if (rc)
		rc = fail(why, whylen, path, rc, "cannot read: %s", strerror(-rc));
	else
		rc = decode(buf, len, path, out, why, whylen);
	if (rc == 0)
		warn_if_shared(&st, path, why, whylen);
	sodium_memzero(buf, sizeof buf);
	close(fd);
	return rc;
}

/* ---- creating ---- */

static size_t format(const struct identity *id, char text[TEXT_LEN + 1])
{
	char seed[65], pk[65];
	int n;

	sodium_bin2hex(seed, sizeof seed, id->sk, 32); /* sk = seed | pk */
	sodium_bin2hex(pk, sizeof pk, id->pk, 32);
	n = snprintf(text, TEXT_LEN + 1, "%s\nseed %s\npublic %s\n", IDENTITY_HEADER, seed, pk);
	sodium_memzero(seed, sizeof seed);
	return (size_t)n;
}

/* A new complete file at tmp (a mkostemp template, filled in), mode 0600, on disk. */
static int write_temp(char *tmp, const char *text, size_t len)
{
	int fd = mkostemp(tmp, O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = fchmod(fd, 0600) < 0 ? -errno : 0; /* exactly 0600, whatever the umask */
	if (!rc)
		rc = fio_write_all(fd, text, len);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/*
 * Create path holding a new key pair, returned in out. -EEXIST (no reason
 * given) if a file appeared at path meanwhile: the caller loads that one.
 */
static int create(const char *path, struct identity *out, char *why, size_t whylen)
{
	char tmp[PATH_MAX], text[TEXT_LEN + 1];
	struct identity id;
	size_t len;
	int rc;

	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= sizeof tmp)
		return fail(why, whylen, path, -ENAMETOOLONG, "path too long");
	crypto_sign_keypair(id.pk, id.sk);
	len = format(&id, text);
	rc = write_temp(tmp, text, len);
	sodium_memzero(text, sizeof text);
	if (rc) {
		rc = fail(why, whylen, path, rc, "cannot create: %s%s", strerror(-rc),
			  rc == -ENOENT ? " (does its directory exist?)" : "");
		goto wipe;
	}
	rc = link(tmp, path) < 0 ? -errno : 0;
	unlink(tmp);
	if (rc == -EEXIST) {
		fio_sync_dir(path); /* our temp's removal; best effort, the winner syncs its link */
		goto wipe;
	}
	if (rc) {
		rc = fail(why, whylen, path, rc, "cannot create: link: %s", strerror(-rc));
		goto wipe;
	}
	rc = fio_sync_dir(path);
	if (rc) {
		rc = fail(why, whylen, path, rc, "created, but cannot sync its directory: %s",
			  strerror(-rc));
		goto wipe;
	}
	*out = id;
wipe:
	identity_wipe(&id);
	return rc;
}

/* ---- the API ---- */

static bool is_dangling_symlink(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && stat(path, &st) < 0 &&
	       errno == ENOENT;
}

static int open_or_create(const char *path, struct identity *out, char *why, size_t whylen)
{
	struct stat st;
	int i, fd, rc;

	for (i = 0; i < ATTEMPTS; i++) {
		/* O_NONBLOCK: a FIFO must not hang us; it is refused after fstat */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd >= 0)
			return load_fd(fd, path, out, why, whylen);
		if (errno != ENOENT)
			return fail(why, whylen, path, -errno, "cannot open: %s", strerror(errno));
		if (is_dangling_symlink(path))
			return fail(why, whylen, path, -ENOENT,
				    "is a symbolic link to a file that does not exist");
		if (lstat(path, &st) == 0)
			continue; /* a racer's file appeared since our open: load it */
		rc = create(path, out, why, whylen);
		if (rc != -EEXIST)
			return rc;
	}
	return fail(why, whylen, path, -EAGAIN,
		    "appeared and disappeared %d times while being created; giving up", ATTEMPTS);
}

int identity_load(const char *path, struct identity *out, char *why, size_t whylen)
{
	int rc;

	if (why && whylen)
		why[0] = '\0';
	memset(out, 0, sizeof *out);
	if (sodium_init() < 0) {
		say(why, whylen, "identity: libsodium failed to initialise");
		return -EIO;
	}
	if (!path || !*path) {
		crypto_sign_keypair(out->pk, out->sk);
		return 0;
	}
	rc = open_or_create(path, out, why, whylen);
	if (rc)
		identity_wipe(out);
	return rc;
}

void identity_wipe(struct identity *id)
{
	sodium_memzero(id, sizeof *id);
}
