/*
 * bootstrap.h - finding the network: candidates from the bootstrap cache,
 * the config's contacts, the LAN beacon and peer exchange; rounds of
 * parallel dials retried with backoff; the cache kept up to date.
 *
 * The service's bootstrap thread owns all of it (the cache file's fsyncs
 * must not stall a shard, and the logic runs a few times a second at
 * most). Shards and the beacon reach it through the functions below,
 * which take its lock briefly and never block on I/O.
 */
#ifndef CRUST_P2P_BOOTSTRAP_H
#define CRUST_P2P_BOOTSTRAP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "crust.h"
#include "cache.h"

struct crust_service;

enum boot_source { BOOT_CACHE, BOOT_CONTACT, BOOT_BEACON, BOOT_PEX };

/* Defaults of the bootstrap fields of cfg (0 = default). */
void boot_fill_defaults(struct crust_config *cfg);

/* crust_service_new: open the cache, copy the contacts, start the thread. */
int boot_new(struct crust_service *svc);
/* crust_service_free, before the shards stop: stop the thread. */
void boot_stop(struct crust_service *svc);
/* crust_service_free, after the shards stopped: free everything. */
void boot_free(struct crust_service *svc);

/*
 * The beacon found a node: a candidate at addr (len bytes, IPv4 or IPv6)
 * with peer id peer_id, over transport t. It is dialed now if the
 * service is bootstrapping, or soon (auto-connect) if it is not connected
 * to that peer and has fewer than auto_connect_max peers. Does not emit
 * peer_discovered (the caller does). Any thread; never blocks on I/O.
 * Returns 1 if the candidate is new, 0 if already known, -errno.
 */
int boot_add_candidate(struct crust_service *svc, const struct sockaddr *addr, socklen_t len,
		       const uint8_t peer_id[32], enum crust_transport t);

/* The same for any source (peer exchange uses BOOT_PEX). */
int boot_add(struct crust_service *svc, const struct crust_endpoint *ep,
	     const struct crust_peer_id *id, enum boot_source src);

/*
 * Shard hooks. boot_on_direct: a connection we dialed to addr is up with
 * peer id (after its new_connection). boot_on_connect_failed: a
 * connect_failed event was emitted.
 */
void boot_on_direct(struct crust_service *svc, const struct sockaddr_storage *addr,
		    enum crust_transport t, const struct crust_peer_id *id);
void boot_on_connect_failed(struct crust_service *svc, const struct crust_event *ev);

/* Up to n entries of the cache as it is now (for peer exchange); any thread. */
size_t boot_cached(struct crust_service *svc, struct cache_entry *out, size_t n);

#endif
