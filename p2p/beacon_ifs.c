/* beacon_ifs.c - the beacon's destinations per interface (see beacon_ifs.h). */
#define _GNU_SOURCE
#include "beacon_ifs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>

#include "engine/addr.h"
#include "beacon.h"

static bool addr_is_any(const struct sockaddr_storage *ss)
{
	uint8_t k[16], any4[16] = { [10] = 0xff, [11] = 0xff }, any6[16] = { 0 };
	eng_addr_ip_key(ss, k);
	return !memcmp(k, any4, 16) || !memcmp(k, any6, 16);
}

bool beacon_addr_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static bool same_ip(const struct sockaddr *a, const struct sockaddr_storage *b)
{
	struct sockaddr_storage ss = { 0 };
	memcpy(&ss, a, a->sa_family == AF_INET ? sizeof(struct sockaddr_in)
					       : sizeof(struct sockaddr_in6));
	uint8_t ka[16], kb[16];
	eng_addr_ip_key(&ss, ka);
	eng_addr_ip_key(b, kb);
	return !memcmp(ka, kb, 16);
}

/*
 * The interface a service bound to one address announces on: NULL when
 * bound to the wildcard (every interface), "" when no interface has it.
 */
static const char *bound_ifname(const struct sockaddr_storage *bind, const struct ifaddrs *all)
{
	if (addr_is_any(bind))
		return NULL;
	for (const struct ifaddrs *i = all; i; i = i->ifa_next) {
		if (i->ifa_addr && i->ifa_addr->sa_family == bind->ss_family &&
		    same_ip(i->ifa_addr, bind))
			return i->ifa_name;
	}
	return "";
}

/* The IPv4 broadcast address of i (its own, else computed from the netmask). */
static bool broadcast4(const struct ifaddrs *i, uint16_t port, struct sockaddr_in *out)
{
	if (!(i->ifa_flags & IFF_BROADCAST) || !i->ifa_netmask)
		return false;
	uint32_t addr = ((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
	uint32_t mask = ((const struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr;
	if (ntohl(mask) >= 0xfffffffeu)
		return false; /* a /31 or /32 has no broadcast address */
	/* an address added without "brd" reports no broadcast, or its own address: compute it */
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons(port);
	out->sin_addr.s_addr = addr | ~mask;
	return true;
}

/* The group on i's link, if i has an IPv6 link-local address to send from. */
static bool group6(const struct ifaddrs *i, uint16_t port, struct sockaddr_in6 *out)
{
	const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)i->ifa_addr;
	if (!(i->ifa_flags & IFF_MULTICAST) || !IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr))
		return false;
	memset(out, 0, sizeof(*out));
	out->sin6_family = AF_INET6;
	out->sin6_port = htons(port);
	out->sin6_scope_id = a->sin6_scope_id;
	inet_pton(AF_INET6, BEACON_GROUP6, &out->sin6_addr);
	return true;
}

static void add_if(struct beacon_if *out, unsigned *n, unsigned max, unsigned index,
		   const void *dst, socklen_t len)
{
	for (unsigned k = 0; k < *n; k++) {
		if (out[k].index == index && !memcmp(&out[k].dst, dst, len))
			return;
	}
	if (*n == max)
		return;
	struct beacon_if *f = &out[(*n)++];
	memset(f, 0, sizeof(*f));
	f->index = index;
	memcpy(&f->dst, dst, len);
	f->len = len;
}

/*
 * Join the group on an IPv6 interface. Failures are not fatal (EADDRINUSE:
 * joined already; others: that link just hears no beacons) and so not reported.
 */
static void join6(int fd, unsigned index)
{
	struct ipv6_mreq mr = { .ipv6mr_interface = index };
	inet_pton(AF_INET6, BEACON_GROUP6, &mr.ipv6mr_multiaddr);
	(void)setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mr, sizeof(mr));
}

int beacon_ifs_list(const struct sockaddr_storage *bind, uint16_t port, int fd,
		    struct beacon_if *out, unsigned max)
{
	struct ifaddrs *all;
	if (getifaddrs(&all) < 0)
		return -errno;
	const char *only = bound_ifname(bind, all);
	int family = bind->ss_family;
	unsigned n = 0;
	for (struct ifaddrs *i = all; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != family ||
		    !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK) ||
		    (only && strcmp(only, i->ifa_name) != 0))
			continue;
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
		if (family == AF_INET && broadcast4(i, port, &v4)) {
			add_if(out, &n, max, if_nametoindex(i->ifa_name), &v4, sizeof(v4));
		} else if (family == AF_INET6 && group6(i, port, &v6)) {
			join6(fd, v6.sin6_scope_id);
			add_if(out, &n, max, v6.sin6_scope_id, &v6, sizeof(v6));
		}
	}
	freeifaddrs(all);
	return (int)n;
}
