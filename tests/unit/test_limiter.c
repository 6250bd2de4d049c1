/*
 * test_limiter.c - per-source handshake limits (p2p/limiter.c) with a clock
 * driven by hand: bucket arithmetic, the pending cap, how sources are told
 * apart, the bounded table's eviction and refusal, and consistency under
 * threads.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "p2p/limiter.h"
#include "addrs.h"

static void setup(struct limiter *l, uint32_t rate, uint32_t burst, uint32_t pending,
		  uint32_t sources)
{
	struct limiter_config cfg = { rate, burst, pending, sources };
	cr_assert(zero(int, limiter_init(l, &cfg)));
}

static int admit(struct limiter *l, struct sockaddr_storage src, uint64_t now)
{
	return (int)limiter_admit(l, &src, now);
}

/* n admits of src at now that must all pass, each released at once */
static void admit_released(struct limiter *l, struct sockaddr_storage src, uint64_t now, int n)
{
	for (int i = 0; i < n; i++) {
		cr_assert(eq(int, admit(l, src, now), LIMITER_OK), "admit %d", i);
		limiter_release(l, &src);
	}
}

Test(limiter, burst_then_rate)
{
	struct limiter l;
	struct sockaddr_storage a = v4("192.0.2.1", 1000);
	setup(&l, 10, 5, 100, 16);              /* one token per 100 ms */
	admit_released(&l, a, 1000, 5);
	cr_assert(eq(int, admit(&l, a, 1000), LIMITER_RATE));
	cr_assert(eq(int, admit(&l, a, 1099), LIMITER_RATE));
	cr_assert(eq(int, admit(&l, a, 1100), LIMITER_OK));
	cr_assert(eq(int, admit(&l, a, 1100), LIMITER_RATE));
	/* partial refills add up: 50 ms + 50 ms = one token */
	cr_assert(eq(int, admit(&l, a, 1150), LIMITER_RATE));
	cr_assert(eq(int, admit(&l, a, 1200), LIMITER_OK));
	/* a long pause refills to burst, not beyond */
	admit_released(&l, a, 100000, 5);
	cr_assert(eq(int, admit(&l, a, 100000), LIMITER_RATE));
	limiter_destroy(&l);
}

Test(limiter, refusals_take_nothing)
{
	struct limiter l;
	struct sockaddr_storage a = v4("192.0.2.1", 1);
	setup(&l, 10, 1, 1, 16);
	cr_assert(eq(int, admit(&l, a, 0), LIMITER_OK));
	/* pending refusals spend no token */
	for (int i = 0; i < 10; i++)
		cr_assert(eq(int, admit(&l, a, 100), LIMITER_PENDING));
	limiter_release(&l, &a);
	cr_assert(eq(int, admit(&l, a, 100), LIMITER_OK));
	limiter_release(&l, &a);
	/* rate refusals neither spend nor delay the refill */
	for (uint64_t t = 101; t < 200; t += 7)
		cr_assert(eq(int, admit(&l, a, t), LIMITER_RATE));
	cr_assert(eq(int, admit(&l, a, 200), LIMITER_OK));
	limiter_release(&l, &a);
	limiter_destroy(&l);
}

Test(limiter, defaults_when_zero)
{
	struct limiter l;
	struct sockaddr_storage a = v6("2001:db8::1", 1);
	cr_assert(zero(int, limiter_init(&l, NULL)));
	cr_assert(eq(u32, l.cfg.rate_per_s, 50));
	cr_assert(eq(u32, l.cfg.burst, 100));
	cr_assert(eq(u32, l.cfg.max_pending, 16));
	cr_assert(eq(u32, l.cfg.max_sources, 4096));
	admit_released(&l, a, 0, 100);
	cr_assert(eq(int, admit(&l, a, 0), LIMITER_RATE));
	cr_assert(eq(int, admit(&l, a, 19), LIMITER_RATE));
	cr_assert(eq(int, admit(&l, a, 20), LIMITER_OK));   /* 50/s: one per 20 ms */
	limiter_release(&l, &a);
	for (int i = 0; i < 16; i++)
		cr_assert(eq(int, admit(&l, a, 10000), LIMITER_OK));
	cr_assert(eq(int, admit(&l, a, 10000), LIMITER_PENDING));
	limiter_destroy(&l);
}

