/*
 * bootstrap.c - the bootstrap thread: rounds of parallel dials to the
 * candidates (cache first, then contacts, beacon and peer-exchange
 * finds), retried with exponential backoff and jitter until one round
 * reaches a node; afterwards it keeps dialing discovered peers
 * (auto-connect), asks peers for endpoints (pex.c), moves the listeners
 * to new ports (ports.c) and applies connection results to the cache.
 *
 * Locking: one mutex guards the candidates, the queue of cache updates
 * and the served copy of the cache. Shard hooks only record results and
 * signal. The thread emits events and writes the cache file with the
 * mutex released (a user callback may call back into the API).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bootstrap.h"
#include "node.h"
#include "pex.h"
#include "ports.h"

#define MAX_CANDIDATES 256u
#define MAX_OPS 128u
#define MAX_EMIT 64u
#define REDIAL_DISCOVERED_MS 30000u  /* a failed discovered peer is dialed again after this */
#define ROUND_SLACK_MS 2000u         /* beyond connect + handshake timeouts */

enum cand_state { C_IDLE, C_PENDING, C_DIALING, C_OK, C_FAILED };

struct cand {
	struct crust_endpoint ep;
	struct crust_peer_id id;
	bool has_id;
	enum boot_source src;
	enum cand_state st;
	bool in_round;                 /* dialed as part of the current round */
	uint64_t deadline_ms, tried_ms;
	int err;
};

struct cache_op {
	bool ok;
	struct crust_endpoint ep;
	struct crust_peer_id id;
};

struct boot {
	struct crust_service *svc;
	pthread_t thread;
	bool thread_up;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	/* candidates, in the order they are tried */
	struct cand cands[MAX_CANDIDATES];
	unsigned ncands;
	/* crust_bootstrap rounds */
	bool started, finished, in_round;
	uint32_t round, tried, succeeded, backoff_step;
	uint64_t next_round_ms, zero_peers_since_ms;
	/* cache: the file is the thread's; the copy under the lock is for pex */
	struct cache cache;
	bool cache_up;
	struct cache_op ops[MAX_OPS];
	unsigned nops;
	struct cache_entry *served;
	uint32_t nserved;
	/* periodic work */
	uint64_t next_pex_ms, next_rebind_ms;
	/* events made under the lock, emitted after it */
	struct crust_event emitq[MAX_EMIT];
	unsigned nemit;
};

void boot_fill_defaults(struct crust_config *c)
{
#define DEFAULT(field, v) if (!c->field) c->field = (v)
	DEFAULT(cache_max_entries, 64);
	DEFAULT(cache_max_failures, 5);
	DEFAULT(beacon_port, CRUST_BEACON_PORT_DEFAULT);
	DEFAULT(bootstrap_parallel, 8);
	DEFAULT(bootstrap_retry_min_ms, 1000);
	DEFAULT(bootstrap_retry_max_ms, 60000);
	DEFAULT(pex_interval_ms, 60000);
	DEFAULT(pex_max_endpoints, 32);
	DEFAULT(auto_connect_max, 32);
#undef DEFAULT
	if (c->cache_max_entries > CACHE_MAX_CAP)
		c->cache_max_entries = CACHE_MAX_CAP;
	if (c->pex_max_endpoints > PEX_MAX_ENDPOINTS)
		c->pex_max_endpoints = PEX_MAX_ENDPOINTS;
	if (c->bootstrap_retry_max_ms < c->bootstrap_retry_min_ms)
		c->bootstrap_retry_max_ms = c->bootstrap_retry_min_ms;
}

/* ±25 % so that nodes restarted together do not retry in step. */
static uint64_t jitter(uint64_t ms)
{
	uint64_t span = ms / 2;
	return ms - ms / 4 + (span ? randombytes_uniform((uint32_t)(span > UINT32_MAX ? UINT32_MAX : span)) : 0);
}

static void queue_event(struct boot *b, const struct crust_event *ev)
{
	if (b->nemit < MAX_EMIT)
		b->emitq[b->nemit++] = *ev;
}

