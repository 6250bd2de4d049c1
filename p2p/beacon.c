/*
 * beacon.c - the LAN beacon on the engine (see beacon.h).
 *
 * One UDP socket of the TCP listener's family, bound to the wildcard
 * address and cfg.beacon_port (SO_REUSEADDR: several crust processes on
 * one host all hear the broadcasts), owned by shard 0. Timers there drive
 * the schedule: BEACON_BURST queries at start-up, then an announcement
 * every interval +- jitter; each round also re-reads the interfaces (new
 * ones are picked up, IPv6 ones join the group) and forgets silent peers.
 *
 * Receive path, cheapest check first, so that a flood costs little and
 * only datagrams that passed every cheap check and the rate limits get a
 * signature check: length, magic, version, type, network (beacon_parse)
 * -> our own id -> TTL 255 -> timestamp window -> per-source and overall
 * rate -> replay -> signature. Every drop is counted by its reason
 * (crust_stats), never logged above debug level (a flood would flood
 * the log).
 *
 * Invariants: everything but beacon_start, beacon_set_hook, beacon_free
 * and beacon_stats runs on shard 0's thread. A datagram being sent lives
 * in one of pkts[] until its last send completes.
 */
#define _GNU_SOURCE
#include "beacon.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/addr.h"
#include "engine/listener.h"
#include "engine/udp.h"
#include "beacon_ifs.h"
#include "beacon_peers.h"
#include "beacon_wire.h"
#include "bootstrap.h"
#include "limiter.h"
#include "node.h"

#define BEACON_TTL 255
#define BEACON_MAX_SKEW_MS (15ull * 60 * 1000) /* LAN hosts' wall clocks may differ this much */
#define BEACON_SRC_RATE 10       /* datagrams per second one source IP may have checked */
#define BEACON_SRC_BURST 20
#define BEACON_SRC_TABLE 1024
#define BEACON_VERIFY_RATE 200   /* signature checks per second, all sources together */
#define BEACON_PKTS 8            /* datagrams in flight at once */
#define BEACON_INTERVAL_DEFAULT 30000

struct beacon_pkt {
	uint8_t bytes[BEACON_LEN];
	unsigned refs;               /* sends in flight */
};

struct beacon_counters {
	_Atomic uint64_t rx, accepted, own, malformed, oversized, other_network, off_link, stale;
	_Atomic uint64_t rate_limited, bad_signature, sig_checks, sent, answers;
};

struct beacon {
	struct crust_service *svc;
	struct shard *sh;
	struct eng_mail start_mail;
	struct eng_udp u;
	int family;
	int fd;                      /* ours until the shard opens it, then the engine's */
	bool opened;
	uint16_t port;
	uint64_t interval_ms;
	struct eng_timer tick, answer_timer;
	unsigned burst_left;
	uint64_t last_ts;            /* newest timestamp we sent */
	struct beacon_if ifs[BEACON_MAX_IFS];
	unsigned nifs;
	struct beacon_peers peers;
	struct limiter per_source;
	bool limiter_up;
	double verify_tokens;
	uint64_t verify_ms;
	struct beacon_pkt pkts[BEACON_PKTS];
	beacon_candidate_fn hook;
	void *hook_ctx;
	struct beacon_counters c;
};

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ms +- BEACON_JITTER_PCT percent, so nodes started together drift apart. */
static uint64_t jittered(uint64_t ms)
{
	uint32_t span = (uint32_t)(ms * BEACON_JITTER_PCT / 100);
	return ms - span + randombytes_uniform(2 * span + 1);
}

/* Re-read the interfaces: where announcements go from now on (IPv6 ones join the group). */
static void refresh_interfaces(struct beacon *b)
{
	int err = beacon_ifs_list(&b->svc->bind_addr, b->port, b->fd, b->ifs, BEACON_MAX_IFS);
	if (err < 0) {
		svc_log(b->svc, CRUST_LOG_WARN, "beacon: interfaces: %s", strerror(-err));
		return;
	}
	b->nifs = (unsigned)err;
}