Test(limiter, rejects_oversized_table)
{
	struct limiter l;
	struct limiter_config cfg = { .max_sources = LIMITER_MAX_SOURCES + 1 };
	cr_assert(eq(int, limiter_init(&l, &cfg), -EINVAL));
}

Test(limiter, huge_values_do_not_overflow)
{
	struct limiter l;
	struct sockaddr_storage a = v4("192.0.2.1", 1);
	setup(&l, UINT32_MAX, UINT32_MAX, UINT32_MAX, 1);
	cr_assert(eq(int, admit(&l, a, 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, a, 1ull << 62), LIMITER_OK));
	cr_assert(eq(int, admit(&l, a, 1ull << 62), LIMITER_OK));
	limiter_destroy(&l);
}

Test(limiter, pending_limit_and_release)
{
	struct limiter l;
	struct sockaddr_storage a = v4("192.0.2.1", 1), b = v4("192.0.2.2", 1);
	setup(&l, 1000, 1000, 3, 16);
	for (int i = 0; i < 3; i++)
		cr_assert(eq(int, admit(&l, a, 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, a, 0), LIMITER_PENDING));
	cr_assert(eq(int, admit(&l, b, 0), LIMITER_OK), "limits are per source");
	limiter_release(&l, &a);
	cr_assert(eq(int, admit(&l, a, 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, a, 0), LIMITER_PENDING));
	for (int i = 0; i < 3; i++)
		limiter_release(&l, &a);
	for (int i = 0; i < 3; i++)
		cr_assert(eq(int, admit(&l, a, 0), LIMITER_OK));
	limiter_destroy(&l);
}

Test(limiter, ports_ignored)
{
	struct limiter l;
	setup(&l, 1000, 1000, 2, 16);
	cr_assert(eq(int, admit(&l, v4("192.0.2.1", 1), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v4("192.0.2.1", 2), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v4("192.0.2.1", 3), 0), LIMITER_PENDING));
	struct sockaddr_storage other_port = v4("192.0.2.1", 65535);
	limiter_release(&l, &other_port);
	cr_assert(eq(int, admit(&l, v4("192.0.2.1", 4), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v6("2001:db8::1", 1), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v6("2001:db8::1", 2), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v6("2001:db8::1", 3), 0), LIMITER_PENDING));
	limiter_destroy(&l);
}

Test(limiter, ipv4_ipv6_and_mapped)
{
	struct limiter l;
	setup(&l, 1000, 1000, 1, 16);
	cr_assert(eq(int, admit(&l, v4("198.51.100.7", 1), 0), LIMITER_OK));
	/* the mapped spelling is the same source... */
	cr_assert(eq(int, admit(&l, v6("::ffff:198.51.100.7", 2), 0), LIMITER_PENDING));
	/* ...and releases it */
	struct sockaddr_storage mapped = v6("::ffff:198.51.100.7", 3);
	limiter_release(&l, &mapped);
	cr_assert(eq(int, admit(&l, v6("::ffff:198.51.100.7", 2), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v4("198.51.100.7", 1), 0), LIMITER_PENDING));
	/* neighbours, the old IPv4-compatible form and plain IPv6 are others */
	cr_assert(eq(int, admit(&l, v4("198.51.100.8", 1), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v6("::198.51.100.7", 1), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v6("2001:db8::c633:6407", 1), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v6("2001:db8::1", 1), 0), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v6("2001:db8::2", 1), 0), LIMITER_OK));
	limiter_destroy(&l);
}

Test(limiter, table_full_evicts_idle_source)
{
	struct limiter l;
	struct sockaddr_storage a = v4("192.0.2.1", 1), b = v4("192.0.2.2", 1);
	setup(&l, 1000, 1, 4, 2);               /* a token per ms, burst 1 */
	admit_released(&l, a, 100, 1);
	admit_released(&l, b, 100, 1);
	/* both idle but their buckets refill at 101: nothing to evict yet */
	cr_assert(eq(int, admit(&l, v4("192.0.2.3", 1), 100), LIMITER_PENDING));
	cr_assert(eq(int, admit(&l, v4("192.0.2.3", 1), 101), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v6("2001:db8::4", 1), 101), LIMITER_OK));
	/* both slots now busy */
	cr_assert(eq(int, admit(&l, v4("192.0.2.5", 1), 1000000), LIMITER_PENDING));
	cr_assert(eq(u32, l.nused, 2));
	limiter_destroy(&l);
}