static bool connected_to(struct crust_service *svc, const struct crust_peer_id *id)
{
	struct peer_ref *r = peer_lookup(svc, id);
	peer_put(r);
	return r != NULL;
}

static unsigned npeers(struct crust_service *svc)
{
	pthread_rwlock_rdlock(&svc->peers_lock);
	unsigned n = svc->npeers;
	pthread_rwlock_unlock(&svc->peers_lock);
	return n;
}

/* --- candidates ----------------------------------------------------------------- */

static struct cand *find_cand(struct boot *b, const struct crust_endpoint *ep)
{
	for (unsigned i = 0; i < b->ncands; i++)
		if (cache_same_endpoint(&b->cands[i].ep, ep))
			return &b->cands[i];
	return NULL;
}

/* Room for one more: evict the oldest idle discovered candidate if full. */
static struct cand *new_cand(struct boot *b)
{
	if (b->ncands == MAX_CANDIDATES) {
		unsigned i = 0;
		while (i < b->ncands && (b->cands[i].src < BOOT_BEACON || b->cands[i].st == C_DIALING ||
					 b->cands[i].st == C_PENDING))
			i++;
		if (i == b->ncands)
			return NULL;
		memmove(&b->cands[i], &b->cands[i + 1], (b->ncands - i - 1) * sizeof(b->cands[0]));
		b->ncands--;
	}
	struct cand *c = &b->cands[b->ncands++];
	memset(c, 0, sizeof(*c));
	return c;
}

static int add_locked(struct boot *b, const struct crust_endpoint *ep,
		      const struct crust_peer_id *id, enum boot_source src)
{
	struct cand *c = find_cand(b, ep);
	if (c) {
		if (id && (!c->has_id || c->st != C_DIALING)) {
			c->id = *id;
			c->has_id = true;
		}
		return 0;
	}
	c = new_cand(b);
	if (!c)
		return -ENOSPC;
	c->ep = *ep;
	c->src = src;
	if (id) {
		c->id = *id;
		c->has_id = true;
	}
	/* a bootstrap waiting to retry tries the newcomer at once */
	if (b->started && !b->finished && !b->in_round)
		b->next_round_ms = 0;
	if (b->in_round)
		c->st = C_PENDING;
	return 1;
}

int boot_add(struct crust_service *svc, const struct crust_endpoint *ep,
	     const struct crust_peer_id *id, enum boot_source src)
{
	struct boot *b = svc->boot;
	if (!b || !ep || (ep->addr.ss_family != AF_INET && ep->addr.ss_family != AF_INET6))
		return -EINVAL;
	if (id && crust_peer_eq(id, &svc->id))
		return 0; /* ourselves */
	pthread_mutex_lock(&b->lock);
	int ret = add_locked(b, ep, id, src);
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
	return ret;
}

int boot_add_candidate(struct crust_service *svc, const struct sockaddr *addr, socklen_t len,
		       const uint8_t peer_id[32], enum crust_transport t)
{
	struct crust_endpoint ep;
	memset(&ep, 0, sizeof(ep));
	if (!addr || len > sizeof(ep.addr) || !peer_id)
		return -EINVAL;
	ep.transport = t;
	memcpy(&ep.addr, addr, len);
	ep.addrlen = len;
	struct crust_peer_id id;
	memcpy(id.bytes, peer_id, CRUST_PEER_ID_LEN);
	return boot_add(svc, &ep, &id, BOOT_BEACON);
}

/* --- results from the shards ---------------------------------------------------- */

static void push_op(struct boot *b, bool ok, const struct crust_endpoint *ep,
		    const struct crust_peer_id *id)
{
	if (b->nops == MAX_OPS) {
		svc_log(b->svc, CRUST_LOG_DEBUG, "bootstrap cache: update queue full, one dropped");
		return;
	}
	struct cache_op *op = &b->ops[b->nops++];
	op->ok = ok;
	op->ep = *ep;
	if (id)
		op->id = *id;
}

