/*
 * rendezvous.c - the node's side of the coordinator (see rendezvous.h):
 * keeping a crust session to it, registering and refreshing, learning
 * our external endpoints, and the STUN client.
 *
 * The session is dialed from our TCP listener's port (SO_REUSEADDR +
 * SO_REUSEPORT), so the address the coordinator sees it come from is
 * the NAT's mapping of the listener port: the public TCP endpoint a peer
 * punches to. The STUN requests go from our UDP socket to the same
 * address and port over UDP; the answer is our public UDP endpoint.
 * Both are reported once (external_endpoint) and again when they change,
 * and listed by crust_own_endpoints. A lost session is redialed with
 * exponential backoff; registrations are refreshed every
 * coordinator_refresh_ms, each refresh also asking STUN again.
 */
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/addr.h"
#include "engine/listener.h"
#include "node.h"
#include "nat/portmap.h"
#include "rendezvous.h"
#include "stun.h"

static bool same_ep(const struct crust_endpoint *a, const struct crust_endpoint *b)
{
	uint8_t ia[16], ib[16];
	return a->transport == b->transport && eng_addr_ip_key(&a->addr, ia) &&
	       eng_addr_ip_key(&b->addr, ib) && !memcmp(ia, ib, 16) &&
	       eng_addr_port(&a->addr) == eng_addr_port(&b->addr);
}

static void emit_external(struct crust_service *svc, const struct crust_endpoint *ep,
			  const char *how)
{
	struct crust_event ev;
	event_init(&ev, CRUST_EV_EXTERNAL_ENDPOINT);
	ev.transport = ep->transport;
	ev.addr = ep->addr;
	ev.port = eng_addr_port(&ep->addr);
	snprintf(ev.reason, sizeof(ev.reason), "%s", how);
	event_emit(svc, &ev);
	char a[CRUST_ADDRSTRLEN];
	crust_addr_format(&ep->addr, a, sizeof(a));
	svc_log(svc, CRUST_LOG_INFO, "external %s endpoint %s (%s)",
		crust_transport_name(ep->transport), a, how);
}

/* Record an external endpoint; true if it is new or changed. */
static bool learn(struct rendezvous *r, const struct crust_endpoint *ep)
{
	bool tcp = ep->transport == CRUST_TRANSPORT_TCP;
	pthread_mutex_lock(&r->lock);
	bool *has = tcp ? &r->has_ext_tcp : &r->has_ext_udp;
	struct crust_endpoint *cur = tcp ? &r->ext_tcp : &r->ext_udp;
	bool changed = !*has || !same_ep(cur, ep);
	*has = true;
	*cur = *ep;
	pthread_mutex_unlock(&r->lock);
	return changed;
}

/* --- our own endpoints ---------------------------------------------------------- */

static bool is_loopback(const struct sockaddr_storage *ss)
{
	uint8_t ip[16];
	static const uint8_t v6_lo[16] = { [15] = 1 };
	if (!eng_addr_ip_key(ss, ip))
		return false;
	if (ip[10] == 0xff && ip[11] == 0xff && !memcmp(ip, "\0\0\0\0\0\0\0\0\0\0", 10))
		return ip[12] == 127;
	return !memcmp(ip, v6_lo, 16);
}

/*
 * What we register: our listeners' endpoints on our addresses (TCP, then
 * reliable UDP), then the STUN-learned UDP endpoint.
 * Loopback only when the coordinator is on loopback too.
 */