Test(limiter, eviction_never_forgets_a_drained_bucket)
{
	struct limiter l;
	struct sockaddr_storage a = v4("192.0.2.1", 1), b = v4("192.0.2.2", 1);
	setup(&l, 10, 10, 100, 2);              /* a token per 100 ms, burst 10 */
	admit_released(&l, a, 0, 10);           /* a drained: full again at 1000 */
	admit_released(&l, b, 100, 1);          /* b one short: full again at 200 */
	cr_assert(eq(int, admit(&l, v4("192.0.2.3", 1), 150), LIMITER_PENDING));
	/* at 300 b is full and goes; a, with 3 tokens back, stays */
	cr_assert(eq(int, admit(&l, v4("192.0.2.3", 1), 300), LIMITER_OK));
	admit_released(&l, a, 300, 3);
	cr_assert(eq(int, admit(&l, a, 300), LIMITER_RATE));
	limiter_destroy(&l);
}

Test(limiter, evicts_whichever_source_is_full)
{
	struct limiter l;
	static const char *ip[4] = { "2001:db8::a", "2001:db8::b", "2001:db8::c", "2001:db8::d" };
	static const int spent[4] = { 10, 4, 7, 2 };
	struct sockaddr_storage s[4];
	setup(&l, 10, 10, 100, 4);              /* a token per 100 ms, burst 10 */
	/* all idle since 0, drained unevenly: full at 1000, 400, 700, 200 */
	for (int i = 0; i < 4; i++) {
		s[i] = v6(ip[i], 1);
		admit_released(&l, s[i], 0, spent[i]);
	}
	/* at 500 only d and b may go, whatever order they went idle in */
	cr_assert(eq(int, admit(&l, v4("192.0.2.9", 1), 500), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v4("192.0.2.10", 1), 500), LIMITER_OK));
	cr_assert(eq(int, admit(&l, v4("192.0.2.11", 1), 500), LIMITER_PENDING));
	cr_assert(eq(int, admit(&l, v4("192.0.2.11", 1), 700), LIMITER_OK));    /* c */
	cr_assert(eq(int, admit(&l, v4("192.0.2.12", 1), 999), LIMITER_PENDING));
	/* a, still tracked and not yet full, has 9.99 tokens at 999 */
	admit_released(&l, s[0], 999, 9);
	cr_assert(eq(int, admit(&l, s[0], 999), LIMITER_RATE));
	limiter_destroy(&l);
}

Test(limiter, fail_closed_when_all_busy)
{
	struct limiter l;
	struct sockaddr_storage s[4];
	char ip[32];
	setup(&l, 1000, 1000, 4, 4);
	for (int i = 0; i < 4; i++) {
		snprintf(ip, sizeof(ip), "203.0.113.%d", i + 1);
		s[i] = v4(ip, 1);
		cr_assert(eq(int, admit(&l, s[i], 0), LIMITER_OK));
	}
	for (uint64_t t = 0; t < 100000000; t += 9999999)
		cr_assert(eq(int, admit(&l, v6("2001:db8::99", 1), t), LIMITER_PENDING));
	/* known sources keep their own limits */
	cr_assert(eq(int, admit(&l, s[2], 10), LIMITER_OK));
	limiter_release(&l, &s[2]);
	limiter_release(&l, &s[2]);
	cr_assert(eq(int, admit(&l, v6("2001:db8::99", 1), 10), LIMITER_PENDING));
	/* s[2] idle since 10 with 999 of 1000 tokens: full at 11 */
	cr_assert(eq(int, admit(&l, v6("2001:db8::99", 1), 11), LIMITER_OK));
	cr_assert(eq(int, admit(&l, s[2], 11), LIMITER_PENDING));   /* it was evicted */
	limiter_destroy(&l);
}