/* --- sending ------------------------------------------------------------------------ */

static struct beacon_pkt *free_pkt(struct beacon *b)
{
	for (unsigned i = 0; i < BEACON_PKTS; i++) {
		if (!b->pkts[i].refs)
			return &b->pkts[i];
	}
	return NULL;
}

/* One signed datagram of type to every interface's broadcast address or group. */
static void send_round(struct beacon *b, enum beacon_type type)
{
	struct beacon_pkt *pkt = free_pkt(b);
	if (!pkt || !b->nifs)
		return;
	uint64_t ts = wall_ms();
	b->last_ts = ts > b->last_ts ? ts : b->last_ts + 1; /* strictly increasing: replay guard */
	struct beacon_msg m = {
		.type = type,
		.ts_ms = b->last_ts,
		.tcp_port = b->svc->tcp_port,
		.rudp_port = b->svc->rudp_port,
	};
	memcpy(m.network_tag, b->svc->network_tag, 8);
	beacon_encode(&m, &b->svc->identity, pkt->bytes);
	struct iovec iov = { .iov_base = pkt->bytes, .iov_len = BEACON_LEN };
	for (unsigned i = 0; i < b->nifs; i++) {
		int err = eng_udp_send(&b->u, (struct sockaddr *)&b->ifs[i].dst, b->ifs[i].len,
				       &iov, 1, 0, pkt);
		if (err) {
			svc_log(b->svc, CRUST_LOG_DEBUG, "beacon: send: %s", strerror(-err));
			continue;
		}
		pkt->refs++;
		count(&b->c.sent);
	}
}

static void on_sent(struct eng_udp *u, void *ctx, int res)
{
	struct beacon *b = container_of(u, struct beacon, u);
	struct beacon_pkt *pkt = ctx;
	pkt->refs--;
	if (res < 0)
		svc_log(b->svc, CRUST_LOG_DEBUG, "beacon: send: %s", strerror(-res));
}

static void tick_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct beacon *b = ctx;
	refresh_interfaces(b);
	beacon_peers_expire(&b->peers, eng_clock_ms());
	uint64_t next = b->interval_ms;
	if (b->burst_left) {
		b->burst_left--;
		send_round(b, BEACON_QUERY);
		next = BEACON_BURST_GAP_MS;
	} else {
		send_round(b, BEACON_ANNOUNCE);
	}
	eng_timer_arm(&b->sh->timers, &b->tick, jittered(next));
}

static void answer_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct beacon *b = ctx;
	send_round(b, BEACON_ANSWER);
	count(&b->c.answers);
	beacon_peers_answered(&b->peers, eng_clock_ms());
}

/* A verified query from p, request_len bytes: answer by multicast, paced. */
static void answer_query(struct beacon *b, struct beacon_peer *p, size_t request_len,
			 uint64_t now)
{
	if (BEACON_LEN > 3 * request_len)
		return; /* never send more than 3x what we were sent */
	switch (beacon_peers_answer(&b->peers, p, now)) {
	case BEACON_ANSWER_NOW:
		send_round(b, BEACON_ANSWER);
		count(&b->c.answers);
		break;
	case BEACON_ANSWER_LATER:
		if (!eng_timer_armed(&b->answer_timer)) {
			uint64_t due = beacon_peers_answer_due(&b->peers);
			eng_timer_arm(&b->sh->timers, &b->answer_timer, due > now ? due - now : 1);
		}
		break;
	case BEACON_ANSWER_NO:
		break;
	}
}

/* --- discovered peers ------------------------------------------------------------- */

