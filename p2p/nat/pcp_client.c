/*
 * pcp_client.c - port mapping with PCP (RFC 6887) MAP requests to the
 * default gateway's UDP port 5351: our codec (pcp.c) over one connected
 * UDP socket. Requests are retransmitted at 0, 250 and 750 ms and an
 * answer waited for ANSWER_MS in all (RFC 6887 8.1.1 allows up to 3 s
 * before the first retry; a node starting up does not wait that long).
 * A renewal reuses its mapping's nonce (11.2.1). Portmap thread only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pcp.h"
#include "portmap.h"

#define ANSWER_MS 1500
static const int retry_at_ms[] = { 0, 250, 750 };

struct pcp_state {
	int fd;
	uint8_t nonce[2][PCP_NONCE_LEN];   /* [tcp]: one per mapping, kept for renewals */
	bool has_nonce[2];
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The IPv4 default route's gateway, from /proc/net/route (hex, network order). */
static int default_gateway(struct in_addr *gw)
{
	FILE *f = fopen("/proc/net/route", "re");
	if (!f)
		return -errno;
	char line[256];
	int err = -EHOSTUNREACH;
	while (fgets(line, sizeof(line), f)) {
		char ifname[64];
		unsigned dst, via, flags;
		if (sscanf(line, "%63s %x %x %x", ifname, &dst, &via, &flags) == 4 && dst == 0 &&
		    (flags & 0x2) /* RTF_GATEWAY */) {
			gw->s_addr = via;
			err = 0;
			break;
		}
	}
	fclose(f);
	return err;
}

static int pcp_open(struct pm_gateway *g, char *why, size_t whylen)
{
	if (default_gateway(&g->gw) < 0) {
		snprintf(why, whylen, "pcp: no default gateway");
		return -EHOSTUNREACH;
	}
	struct pcp_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(PCP_PORT), .sin_addr = g->gw };
	struct sockaddr_in me;
	socklen_t melen = sizeof(me);
	st->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (st->fd < 0 || connect(st->fd, (struct sockaddr *)&to, sizeof(to)) < 0 ||
	    getsockname(st->fd, (struct sockaddr *)&me, &melen) < 0) {
		int err = -errno;
		snprintf(why, whylen, "pcp: socket toward the gateway: %s", strerror(-err));
		if (st->fd >= 0)
			close(st->fd);
		free(st);
		return err;
	}
	g->local = me.sin_addr;
	g->priv = st;
	return 0;
}

static void mapped_ip(uint8_t key[16], struct in_addr a)
{
	memset(key, 0, 16);
	key[10] = key[11] = 0xff;
	memcpy(key + 12, &a, 4);
}

