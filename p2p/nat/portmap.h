/*
 * portmap.h - asking the gateway to open our listener ports: UPnP IGD
 * (upnp.c, miniupnpc), PCP (pcp_client.c, our codec pcp.c) and NAT-PMP
 * (natpmp.c, libnatpmp), driven by one thread per service (portmap.c).
 *
 * Threads: the portmap thread does every blocking exchange (discovery,
 * map, refresh, delete). Shard threads and user threads only read the
 * mapped endpoints, under the portmap lock (portmap_endpoints,
 * portmap_came_through). Nothing here runs on a shard's hot path.
 */
#ifndef CRUST_P2P_NAT_PORTMAP_H
#define CRUST_P2P_NAT_PORTMAP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "crust.h"

#define PORTMAP_LEASE_DEFAULT_S 3600u
#define PORTMAP_WHY_LEN 96u

struct crust_service;

/* One gateway session of one method (the method's own state lives behind it). */
struct pm_gateway {
	struct in_addr gw;              /* the gateway (PCP, NAT-PMP) */
	struct in_addr local;           /* our address toward it: the mapping's internal client */
	void *priv;                     /* the method's state */
};

/* What a successful map gave. */
struct pm_mapped {
	struct in_addr ext_ip;
	uint16_t ext_port;
	uint32_t lease_s;               /* 0 = permanent (an IGD that only has those) */
	bool double_nat;                /* the gateway's external address is private or reserved */
};

/*
 * A method: open() finds a gateway that answers it (bounded, a few
 * seconds at most) or fails with why filled; map() asks for ext_port
 * (0 = any) toward internal port; unmap() deletes; close() frees. All
 * return 0 or -errno, and fill why on failure ("error 718 ConflictInMappingEntry").
 * Called on the portmap thread only.
 */
struct pm_method {
	const char *name;               /* "upnp", "pcp", "natpmp" */
	int (*open)(struct pm_gateway *g, char *why, size_t whylen);
	int (*map)(struct pm_gateway *g, bool tcp, uint16_t port, uint16_t ext_port,
		   uint32_t lease_s, struct pm_mapped *out, char *why, size_t whylen);
	int (*unmap)(struct pm_gateway *g, bool tcp, uint16_t port, uint16_t ext_port);
	void (*close)(struct pm_gateway *g);
};

extern const struct pm_method pm_upnp, pm_pcp, pm_natpmp;

/* The IPv4 address is private, shared, loopback, link-local, or reserved for tests. */
bool pm_ipv4_is_reserved(struct in_addr a);

/* portmap.c, the service's side. */
/* At crust_start_listening: start the thread unless off (config) or bound to loopback. */
int portmap_start(struct crust_service *svc);
/* The config's port_mapping names a method (or is NULL); -EINVAL if not. */
int portmap_check_config(const struct crust_config *c);
/* At crust_service_free, before the shards stop: delete the mappings, join the thread. */
void portmap_stop(struct crust_service *svc);
/* After the shards stopped (they read the endpoints): free. */
void portmap_free(struct crust_service *svc);
/* Any thread: append the mapped endpoints (TCP, then UDP) to out; the new count. */
int portmap_endpoints(struct crust_service *svc, struct crust_endpoint *out, size_t n, int got);
/*
 * Any thread: an accepted connection from remote on transport t came in
 * through our mapping (a mapping of that transport is up, and remote is on
 * none of our on-link subnets, so it crossed the gateway's forward).
 */
bool portmap_came_through(struct crust_service *svc, enum crust_transport t,
			  const struct sockaddr_storage *remote);

#endif