void boot_on_direct(struct crust_service *svc, const struct sockaddr_storage *addr,
		    enum crust_transport t, const struct crust_peer_id *id)
{
	struct boot *b = svc->boot;
	if (!b)
		return;
	struct crust_endpoint ep = { .transport = t, .addr = *addr };
	ep.addrlen = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						 : sizeof(struct sockaddr_in);
	pthread_mutex_lock(&b->lock);
	struct cand *c = find_cand(b, &ep);
	if (c && c->st == C_DIALING) {
		c->st = C_OK;
		c->id = *id;
		c->has_id = true;
	}
	push_op(b, true, &ep, id);
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
}

/* Failures that say our own network is down, not the peer: not held against the entry. */
static bool local_failure(int err)
{
	return err == -ENETUNREACH || err == -ENETDOWN || err == -EADDRNOTAVAIL || err == -ENOMEM ||
	       err == -ESHUTDOWN;
}

void boot_on_connect_failed(struct crust_service *svc, const struct crust_event *ev)
{
	struct boot *b = svc->boot;
	if (!b)
		return;
	struct crust_endpoint ep = { .transport = ev->transport ? ev->transport : CRUST_TRANSPORT_TCP,
				     .addr = ev->addr };
	pthread_mutex_lock(&b->lock);
	struct cand *c = find_cand(b, &ep);
	if (c && c->st == C_DIALING) {
		c->st = C_FAILED;
		c->err = ev->error;
	}
	if (!local_failure(ev->error))
		push_op(b, false, &ep, NULL);
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
}

size_t boot_cached(struct crust_service *svc, struct cache_entry *out, size_t n)
{
	struct boot *b = svc->boot;
	if (!b)
		return 0;
	pthread_mutex_lock(&b->lock);
	size_t got = b->nserved < n ? b->nserved : n;
	memcpy(out, b->served, got * sizeof(*out));
	pthread_mutex_unlock(&b->lock);
	return got;
}

/* --- rounds --------------------------------------------------------------------- */

static void start_round(struct boot *b, uint64_t now)
{
	b->round++;
	b->in_round = true;
	b->tried = b->succeeded = 0;
	/* what the cache learned since the last round is worth a try too */
	for (uint32_t i = 0; i < b->nserved; i++)
		add_locked(b, &b->served[i].ep, &b->served[i].id, BOOT_CACHE);
	for (unsigned i = 0; i < b->ncands; i++) {
		struct cand *c = &b->cands[i];
		c->in_round = false;
		if (c->st != C_DIALING)
			c->st = C_PENDING;
	}
	svc_log(b->svc, CRUST_LOG_INFO, "bootstrap round %u: %u candidates", b->round, b->ncands);
	(void)now;
}

static void dial(struct boot *b, struct cand *c, uint64_t now)
{
	struct crust_service *svc = b->svc;
	c->tried_ms = now;
	if (b->in_round) {
		c->in_round = true;
		b->tried++;
	}
	if (c->has_id && connected_to(svc, &c->id)) {
		c->st = C_OK; /* already there: counts, nothing to dial */
		return;
	}
	int err = c->has_id ? crust_connect_peer(svc, &c->ep, &c->id) : crust_connect(svc, &c->ep);
	if (err) {
		c->st = C_FAILED;
		c->err = err;
		return;
	}
	c->st = C_DIALING;
	c->deadline_ms = now + svc->cfg.connect_timeout_ms + svc->cfg.handshake_timeout_ms +
			 ROUND_SLACK_MS;
}

static unsigned dialing(const struct boot *b)
{
	unsigned n = 0;
	for (unsigned i = 0; i < b->ncands; i++)
		n += b->cands[i].st == C_DIALING;
	return n;
}

