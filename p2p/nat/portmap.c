/*
 * portmap.c - the port-mapping thread: find a gateway that answers one
 * of the methods (in config order: UPnP IGD, then PCP, then NAT-PMP for
 * "auto"), map the TCP and reliable-UDP listener ports (asking for the
 * same external port, so an address with our advertised port is right),
 * report each mapped endpoint (external_endpoint, source = the method,
 * "(double NAT)" when the gateway's own address is private or reserved),
 * renew at half the lease, follow the listeners when they move, and
 * delete the mappings at crust_service_free. A gateway that is missing,
 * refuses or answers garbage gives one port_mapping event with every
 * method's reason, and another try after RETRY_MIN_S (doubling to
 * RETRY_MAX_S); the node goes on with its other ways in.
 *
 * Locking: the thread owns the gateway session and the mapping table.
 * The mapped endpoints and our on-link subnets are copied under lock for
 * the shard and user threads. Events are emitted with the lock released.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/addr.h"
#include "p2p/node.h"
#include "p2p/rendezvous.h"
#include "portmap.h"

#define RETRY_MIN_S 60u
#define RETRY_MAX_S 900u
#define TICK_MS 1000u                /* listener ports are checked this often */
#define MAX_SUBNETS 16u
#define REASONS_LEN 320u

enum { UDP = 0, TCP = 1 };

struct mapping {
	bool up;
	uint16_t port, ext_port;
	uint32_t lease_s;
	uint64_t renew_ms;           /* 0 = never (a permanent mapping) */
};

struct subnet {
	uint32_t net, mask;          /* network order */
};

