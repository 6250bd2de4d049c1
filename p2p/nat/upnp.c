/*
 * upnp.c - port mapping through a UPnP Internet Gateway Device, with
 * miniupnpc: SSDP discovery (bounded), the IGD's WANIPConnection control
 * URL, AddPortMapping / DeletePortMapping. Portmap thread only.
 *
 * UPNP_GetValidIGD returns 2 (not 1) when the IGD says it is not
 * connected, which miniupnpc 2.2 also reports when the IGD's external
 * address is private or reserved: the gateway is then itself behind a
 * NAT. Such an IGD is used, and the mapping reported as double NAT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>

#include "portmap.h"

#define DISCOVER_MS 1500             /* SSDP: wait this long for gateways to answer */
#define UPNP_ONLY_PERMANENT 725      /* OnlyPermanentLeasesSupported */
#define UPNP_CONFLICT 718            /* ConflictInMappingEntry (also secure_mode's refusal) */
#define DESC "crust"

struct upnp {
	struct UPNPUrls urls;
	struct IGDdatas data;
	char lanaddr[64];
	bool not_connected;          /* GetValidIGD said 2 */
	bool permanent_only;         /* the IGD refused a lease: map with 0 */
};

static void say_code(char *why, size_t n, const char *what, int code)
{
	const char *s = strupnperror(code);
	snprintf(why, n, "upnp: %s: error %d%s%s", what, code, s ? " " : "", s ? s : "");
}

/*
 * miniupnpc reports socket errors with perror() on stderr; a library must
 * not print, so the usual one (no route for the SSDP group: no network,
 * or a namespace without a default route) is ruled out first.
 */
static bool ssdp_routable(void)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(1900) };
	inet_pton(AF_INET, "239.255.255.250", &to.sin_addr);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool ok = connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0;
	close(fd);
	return ok;
}

static int upnp_open(struct pm_gateway *g, char *why, size_t whylen)
{
	int err = 0;
	if (!ssdp_routable()) {
		snprintf(why, whylen, "upnp: no route for SSDP discovery");
		return -ENETUNREACH;
	}
	struct UPNPDev *devs = upnpDiscover(DISCOVER_MS, NULL, NULL, UPNP_LOCAL_PORT_ANY, 0, 2,
					    &err);
	if (!devs) {
		snprintf(why, whylen, "upnp: no gateway answered discovery");
		return -EHOSTUNREACH;
	}
	struct upnp *u = calloc(1, sizeof(*u));
	if (!u) {
		freeUPNPDevlist(devs);
		return -ENOMEM;
	}
	int r = UPNP_GetValidIGD(devs, &u->urls, &u->data, u->lanaddr, sizeof(u->lanaddr));
	freeUPNPDevlist(devs);
	if (r != 1 && r != 2) {
		if (r)
			FreeUPNPUrls(&u->urls);
		free(u);
		snprintf(why, whylen, "upnp: %s", r == 3 ? "a UPnP device answered, but no IGD"
							: "no usable IGD (its description did not parse)");
		return -EPROTO;
	}
	if (inet_pton(AF_INET, u->lanaddr, &g->local) != 1) {
		FreeUPNPUrls(&u->urls);
		free(u);
		snprintf(why, whylen, "upnp: no IPv4 LAN address toward the IGD");
		return -EPROTO;
	}
	u->not_connected = r == 2;
	g->priv = u;
	return 0;
}

static int external_ip(struct upnp *u, struct in_addr *out, char *why, size_t whylen)
{
	char ip[40] = "";
	int r = UPNP_GetExternalIPAddress(u->urls.controlURL, u->data.first.servicetype, ip);
	if (r) {
		say_code(why, whylen, "GetExternalIPAddress", r);
		return -EPROTO;
	}
	if (inet_pton(AF_INET, ip, out) != 1) {
		snprintf(why, whylen, "upnp: the IGD's external address '%.40s' is not IPv4", ip);
		return -EPROTO;
	}
	return 0;
}

static int add(struct upnp *u, bool tcp, uint16_t port, uint16_t ext, uint32_t lease,
	       uint16_t *got)
{
	char sext[8], sint[8], slease[12], reserved[8] = "";
	snprintf(sext, sizeof(sext), "%u", ext);
	snprintf(sint, sizeof(sint), "%u", port);
	snprintf(slease, sizeof(slease), "%u", lease);
	const char *proto = tcp ? "TCP" : "UDP";
	int r = UPNP_AddPortMapping(u->urls.controlURL, u->data.first.servicetype, sext, sint,
				    u->lanaddr, DESC, proto, NULL, slease);
	if (r == 0) {
		*got = ext;
		return 0;
	}
	if (r != UPNP_CONFLICT)
		return r;
	/* the port is taken (or refused): IGDv2 can pick another one for us */
	int r2 = UPNP_AddAnyPortMapping(u->urls.controlURL, u->data.first.servicetype, sext, sint,
					u->lanaddr, DESC, proto, NULL, slease, reserved);
	unsigned long v = strtoul(reserved, NULL, 10);
	if (r2 || !v || v > 65535)
		return r;
	*got = (uint16_t)v;
	return 0;
}

static int upnp_map(struct pm_gateway *g, bool tcp, uint16_t port, uint16_t ext_port,
		    uint32_t lease_s, struct pm_mapped *out, char *why, size_t whylen)
{
	struct upnp *u = g->priv;
	int err = external_ip(u, &out->ext_ip, why, whylen);
	if (err)
		return err;
	uint32_t lease = u->permanent_only ? 0 : lease_s;
	uint16_t got = 0;
	int r = add(u, tcp, port, ext_port ? ext_port : port, lease, &got);
	if (r == UPNP_ONLY_PERMANENT && lease) {
		u->permanent_only = true; /* removed at shutdown, as every mapping */
		lease = 0;
		r = add(u, tcp, port, ext_port ? ext_port : port, lease, &got);
	}
	if (r) {
		say_code(why, whylen, "AddPortMapping", r);
		return r == UPNP_CONFLICT || r == 606 ? -EPERM : -EPROTO;
	}
	out->ext_port = got;
	out->lease_s = lease;
	out->double_nat = u->not_connected || pm_ipv4_is_reserved(out->ext_ip);
	return 0;
}

static int upnp_unmap(struct pm_gateway *g, bool tcp, uint16_t port, uint16_t ext_port)
{
	(void)port;
	struct upnp *u = g->priv;
	char sext[8];
	snprintf(sext, sizeof(sext), "%u", ext_port);
	int r = UPNP_DeletePortMapping(u->urls.controlURL, u->data.first.servicetype, sext,
				       tcp ? "TCP" : "UDP", NULL);
	return r ? -EPROTO : 0;
}

static void upnp_close(struct pm_gateway *g)
{
	struct upnp *u = g->priv;
	if (!u)
		return;
	FreeUPNPUrls(&u->urls);
	free(u);
	g->priv = NULL;
}

const struct pm_method pm_upnp = {
	.name = "upnp",
	.open = upnp_open,
	.map = upnp_map,
	.unmap = upnp_unmap,
	.close = upnp_close,
};
