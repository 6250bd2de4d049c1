/*
 * coord_stun.c - the coordinator's STUN Binding server on UDP: on the
 * address where the service's reliable-UDP listener is, its socket (STUN
 * comes in through the transport's datagram hook: STUN's first two bits
 * are 0, reliable UDP's never are); on every other --listen address, a
 * socket of its own on the coordinator's shard.
 *
 * Every datagram is parsed with p2p/stun.c; Binding requests get a
 * success answer (the source address, XOR-mapped) or error 420 for
 * unknown comprehension-required attributes. Anything else is dropped
 * and counted. An answer is never larger than 3x its request (no
 * amplification through us) and answers are paced overall
 * (COORD_STUN_RATE per second) so a flood costs bounded CPU.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/addr.h"
#include "engine/listener.h"
#include "coordinator.h"
#include "node.h"
#include "stun.h"

static bool take_token(struct coordinator *c, uint64_t now)
{
	if (!c->stun_tokens_ms) {
		c->stun_tokens_ms = now;
		c->stun_tokens = COORD_STUN_RATE;
	}
	c->stun_tokens += (double)(now - c->stun_tokens_ms) * COORD_STUN_RATE / 1000.0;
	if (c->stun_tokens > COORD_STUN_RATE)
		c->stun_tokens = COORD_STUN_RATE;
	c->stun_tokens_ms = now;
	if (c->stun_tokens < 1)
		return false;
	c->stun_tokens -= 1;
	return true;
}

static struct coord_stun_slot *free_slot(struct coord_stun *s)
{
	for (unsigned i = 0; i < COORD_STUN_SLOTS; i++)
		if (!s->slots[i].busy)
			return &s->slots[i];
	return NULL;
}

/* The answer to req from src, or 0 bytes if none is due. */
static size_t answer(const struct stun_msg *req, const struct sockaddr_storage *src,
		     uint8_t *out, size_t cap)
{
	if (req->nunknown)
		return stun_encode_unknown(out, cap, req);
	return stun_encode_success(out, cap, req, src);
}

/*
 * The answer to the datagram p (dlen bytes) from `from` into out, or 0
 * when it gets none (not a Binding request, malformed, over the pace or
 * the 3x rule). Counts what it decided.
 */
static size_t answer_datagram(struct coordinator *c, const struct sockaddr_storage *src,
			      const uint8_t *p, size_t dlen, uint8_t *out, size_t cap)
{
	struct stun_msg req;
	const char *why;
	coord_count(&c->n.stun_requests, 1);
	if (stun_parse(p, dlen, &req, &why) < 0 || req.type != STUN_BINDING_REQUEST ||
	    !take_token(c, c->sh->now_ms)) {
		coord_count(&c->n.stun_dropped, 1);
		return 0;
	}
	size_t n = answer(&req, src, out, cap);
	if (!n || n > 3 * dlen) { /* anti-amplification: never more than 3x the request */
		coord_count(&c->n.stun_dropped, 1);
		return 0;
	}
	coord_count(req.nunknown ? &c->n.stun_errors : &c->n.stun_answers, 1);
	return n;
}

static void on_datagram(struct eng_udp *u, struct eng_rxbuf *b, const struct sockaddr *from,
			socklen_t fromlen, uint8_t *p, uint32_t len, uint16_t gso_size)
{
	(void)b;
	struct coord_stun *s = container_of(u, struct coord_stun, u);
	/* GRO may glue datagrams of one flow: take the first segment only */
	size_t dlen = gso_size && gso_size < len ? gso_size : len;
	struct coord_stun_slot *slot = free_slot(s);
	if (fromlen > sizeof(struct sockaddr_storage) || !slot) {
		coord_count(&s->c->n.stun_dropped, 1);
		return;
	}
	struct sockaddr_storage src;
	memset(&src, 0, sizeof(src));
	memcpy(&src, from, fromlen);
	size_t n = answer_datagram(s->c, &src, p, dlen, slot->bytes, sizeof(slot->bytes));
	struct iovec iov = { .iov_base = slot->bytes, .iov_len = n };
	if (n && eng_udp_send(u, from, fromlen, &iov, 1, 0, slot) == 0)
		slot->busy = true;
}

void coord_stun_datagram(struct crust_service *svc, struct shard *sh,
			 const struct sockaddr_storage *from, socklen_t fromlen, const uint8_t *p,
			 uint32_t len)
{
	struct coordinator *c = svc->coord;
	uint8_t out[96];
	if (!c || sh != c->sh)
		return;
	size_t n = answer_datagram(c, from, p, len, out, sizeof(out));
	if (n && svc->rudp->vt->send_datagram(svc->rudp, sh, (const struct sockaddr *)from, fromlen,
					      out, n) < 0)
		coord_count(&c->n.stun_dropped, 1);
}

static void on_sent(struct eng_udp *u, void *ctx, int res)
{
	(void)u;
	(void)res;
	struct coord_stun_slot *slot = ctx;
	slot->busy = false;
}

static const struct eng_udp_ops stun_ops = {
	.on_datagram = on_datagram,
	.on_sent = on_sent,
};

/* ep is where our reliable-UDP listener is: its socket answers STUN through the datagram hook. */
static bool on_rudp_listener(struct crust_service *svc, const struct crust_endpoint *ep)
{
	uint8_t a[16], b[16];
	return svc->rudp_port && eng_addr_port(&ep->addr) == svc->rudp_port &&
	       eng_addr_ip_key(&ep->addr, a) && eng_addr_ip_key(&svc->bind_addr, b) &&
	       !memcmp(a, b, 16);
}

int coord_stun_bind(struct coordinator *c, const struct crust_endpoint *eps, size_t n)
{
	for (size_t i = 0; i < n && i < COORD_MAX_STUN; i++) {
		if (on_rudp_listener(c->svc, &eps[i]))
			continue;
		int fd = eng_bind_socket(SOCK_DGRAM, (const struct sockaddr *)&eps[i].addr,
					 eps[i].addrlen, 0);
		if (fd < 0) {
			char a[CRUST_ADDRSTRLEN];
			crust_addr_format(&eps[i].addr, a, sizeof(a));
			svc_log(c->svc, CRUST_LOG_ERROR, "coordinator: STUN on %s: %s", a,
				strerror(-fd));
			return fd;
		}
		c->stun[c->nstun].c = c;
		c->stun[c->nstun].fd = fd;
		c->nstun++;
	}
	return 0;
}

void coord_stun_start(struct coordinator *c)
{
	for (unsigned i = 0; i < c->nstun; i++) {
		struct coord_stun *s = &c->stun[i];
		if (eng_udp_open(&s->u, c->sh, s->fd, &stun_ops, s) == 0)
			s->opened = true;
		s->c = c;
	}
}

void coord_stun_close(struct coordinator *c)
{
	for (unsigned i = 0; i < c->nstun; i++)
		if (c->stun[i].opened)
			eng_udp_close(&c->stun[i].u);
}

void coord_stun_free(struct coordinator *c)
{
	for (unsigned i = 0; i < c->nstun; i++)
		if (!c->stun[i].opened && c->stun[i].fd >= 0)
			close(c->stun[i].fd);
}