static unsigned local_candidates(struct rendezvous *r, struct crust_endpoint *out)
{
	struct crust_endpoint own[RDV_MAX_EPS];
	int n = svc_local_endpoints(r->svc, own, RDV_MAX_EPS);
	bool lo_ok = is_loopback(&r->coord.addr);
	unsigned k = 0;
	for (int i = 0; i < n && k < RDV_MAX_EPS - 2; i++) {
		if (is_loopback(&own[i].addr) && !lo_ok)
			continue;
		out[k++] = own[i];
	}
	pthread_mutex_lock(&r->lock);
	if (r->has_ext_udp)
		out[k++] = r->ext_udp;
	/* a second mapping on another port: our NAT is symmetric, and the two ports tell a
	 * peer how it moves (it predicts our next ones from them: punch.c) */
	if (r->has_ext_udp && r->has_ext_udp2 &&
	    eng_addr_port(&r->ext_udp2.addr) != eng_addr_port(&r->ext_udp.addr))
		out[k++] = r->ext_udp2;
	pthread_mutex_unlock(&r->lock);
	/* the gateway's port mappings: a peer reaches us there without punching */
	return (unsigned)portmap_endpoints(r->svc, out, RDV_MAX_EPS, (int)k);
}

int rdv_external_endpoints(struct crust_service *svc, struct crust_endpoint *out, size_t n,
			   int got)
{
	struct rendezvous *r = svc->rdv;
	if (!r)
		return got;
	pthread_mutex_lock(&r->lock);
	if (r->has_ext_tcp && (size_t)got < n)
		out[got++] = r->ext_tcp;
	if (r->has_ext_udp && (size_t)got < n)
		out[got++] = r->ext_udp;
	pthread_mutex_unlock(&r->lock);
	return got;
}

/* --- the session ---------------------------------------------------------------- */

bool rdv_send(struct rendezvous *r, const struct rdv_msg *m)
{
	struct p2p_conn *pc = r->session;
	if (!pc || pc->state != CONN_UP)
		return false;
	uint8_t out[RDV_MSG_MAX];
	conn_send_ctrl_data(pc, out, rdv_encode(m, out));
	return true;
}

static void send_register(struct rendezvous *r)
{
	struct rdv_msg m = { .code = RDV_REGISTER };
	m.neps = local_candidates(r, m.eps);
	rdv_send(r, &m);
}

/* Dial the coordinator from our listener's port, on shard 0. */
static void dial(struct rendezvous *r)
{
	struct crust_service *svc = r->svc;
	struct p2p_conn *pc = conn_new(svc, r->sh, true);
	if (!pc)
		return;
	pc->rdv_session = true;
	struct sockaddr_storage local = svc->bind_addr;
	eng_addr_set_port(&local, svc->tcp_port);
	struct tp_conn *tc = NULL;
	int err = svc->tcp->vt->connect_from(svc->tcp, r->sh, (struct sockaddr *)&local,
					     svc->bind_len, (struct sockaddr *)&r->coord.addr,
					     r->coord.addrlen, pc, &tc);
	if (err) {
		svc_log(svc, CRUST_LOG_WARN, "coordinator: dial: %s", strerror(-err));
		pc->stopping = true;
		conn_discard(pc, r->sh);
		return;
	}
	pc->tc = tc;
	r->dialing = true;
}

static void stun_send(struct rendezvous *r);
static void stun_round(struct rendezvous *r);

static void tick_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct rendezvous *r = ctx;
	uint32_t next = r->svc->cfg.coordinator_refresh_ms;
	if (!r->session && !r->dialing) {
		dial(r);
		next = r->backoff_ms;
		r->backoff_ms = r->backoff_ms * 2 > RDV_REDIAL_MAX_MS ? RDV_REDIAL_MAX_MS
								      : r->backoff_ms * 2;
	} else if (r->session) {
		send_register(r);
	}
	if (!eng_timer_armed(&r->stun_timer))
		stun_round(r);
	eng_timer_arm(&r->sh->timers, &r->tick, next);
}

void rdv_conn_up(struct p2p_conn *pc)
{
	struct rendezvous *r = pc->svc->rdv;
	if (!r || !pc->rdv_session)
		return;
	r->session = pc;
	r->dialing = false;
	r->backoff_ms = RDV_REDIAL_MIN_MS;
	pc->maintained = true; /* kept for as long as we run, not a provisional peer */
	send_register(r);
}