static void endpoint_of(const struct sockaddr_storage *addr, uint16_t port,
			enum crust_transport t, struct crust_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->transport = t;
	ep->addr = *addr;
	eng_addr_set_port(&ep->addr, port);
	ep->addrlen = addr->ss_family == AF_INET ? sizeof(struct sockaddr_in)
						  : sizeof(struct sockaddr_in6);
}

static void emit_discovered(struct beacon *b, const struct beacon_peer *p)
{
	struct crust_event ev;
	event_init(&ev, CRUST_EV_PEER_DISCOVERED);
	ev.transport = CRUST_TRANSPORT_TCP;
	ev.peer = p->id;
	ev.addr = p->addr;
	ev.port = p->rudp_port;
	snprintf(ev.reason, sizeof(ev.reason), "beacon");
	event_emit(b->svc, &ev);
}

/*
 * The transport to dial a find with (DESIGN: "TCP first, then reliable
 * UDP"): a dial of "any" tries TCP, then UDP on the same port, which is
 * where a node listens on UDP by default; a peer whose UDP port differs
 * is dialed over TCP only (its rudp endpoint still goes to the hook).
 */
static enum crust_transport dial_transport(const struct beacon_candidate *c)
{
	return c->rudp.addrlen && eng_addr_port(&c->rudp.addr) == eng_addr_port(&c->tcp.addr)
		       ? CRUST_TRANSPORT_ANY
		       : CRUST_TRANSPORT_TCP;
}

/*
 * The bootstrap takes beacon finds as candidates and dials them itself
 * (auto-connect, within auto_connect_max; cache on success). True if it
 * took this one.
 */
static bool to_bootstrap(struct crust_service *svc, const struct beacon_candidate *c)
{
	if (!svc->boot)
		return false;
	return boot_add_candidate(svc, (const struct sockaddr *)&c->tcp.addr, c->tcp.addrlen,
				  c->peer.bytes, dial_transport(c)) >= 0;
}

/*
 * Hand p on: to the candidate hook if one is set, else to the bootstrap.
 * Whoever takes it dials it; if nobody does, the beacon dials it itself.
 */
static void offer(struct beacon *b, struct beacon_peer *p)
{
	struct beacon_candidate c = { .peer = p->id };
	endpoint_of(&p->addr, eng_addr_port(&p->addr), CRUST_TRANSPORT_TCP, &c.tcp);
	if (p->rudp_port)
		endpoint_of(&p->addr, p->rudp_port, CRUST_TRANSPORT_RUDP, &c.rudp);
	if (b->hook)
		p->delegated = b->hook(b->hook_ctx, &c);
	else
		p->delegated = eng_addr_port(&p->addr) && to_bootstrap(b->svc, &c);
}

static bool connected(struct beacon *b, const struct crust_peer_id *id)
{
	struct peer_ref *ref = peer_lookup(b->svc, id);
	if (ref)
		peer_put(ref);
	return ref != NULL;
}

/*
 * The beacon's own dial, when no hook and no bootstrap took the peer,
 * through crust_connect_peer (the dial proves the announced key, so a
 * forged address gets nowhere).
 */
static void dial(struct beacon *b, struct beacon_peer *p)
{
	struct beacon_candidate c = { .peer = p->id };
	endpoint_of(&p->addr, eng_addr_port(&p->addr), CRUST_TRANSPORT_TCP, &c.tcp);
	if (p->rudp_port)
		endpoint_of(&p->addr, p->rudp_port, CRUST_TRANSPORT_RUDP, &c.rudp);
	c.tcp.transport = dial_transport(&c);
	int err = crust_connect_peer(b->svc, &c.tcp, &p->id);
	if (err)
		svc_log(b->svc, CRUST_LOG_DEBUG, "beacon: dial: %s", strerror(-err));
}

static void maybe_dial(struct beacon *b, struct beacon_peer *p, uint64_t now)
{
	if (p->delegated || !eng_addr_port(&p->addr) || connected(b, &p->id))
		return;
	if (beacon_peers_dial(p, &b->svc->id, now))
		dial(b, p);
}

