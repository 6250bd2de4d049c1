/*
 * limiter.c - per-source token buckets and pending-handshake counts in a
 * fixed table (see limiter.h).
 *
 * Invariants, all under l->lock:
 * - a slot in [0, nused) holds one source, reachable from exactly one hash
 *   chain (chains link slot indices, NONE ends them);
 * - a source is in the idle heap iff its pending count is 0, and its heap_pos
 *   says where (NONE otherwise);
 * - tokens are counted in thousandths so that rate_per_s tokens per second is
 *   simply rate_per_s thousandths per millisecond: no division on the admit
 *   path, no rounding drift.
 */
#include "limiter.h"

#include "engine/addr.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX
#define MILLI 1000u

struct limiter_source {
	uint8_t ip[16];          /* IPv6, or IPv4 as ::ffff:a.b.c.d */
	uint64_t tokens;         /* thousandths of a token at stamp */
	uint64_t stamp;          /* ms: when tokens was last brought up to date */
	uint64_t full_at;        /* ms: bucket full again (heap key, idle only) */
	uint32_t pending;
	uint32_t next;           /* hash chain */
	uint32_t heap_pos;       /* index in l->idle, NONE while pending */
};

static void fill_defaults(struct limiter_config *c)
{
	if (!c->rate_per_s)
		c->rate_per_s = LIMITER_DEFAULT_RATE;
	if (!c->burst)
		c->burst = LIMITER_DEFAULT_BURST;
	if (!c->max_pending)
		c->max_pending = LIMITER_DEFAULT_PENDING;
	if (!c->max_sources)
		c->max_sources = LIMITER_DEFAULT_SOURCES;
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

int limiter_init(struct limiter *l, const struct limiter_config *cfg)
{
	memset(l, 0, sizeof(*l));
	if (cfg)
		l->cfg = *cfg;
	fill_defaults(&l->cfg);
	if (l->cfg.max_sources > LIMITER_MAX_SOURCES)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	randombytes_buf(l->hash_key, sizeof(l->hash_key));
	l->nbuckets = pow2_at_least(l->cfg.max_sources);
	int err = -ENOMEM;
	l->src = calloc(l->cfg.max_sources, sizeof(*l->src));
	l->buckets = malloc(l->nbuckets * sizeof(*l->buckets));
	l->idle = malloc(l->cfg.max_sources * sizeof(*l->idle));
	if (!l->src || !l->buckets || !l->idle)
		goto err_free_tables;
	for (uint32_t i = 0; i < l->nbuckets; i++)
		l->buckets[i] = NONE;
	err = -pthread_mutex_init(&l->lock, NULL);
	if (err)
		goto err_free_tables;
	return 0;

err_free_tables:
	free(l->idle);
	free(l->buckets);
	free(l->src);
	return err;
}

void limiter_destroy(struct limiter *l)
{
	pthread_mutex_destroy(&l->lock);
	free(l->idle);
	free(l->buckets);
	free(l->src);
	memset(l, 0, sizeof(*l));
}

static uint32_t bucket_of(const struct limiter *l, const uint8_t key[16])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;
	/* SipHash with a secret key: chain lengths stay short whatever IPs attack */
	crypto_shorthash(h, key, 16, l->hash_key);
	memcpy(&v, h, sizeof(v));
	return (uint32_t)v & (l->nbuckets - 1);
}

static struct limiter_source *find(struct limiter *l, const uint8_t key[16])
{
	for (uint32_t i = l->buckets[bucket_of(l, key)]; i != NONE; i = l->src[i].next) {
		if (!memcmp(l->src[i].ip, key, 16))
			return &l->src[i];
	}
	return NULL;
}

static void unlink_chain(struct limiter *l, uint32_t idx)
{
	uint32_t *pp = &l->buckets[bucket_of(l, l->src[idx].ip)];
	while (*pp != idx)
		pp = &l->src[*pp].next;
	*pp = l->src[idx].next;
}

/* ---- the idle heap: a binary min-heap of slot indices keyed by full_at ---- */

static uint64_t heap_key(const struct limiter *l, uint32_t pos)
{
	return l->src[l->idle[pos]].full_at;
}

static void heap_set(struct limiter *l, uint32_t pos, uint32_t idx)
{
	l->idle[pos] = idx;
	l->src[idx].heap_pos = pos;
}

static void heap_swap(struct limiter *l, uint32_t a, uint32_t b)
{
	uint32_t ia = l->idle[a];
	heap_set(l, a, l->idle[b]);
	heap_set(l, b, ia);
}

static void sift_up(struct limiter *l, uint32_t pos)
{
	while (pos > 0 && heap_key(l, (pos - 1) / 2) > heap_key(l, pos)) {
		heap_swap(l, pos, (pos - 1) / 2);
		pos = (pos - 1) / 2;
	}
}