/* Start dials while the parallel bound allows: the round's first, then auto-connects. */
static void dial_some(struct boot *b, uint64_t now)
{
	const struct crust_config *cfg = &b->svc->cfg;
	unsigned busy = dialing(b);
	for (unsigned i = 0; i < b->ncands && busy < cfg->bootstrap_parallel; i++) {
		struct cand *c = &b->cands[i];
		if (c->st != C_PENDING)
			continue;
		dial(b, c, now);
		busy += c->st == C_DIALING;
	}
	if (b->in_round || npeers(b->svc) >= cfg->auto_connect_max)
		return;
	for (unsigned i = 0; i < b->ncands && busy < cfg->bootstrap_parallel; i++) {
		struct cand *c = &b->cands[i];
		bool discovered = c->src == BOOT_BEACON || c->src == BOOT_PEX;
		bool due = c->st == C_IDLE || (c->st == C_FAILED && now - c->tried_ms >= REDIAL_DISCOVERED_MS);
		if (!discovered || !due || (c->has_id && connected_to(b->svc, &c->id)))
			continue;
		dial(b, c, now);
		busy += c->st == C_DIALING;
	}
}

static void bootstrap_event(struct crust_event *ev, enum crust_event_type type, const struct boot *b)
{
	event_init(ev, type);
	ev->round = b->round;
	ev->tried = b->tried;
	ev->succeeded = b->succeeded;
}

/* Resolve finished dials (and overdue ones); count them for the round. */
static void reap(struct boot *b, uint64_t now)
{
	for (unsigned i = 0; i < b->ncands; i++) {
		struct cand *c = &b->cands[i];
		if (c->st == C_DIALING && now >= c->deadline_ms) {
			c->st = C_FAILED;
			c->err = -ETIMEDOUT;
		}
		if (!c->in_round || (c->st != C_OK && c->st != C_FAILED))
			continue;
		c->in_round = false;
		if (c->st != C_OK)
			continue;
		b->succeeded++;
		struct crust_event ev;
		bootstrap_event(&ev, CRUST_EV_NEW_BOOTSTRAP_CONNECTION, b);
		ev.transport = c->ep.transport;
		ev.addr = c->ep.addr;
		ev.peer = c->id;
		queue_event(b, &ev);
	}
}

static uint64_t backoff_ms(struct boot *b)
{
	const struct crust_config *cfg = &b->svc->cfg;
	uint64_t ms = cfg->bootstrap_retry_min_ms;
	for (uint32_t i = 0; i < b->backoff_step && ms < cfg->bootstrap_retry_max_ms; i++)
		ms *= 2;
	if (ms > cfg->bootstrap_retry_max_ms)
		ms = cfg->bootstrap_retry_max_ms;
	b->backoff_step++;
	return jitter(ms);
}

static bool round_busy(const struct boot *b)
{
	for (unsigned i = 0; i < b->ncands; i++)
		if (b->cands[i].st == C_PENDING || (b->cands[i].in_round && b->cands[i].st == C_DIALING))
			return true;
	return false;
}

static void end_round(struct boot *b, uint64_t now)
{
	b->in_round = false;
	struct crust_event ev;
	/* peers that dialed us count too: the node is in the network */
	if (b->succeeded || npeers(b->svc)) {
		b->finished = true;
		b->backoff_step = 0;
		bootstrap_event(&ev, CRUST_EV_BOOTSTRAP_FINISHED, b);
		if (!b->succeeded)
			snprintf(ev.reason, sizeof(ev.reason), "in the network through peers that dialed us");
		queue_event(b, &ev);
		return;
	}
	uint64_t wait = backoff_ms(b);
	b->next_round_ms = now + wait;
	bootstrap_event(&ev, CRUST_EV_BOOTSTRAP_ROUND, b);
	ev.retry_ms = (uint32_t)wait;
	snprintf(ev.reason, sizeof(ev.reason), "round %u reached none of %u endpoints; next in %llu ms",
		 b->round, b->tried, (unsigned long long)wait);
	queue_event(b, &ev);
}