static void heard(struct beacon *b, const struct beacon_msg *m,
		  const struct sockaddr_storage *from, size_t len, uint64_t now)
{
	struct beacon_peer *p;
	if (beacon_peers_record(&b->peers, m, from, now, &p) != BEACON_SEEN_AGAIN) {
		offer(b, p); /* before the event: whoever hears the event may rely on the hook's state */
		emit_discovered(b, p);
	}
	maybe_dial(b, p, now);
	if (m->type == BEACON_QUERY)
		answer_query(b, p, len, now);
}

/* --- receiving ---------------------------------------------------------------------- */

static void count_verdict(struct beacon *b, enum beacon_verdict v)
{
	switch (v) {
	case BEACON_OVERSIZED: count(&b->c.oversized); break;
	case BEACON_OTHER_NETWORK: count(&b->c.other_network); break;
	case BEACON_BAD_SIGNATURE: count(&b->c.bad_signature); break;
	default: count(&b->c.malformed); break;
	}
}

static bool fresh(uint64_t ts_ms)
{
	uint64_t now = wall_ms();
	return ts_ms + BEACON_MAX_SKEW_MS >= now && ts_ms <= now + BEACON_MAX_SKEW_MS;
}

/* Per-source budget (the handshake limiter, used as a plain rate limit), then the overall one. */
static bool admit(struct beacon *b, const struct sockaddr_storage *from, uint64_t now)
{
	if (limiter_admit(&b->per_source, from, now) != LIMITER_OK)
		return false;
	limiter_release(&b->per_source, from);
	b->verify_tokens += (double)(now - b->verify_ms) * BEACON_VERIFY_RATE / 1000.0;
	if (b->verify_tokens > BEACON_VERIFY_RATE)
		b->verify_tokens = BEACON_VERIFY_RATE;
	b->verify_ms = now;
	if (b->verify_tokens < 1)
		return false;
	b->verify_tokens -= 1;
	return true;
}

/* Every check but the signature; true if it is worth verifying. */
static bool cheap_checks(struct beacon *b, const uint8_t *p, size_t len, int ttl,
			 struct beacon_msg *m)
{
	enum beacon_verdict v = beacon_parse(p, len, b->svc->network_tag, m);
	if (v != BEACON_OK) {
		count_verdict(b, v);
		return false;
	}
	if (crust_peer_eq(&m->peer, &b->svc->id)) {
		count(&b->c.own); /* our own broadcast, looped back */
		return false;
	}
	if (ttl != BEACON_TTL) {
		count(&b->c.off_link);
		return false;
	}
	if (!fresh(m->ts_ms)) {
		count(&b->c.stale);
		return false;
	}
	return true;
}

static void take(struct beacon *b, int ttl, const struct sockaddr *from, socklen_t fromlen,
		 const uint8_t *p, size_t len)
{
	count(&b->c.rx);
	struct beacon_msg m;
	if (!cheap_checks(b, p, len, ttl, &m))
		return;
	struct sockaddr_storage src = { 0 };
	if (from->sa_family != b->family || fromlen > sizeof(src)) {
		count(&b->c.malformed);
		return;
	}
	memcpy(&src, from, fromlen);
	uint64_t now = eng_clock_ms();
	if (!admit(b, &src, now)) {
		count(&b->c.rate_limited);
		return;
	}
	if (beacon_peers_is_replay(&b->peers, &m)) {
		count(&b->c.stale);
		return;
	}
	count(&b->c.sig_checks);
	if (beacon_verify(p) != BEACON_OK) {
		count(&b->c.bad_signature);
		return;
	}
	count(&b->c.accepted);
	heard(b, &m, &src, len, now);
}

