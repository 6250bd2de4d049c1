/*
 * beacon_ifs.h - where the LAN beacon's datagrams go: one destination per
 * usable interface, read from getifaddrs.
 *
 * IPv4: the subnet broadcast address of every interface that is up,
 * broadcast-capable and not loopback. IPv6: the group BEACON_GROUP6 on
 * every interface that is up, multicast-capable, not loopback and has a
 * link-local address (the socket joins the group there). A service bound
 * to one address uses only the interface that has it. Any thread; reads
 * the kernel's interface list, so call it once per announcement round,
 * not per datagram.
 */
#ifndef CRUST_P2P_BEACON_IFS_H
#define CRUST_P2P_BEACON_IFS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define BEACON_MAX_IFS 32

/* Where one interface's announcements go. */
struct beacon_if {
	unsigned index;                 /* interface index */
	struct sockaddr_storage dst;    /* broadcast address or group, with the beacon port */
	socklen_t len;
};

/*
 * Fill out (up to max entries) with the destinations for a service bound
 * to bind (its family decides IPv4 or IPv6; the wildcard means every
 * interface) and beacon port. For IPv6, fd (the beacon's socket) joins
 * the group on each interface listed (joining again is harmless).
 * Returns how many, or -errno from getifaddrs.
 */
int beacon_ifs_list(const struct sockaddr_storage *bind, uint16_t port, int fd,
		    struct beacon_if *out, unsigned max);

/* True for 127.0.0.0/8 and ::1: a service bound there has no beacon. */
bool beacon_addr_is_loopback(const struct sockaddr_storage *ss);

#endif
