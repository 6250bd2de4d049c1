/*
 * natpmp.c - port mapping with NAT-PMP (RFC 6886) through libnatpmp:
 * the gateway is the default route's, the public address request proves
 * it answers, then one mapping request per port. libnatpmp retransmits
 * (250 ms doubling); we stop waiting after ANSWER_MS. Portmap thread only.
 *
 * libnatpmp checks an answer's source, version, opcode and result code
 * but not its length, so what it returns is checked here too (the port
 * we asked for, a mapped port, a lifetime).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define ENABLE_STRNATPMPERR /* natpmp.h declares strnatpmperr only then */
#include <natpmp.h>

#include "portmap.h"

#define ANSWER_MS 1500

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int errno_of(int r)
{
	switch (r) {
	case NATPMP_ERR_NOTAUTHORIZED: return -EPERM;
	case NATPMP_ERR_OUTOFRESOURCES: return -ENOSPC;
	case NATPMP_ERR_NETWORKFAILURE: return -ENETDOWN;
	case NATPMP_ERR_RECVFROM: return -ECONNREFUSED; /* ICMP unreachable: nobody on 5351 */
	default: return -EPROTO;
	}
}

/* Wait for the answer to the request just sent (bounded). */
static int answer(natpmp_t *np, natpmpresp_t *resp, char *why, size_t whylen)
{
	uint64_t deadline = now_ms() + ANSWER_MS;
	for (;;) {
		int r = readnatpmpresponseorretry(np, resp);
		if (r == 0)
			return 0;
		if (r != NATPMP_TRYAGAIN) {
			snprintf(why, whylen, "natpmp: %s", strnatpmperr(r));
			return errno_of(r);
		}
		uint64_t now = now_ms();
		if (now >= deadline) {
			snprintf(why, whylen, "natpmp: no answer from the gateway");
			return -ETIMEDOUT;
		}
		struct timeval tv;
		int wait = (int)(deadline - now);
		if (getnatpmprequesttimeout(np, &tv) == 0) {
			int retry = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
			if (retry >= 0 && retry < wait)
				wait = retry;
		}
		struct pollfd pfd = { .fd = np->s, .events = POLLIN };
		poll(&pfd, 1, wait < 1 ? 1 : wait);
	}
}

static int np_open(struct pm_gateway *g, char *why, size_t whylen)
{
	natpmp_t *np = calloc(1, sizeof(*np));
	if (!np)
		return -ENOMEM;
	int r = initnatpmp(np, 0, 0);
	if (r < 0) {
		free(np);
		snprintf(why, whylen, "natpmp: %s", r == NATPMP_ERR_CANNOTGETGATEWAY
			 ? "no default gateway" : strnatpmperr(r));
		return r == NATPMP_ERR_CANNOTGETGATEWAY ? -EHOSTUNREACH : -EIO;
	}
	g->gw.s_addr = np->gateway;
	natpmpresp_t resp;
	int err = sendpublicaddressrequest(np) < 0 ? -EIO : answer(np, &resp, why, whylen);
	if (!err && resp.type != NATPMP_RESPTYPE_PUBLICADDRESS) {
		snprintf(why, whylen, "natpmp: answer of another type (%u)", resp.type);
		err = -EPROTO;
	}
	if (err) {
		closenatpmp(np);
		free(np);
		return err;
	}
	g->priv = np;
	return 0;
}

static int np_map(struct pm_gateway *g, bool tcp, uint16_t port, uint16_t ext_port,
		  uint32_t lease_s, struct pm_mapped *out, char *why, size_t whylen)
{
	natpmp_t *np = g->priv;
	natpmpresp_t resp;
	/* the public address first: the mapping answer does not carry it */
	int err = sendpublicaddressrequest(np) < 0 ? -EIO : answer(np, &resp, why, whylen);
	if (err)
		return err;
	out->ext_ip = resp.pnu.publicaddress.addr;
	int proto = tcp ? NATPMP_PROTOCOL_TCP : NATPMP_PROTOCOL_UDP;
	if (sendnewportmappingrequest(np, proto, port, ext_port ? ext_port : port, lease_s) < 0)
		return -EIO;
	err = answer(np, &resp, why, whylen);
	if (err)
		return err;
	uint16_t want_type = tcp ? NATPMP_RESPTYPE_TCPPORTMAPPING : NATPMP_RESPTYPE_UDPPORTMAPPING;
	if (resp.type != want_type || resp.pnu.newportmapping.privateport != port ||
	    !resp.pnu.newportmapping.mappedpublicport || !resp.pnu.newportmapping.lifetime) {
		snprintf(why, whylen, "natpmp: an answer that does not match the request");
		return -EPROTO;
	}
	out->ext_port = resp.pnu.newportmapping.mappedpublicport;
	out->lease_s = resp.pnu.newportmapping.lifetime;
	out->double_nat = pm_ipv4_is_reserved(out->ext_ip);
	return 0;
}

static int np_unmap(struct pm_gateway *g, bool tcp, uint16_t port, uint16_t ext_port)
{
	(void)ext_port;
	natpmp_t *np = g->priv;
	natpmpresp_t resp;
	char why[PORTMAP_WHY_LEN];
	/* RFC 6886 3.4: lifetime 0 and external port 0 delete the mapping */
	int proto = tcp ? NATPMP_PROTOCOL_TCP : NATPMP_PROTOCOL_UDP;
	if (sendnewportmappingrequest(np, proto, port, 0, 0) < 0)
		return -EIO;
	return answer(np, &resp, why, sizeof(why));
}

static void np_close(struct pm_gateway *g)
{
	natpmp_t *np = g->priv;
	if (!np)
		return;
	closenatpmp(np);
	free(np);
	g->priv = NULL;
}

const struct pm_method pm_natpmp = {
	.name = "natpmp",
	.open = np_open,
	.map = np_map,
	.unmap = np_unmap,
	.close = np_close,
};