/* ---- threads ---- */

enum { THREADS = 4, ITERS = 100000, HELD = 6, SOURCES = 96, SLOTS = 48, PENDING = 4 };

struct hammer {
	struct limiter *l;
	struct sockaddr_storage *src;
	_Atomic uint64_t *clock;
	unsigned seed;
	unsigned long ok, released, rate, pending;
};

static unsigned next_rand(unsigned *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;
	unsigned held[HELD], n = 0;
	for (int i = 0; i < ITERS; i++) {
		unsigned r = next_rand(&h->seed);
		if (n == HELD || (n && r % 3 == 0)) {
			limiter_release(h->l, &h->src[held[0]]);
			memmove(held, held + 1, --n * sizeof(held[0]));
			h->released++;
			continue;
		}
		unsigned k = (r >> 8) % SOURCES;
		/* 64 attempts a millisecond; clocks read before the lock arrive out of order */
		uint64_t now = atomic_fetch_add(h->clock, 1) / 64;
		switch (limiter_admit(h->l, &h->src[k], now)) {
		case LIMITER_OK:
			held[n++] = k;
			h->ok++;
			break;
		case LIMITER_RATE:
			h->rate++;
			break;
		case LIMITER_PENDING:
			h->pending++;
			break;
		}
	}
	while (n) {
		limiter_release(h->l, &h->src[held[--n]]);
		h->released++;
	}
	return NULL;
}

Test(limiter, threads_keep_counts_consistent, .timeout = 60)
{
	struct limiter l;
	struct sockaddr_storage src[SOURCES];
	struct hammer h[THREADS];
	pthread_t tid[THREADS];
	_Atomic uint64_t clock = 1;
	char ip[64];
	/* 32 IPv4, the same 32 as mapped IPv6 (same sources), 32 IPv6: 64 sources */
	for (int i = 0; i < 32; i++) {
		snprintf(ip, sizeof(ip), "10.0.0.%d", i);
		src[i] = v4(ip, (uint16_t)i);
		snprintf(ip, sizeof(ip), "::ffff:10.0.0.%d", i);
		src[32 + i] = v6(ip, (uint16_t)(i + 1000));
		snprintf(ip, sizeof(ip), "2001:db8::%x", i);
		src[64 + i] = v6(ip, 1);
	}
	setup(&l, 200, 8, PENDING, SLOTS);     /* fewer slots than sources: evictions */
	for (int i = 0; i < THREADS; i++) {
		h[i] = (struct hammer){ .l = &l, .src = src, .clock = &clock, .seed = 2463534242u + i };
		cr_assert(zero(int, pthread_create(&tid[i], NULL, hammer_run, &h[i])));
	}
	unsigned long ok = 0, released = 0, rate = 0, pending = 0;
	for (int i = 0; i < THREADS; i++) {
		cr_assert(zero(int, pthread_join(tid[i], NULL)));
		ok += h[i].ok;
		released += h[i].released;
		rate += h[i].rate;
		pending += h[i].pending;
	}
	cr_log_info("ok %lu rate %lu pending %lu", ok, rate, pending);
	cr_assert(eq(u64, ok, released));
	cr_assert(gt(u64, ok, 0));
	cr_assert(gt(u64, rate, 0), "the buckets were exercised");
	cr_assert(gt(u64, pending, 0), "the pending cap and the full table were exercised");
	/* everything released: every slot idle, and once refilled, evictable */
	cr_assert(eq(u32, l.nused, SLOTS));
	cr_assert(eq(u32, l.nidle, SLOTS));
	uint64_t later = atomic_load(&clock) / 64 + 1000;
	for (int i = 0; i < SLOTS; i++) {
		snprintf(ip, sizeof(ip), "2001:db8:1::%x", i);
		cr_assert(eq(int, admit(&l, v6(ip, 1), later), LIMITER_OK), "fresh source %d", i);
	}
	cr_assert(eq(int, admit(&l, v4("192.0.2.1", 1), later), LIMITER_PENDING));
	cr_assert(eq(u32, l.nidle, 0));
	limiter_destroy(&l);
}