static void on_datagram(struct eng_udp *u, struct eng_rxbuf *buf, const struct sockaddr *from,
			socklen_t fromlen, uint8_t *p, uint32_t len, uint16_t gso_size)
{
	(void)buf;
	struct beacon *b = container_of(u, struct beacon, u);
	if (!gso_size) {
		take(b, u->rx_ttl, from, fromlen, p, len);
		return;
	}
	/* GRO is off on this socket; should a batch come anyway, each segment is one datagram */
	for (uint32_t off = 0; off < len; off += gso_size) {
		uint32_t seg = len - off < gso_size ? len - off : gso_size;
		take(b, u->rx_ttl, from, fromlen, p + off, seg);
	}
}

static void on_closed(struct eng_udp *u)
{
	(void)u;
}

static const struct eng_udp_ops beacon_udp_ops = {
	.on_datagram = on_datagram,
	.on_sent = on_sent,
	.on_closed = on_closed,
};

/* --- life cycle --------------------------------------------------------------------- */

/* Wildcard socket on port: broadcast allowed, TTL 255 out, TTL reported in. */
static int open_socket(int family, uint16_t port)
{
	struct sockaddr_storage ss = { .ss_family = (sa_family_t)family };
	eng_addr_set_port(&ss, port);
	socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int fd = eng_bind_socket(SOCK_DGRAM, (struct sockaddr *)&ss, len, ENG_BIND_SHARED);
	if (fd < 0)
		return fd;
	int one = 1, ttl = BEACON_TTL;
	int ok = family == AF_INET
		? !setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) &&
		  !setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)) &&
		  !setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &one, sizeof(one))
		: !setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof(ttl)) &&
		  !setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof(ttl)) &&
		  !setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &one, sizeof(one));
	if (!ok) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void start_on_shard(struct shard *sh, struct eng_mail *mail)
{
	struct beacon *b = container_of(mail, struct beacon, start_mail);
	int err = eng_udp_open(&b->u, sh, b->fd, &beacon_udp_ops, b);
	if (err) {
		svc_log(b->svc, CRUST_LOG_WARN, "beacon: cannot start: %s", strerror(-err));
		atomic_store(&b->svc->beacon_port, 0);
		return;
	}
	b->opened = true;
	/* each datagram is one beacon: no coalescing */
	int zero = 0;
	setsockopt(b->fd, IPPROTO_UDP, UDP_GRO, &zero, sizeof(zero));
	eng_timer_init(&b->tick, tick_cb, b);
	eng_timer_init(&b->answer_timer, answer_cb, b);
	b->verify_ms = eng_clock_ms();
	b->verify_tokens = BEACON_VERIFY_RATE;
	tick_cb(&b->tick, b);
}

static int beacon_new(struct crust_service *svc, struct beacon **out)
{
	struct beacon *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->svc = svc;
	b->sh = &svc->eng->shards[0];
	b->family = svc->bind_addr.ss_family;
	b->port = svc->cfg.beacon_port;
	b->fd = -1;
	b->interval_ms = svc->cfg.beacon_interval_ms ? svc->cfg.beacon_interval_ms
						     : BEACON_INTERVAL_DEFAULT;
	b->burst_left = BEACON_BURST;
	beacon_peers_init(&b->peers, BEACON_EXPIRE_INTERVALS * b->interval_ms);
	struct limiter_config lc = {
		.rate_per_s = BEACON_SRC_RATE,
		.burst = BEACON_SRC_BURST,
		.max_pending = 1,
		.max_sources = BEACON_SRC_TABLE,
	};
	int err = limiter_init(&b->per_source, &lc);
	if (err) {
		free(b);
		return err;
	}
	b->limiter_up = true;
	b->hook = svc->beacon_hook;
	b->hook_ctx = svc->beacon_hook_ctx;
	*out = b;
	return 0;
}

