/*
 * fuzz.h - the fuzz harnesses (tests/fuzz/fuzz_<target>.c): one function
 * per parser or state machine fed from the network or disk. Each takes
 * arbitrary bytes and must neither crash nor break an invariant; a broken
 * invariant aborts (FUZZ_CHECK), which libFuzzer reports as a crash and
 * Criterion as a failed test.
 *
 * The same functions are linked twice: into one libFuzzer binary per
 * target (clang, tests/fuzz/libfuzzer_main.c, mk/fuzz.mk) and into the
 * unit tests (gcc, tests/unit/test_fuzz_replay.c), which replay every
 * committed corpus and regression input in the normal `make test`.
 */
#ifndef CRUST_FUZZ_H
#define CRUST_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                               \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__,       \
				__LINE__, #cond);                                              \
			abort();                                                       \
		}                                                                      \
	} while (0)

typedef void (*fuzz_fn)(const uint8_t *data, size_t size);

void fuzz_framing(const uint8_t *data, size_t size);
void fuzz_handshake(const uint8_t *data, size_t size);
void fuzz_session(const uint8_t *data, size_t size);
void fuzz_rudp_wire(const uint8_t *data, size_t size);
void fuzz_rudp_recv(const uint8_t *data, size_t size);
void fuzz_rudp_conn(const uint8_t *data, size_t size);
void fuzz_beacon(const uint8_t *data, size_t size);
void fuzz_stun(const uint8_t *data, size_t size);
void fuzz_rendezvous(const uint8_t *data, size_t size);
void fuzz_pex(const uint8_t *data, size_t size);
void fuzz_cache(const uint8_t *data, size_t size);
void fuzz_config(const uint8_t *data, size_t size);
void fuzz_identity(const uint8_t *data, size_t size);

/* Every target by name, for the replay test and the corpus generator. */
struct fuzz_target {
	const char *name;
	fuzz_fn fn;
};
#define FUZZ_TARGETS                                                                   \
	{ "framing", fuzz_framing }, { "handshake", fuzz_handshake },                 \
	{ "session", fuzz_session }, { "rudp_wire", fuzz_rudp_wire },                 \
	{ "rudp_recv", fuzz_rudp_recv }, { "rudp_conn", fuzz_rudp_conn },             \
	{ "beacon", fuzz_beacon },                                                     \
	{ "stun", fuzz_stun }, { "rendezvous", fuzz_rendezvous }, { "pex", fuzz_pex }, \
	{ "cache", fuzz_cache }, { "config", fuzz_config }, { "identity", fuzz_identity }

/* A private scratch directory for harnesses that need files (made once per process). */
const char *fuzz_tmpdir(void);
/* Write n bytes to path (truncating); 0 or -errno. */
int fuzz_write_file(const char *path, const uint8_t *data, size_t n);
/* Remove every file in fuzz_tmpdir(). */
void fuzz_clean_tmpdir(void);

#endif