static void sift_down(struct limiter *l, uint32_t pos)
{
	for (;;) {
		uint32_t least = pos, c = 2 * pos + 1;
		if (c < l->nidle && heap_key(l, c) < heap_key(l, least))
			least = c;
		if (c + 1 < l->nidle && heap_key(l, c + 1) < heap_key(l, least))
			least = c + 1;
		if (least == pos)
			return;
		heap_swap(l, pos, least);
		pos = least;
	}
}

static void heap_push(struct limiter *l, uint32_t idx)
{
	heap_set(l, l->nidle++, idx);
	sift_up(l, l->nidle - 1);
}

static void heap_remove(struct limiter *l, uint32_t idx)
{
	uint32_t pos = l->src[idx].heap_pos;
	uint32_t last = --l->nidle;
	l->src[idx].heap_pos = NONE;
	if (pos == last)
		return;
	heap_set(l, pos, l->idle[last]);
	if (pos > 0 && heap_key(l, pos) < heap_key(l, (pos - 1) / 2))
		sift_up(l, pos);
	else
		sift_down(l, pos);
}

/* ---- token buckets ---- */

static uint64_t capacity(const struct limiter *l)
{
	return (uint64_t)l->cfg.burst * MILLI;
}

/* Tokens (thousandths) s holds at now; pure, so a refusal changes nothing. */
static uint64_t tokens_at(const struct limiter *l, const struct limiter_source *s, uint64_t now)
{
	uint64_t need = capacity(l) - s->tokens;
	uint64_t dt = now > s->stamp ? now - s->stamp : 0;
	/* compare before multiplying: dt * rate could overflow */
	if (dt >= (need + l->cfg.rate_per_s - 1) / l->cfg.rate_per_s)
		return capacity(l);
	return s->tokens + dt * l->cfg.rate_per_s;
}

static uint64_t full_at(const struct limiter *l, const struct limiter_source *s)
{
	uint64_t need = capacity(l) - s->tokens;
	return s->stamp + (need + l->cfg.rate_per_s - 1) / l->cfg.rate_per_s;
}

/*
 * A slot for a new source: a never-used one, else the idle source whose
 * bucket filled first, if it has by now. NULL when every source is busy.
 */
static struct limiter_source *take_slot(struct limiter *l, uint64_t now)
{
	uint32_t idx;
	if (l->nused < l->cfg.max_sources) {
		idx = l->nused++;
	} else if (l->nidle && heap_key(l, 0) <= now) {
		idx = l->idle[0];
		heap_remove(l, idx);
		unlink_chain(l, idx);
	} else {
		return NULL;
	}
	return &l->src[idx];
}

static struct limiter_source *add_source(struct limiter *l, const uint8_t key[16], uint64_t now)
{
	struct limiter_source *s = take_slot(l, now);
	if (!s)
		return NULL;
	uint32_t b = bucket_of(l, key);
	memcpy(s->ip, key, 16);
	s->tokens = capacity(l);
	s->stamp = now;
	s->pending = 0;
	s->heap_pos = NONE;       /* not idle: the caller admits at once */
	s->next = l->buckets[b];
	l->buckets[b] = (uint32_t)(s - l->src);
	return s;
}

static enum limiter_verdict admit_locked(struct limiter *l, const uint8_t key[16], uint64_t now)
{
	struct limiter_source *s = find(l, key);
	/* a new source is admitted below: its bucket is full, nothing pending */
	if (!s && !(s = add_source(l, key, now)))
		return LIMITER_PENDING;
	if (s->pending >= l->cfg.max_pending)
		return LIMITER_PENDING;
	uint64_t avail = tokens_at(l, s, now);
	if (avail < MILLI)
		return LIMITER_RATE;
	s->tokens = avail - MILLI;
	if (now > s->stamp)
		s->stamp = now;
	if (s->pending++ == 0 && s->heap_pos != NONE)
		heap_remove(l, (uint32_t)(s - l->src));
	return LIMITER_OK;
}

enum limiter_verdict limiter_admit(struct limiter *l, const struct sockaddr_storage *src,
				   uint64_t now_ms)
{
	uint8_t key[16];
	eng_addr_ip_key(src, key);
	pthread_mutex_lock(&l->lock);
	enum limiter_verdict v = admit_locked(l, key, now_ms);
	pthread_mutex_unlock(&l->lock);
	return v;
}

void limiter_release(struct limiter *l, const struct sockaddr_storage *src)
{
	uint8_t key[16];
	eng_addr_ip_key(src, key);
	pthread_mutex_lock(&l->lock);
	struct limiter_source *s = find(l, key);
	/* a source with handshakes pending is never evicted, so s is there */
	assert(s && s->pending > 0);
	if (s && s->pending > 0 && --s->pending == 0) {
		s->full_at = full_at(l, s);
		heap_push(l, (uint32_t)(s - l->src));
	}
	pthread_mutex_unlock(&l->lock);
}