int beacon_start(struct crust_service *svc)
{
	if (svc->cfg.no_beacon || !svc->cfg.beacon_port || svc->beacon)
		return 0;
	if (beacon_addr_is_loopback(&svc->bind_addr)) {
		svc_log(svc, CRUST_LOG_INFO, "beacon off: the service is bound to loopback");
		return 0;
	}
	struct beacon *b;
	int err = beacon_new(svc, &b);
	if (err)
		return err;
	b->fd = open_socket(b->family, b->port);
	if (b->fd < 0) {
		svc_log(svc, CRUST_LOG_WARN, "beacon off: cannot bind UDP port %u: %s",
			b->port, strerror(-b->fd));
		limiter_destroy(&b->per_source);
		free(b);
		return 0;
	}
	svc->beacon = b;
	atomic_store(&svc->beacon_port, b->port);
	b->start_mail.fn = start_on_shard;
	eng_post(b->sh, &b->start_mail);
	return 0;
}

void beacon_stop_shard(struct crust_service *svc, struct shard *sh)
{
	struct beacon *b = svc->beacon;
	if (!b || sh != b->sh || !b->opened)
		return;
	eng_timer_cancel(&sh->timers, &b->tick);
	eng_timer_cancel(&sh->timers, &b->answer_timer);
	eng_udp_close(&b->u);
}

void beacon_free(struct crust_service *svc)
{
	struct beacon *b = svc->beacon;
	if (!b)
		return;
	if (!b->opened && b->fd >= 0)
		close(b->fd);
	if (b->limiter_up)
		limiter_destroy(&b->per_source);
	free(b);
	svc->beacon = NULL;
	atomic_store(&svc->beacon_port, 0);
}

struct hook_mail {
	struct eng_mail m;
	struct beacon *b;
	beacon_candidate_fn fn;
	void *ctx;
};

/* Install the hook and show it every peer already live. */
static void hook_on_shard(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct hook_mail *hm = (struct hook_mail *)m;
	struct beacon *b = hm->b;
	b->hook = hm->fn;
	b->hook_ctx = hm->ctx;
	for (unsigned i = 0; i < BEACON_MAX_PEERS; i++) {
		struct beacon_peer *p = &b->peers.slots[i];
		p->delegated = false;
		if (p->live)
			offer(b, p);
	}
	free(hm);
}

int beacon_set_hook(struct crust_service *svc, beacon_candidate_fn fn, void *ctx)
{
	int err = 0;
	pthread_mutex_lock(&svc->listen_lock);
	svc->beacon_hook = fn;
	svc->beacon_hook_ctx = ctx;
	if (svc->beacon) {
		struct hook_mail *hm = calloc(1, sizeof(*hm));
		if (hm) {
			hm->m.fn = hook_on_shard;
			hm->b = svc->beacon;
			hm->fn = fn;
			hm->ctx = ctx;
			eng_post(svc->beacon->sh, &hm->m);
		} else {
			err = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&svc->listen_lock);
	return err;
}

void beacon_stats(struct crust_service *svc, struct crust_stats *out)
{
	struct beacon *b = svc->beacon;
	if (!b)
		return;
#define LOAD(x) atomic_load_explicit(&b->c.x, memory_order_relaxed)
	out->beacon_rx = LOAD(rx);
	out->beacon_accepted = LOAD(accepted);
	out->beacon_own = LOAD(own);
	out->beacon_malformed = LOAD(malformed);
	out->beacon_oversized = LOAD(oversized);
	out->beacon_other_network = LOAD(other_network);
	out->beacon_off_link = LOAD(off_link);
	out->beacon_stale = LOAD(stale);
	out->beacon_rate_limited = LOAD(rate_limited);
	out->beacon_bad_signature = LOAD(bad_signature);
	out->beacon_sig_checks = LOAD(sig_checks);
	out->beacon_sent = LOAD(sent);
	out->beacon_answers = LOAD(answers);
#undef LOAD
}

CRUST_API uint16_t crust_beacon_port(struct crust_service *svc)
{
	return svc ? atomic_load(&svc->beacon_port) : 0;
}
