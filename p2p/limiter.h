/*
 * limiter.h - abuse limits on unauthenticated handshakes, per source IP.
 *
 * Every source IP has a token bucket (refilled at rate_per_s, holding at most
 * burst tokens; one token per handshake) and a count of its handshakes still
 * in progress (at most max_pending). Ports are ignored, and an IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) is the same source as a.b.c.d.
 *
 * Memory is bounded: the table tracks at most max_sources sources and never
 * allocates after limiter_init. When it is full, a new source takes the place
 * of an idle one, a source with nothing pending and a full bucket, which is
 * exactly what a never-seen source looks like, so evicting it forgets nothing
 * an attacker could exploit. Among idle sources the one whose bucket filled
 * first goes. When no source is idle, new sources are refused (fail closed).
 *
 * Threads: limiter_admit and limiter_release may be called from any thread
 * (one mutex: they run once per incoming connection). init and destroy are
 * not concurrent with anything. Time is the caller's: milliseconds on any
 * monotonic clock, so tests drive it by hand; a time older than one already
 * seen counts as that time.
 */
#ifndef CRUST_P2P_LIMITER_H
#define CRUST_P2P_LIMITER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "crust.h"

#define LIMITER_DEFAULT_RATE 50u          /* tokens per second */
#define LIMITER_DEFAULT_BURST 100u
#define LIMITER_DEFAULT_PENDING 16u       /* handshakes in progress per source */
#define LIMITER_DEFAULT_SOURCES 4096u
#define LIMITER_MAX_SOURCES (1u << 24)

/* Zero in any field means its default. */
struct limiter_config {
	uint32_t rate_per_s;
	uint32_t burst;
	uint32_t max_pending;
	uint32_t max_sources;
};

struct limiter_source;

/* Embed it anywhere; every field is private to limiter.c. */
struct limiter {
	pthread_mutex_t lock;
	struct limiter_config cfg;         /* defaults filled in */
	struct limiter_source *src;        /* cfg.max_sources slots, [0, nused) in use */
	uint32_t *buckets;                 /* hash chain heads, nbuckets (a power of two) */
	uint32_t *idle;                    /* min-heap of idle sources by the time their
	                                      bucket is full */
	uint32_t nused, nbuckets, nidle;
	uint8_t hash_key[16];              /* random: sources cannot pick their chain */
};

enum limiter_verdict {
	LIMITER_OK,          /* admitted: one token taken, one handshake pending */
	LIMITER_RATE,        /* the source's bucket is empty */
	LIMITER_PENDING,     /* the source has max_pending handshakes in progress,
	                        or it is new and the table is full of busy sources */
};

/*
 * Allocate the table for cfg (NULL = every default). Returns 0, -EINVAL if
 * max_sources exceeds LIMITER_MAX_SOURCES, -ENOMEM, or -EIO if libsodium
 * cannot start (it supplies the hash key).
 */
CRUST_MUST_CHECK int limiter_init(struct limiter *l, const struct limiter_config *cfg);

/* Free the table. Nothing may use l any more. */
void limiter_destroy(struct limiter *l);

/*
 * A new unauthenticated handshake from src (port ignored) at now_ms. On
 * LIMITER_OK one token is taken and one pending handshake counted, to be
 * given back by limiter_release when the handshake ends; on any other verdict
 * nothing changes and the caller should refuse the connection. A source whose
 * family is neither AF_INET nor AF_INET6 is counted as one shared source.
 * Any thread; never allocates.
 */
CRUST_MUST_CHECK enum limiter_verdict limiter_admit(struct limiter *l,
						    const struct sockaddr_storage *src,
						    uint64_t now_ms);

/*
 * The handshake admitted for src ended, completed or failed: one pending
 * less. Exactly one call per LIMITER_OK; a release with nothing pending is a
 * caller bug (asserted; ignored when built with NDEBUG). Any thread.
 */
void limiter_release(struct limiter *l, const struct sockaddr_storage *src);

#endif
