/*
 * service.c - the public API: a service is an engine, its transports and
 * the peer table. Calls from user threads post work to the shard that
 * owns the connection (engine mailboxes); nothing here blocks on a shard
 * except crust_start_listening (bind) and crust_service_free (join).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "engine/addr.h"
#include "coordinator.h"
#include "node.h"
#include "rendezvous.h"
#include "nat/portmap.h"

CRUST_API void crust_config_init(struct crust_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->pin_shards = true;
	cfg->log_level = CRUST_LOG_WARN;
	boot_fill_defaults(cfg);
}

static void default_log(void *ctx, enum crust_log_level lvl, const char *msg)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	(void)ctx;
	fprintf(stderr, "crust %s: %s\n", names[lvl], msg);
}

void svc_log(struct crust_service *svc, enum crust_log_level lvl, const char *fmt, ...)
{
	if (lvl > svc->cfg.log_level)
		return;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	svc->cfg.log(svc->cfg.log_ctx, lvl, buf);
}

static void fill_defaults(struct crust_config *c)
{
#define DEFAULT(field, v) if (!c->field) c->field = (v)
	DEFAULT(max_msg_size, 16u << 20);
	DEFAULT(max_send_queue, 64u << 20);
	DEFAULT(handshake_timeout_ms, 10000);
	DEFAULT(frame_timeout_ms, 30000);
	DEFAULT(connect_timeout_ms, 10000);
	DEFAULT(keepalive_ms, 10000);
	DEFAULT(idle_timeout_ms, 30000);
	DEFAULT(provisional_grace_ms, 120000);
	if (c->provisional_grace_ms == UINT32_MAX)
		c->provisional_grace_ms = 0; /* never */
	DEFAULT(log, default_log);
	DEFAULT(coordinator_refresh_ms, RDV_REFRESH_DEFAULT);
	DEFAULT(punch_timeout_ms, PUNCH_TIMEOUT_DEFAULT);
	DEFAULT(port_mapping_lease_s, PORTMAP_LEASE_DEFAULT_S);
#undef DEFAULT
	boot_fill_defaults(c);
}