void rdv_conn_closed(struct p2p_conn *pc)
{
	struct rendezvous *r = pc->svc->rdv;
	if (!r || !pc->rdv_session)
		return;
	if (r->session == pc)
		r->session = NULL;
	r->dialing = false;
	pthread_mutex_lock(&r->lock);
	r->registered = false;
	pthread_mutex_unlock(&r->lock);
	if (!pc->stopping && r->redial_now) {
		r->redial_now = false;
		eng_timer_arm(&r->sh->timers, &r->tick, 0);
	} else if (!pc->stopping) {
		svc_log(pc->svc, CRUST_LOG_INFO, "coordinator session lost; redial in %u ms",
			r->backoff_ms);
		eng_timer_arm(&r->sh->timers, &r->tick, r->backoff_ms);
	}
}

/* Our observed endpoint is none of our own addresses: a NAT is between us and the coordinator. */
static bool behind_nat(struct rendezvous *r, const struct crust_endpoint *observed)
{
	struct crust_endpoint own[RDV_MAX_EPS];
	int n = svc_local_endpoints(r->svc, own, RDV_MAX_EPS);
	for (int i = 0; i < n; i++)
		if (own[i].transport == CRUST_TRANSPORT_TCP && same_ep(&own[i], observed))
			return false;
	return true;
}

static void on_registered(struct rendezvous *r, const struct rdv_msg *m)
{
	struct crust_endpoint obs = m->eps[0];
	obs.transport = CRUST_TRANSPORT_TCP;
	bool natted = behind_nat(r, &obs);
	bool changed = learn(r, &obs);
	pthread_mutex_lock(&r->lock);
	bool first = !r->registered;
	r->registered = true;
	r->natted = natted;
	pthread_mutex_unlock(&r->lock);
	if (changed)
		emit_external(r->svc, &obs, "coordinator");
	for (unsigned i = 1; i < m->neps && r->nstun < 2; i++) {
		uint8_t a[16], b[16];
		eng_addr_ip_key(&m->eps[i].addr, a);
		eng_addr_ip_key(&r->coord.addr, b);
		if (memcmp(a, b, 16) && m->eps[i].addr.ss_family == r->coord.addr.ss_family) {
			r->stun[1].to = m->eps[i];
			r->nstun = 2;
			stun_round(r); /* ask the new address too, now */
		}
	}
	if (first)
		svc_log(r->svc, CRUST_LOG_INFO, "registered with the coordinator (ttl %u ms)",
			m->ttl_ms);
}

void rdv_control(struct p2p_conn *pc, const uint8_t *p, uint32_t len)
{
	struct rendezvous *r = pc->svc->rdv;
	if (!r || pc != r->session) {
		svc_log(pc->svc, CRUST_LOG_DEBUG, "rendezvous message from a non-coordinator: ignored");
		return;
	}
	struct rdv_msg m;
	if (rdv_decode(p, len, &m) < 0) {
		conn_abuse(pc, -EBADMSG, "malformed rendezvous message");
		return;
	}
	switch (m.code) {
	case RDV_REGISTERED: on_registered(r, &m); break;
	case RDV_PUNCH: punch_on_punch(r, &m); break;
	case RDV_REFUSED:
		if (m.req)
			punch_on_refused(r, &m);
		else
			svc_log(pc->svc, CRUST_LOG_WARN, "coordinator refused: %s", m.reason);
		break;
	default:
		break; /* register / reach are the coordinator's to read */
	}
}

/* --- STUN client ----------------------------------------------------------------- */

/*
 * Requests leave from our reliable-UDP listener's socket (the transport's
 * send_datagram), so the mapping STUN reports is the one our reliable-UDP
 * connections and punch probes use. Answers come back through the
 * transport's datagram hook on whichever shard the kernel picks, and are
 * handed to shard 0.
 */
static void stun_timer_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	stun_send(ctx);
}