/* Lost every peer after bootstrapping: start again once that lasted a retry period. */
static void watch_peers(struct boot *b, uint64_t now)
{
	if (!b->started || !b->finished || npeers(b->svc)) {
		b->zero_peers_since_ms = 0;
		return;
	}
	if (!b->zero_peers_since_ms)
		b->zero_peers_since_ms = now;
	if (now - b->zero_peers_since_ms >= b->svc->cfg.bootstrap_retry_min_ms) {
		svc_log(b->svc, CRUST_LOG_INFO, "bootstrap: no peers left, bootstrapping again");
		b->finished = false;
		b->next_round_ms = now;
		b->zero_peers_since_ms = 0;
	}
}

static void run_rounds(struct boot *b, uint64_t now)
{
	reap(b, now);
	watch_peers(b, now);
	if (b->in_round && !round_busy(b))
		end_round(b, now);
	/* nothing to try and nobody here: wait quietly for a candidate (add_locked wakes us) */
	if (b->started && !b->finished && !b->in_round && now >= b->next_round_ms &&
	    (b->ncands || b->nserved || npeers(b->svc)))
		start_round(b, now);
	dial_some(b, now);
	if (b->in_round && !round_busy(b))
		end_round(b, now);
}

/* --- the cache ------------------------------------------------------------------ */

static void refresh_served(struct boot *b)
{
	pthread_mutex_lock(&b->lock);
	memcpy(b->served, b->cache.entries, b->cache.count * sizeof(b->served[0]));
	b->nserved = b->cache.count;
	pthread_mutex_unlock(&b->lock);
}

/* Apply queued results to the file (lock released: msync may take a while). */
static void apply_ops(struct boot *b, struct cache_op *ops, unsigned n)
{
	const struct crust_config *cfg = &b->svc->cfg;
	bool changed = false;
	for (unsigned i = 0; i < n && b->cache_up; i++) {
		int err = ops[i].ok ? cache_success(&b->cache, &ops[i].ep, &ops[i].id, (uint64_t)time(NULL))
				    : cache_failure(&b->cache, &ops[i].ep, cfg->cache_max_failures);
		if (err < 0)
			svc_log(b->svc, CRUST_LOG_WARN, "bootstrap cache %s: cannot write: %s",
				cfg->cache_file, strerror(-err));
		changed |= ops[i].ok || err > 0;
	}
	if (changed)
		refresh_served(b);
}

static void open_cache(struct boot *b)
{
	struct crust_service *svc = b->svc;
	const struct crust_config *cfg = &svc->cfg;
	if (!cfg->cache_file)
		return;
	char note[4608];
	int err = cache_open(&b->cache, cfg->cache_file, cfg->cache_max_entries, note, sizeof(note));
	if (note[0])
		svc_log(svc, CRUST_LOG_WARN, "%s", note);
	if (err == -EBUSY)
		svc_log(svc, CRUST_LOG_WARN, "bootstrap cache %s: in use by another process; running "
			"without a cache", cfg->cache_file);
	else if (err)
		svc_log(svc, CRUST_LOG_WARN, "bootstrap cache %s: cannot open: %s; running without "
			"a cache", cfg->cache_file, strerror(-err));
	if (err)
		return;
	b->cache_up = true;
	for (uint32_t i = 0; i < b->cache.count; i++)
		add_locked(b, &b->cache.entries[i].ep, &b->cache.entries[i].id, BOOT_CACHE);
	memcpy(b->served, b->cache.entries, b->cache.count * sizeof(b->served[0]));
	b->nserved = b->cache.count;
}

/* --- the thread ----------------------------------------------------------------- */

static void periodic(struct boot *b, uint64_t now)
{
	const struct crust_config *cfg = &b->svc->cfg;
	if (now >= b->next_pex_ms && !cfg->no_pex) {
		b->next_pex_ms = now + jitter(cfg->pex_interval_ms);
		pex_ask_random(b->svc);
	}
	if (cfg->rebind_interval_ms && now >= b->next_rebind_ms) {
		if (b->next_rebind_ms)
			ports_rebind(b->svc);
		b->next_rebind_ms = now + cfg->rebind_interval_ms;
	}
}