static int parse_bind(struct crust_service *svc)
{
	const char *a = svc->cfg.bind_addr ? svc->cfg.bind_addr : "0.0.0.0";
	struct sockaddr_in *v4 = (struct sockaddr_in *)&svc->bind_addr;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&svc->bind_addr;
	if (inet_pton(AF_INET, a, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		svc->bind_len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, a, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		svc->bind_len = sizeof(*v6);
	} else {
		return -EINVAL;
	}
	return 0;
}

static void engine_log(void *ctx, int level, const char *msg)
{
	svc_log(ctx, (enum crust_log_level)level, "%s", msg);
}

static void on_shard_stop(struct shard *sh, void *ctx)
{
	struct crust_service *svc = ctx;
	/* start_engine failed before the per-shard state existed: nothing ran here */
	if (!svc->shards)
		return;
	beacon_stop_shard(svc, sh);
	coord_stop_shard(svc, sh);
	rdv_stop_shard(svc, sh);
	/* NULL when its creation failed in start_engine (found by fault injection) */
	if (svc->tcp)
		svc->tcp->vt->stop_shard(svc->tcp, sh);
	conn_close_all(svc, sh);
	dedupe_stop(svc, sh);
	/* after the connections: their closes still go out on the UDP sockets */
	if (svc->rudp)
		svc->rudp->vt->stop_shard(svc->rudp, sh);
}

static int start_engine(struct crust_service *svc)
{
	const struct crust_config *c = &svc->cfg;
	struct eng_config ec = {
		.shards = c->shards,
		.pin = c->pin_shards,
		.first_cpu = c->first_cpu,
		.rx_buffer_size = c->rx_buffer_size,
		.rx_buffer_count = c->rx_buffer_count,
		.tx_arena_size = c->tx_arena_size,
		.zc_min = c->zerocopy_min,
		.rx_held_limit = c->rx_held_limit,
		.on_shard_stop = on_shard_stop,
		.log = engine_log,
		.ctx = svc,
	};
	int err = eng_new(&ec, &svc->eng);
	if (err)
		return err;
	svc->shards = calloc(svc->eng->nshards, sizeof(*svc->shards));
	if (!svc->shards)
		return -ENOMEM;
	/* frames are records: a whole message plus record overhead, or a batch of small ones */
	uint32_t frame_max = c->max_msg_size > ENG_ARENA_CHUNK ? c->max_msg_size : ENG_ARENA_CHUNK;
	struct tp_limits lim = {
		.max_msg_size = frame_max + 64,
		.frame_timeout_ms = c->frame_timeout_ms,
		.connect_timeout_ms = c->connect_timeout_ms,
		.idle_timeout_ms = c->idle_timeout_ms,
	};
	struct rudp_options ro = { .cc = c->rudp_cc, .retry_pending = c->rudp_retry_pending };
	err = tcp_transport_new(svc->eng, &conn_callbacks, svc, &lim, &svc->tcp);
	if (!err)
		err = rudp_transport_new(svc->eng, &conn_callbacks, svc, &lim, &ro, &svc->rudp);
	if (err == -EINVAL)
		svc_log(svc, CRUST_LOG_ERROR, "rudp_cc: unknown congestion control \"%s\"", c->rudp_cc);
	return err;
}

static int load_identity(struct crust_service *svc)
{
	char why[256] = "";
	int err = identity_load(svc->cfg.identity_file, &svc->identity, why, sizeof(why));
	if (err) {
		svc_log(svc, CRUST_LOG_ERROR, "%s", why[0] ? why : strerror(-err));
		return err;
	}
	if (why[0])
		svc_log(svc, CRUST_LOG_WARN, "%s", why);
	memcpy(svc->id.bytes, svc->identity.pk, CRUST_PEER_ID_LEN);
	svc->identity_loaded = true;
	return 0;
}

static int policy_init(struct crust_service *svc)
{
	struct limiter_config lc = {
		.rate_per_s = svc->cfg.hs_rate_per_s,
		.burst = svc->cfg.hs_burst,
		.max_pending = svc->cfg.hs_max_pending,
	};
	int err = limiter_init(&svc->limiter, &lc);
	if (err)
		return err;
	svc->limiter_up = true;
	err = blacklist_init(&svc->blacklist);
	if (!err)
		svc->blacklist_up = true;
	return err;
}

CRUST_API int crust_service_new(const struct crust_config *cfg, struct crust_service **out)
{
	if (!cfg || !out)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	struct crust_service *svc = calloc(1, sizeof(*svc));
	if (!svc)
		return -ENOMEM;
	svc->cfg = *cfg;
	fill_defaults(&svc->cfg);
	svc->event_fd = -1;
	pthread_rwlock_init(&svc->peers_lock, NULL);
	pthread_mutex_init(&svc->listen_lock, NULL);
	hs_network_tag(svc->cfg.network_name, svc->network_tag);
	int err = load_identity(svc);
	if (!err)
		err = parse_bind(svc);
	if (!err && (err = portmap_check_config(&svc->cfg)) < 0)
		svc_log(svc, CRUST_LOG_ERROR, "port_mapping: unknown method \"%s\" (auto, upnp, pcp, "
			"natpmp or off)", svc->cfg.port_mapping);
	if (!err)
		err = policy_init(svc);
	if (!err)
		err = events_init(svc);
	if (!err)
		err = start_engine(svc);
	if (!err)
		err = boot_new(svc);
	if (err) {
		crust_service_free(svc);
		return err;
	}
	*out = svc;
	return 0;
}

CRUST_API void crust_service_free(struct crust_service *svc)
{
	if (!svc)
		return;
	boot_stop(svc); /* it dials through the shards */
	portmap_stop(svc); /* deletes the mappings; its events need the queue */
	eng_stop(svc->eng);
	/* views in undelivered events point into receive buffers: free them first */
	if (svc->event_fd >= 0)
		events_destroy(svc);
	eng_free(svc->eng);
	boot_free(svc);
	beacon_free(svc);
	coord_free(svc);
	rdv_free(svc);
	portmap_free(svc);
	if (svc->tcp)
		svc->tcp->vt->destroy(svc->tcp);
	if (svc->rudp)
		svc->rudp->vt->destroy(svc->rudp);
	for (unsigned b = 0; b < PEER_BUCKETS; b++) {
		struct peer_ref *r = svc->peers[b];
		while (r) {
			struct peer_ref *next = r->next;
			peer_put(r);
			r = next;
		}
	}
	free(svc->shards);
	if (svc->limiter_up)
		limiter_destroy(&svc->limiter);
	if (svc->blacklist_up)
		blacklist_destroy(&svc->blacklist);
	if (svc->identity_loaded)
		identity_wipe(&svc->identity);
	pthread_rwlock_destroy(&svc->peers_lock);
	pthread_mutex_destroy(&svc->listen_lock);
	free(svc);
}

CRUST_API void crust_own_id(const struct crust_service *svc, struct crust_peer_id *out)
{
	*out = svc->id;
}

/* Bind one transport's listeners; events tell the user how it went. */
static int listen_on(struct crust_service *svc, struct transport *t, uint16_t want,
		     uint16_t *bound)
{
	struct sockaddr_storage ss = svc->bind_addr;
	eng_addr_set_port(&ss, want);
	uint16_t port = 0;
	bool fallback = false;
	int err = t->vt->listen(t, (struct sockaddr *)&ss, svc->bind_len, &port, &fallback);
	struct crust_event ev;
	if (err) {
		if (err == -EALREADY)
			return err;
		event_init(&ev, CRUST_EV_LISTENER_FAILED);
		ev.transport = t->vt->kind;
		ev.addr = ss;
		ev.error = err;
		snprintf(ev.reason, sizeof(ev.reason), "%s", strerror(-err));
		event_emit(svc, &ev);
		return err;
	}
	*bound = port;
	event_init(&ev, CRUST_EV_LISTENER_STARTED);
	ev.transport = t->vt->kind;
	eng_addr_set_port(&ss, port);
	ev.addr = ss;
	ev.port = port;
	ev.fallback = fallback && want;
	if (ev.fallback) {
		snprintf(ev.reason, sizeof(ev.reason), "live port %u taken, using random port %u",
			 want, port);
		svc_log(svc, CRUST_LOG_WARN, "%s %s", t->vt->name, ev.reason);
	}
	event_emit(svc, &ev);
	return 0;
}

CRUST_API int crust_start_listening(struct crust_service *svc)
{
	pthread_mutex_lock(&svc->listen_lock);
	uint16_t tcp_port = 0;
	int err = listen_on(svc, svc->tcp, svc->cfg.tcp_port, &tcp_port);
	if (!err) {
		svc->tcp_port = tcp_port;
		/* UDP where TCP listens: the same port number unless told otherwise */
		uint16_t want = svc->cfg.rudp_port ? svc->cfg.rudp_port : tcp_port, rudp_port = 0;
		if (listen_on(svc, svc->rudp, want, &rudp_port) < 0)
			svc_log(svc, CRUST_LOG_WARN, "reliable UDP listener failed; TCP only");
		svc->rudp_port = rudp_port;
		/* the beacon announces both ports: start it once they are known */
		int berr = beacon_start(svc);
		if (berr)
			svc_log(svc, CRUST_LOG_WARN, "beacon off: %s", strerror(-berr));
		int rerr = rdv_start(svc);
		if (rerr)
			svc_log(svc, CRUST_LOG_ERROR, "coordinator '%s' not used: %s",
				svc->cfg.coordinator, rerr == -EINVAL
				? "not ADDR:PORT of the listener's family" : strerror(-rerr));
		int perr = portmap_start(svc);
		if (perr)
			svc_log(svc, CRUST_LOG_WARN, "port mapping off: %s", strerror(-perr));
	}
	pthread_mutex_unlock(&svc->listen_lock);
	return err;
}

struct connect_mail {
	struct eng_mail m;
	struct crust_service *svc;
	struct crust_endpoint ep;
	bool expect_peer;
	struct crust_peer_id expected;
};

static void connect_on_shard(struct shard *sh, struct eng_mail *m)
{
	struct connect_mail *cm = (struct connect_mail *)m;
	struct crust_service *svc = cm->svc;
	/* a connect that arrives while the shard stops must not open a socket */
	struct p2p_conn *pc = atomic_load(&sh->stop) ? NULL : conn_new(svc, sh, true);
	int err = pc ? 0 : atomic_load(&sh->stop) ? -ESHUTDOWN : -ENOMEM;
	struct tp_conn *tc = NULL;
	if (pc) {
		pc->expect_peer = cm->expect_peer;
		pc->expected = cm->expected;
	}
	struct transport *t = cm->ep.transport == CRUST_TRANSPORT_RUDP ? svc->rudp : svc->tcp;
	if (pc) {
		pc->rudp_fallback = cm->ep.transport == CRUST_TRANSPORT_ANY;
		err = t->vt->connect(t, sh, (struct sockaddr *)&cm->ep.addr, cm->ep.addrlen, pc, &tc);
	}
	if (err) {
		struct crust_event ev;
		event_init(&ev, CRUST_EV_CONNECT_FAILED);
		ev.transport = t->vt->kind;
		ev.addr = cm->ep.addr;
		ev.error = err;
		snprintf(ev.reason, sizeof(ev.reason), "%s", strerror(-err));
		if (pc) {
			pc->stopping = true; /* never connected: nothing else to report */
			conn_discard(pc, sh);
		}
		event_emit(svc, &ev);
	} else {
		pc->tc = tc;
	}
	free(cm);
}

static int connect_to(struct crust_service *svc, const struct crust_endpoint *ep,
		      const struct crust_peer_id *peer)
{
	if (!svc || !ep || ep->addrlen == 0 || ep->addrlen > sizeof(ep->addr))
		return -EINVAL;
	if (ep->transport != CRUST_TRANSPORT_ANY && ep->transport != CRUST_TRANSPORT_TCP &&
	    ep->transport != CRUST_TRANSPORT_RUDP)
		return -EINVAL;
	if (svc_blacklisted_addr(svc, &ep->addr) ||
	    (peer && blacklist_has_peer(&svc->blacklist, peer)))
		return -EPERM;
	struct connect_mail *cm = calloc(1, sizeof(*cm));
	if (!cm)
		return -ENOMEM;
	cm->m.fn = connect_on_shard;
	cm->svc = svc;
	cm->ep = *ep;
	if (peer) {
		cm->expect_peer = true;
		cm->expected = *peer;
	}
	unsigned i = atomic_fetch_add(&svc->next_shard, 1) % svc->eng->nshards;
	eng_post(&svc->eng->shards[i], &cm->m);
	return 0;
}

CRUST_API int crust_connect(struct crust_service *svc, const struct crust_endpoint *ep)
{
	return connect_to(svc, ep, NULL);
}

CRUST_API int crust_connect_peer(struct crust_service *svc, const struct crust_endpoint *ep,
				 const struct crust_peer_id *peer)
{
	if (!peer)
		return -EINVAL;
	return connect_to(svc, ep, peer);
}

/* A message on its way to its peer's shard: the mail is the message's own link. */
/* A message reaching its peer's shard: the mail is the message's own link. */
static void send_on_shard(struct shard *sh, struct eng_mail *mail)
{
	struct crust_msg *m = container_of(mail, struct crust_msg, mail);
	conn_send(sh->eng->cfg.ctx, m->acct, m);
}

CRUST_API struct crust_msg *crust_msg_alloc(struct crust_service *svc, size_t len)
{
	if (!svc || len > svc->cfg.max_msg_size)
		return NULL;
	return eng_msg_alloc(len);
}

CRUST_API void *crust_msg_data(struct crust_msg *msg)
{
	return msg->data;
}

CRUST_API size_t crust_msg_len(const struct crust_msg *msg)
{
	return msg->len;
}

CRUST_API void crust_msg_release(struct crust_msg *msg)
{
	eng_msg_free(msg);
}

/*
 * Find the peer and charge cost bytes to its send budget. Returns the
 * peer's ref (the caller's reference) or NULL with *err set.
 */
static struct peer_ref *charge(struct crust_service *svc, const struct crust_peer_id *peer,
			       uint64_t cost, int *err)
{
	struct peer_ref *ref = peer_lookup(svc, peer);
	if (!ref) {
		*err = -ENOTCONN;
		return NULL;
	}
	uint64_t before = atomic_fetch_add(&ref->queued, cost);
	/* one message may always go, however large: the budget bounds what waits behind it */
	if (before > 0 && before + cost > svc->cfg.max_send_queue) {
		atomic_fetch_sub(&ref->queued, cost);
		peer_put(ref);
		*err = -ENOBUFS;
		return NULL;
	}
	return ref;
}

static void uncharge(struct peer_ref *ref, uint64_t cost)
{
	atomic_fetch_sub(&ref->queued, cost);
	peer_put(ref);
}

static uint64_t cost_of(size_t len)
{
	return (uint64_t)len + ENG_MSG_HEADROOM;
}

/* Post a charged message to its peer's shard; the message keeps ref. */
static int post(struct crust_service *svc, struct peer_ref *ref, struct crust_msg *m,
		uint8_t priority)
{
	(void)svc;
	m->prio = priority;
	m->acct = ref;
	m->mail.fn = send_on_shard;
	eng_post(ref->sh, &m->mail);
	return 0;
}

CRUST_API int crust_send_msg(struct crust_service *svc, const struct crust_peer_id *peer,
			     struct crust_msg *msg, uint8_t priority)
{
	if (!svc || !peer || !msg) {
		eng_msg_free(msg);
		return -EINVAL;
	}
	if (msg->kind != ENG_MSG_HEAP) {
		/* a received view has no headroom for a frame header: copy it once */
		struct crust_msg *copy = eng_msg_alloc(msg->len);
		if (copy)
			memcpy(copy->data, msg->data, msg->len);
		eng_msg_free(msg);
		if (!copy)
			return -ENOMEM;
		msg = copy;
	}
	if (msg->len > svc->cfg.max_msg_size) {
		eng_msg_free(msg);
		return -EMSGSIZE;
	}
	int err;
	struct peer_ref *ref = charge(svc, peer, cost_of(msg->len), &err);
	if (!ref) {
		eng_msg_free(msg);
		return err;
	}
	return post(svc, ref, msg, priority);
}

CRUST_API int crust_send(struct crust_service *svc, const struct crust_peer_id *peer,
			 const void *data, size_t len, uint8_t priority)
{
	if (!svc || !peer || (!data && len))
		return -EINVAL;
	if (len > svc->cfg.max_msg_size)
		return -EMSGSIZE;
	/* check the peer and its budget before paying for the copy */
	int err;
	struct peer_ref *ref = charge(svc, peer, cost_of(len), &err);
	if (!ref)
		return err;
	struct crust_msg *m = eng_msg_alloc(len);
	if (!m) {
		uncharge(ref, cost_of(len));
		return -ENOMEM;
	}
	if (len)
		memcpy(m->data, data, len);
	return post(svc, ref, m, priority);
}

static int post_to_peer(struct crust_service *svc, const struct crust_peer_id *peer, eng_mail_fn fn);

struct drop_mail {
	struct eng_mail m;
	struct peer_ref *ref;
};

/*
 * If a duplicate took over from ref meanwhile, send m on to the survivor's
 * shard (the user meant the peer, not one connection). True if it did.
 */
static bool follow_successor(struct drop_mail *dm)
{
	struct peer_ref *next = atomic_load(&dm->ref->successor);
	struct p2p_conn *pc = dm->ref->conn;
	if (!next || (pc && pc->state == CONN_UP))
		return false;
	atomic_fetch_add(&next->refs, 1);
	peer_put(dm->ref);
	dm->ref = next;
	eng_post(next->sh, &dm->m);
	return true;
}

static void drop_on_shard(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct drop_mail *dm = (struct drop_mail *)m;
	if (follow_successor(dm))
		return;
	if (dm->ref->conn)
		conn_close(dm->ref->conn, 0, "dropped");
	peer_put(dm->ref);
	free(dm);
}

CRUST_API int crust_drop(struct crust_service *svc, const struct crust_peer_id *peer)
{
	return post_to_peer(svc, peer, drop_on_shard);
}

static void maintain_on_shard(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct drop_mail *dm = (struct drop_mail *)m;
	if (follow_successor(dm))
		return;
	if (dm->ref->conn)
		dm->ref->conn->maintained = true;
	peer_put(dm->ref);
	free(dm);
}

/* Run fn on the shard of peer's connection with its ref. */
static int post_to_peer(struct crust_service *svc, const struct crust_peer_id *peer, eng_mail_fn fn)
{
	struct peer_ref *ref = peer_lookup(svc, peer);
	if (!ref)
		return -ENOTCONN;
	struct drop_mail *dm = malloc(sizeof(*dm));
	if (!dm) {
		peer_put(ref);
		return -ENOMEM;
	}
	dm->m.fn = fn;
	dm->ref = ref;
	eng_post(ref->sh, &dm->m);
	return 0;
}

CRUST_API int crust_maintain(struct crust_service *svc, const struct crust_peer_id *peer)
{
	return post_to_peer(svc, peer, maintain_on_shard);
}

bool svc_blacklisted_addr(struct crust_service *svc, const struct sockaddr_storage *addr)
{
	return blacklist_has_addr(&svc->blacklist, addr);
}

struct enforce_mail {
	struct eng_mail m;
	struct crust_service *svc;
};

/* Close this shard's connections that the blacklist now matches. */
static void enforce_on_shard(struct shard *sh, struct eng_mail *m)
{
	struct enforce_mail *em = (struct enforce_mail *)m;
	struct crust_service *svc = em->svc;
	for (struct p2p_conn *pc = svc->shards[sh->id].conns, *next; pc; pc = next) {
		next = pc->next;
		if (pc->state == CONN_CLOSING || !pc->tc)
			continue;
		bool hit = svc_blacklisted_addr(svc, &pc->tc->remote) ||
			   (pc->ref && blacklist_has_peer(&svc->blacklist, &pc->ref->id));
		if (hit)
			conn_close(pc, -EPERM, "blacklisted");
	}
	free(em);
}

CRUST_API int crust_blacklist(struct crust_service *svc, const char *peer_or_addr)
{
	struct crust_peer_id id;
	struct sockaddr_storage addr;
	bool is_peer;
	if (!svc || blacklist_parse(peer_or_addr, &id, &addr, &is_peer) < 0)
		return -EINVAL;
	int err = is_peer ? blacklist_add_peer(&svc->blacklist, &id)
			  : blacklist_add_addr(&svc->blacklist, &addr);
	if (err)
		return err;
	for (unsigned i = 0; i < svc->eng->nshards; i++) {
		struct enforce_mail *em = malloc(sizeof(*em));
		if (!em)
			return -ENOMEM;
		em->m.fn = enforce_on_shard;
		em->svc = svc;
		eng_post(&svc->eng->shards[i], &em->m);
	}
	return 0;
}

static int add_endpoint(struct crust_endpoint *out, size_t n, int got, const struct sockaddr *sa,
			socklen_t len, uint16_t port, enum crust_transport t)
{
	if ((size_t)got >= n)
		return got;
	memset(&out[got], 0, sizeof(out[got]));
	out[got].transport = t;
	memcpy(&out[got].addr, sa, len);
	out[got].addrlen = len;
	eng_addr_set_port(&out[got].addr, port);
	return got + 1;
}

static bool is_unspecified(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* The bound address, or every interface address of its family, with port and transport t. */
static int add_transport(struct crust_service *svc, struct crust_endpoint *out, size_t n, int got,
			 uint16_t port, enum crust_transport t)
{
	if (!port)
		return got;
	if (!is_unspecified(&svc->bind_addr))
		return add_endpoint(out, n, got, (struct sockaddr *)&svc->bind_addr, svc->bind_len,
				    port, t);
	struct ifaddrs *ifa;
	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != svc->bind_addr.ss_family)
			continue;
		socklen_t len = i->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
								   : sizeof(struct sockaddr_in6);
		got = add_endpoint(out, n, got, i->ifa_addr, len, port, t);
	}
	freeifaddrs(ifa);
	return got;
}