static void stun_send(struct rendezvous *r)
{
	struct transport *t = r->svc->rudp;
	if (r->stun_tries >= RDV_STUN_TRIES) {
		svc_log(r->svc, CRUST_LOG_INFO, "STUN: no answer from the coordinator");
		return;
	}
	bool any = false;
	for (unsigned i = 0; i < r->nstun; i++) {
		struct rdv_stun_target *st = &r->stun[i];
		if (st->answered)
			continue;
		any = true;
		uint8_t req[32];
		size_t n = stun_encode_request(req, sizeof(req), st->txid, true);
		int err = t && t->vt->send_datagram
				  ? t->vt->send_datagram(t, r->sh, (struct sockaddr *)&st->to.addr,
							 st->to.addrlen, req, n)
				  : -ENOTSUP;
		if (err == -ENOTCONN || err == -ENOTSUP) {
			svc_log(r->svc, CRUST_LOG_INFO, "STUN client off: no reliable-UDP listener");
			return;
		}
	}
	if (!any)
		return;
	/* RFC 8489 6.2.1: retransmit with doubling intervals */
	eng_timer_arm(&r->sh->timers, &r->stun_timer, 500u << r->stun_tries);
	r->stun_tries++;
}

/* A new round: every target asked again with a fresh transaction id. */
static void stun_round(struct rendezvous *r)
{
	for (unsigned i = 0; i < r->nstun; i++) {
		randombytes_buf(r->stun[i].txid, sizeof(r->stun[i].txid));
		r->stun[i].answered = false;
	}
	r->stun_tries = 0;
	stun_send(r);
}

static void stun_answer(struct rendezvous *r, const uint8_t *p, uint32_t len)
{
	struct stun_msg m;
	if (stun_parse(p, len, &m, NULL) < 0 || m.type != STUN_BINDING_SUCCESS || !m.has_cookie)
		return;
	unsigned i = 0;
	while (i < r->nstun && (r->stun[i].answered || memcmp(m.txid, r->stun[i].txid, 12)))
		i++;
	if (i == r->nstun)
		return; /* not the answer to a request of ours */
	struct crust_endpoint ep = { .transport = CRUST_TRANSPORT_RUDP };
	ep.addr = m.xor_mapped.ss_family ? m.xor_mapped : m.mapped;
	if (!ep.addr.ss_family)
		return;
	ep.addrlen = ep.addr.ss_family == AF_INET ? sizeof(struct sockaddr_in)
						  : sizeof(struct sockaddr_in6);
	r->stun[i].answered = true;
	bool done = true;
	for (unsigned k = 0; k < r->nstun; k++)
		done = done && r->stun[k].answered;
	if (done)
		eng_timer_cancel(&r->sh->timers, &r->stun_timer);
	if (i == 0 && learn(r, &ep)) {
		emit_external(r->svc, &ep, "stun");
		send_register(r); /* the coordinator hands it to peers from now on */
	} else if (i == 1) {
		pthread_mutex_lock(&r->lock);
		bool changed = !r->has_ext_udp2 || !same_ep(&r->ext_udp2, &ep);
		r->ext_udp2 = ep;
		r->has_ext_udp2 = true;
		pthread_mutex_unlock(&r->lock);
		if (changed)
			send_register(r);
	}
}

struct dgram_mail {
	struct eng_mail m;
	struct rendezvous *r;
	struct sockaddr_storage from;
	uint32_t len;
	uint8_t data[];
};

static void dgram_on_shard0(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct dgram_mail *dm = (struct dgram_mail *)m;
	if (stun_is_message(dm->data, dm->len))
		stun_answer(dm->r, dm->data, dm->len);
	else
		punch_probe(dm->r, &dm->from, dm->data, dm->len, NULL);
	free(dm);
}

void rdv_datagram(struct crust_service *svc, struct shard *sh,
		  const struct sockaddr_storage *from, socklen_t fromlen, const uint8_t *p,
		  uint32_t len, void *sock_user)
{
	(void)fromlen;
	struct rendezvous *r = svc->rdv;
	if (!r || len > RDV_DGRAM_MAX)
		return;
	if (sock_user) {
		/* an extra socket of a birthday punch: on shard 0, its pointer only valid now */
		if (sh == r->sh)
			punch_probe(r, from, p, len, sock_user);
		return;
	}
	struct dgram_mail *dm = malloc(sizeof(*dm) + len);
	if (!dm)
		return;
	dm->m.fn = dgram_on_shard0;
	dm->r = r;
	dm->from = *from;
	dm->len = len;
	memcpy(dm->data, p, len);
	if (sh == r->sh) {
		dgram_on_shard0(sh, &dm->m);
		return;
	}
	if (!stun_is_message(p, len))
		punch_probe_seen(r, from, p, len);
	eng_post(r->sh, &dm->m);
}

