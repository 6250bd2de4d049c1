/*
 * stress.h - what the stress programs (tests/stress/stress_*.c) share:
 * failing loudly, the clock, a loopback config, and self-checking messages.
 *
 * Plain main() programs, not Criterion: Criterion's runner crashes under
 * ThreadSanitizer. Every check exits non-zero so `make tsan` can fail.
 */
#ifndef CRUST_TESTS_STRESS_H
#define CRUST_TESTS_STRESS_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crust.h"

#define STRESS_FAIL(...)                                                      \
	do {                                                                  \
		fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);          \
		fprintf(stderr, __VA_ARGS__);                                 \
		fputc('\n', stderr);                                          \
		fflush(stdout);                                               \
		_exit(1); /* not exit(): atexit cleanup (OpenSSL's) would race \
			     the shard threads still running */               \
	} while (0)
#define STRESS_CHECK(cond, ...)                                               \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "check '%s' failed\n", #cond);       \
			STRESS_FAIL(__VA_ARGS__);                             \
		}                                                             \
	} while (0)

static inline uint64_t stress_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void stress_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* STRESS_SECONDS from the environment (make tsan passes it), else dflt. */
static inline unsigned stress_seconds(unsigned dflt)
{
	const char *s = getenv("STRESS_SECONDS");
	long v = s ? strtol(s, NULL, 10) : 0;
	return v > 0 && v < 100000 ? (unsigned)v : dflt;
}

/* Loopback only, no beacon, no bootstrap traffic, unpinned shards. */
static inline void stress_config(struct crust_config *cfg, unsigned shards)
{
	crust_config_init(cfg);
	cfg->shards = shards;
	cfg->pin_shards = false;
	cfg->bind_addr = "127.0.0.1";
	cfg->no_beacon = true;
	cfg->no_pex = true;
	/* small pools: more buffer recycling and backpressure per byte moved */
	cfg->rx_buffer_count = 64;
	cfg->tx_arena_size = 1u << 20;
	cfg->max_send_queue = 1u << 20; /* less to drain at TSan speed */
	cfg->log_level = CRUST_LOG_ERROR;
}

static inline uint64_t stress_fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

/*
 * A self-checking message: this header, then len - sizeof(header) bytes
 * of a pattern from (src, dst, seq). The receiver checks the hash of the
 * payload against hash (torn, reordered or reused buffers show up) and
 * the sequence per (src, dst, priority) flow (order within a priority).
 */
#define STRESS_MAGIC 0x53545253u /* "STRS" */
struct stress_hdr {
	uint32_t magic;
	uint16_t src, dst;
	uint32_t seq;
	uint32_t prio;
	uint64_t hash;
};

static inline uint64_t stress_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* Fill buf (len >= sizeof(struct stress_hdr)) for flow (src, dst, prio), number seq. */
static inline void stress_fill(uint8_t *buf, size_t len, uint16_t src, uint16_t dst, uint32_t seq,
			       uint8_t prio)
{
	struct stress_hdr h = { STRESS_MAGIC, src, dst, seq, prio, 0 };
	uint64_t x = stress_mix(((uint64_t)src << 48) ^ ((uint64_t)dst << 32) ^ seq);
	for (size_t i = sizeof(h); i < len; i++) {
		x = stress_mix(x + i);
		buf[i] = (uint8_t)x;
	}
	h.hash = stress_fnv(buf + sizeof(h), len - sizeof(h));
	memcpy(buf, &h, sizeof(h));
}

/* What one directed pair sent and received: counts and order-independent digests. */
struct stress_pair {
	atomic_ullong sent, sent_digest, recv, recv_digest, enobufs, notconn;
};

/* What goes into a pair's digest for one message: order-independent sum. */
static inline uint64_t stress_digest_of(const struct stress_hdr *h, size_t len)
{
	return stress_mix(h->hash ^ ((uint64_t)h->seq << 20) ^ len ^ ((uint64_t)h->prio << 60));
}

/*
 * Send message seq of flow (src, dst, prio), len bytes, to peer: copied from buf
 * (crust_send) or built in a library message (crust_send_msg, which takes it),
 * as by_msg says. True if the library took it (counted in pc); -ENOBUFS and
 * -ENOTCONN are counted and give false; any other error fails the program.
 */
static inline bool stress_send(struct crust_service *svc, const struct crust_peer_id *peer,
			       uint8_t *buf, uint32_t len, uint16_t src, uint16_t dst, uint32_t seq,
			       uint8_t prio, bool by_msg, struct stress_pair *pc)
{
	struct stress_hdr h;
	int err;
	if (!by_msg) {
		stress_fill(buf, len, src, dst, seq, prio);
		memcpy(&h, buf, sizeof(h));
		err = crust_send(svc, peer, buf, len, prio);
	} else {
		struct crust_msg *m = crust_msg_alloc(svc, len);
		STRESS_CHECK(m != NULL, "crust_msg_alloc(%u)", len);
		stress_fill(crust_msg_data(m), len, src, dst, seq, prio);
		memcpy(&h, crust_msg_data(m), sizeof(h));
		err = crust_send_msg(svc, peer, m, prio); /* m is the library's now */
	}
	if (err == -ENOBUFS || err == -ENOTCONN) {
		atomic_fetch_add(err == -ENOBUFS ? &pc->enobufs : &pc->notconn, 1);
		return false;
	}
	STRESS_CHECK(err == 0, "send %u->%u: %s", src, dst, crust_strerror(err));
	atomic_fetch_add(&pc->sent_digest, stress_digest_of(&h, len));
	atomic_fetch_add(&pc->sent, 1);
	return true;
}

/* A checked message of len bytes with header h arrived on pc. */
static inline void stress_received(struct stress_pair *pc, const struct stress_hdr *h, size_t len)
{
	atomic_fetch_add(&pc->recv_digest, stress_digest_of(h, len));
	atomic_fetch_add(&pc->recv, 1);
}

/*
 * Settle pair src->dst: a churned pair (drops and redials) received no more than was
 * sent; any other received exactly what was sent (digest). Adds to *exact or to
 * *churned / *churned_sent.
 */
static inline void stress_pair_settle(struct stress_pair *pc, bool churned_pair, int src, int dst,
				      uint64_t *exact, uint64_t *churned, uint64_t *churned_sent)
{
	uint64_t sent = atomic_load(&pc->sent), recv = atomic_load(&pc->recv);
	if (churned_pair) {
		STRESS_CHECK(recv <= sent, "churned pair %d->%d: %llu received > %llu sent", src, dst,
			     (unsigned long long)recv, (unsigned long long)sent);
		*churned += recv;
		*churned_sent += sent;
		return;
	}
	STRESS_CHECK(atomic_load(&pc->recv_digest) == atomic_load(&pc->sent_digest),
		     "pair %d->%d: digest of %llu received differs from what was sent", src, dst,
		     (unsigned long long)recv);
	*exact += recv;
}

/* Check a received message; returns its header or fails the program. */
static inline struct stress_hdr stress_verify(const uint8_t *p, size_t len)
{
	struct stress_hdr h;
	STRESS_CHECK(len >= sizeof(h), "message of %zu bytes, shorter than a header", len);
	memcpy(&h, p, sizeof(h));
	STRESS_CHECK(h.magic == STRESS_MAGIC, "bad magic %08x", h.magic);
	uint64_t got = stress_fnv(p + sizeof(h), len - sizeof(h));
	STRESS_CHECK(got == h.hash, "payload hash mismatch (src %u dst %u seq %u len %zu)", h.src,
		     h.dst, h.seq, len);
	return h;
}

#endif