int svc_local_endpoints(struct crust_service *svc, struct crust_endpoint *out, size_t n)
{
	/* TCP endpoints first (callers asking for one get TCP), then reliable UDP */
	int got = add_transport(svc, out, n, 0, svc->tcp_port, CRUST_TRANSPORT_TCP);
	if (got < 0)
		return got;
	return add_transport(svc, out, n, got, svc->rudp_port, CRUST_TRANSPORT_RUDP);
}

CRUST_API int crust_own_endpoints(struct crust_service *svc, struct crust_endpoint *out, size_t n)
{
	int got = svc_local_endpoints(svc, out, n);
	if (got >= 0)
		got = rdv_external_endpoints(svc, out, n, got);
	return got < 0 ? got : portmap_endpoints(svc, out, n, got);
}

CRUST_API int crust_peers(struct crust_service *svc, struct crust_peer_id *out, size_t n)
{
	return peer_list(svc, out, n);
}

CRUST_API void crust_stats(struct crust_service *svc, struct crust_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < svc->eng->nshards; i++) {
		struct shard *sh = &svc->eng->shards[i];
		struct p2p_shard *ps = &svc->shards[i];
		out->rx_bytes += atomic_load(&sh->stats.rx_bytes);
		out->tx_bytes += atomic_load(&sh->stats.tx_bytes);
		out->rx_recv_calls += atomic_load(&sh->stats.rx_calls);
		out->tx_send_calls += atomic_load(&sh->stats.tx_calls);
		out->rx_enobufs += atomic_load(&sh->stats.rx_enobufs);
		out->rx_pauses += atomic_load(&sh->stats.rx_pauses);
		out->tx_zc_sends += atomic_load(&sh->stats.tx_zc_sends);
		out->tx_zc_copied += atomic_load(&sh->stats.tx_zc_copied);
		out->rx_msgs += atomic_load(&ps->rx_msgs);
		out->tx_msgs += atomic_load(&ps->tx_msgs);
		out->live_conns += atomic_load(&ps->nconns);
		out->live_sockets += atomic_load(&sh->stats.live_sockets);
		out->live_timers += atomic_load(&sh->stats.live_timers);
		/* buffers already given back but not yet taken in by an idle shard are not out */
		uint64_t out_now = atomic_load(&sh->stats.rx_buffers_out);
		uint64_t back = atomic_load(&sh->rx.returned_n);
		out->rx_buffers_out += out_now > back ? out_now - back : 0;
		out->rx_held_bytes += atomic_load(&sh->rx.heap_held);
	}
	int64_t msgs = eng_msgs_live();
	out->live_msgs = msgs > 0 ? (uint64_t)msgs : 0;
	beacon_stats(svc, out);
	struct tp_stats ts = { 0 };
	if (svc->rudp && svc->rudp->vt->stats)
		svc->rudp->vt->stats(svc->rudp, &ts);
	out->udp_rx_packets = ts.rx_packets;
	out->udp_tx_packets = ts.tx_packets;
	out->udp_bad_packets = ts.bad_packets;
	out->udp_auth_failures = ts.auth_failures;
	out->udp_unknown_cid = ts.unknown_cid;
	out->udp_lost_packets = ts.lost_packets;
	out->udp_retx_bytes = ts.retx_bytes;
	out->udp_retries_sent = ts.retries_sent;
	out->udp_rcvbuf_drops = ts.kernel_drops;
	out->udp_dup_packets = ts.dup_packets;
	out->udp_late_packets = ts.late_packets;
	pthread_rwlock_rdlock(&svc->peers_lock);
	out->connections = svc->npeers;
	pthread_rwlock_unlock(&svc->peers_lock);
}