/* --- listeners moved ------------------------------------------------------------ */

static void moved_on_shard0(struct shard *sh, struct eng_mail *m)
{
	struct rendezvous *r = container_of(m, struct rendezvous, moved_mail);
	atomic_store(&r->moved_posted, false);
	if (atomic_load(&sh->stop))
		return;
	/* the new UDP socket has a new mapping: learn it (its answer re-registers) */
	eng_timer_cancel(&sh->timers, &r->stun_timer);
	stun_round(r);
	/* the session left from the old TCP port, whose mapping the coordinator hands out */
	if (r->session && r->session->state != CONN_CLOSING) {
		r->redial_now = true;
		svc_log(r->svc, CRUST_LOG_INFO,
			"listeners moved: re-registering with the coordinator from the new port");
		conn_close(r->session, 0, "listeners moved to a new port");
	}
}

void rdv_listeners_moved(struct crust_service *svc)
{
	struct rendezvous *r = svc->rdv;
	if (!r || atomic_exchange(&r->moved_posted, true))
		return; /* none, or a move is already on its way */
	r->moved_mail.fn = moved_on_shard0;
	eng_post(r->sh, &r->moved_mail);
}

/* --- lifecycle ------------------------------------------------------------------ */

static void nudge_on_shard(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct rendezvous *r = container_of(m, struct rendezvous, nudge_mail);
	atomic_store(&r->nudge_pending, false);
	send_register(r); /* does nothing while the session is down */
}

void rdv_candidates_changed(struct crust_service *svc)
{
	struct rendezvous *r = svc->rdv;
	if (r && !atomic_exchange(&r->nudge_pending, true))
		eng_post(r->sh, &r->nudge_mail); /* one mail, reused: nothing to free */
}

static void start_on_shard(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct rendezvous *r = container_of(m, struct rendezvous, start_mail);
	tick_cb(&r->tick, r);
}

int rdv_start(struct crust_service *svc)
{
	if (!svc->cfg.coordinator || svc->rdv || svc->coord)
		return 0;
	struct rendezvous *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	int err = crust_endpoint_parse(svc->cfg.coordinator, &r->coord);
	if (err || r->coord.addr.ss_family != svc->bind_addr.ss_family) {
		free(r);
		return -EINVAL;
	}
	r->coord.transport = CRUST_TRANSPORT_TCP;
	r->stun[0].to = r->coord;
	r->nstun = 1;
	r->svc = svc;
	r->sh = &svc->eng->shards[0];
	r->backoff_ms = RDV_REDIAL_MIN_MS;
	pthread_mutex_init(&r->lock, NULL);
	eng_timer_init(&r->tick, tick_cb, r);
	eng_timer_init(&r->stun_timer, stun_timer_cb, r);
	svc->rdv = r;
	r->start_mail.fn = start_on_shard;
	r->nudge_mail.fn = nudge_on_shard;
	eng_post(r->sh, &r->start_mail);
	return 0;
}

void rdv_stop_shard(struct crust_service *svc, struct shard *sh)
{
	struct rendezvous *r = svc->rdv;
	if (!r || sh != r->sh)
		return;
	eng_timer_cancel(&sh->timers, &r->tick);
	eng_timer_cancel(&sh->timers, &r->stun_timer);
	punch_stop(r);
}

void rdv_free(struct crust_service *svc)
{
	struct rendezvous *r = svc->rdv;
	if (!r)
		return;
	punch_free_all(r);
	pthread_mutex_destroy(&r->lock);
	free(r);
	svc->rdv = NULL;
}