static uint64_t next_wake(const struct boot *b, uint64_t now)
{
	uint64_t t = now + 1000;
	if (b->started && !b->finished && !b->in_round && b->next_round_ms < t)
		t = b->next_round_ms;
	for (unsigned i = 0; i < b->ncands; i++)
		if (b->cands[i].st == C_DIALING && b->cands[i].deadline_ms < t)
			t = b->cands[i].deadline_ms;
	if (b->next_pex_ms < t)
		t = b->next_pex_ms;
	if (b->svc->cfg.rebind_interval_ms && b->next_rebind_ms < t)
		t = b->next_rebind_ms;
	return t;
}

static void wait_until(struct boot *b, uint64_t when_ms)
{
	uint64_t now = eng_clock_ms();
	if (when_ms <= now)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + (when_ms - now) * 1000000ull;
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	pthread_cond_timedwait(&b->wake, &b->lock, &ts);
}

static void emit_queued(struct boot *b, struct crust_event *evs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		event_emit(b->svc, &evs[i]);
}

static void *thread_main(void *arg)
{
	struct boot *b = arg;
	static __thread struct cache_op ops[MAX_OPS];
	static __thread struct crust_event evs[MAX_EMIT];
	pthread_mutex_lock(&b->lock);
	b->next_pex_ms = eng_clock_ms() + jitter(b->svc->cfg.pex_interval_ms);
	while (!b->stop) {
		uint64_t now = eng_clock_ms();
		run_rounds(b, now);
		unsigned nops = b->nops, nev = b->nemit;
		memcpy(ops, b->ops, nops * sizeof(ops[0]));
		memcpy(evs, b->emitq, nev * sizeof(evs[0]));
		b->nops = b->nemit = 0;
		pthread_mutex_unlock(&b->lock);
		/* the cache first: whoever hears of a connection or a finished round can
		 * already find it recorded */
		apply_ops(b, ops, nops);
		emit_queued(b, evs, nev);
		periodic(b, now);
		pthread_mutex_lock(&b->lock);
		if (!b->stop && !b->nops && !b->nemit)
			wait_until(b, next_wake(b, eng_clock_ms()));
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

int boot_new(struct crust_service *svc)
{
	struct boot *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->svc = svc;
	pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->wake, &ca);
	pthread_condattr_destroy(&ca);
	svc->boot = b;
	b->served = calloc(svc->cfg.cache_max_entries, sizeof(*b->served));
	if (!b->served)
		return -ENOMEM;
	open_cache(b);
	for (size_t i = 0; i < svc->cfg.ncontacts; i++)
		add_locked(b, &svc->cfg.contacts[i], NULL, BOOT_CONTACT);
	svc->cfg.contacts = NULL; /* copied: the caller may free them */
	svc->cfg.ncontacts = 0;
	int err = -pthread_create(&b->thread, NULL, thread_main, b);
	b->thread_up = !err;
	return err;
}

void boot_stop(struct crust_service *svc)
{
	struct boot *b = svc->boot;
	if (!b || !b->thread_up)
		return;
	pthread_mutex_lock(&b->lock);
	b->stop = true;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
	pthread_join(b->thread, NULL);
	b->thread_up = false;
}

void boot_free(struct crust_service *svc)
{
	struct boot *b = svc->boot;
	if (!b)
		return;
	boot_stop(svc);
	if (b->cache_up) {
		/* results that came in while stopping still count */
		apply_ops(b, b->ops, b->nops);
		cache_close(&b->cache);
	}
	free(b->served);
	pthread_cond_destroy(&b->wake);
	pthread_mutex_destroy(&b->lock);
	free(b);
	svc->boot = NULL;
}

CRUST_API int crust_bootstrap(struct crust_service *svc)
{
	struct boot *b = svc ? svc->boot : NULL;
	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	int ret = 0;
	if (b->started && !b->finished) {
		ret = -EALREADY;
	} else {
		b->started = true;
		b->finished = false;
		b->next_round_ms = 0;
		pthread_cond_signal(&b->wake);
	}
	pthread_mutex_unlock(&b->lock);
	return ret;
}