struct portmap {
	struct crust_service *svc;
	pthread_t thread;
	bool thread_up;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;                       /* under lock */
	/* the thread's own */
	const struct pm_method *order[3];
	unsigned norder;
	const struct pm_method *m;       /* the method in use, NULL while none */
	struct pm_gateway g;
	struct mapping map[2];           /* [UDP], [TCP] */
	uint32_t retry_s;
	uint64_t next_try_ms;
	/* under lock: read by shard and user threads */
	bool has[2];
	struct crust_endpoint ext[2];
	struct subnet subnets[MAX_SUBNETS];
	unsigned nsubnets;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool pm_ipv4_is_reserved(struct in_addr a)
{
	static const struct { uint32_t net; unsigned bits; } r[] = {
		{ 0x00000000, 8 }, { 0x0a000000, 8 }, { 0x64400000, 10 }, { 0x7f000000, 8 },
		{ 0xa9fe0000, 16 }, { 0xac100000, 12 }, { 0xc0000000, 24 }, { 0xc0000200, 24 },
		{ 0xc0a80000, 16 }, { 0xc6120000, 15 }, { 0xc6336400, 24 }, { 0xcb007100, 24 },
		{ 0xf0000000, 4 },
	};
	uint32_t h = ntohl(a.s_addr);
	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		if ((h & ~(0xffffffffu >> r[i].bits)) == r[i].net)
			return true;
	return false;
}

/* --- what other threads read --------------------------------------------------- */

int portmap_endpoints(struct crust_service *svc, struct crust_endpoint *out, size_t n, int got)
{
	struct portmap *p = svc->portmap;
	if (!p)
		return got;
	pthread_mutex_lock(&p->lock);
	for (int i = TCP; i >= UDP; i--)
		if (p->has[i] && (size_t)got < n)
			out[got++] = p->ext[i];
	pthread_mutex_unlock(&p->lock);
	return got;
}

bool portmap_came_through(struct crust_service *svc, enum crust_transport t,
			  const struct sockaddr_storage *remote)
{
	struct portmap *p = svc->portmap;
	if (!p || remote->ss_family != AF_INET)
		return false;
	uint32_t ip = ((const struct sockaddr_in *)remote)->sin_addr.s_addr;
	pthread_mutex_lock(&p->lock);
	bool through = p->has[t == CRUST_TRANSPORT_TCP ? TCP : UDP];
	for (unsigned i = 0; through && i < p->nsubnets; i++)
		if ((ip & p->subnets[i].mask) == p->subnets[i].net)
			through = false;
	pthread_mutex_unlock(&p->lock);
	return through;
}

/* Our IPv4 subnets, to tell a peer on our LAN from one that came through the gateway. */
static void learn_subnets(struct portmap *p)
{
	struct ifaddrs *ifa;
	if (getifaddrs(&ifa) < 0)
		return;
	pthread_mutex_lock(&p->lock);
	p->nsubnets = 0;
	for (struct ifaddrs *i = ifa; i && p->nsubnets < MAX_SUBNETS; i = i->ifa_next) {
		if (!i->ifa_addr || !i->ifa_netmask || i->ifa_addr->sa_family != AF_INET)
			continue;
		uint32_t a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
		uint32_t m = ((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr;
		p->subnets[p->nsubnets++] = (struct subnet){ a & m, m };
	}
	pthread_mutex_unlock(&p->lock);
	freeifaddrs(ifa);
}

/* --- events --------------------------------------------------------------------- */

static void emit_mapping(struct portmap *p, int err, const char *reason,
			 const struct crust_endpoint *ep)
{
	struct crust_event ev;
	event_init(&ev, CRUST_EV_PORT_MAPPING);
	ev.error = err;
	ev.via = CRUST_VIA_UPNP;
	if (ep) {
		ev.transport = ep->transport;
		ev.addr = ep->addr;
		ev.port = eng_addr_port(&ep->addr);
	}
	snprintf(ev.reason, sizeof(ev.reason), "%s", reason);
	event_emit(p->svc, &ev);
	svc_log(p->svc, err ? CRUST_LOG_WARN : CRUST_LOG_INFO, "port mapping: %s", reason);
}

static void emit_external(struct portmap *p, const struct crust_endpoint *ep, bool double_nat)
{
	struct crust_event ev;
	event_init(&ev, CRUST_EV_EXTERNAL_ENDPOINT);
	ev.transport = ep->transport;
	ev.addr = ep->addr;
	ev.port = eng_addr_port(&ep->addr);
	snprintf(ev.reason, sizeof(ev.reason), "%s%s", p->m->name, double_nat ? " (double NAT)" : "");
	event_emit(p->svc, &ev);
}

/* --- mapping -------------------------------------------------------------------- */

static uint16_t listener_port(struct portmap *p, int i)
{
	return i == TCP ? atomic_load(&p->svc->tcp_port) : atomic_load(&p->svc->rudp_port);
}

static void publish(struct portmap *p, int i, const struct pm_mapped *got)
{
	struct crust_endpoint ep;
	memset(&ep, 0, sizeof(ep)); /* padding too: endpoints are compared with memcmp */
	ep.transport = i == TCP ? CRUST_TRANSPORT_TCP : CRUST_TRANSPORT_RUDP;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ep.addr;
	sin->sin_family = AF_INET;
	sin->sin_addr = got->ext_ip;
	sin->sin_port = htons(got->ext_port);
	ep.addrlen = sizeof(*sin);
	pthread_mutex_lock(&p->lock);
	bool changed = !p->has[i] || memcmp(&p->ext[i], &ep, sizeof(ep));
	p->has[i] = true;
	p->ext[i] = ep;
	pthread_mutex_unlock(&p->lock);
	if (changed) {
		emit_external(p, &ep, got->double_nat);
		rdv_candidates_changed(p->svc); /* the coordinator hands it out from now on */
	}
}

static void withdraw(struct portmap *p, int i)
{
	pthread_mutex_lock(&p->lock);
	p->has[i] = false;
	pthread_mutex_unlock(&p->lock);
	p->map[i].up = false;
}

/* Map (or renew) listener i through the method in use; 0 or -errno with why. */
static int map_one(struct portmap *p, int i, bool renew, char *why, size_t whylen)
{
	struct mapping *mp = &p->map[i];
	uint16_t port = listener_port(p, i);
	if (!port)
		return 0; /* no such listener (reliable UDP failed to bind) */
	struct pm_mapped got = { 0 };
	uint32_t lease = p->svc->cfg.port_mapping_lease_s;
	int err = p->m->map(&p->g, i == TCP, port, renew ? mp->ext_port : 0, lease, &got, why,
			    whylen);
	if (err)
		return err;
	mp->up = true;
	mp->port = port;
	mp->ext_port = got.ext_port;
	mp->lease_s = got.lease_s;
	mp->renew_ms = got.lease_s ? now_ms() + (uint64_t)got.lease_s * 500 : 0;
	publish(p, i, &got);
	char ext[CRUST_ADDRSTRLEN], msg[256];
	crust_addr_format(&p->ext[i].addr, ext, sizeof(ext));
	snprintf(msg, sizeof(msg), "%s: %s %s %s -> port %u, lease %u s%s", p->m->name,
		 renew ? "renewed" : "mapped", i == TCP ? "tcp" : "udp", ext, port, got.lease_s,
		 got.double_nat ? ", double NAT" : "");
	emit_mapping(p, 0, msg, &p->ext[i]);
	return 0;
}

static void unmap_all(struct portmap *p)
{
	for (int i = UDP; i <= TCP; i++) {
		if (!p->map[i].up)
			continue;
		int err = p->m->unmap(&p->g, i == TCP, p->map[i].port, p->map[i].ext_port);
		svc_log(p->svc, err ? CRUST_LOG_WARN : CRUST_LOG_INFO,
			"port mapping: %s: %s port %u %s", p->m->name, i == TCP ? "tcp" : "udp",
			p->map[i].ext_port, err ? "could not be deleted" : "deleted");
		withdraw(p, i);
	}
}

static void drop_method(struct portmap *p)
{
	if (!p->m)
		return;
	p->m->close(&p->g);
	memset(&p->g, 0, sizeof(p->g));
	p->m = NULL;
}

static bool stopping(struct portmap *p)
{
	pthread_mutex_lock(&p->lock);
	bool stop = p->stop;
	pthread_mutex_unlock(&p->lock);
	return stop;
}

/* Try each method in order until one maps the TCP listener (and UDP's, if any). */
static void try_methods(struct portmap *p)
{
	char reasons[REASONS_LEN] = "";
	size_t used = 0;
	int last = -EHOSTUNREACH;
	for (unsigned k = 0; k < p->norder; k++) {
		if (stopping(p))
			return; /* the service is being freed: no more waiting on gateways */
		char why[PORTMAP_WHY_LEN] = "";
		p->m = p->order[k];
		int err = p->m->open(&p->g, why, sizeof(why));
		if (!err)
			err = map_one(p, TCP, false, why, sizeof(why));
		if (!err && (err = map_one(p, UDP, false, why, sizeof(why))) != 0)
			unmap_all(p);
		if (!err) {
			learn_subnets(p);
			p->retry_s = RETRY_MIN_S;
			return;
		}
		last = err;
		used += (size_t)snprintf(reasons + used, sizeof(reasons) - used, "%s%s",
					 used ? "; " : "", why[0] ? why : strerror(-err));
		if (used >= sizeof(reasons))
			used = sizeof(reasons) - 1;
		drop_method(p);
	}
	char msg[REASONS_LEN + 64];
	snprintf(msg, sizeof(msg), "no port mapping (retry in %u s): %s", p->retry_s, reasons);
	emit_mapping(p, last, msg, NULL);
	p->next_try_ms = now_ms() + (uint64_t)p->retry_s * 1000;
	p->retry_s = p->retry_s * 2 > RETRY_MAX_S ? RETRY_MAX_S : p->retry_s * 2;
}

/* Renew what is due, follow moved listeners; a failure drops the method for a later retry. */
static void maintain(struct portmap *p)
{
	uint64_t now = now_ms();
	for (int i = UDP; i <= TCP; i++) {
		struct mapping *mp = &p->map[i];
		uint16_t port = listener_port(p, i);
		bool moved = mp->up && port != mp->port;
		bool due = mp->up && mp->renew_ms && now >= mp->renew_ms;
		if (!moved && !due && (mp->up || !port))
			continue;
		if (moved) {
			p->m->unmap(&p->g, i == TCP, mp->port, mp->ext_port);
			withdraw(p, i);
		}
		char why[PORTMAP_WHY_LEN] = "";
		int err = map_one(p, i, due && !moved, why, sizeof(why));
		if (err) {
			char msg[PORTMAP_WHY_LEN + 32];
			snprintf(msg, sizeof(msg), "%s lost: %s", p->m->name, why);
			emit_mapping(p, err, msg, NULL);
			unmap_all(p);
			withdraw(p, i);
			drop_method(p);
			p->next_try_ms = now + (uint64_t)RETRY_MIN_S * 1000;
			return;
		}
	}
}

static uint64_t next_wake(struct portmap *p)
{
	uint64_t t = now_ms() + TICK_MS;
	if (!p->m && p->next_try_ms < t)
		t = p->next_try_ms;
	for (int i = UDP; i <= TCP; i++)
		if (p->m && p->map[i].up && p->map[i].renew_ms && p->map[i].renew_ms < t)
			t = p->map[i].renew_ms;
	return t;
}

static void *thread_main(void *arg)
{
	struct portmap *p = arg;
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		pthread_mutex_unlock(&p->lock);
		if (!p->m && now_ms() >= p->next_try_ms)
			try_methods(p);
		else if (p->m)
			maintain(p);
		uint64_t at = next_wake(p);
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
		uint64_t wait = at > now ? at - now : 0;
		ts.tv_sec += (time_t)(wait / 1000);
		ts.tv_nsec += (long)(wait % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&p->lock);
		if (!p->stop)
			pthread_cond_timedwait(&p->wake, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	if (p->m)
		unmap_all(p);
	drop_method(p);
	return NULL;
}

/* --- lifecycle ------------------------------------------------------------------ */

static bool bound_to_loopback(const struct crust_service *svc)
{
	uint8_t ip[16];
	if (!eng_addr_ip_key(&svc->bind_addr, ip))
		return false;
	static const uint8_t v6_lo[16] = { [15] = 1 };
	return (ip[10] == 0xff && ip[11] == 0xff && ip[12] == 127) || !memcmp(ip, v6_lo, 16);
}

int portmap_check_config(const struct crust_config *c)
{
	const char *m = c->port_mapping;
	if (!m || !strcmp(m, "auto") || !strcmp(m, "off") || !strcmp(m, "upnp") ||
	    !strcmp(m, "pcp") || !strcmp(m, "natpmp"))
		return 0;
	return -EINVAL;
}

static void choose_order(struct portmap *p, const char *m)
{
	if (!m || !strcmp(m, "auto")) {
		p->order[0] = &pm_upnp;
		p->order[1] = &pm_pcp;
		p->order[2] = &pm_natpmp;
		p->norder = 3;
	} else {
		p->order[0] = !strcmp(m, "upnp") ? &pm_upnp : !strcmp(m, "pcp") ? &pm_pcp : &pm_natpmp;
		p->norder = 1;
	}
}

int portmap_start(struct crust_service *svc)
{
	const char *m = svc->cfg.port_mapping;
	if (svc->portmap || (m && !strcmp(m, "off")) || bound_to_loopback(svc) ||
	    svc->bind_addr.ss_family != AF_INET)
		return 0; /* off, already running, or nothing a gateway could forward to */
	struct portmap *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->svc = svc;
	p->retry_s = RETRY_MIN_S;
	choose_order(p, m);
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &ca);
	pthread_condattr_destroy(&ca);
	svc->portmap = p;
	int err = -pthread_create(&p->thread, NULL, thread_main, p);
	p->thread_up = !err;
	return err;
}

void portmap_stop(struct crust_service *svc)
{
	struct portmap *p = svc->portmap;
	if (!p)
		return;
	if (p->thread_up) {
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
		p->thread_up = false;
	}
}

void portmap_free(struct crust_service *svc)
{
	struct portmap *p = svc->portmap;
	if (!p)
		return;
	portmap_stop(svc);
	svc->portmap = NULL;
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
