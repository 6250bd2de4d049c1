/*
 * beacon.h - the LAN beacon: finds crust peers on the local links.
 *
 * Runs on shard 0 of the service's engine (engine/udp.c sockets,
 * engine/timer.c timers; no thread of its own). It announces this node's
 * peer id and listener ports in small signed datagrams (beacon_wire.h) to
 * UDP port cfg.beacon_port, by IPv4 broadcast on every broadcast-capable
 * interface when the TCP listener is IPv4, and by IPv6 link-local multicast
 * to BEACON_GROUP6 on every multicast-capable interface when it is IPv6.
 * Loopback interfaces are never used, and a service bound to one address
 * announces only on the interface that has it (bound to a loopback
 * address: no beacon at all).
 *
 * Only on-link senders count: datagrams leave with TTL / hop limit 255 and
 * are accepted only with 255 still in them (a router would have lowered it).
 * A peer heard becomes a candidate: a peer_discovered event, then a dial
 * (see beacon_set_hook for who dials). docs/ARCHITECTURE.md ("LAN beacon")
 * has the rules, docs/PROTOCOL.md ("Beacon") the bytes.
 */
#ifndef CRUST_P2P_BEACON_H
#define CRUST_P2P_BEACON_H

#include <stdbool.h>

#include "crust.h"

/* ff02::6372:7374 ("crst"): an unregistered link-local group chosen for crust. */
#define BEACON_GROUP6 "ff02::6372:7374"
#define BEACON_BURST 3              /* queries at start-up, about a second apart */
#define BEACON_BURST_GAP_MS 1000
#define BEACON_JITTER_PCT 10        /* each period is interval +- this many percent */
#define BEACON_EXPIRE_INTERVALS 3   /* a peer not heard for this many intervals is gone */

struct shard;
struct beacon;

/* A peer the beacon found: where to reach it. */
struct beacon_candidate {
	struct crust_peer_id peer;
	struct crust_endpoint tcp;      /* its TCP listener (the sender's IP, the announced port) */
	struct crust_endpoint rudp;     /* its reliable-UDP listener; addrlen 0 = none announced */
};

/*
 * Receives candidates (the bootstrap code's entry point). Runs on the
 * beacon's shard thread, must not block; c is borrowed for the call.
 * Called for every peer discovered or heard at a new address, and, when
 * the hook is set, once for every peer already live. Return true to take
 * over connecting to that peer (the beacon will not dial it), false to
 * let the beacon dial it itself.
 */
typedef bool (*beacon_candidate_fn)(void *ctx, const struct beacon_candidate *c);

/*
 * Install (fn) or remove (NULL) the candidate hook. Any thread, any time
 * after crust_service_new; takes effect on the beacon's shard.
 */
int beacon_set_hook(struct crust_service *svc, beacon_candidate_fn fn, void *ctx);

/*
 * Bind the beacon's sockets and start it on shard 0, once the TCP
 * listener is up (crust_start_listening). Off when cfg.beacon_port is 0
 * or the service is bound to a loopback address. A port that cannot be
 * bound is logged and leaves the beacon off (returns 0: discovery is
 * best effort). User thread, under the service's listen lock.
 */
int beacon_start(struct crust_service *svc);

/* Shard stop: close the sockets, cancel the timers (shard 0's thread). */
void beacon_stop_shard(struct crust_service *svc, struct shard *sh);

/* After the engine stopped: free what beacon_start made. */
void beacon_free(struct crust_service *svc);

/* Add the beacon's counters to out (any thread). */
void beacon_stats(struct crust_service *svc, struct crust_stats *out);

#endif