/* The answer to req (same nonce, protocol, internal port), or an error. */
static int take_answer(struct pcp_state *st, const struct pcp_map *req, struct pcp_answer *a,
		       bool *garbage, bool *natpmp_only)
{
	uint8_t buf[PCP_MAX_MSG + 4];
	ssize_t n = recv(st->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN ? -EAGAIN : -errno;
	int err = pcp_parse_map(buf, (size_t)n, a);
	if (err == -EPROTONOSUPPORT) {
		*natpmp_only = true;
		return -EAGAIN;
	}
	if (err < 0 || memcmp(a->map.nonce, req->nonce, PCP_NONCE_LEN) ||
	    a->map.protocol != req->protocol || a->map.internal_port != req->internal_port) {
		*garbage = true; /* dropped; a valid answer may still come */
		return -EAGAIN;
	}
	return 0;
}

/* Send req (lifetime s) and wait for its answer: retransmitted, bounded. */
static int exchange(struct pm_gateway *g, const struct pcp_map *req, uint32_t lifetime,
		    struct pcp_answer *a, char *why, size_t whylen)
{
	struct pcp_state *st = g->priv;
	uint8_t msg[PCP_MAP_MSG_LEN], client[16];
	mapped_ip(client, g->local);
	size_t len = pcp_encode_map(msg, sizeof(msg), lifetime, client, req);
	uint64_t start = now_ms();
	unsigned sent = 0;
	bool garbage = false, natpmp_only = false;
	int err = -ETIMEDOUT;
	for (;;) {
		uint64_t el = now_ms() - start;
		while (sent < sizeof(retry_at_ms) / sizeof(retry_at_ms[0]) &&
		       el >= (uint64_t)retry_at_ms[sent]) {
			if (send(st->fd, msg, len, 0) < 0 && errno != ECONNREFUSED)
				break;
			sent++;
		}
		if (el >= ANSWER_MS)
			break;
		int wait = ANSWER_MS - (int)el;
		if (sent < sizeof(retry_at_ms) / sizeof(retry_at_ms[0]) &&
		    retry_at_ms[sent] - (int)el < wait)
			wait = retry_at_ms[sent] - (int)el;
		struct pollfd pfd = { .fd = st->fd, .events = POLLIN };
		if (poll(&pfd, 1, wait < 1 ? 1 : wait) <= 0)
			continue;
		err = take_answer(st, req, a, &garbage, &natpmp_only);
		if (err == 0)
			return 0;
		if (err == -ECONNREFUSED)
			break; /* ICMP port unreachable: nothing listens on 5351 */
		err = -ETIMEDOUT;
	}
	if (natpmp_only) {
		snprintf(why, whylen, "pcp: the gateway speaks NAT-PMP only");
		return -EPROTONOSUPPORT;
	}
	if (garbage) {
		snprintf(why, whylen, "pcp: malformed or unmatched answers only (dropped)");
		return -EBADMSG;
	}
	snprintf(why, whylen, "pcp: %s", err == -ECONNREFUSED ? "port 5351 refused (no server)"
							       : "no answer from the gateway");
	return err;
}

static void request(struct pcp_state *st, bool tcp, uint16_t port, uint16_t ext_port,
		    struct pcp_map *req)
{
	memset(req, 0, sizeof(*req));
	if (!st->has_nonce[tcp]) {
		randombytes_buf(st->nonce[tcp], PCP_NONCE_LEN);
		st->has_nonce[tcp] = true;
	}
	memcpy(req->nonce, st->nonce[tcp], PCP_NONCE_LEN);
	req->protocol = tcp ? IPPROTO_TCP : IPPROTO_UDP;
	req->internal_port = port;
	req->external_port = ext_port;
}

static int pcp_map(struct pm_gateway *g, bool tcp, uint16_t port, uint16_t ext_port,
		   uint32_t lease_s, struct pm_mapped *out, char *why, size_t whylen)
{
	struct pcp_map req;
	struct pcp_answer a;
	request(g->priv, tcp, port, ext_port ? ext_port : port, &req);
	int err = exchange(g, &req, lease_s, &a, why, whylen);
	if (err)
		return err;
	if (a.result != PCP_SUCCESS) {
		snprintf(why, whylen, "pcp: %s (result %u)", pcp_result_name(a.result), a.result);
		return a.result == PCP_NOT_AUTHORIZED ? -EPERM : -EPROTO;
	}
	static const uint8_t v4pre[12] = { [10] = 0xff, [11] = 0xff };
	if (memcmp(a.map.external_ip, v4pre, 12) || !a.map.external_port || !a.lifetime) {
		snprintf(why, whylen, "pcp: a success without an IPv4 external endpoint or lifetime");
		return -EPROTO;
	}
	memcpy(&out->ext_ip, a.map.external_ip + 12, 4);
	out->ext_port = a.map.external_port;
	out->lease_s = a.lifetime;
	out->double_nat = pm_ipv4_is_reserved(out->ext_ip);
	return 0;
}

static int pcp_unmap(struct pm_gateway *g, bool tcp, uint16_t port, uint16_t ext_port)
{
	struct pcp_map req;
	struct pcp_answer a;
	char why[PORTMAP_WHY_LEN];
	request(g->priv, tcp, port, ext_port, &req);
	int err = exchange(g, &req, 0, &a, why, sizeof(why)); /* lifetime 0 deletes (15) */
	return err ? err : a.result == PCP_SUCCESS ? 0 : -EPROTO;
}

static void pcp_close(struct pm_gateway *g)
{
	struct pcp_state *st = g->priv;
	if (!st)
		return;
	close(st->fd);
	free(st);
	g->priv = NULL;
}

const struct pm_method pm_pcp = {
	.name = "pcp",
	.open = pcp_open,
	.map = pcp_map,
	.unmap = pcp_unmap,
	.close = pcp_close,
};
