/*
 * birthday.c - birthday-paradox hole punching: the extra sockets of the
 * symmetric side, the random-port probes of the cone side (see
 * birthday.h for the method and the odds).
 */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "birthday.h"
#include "engine/addr.h"

static socklen_t addr_len(const struct sockaddr_storage *a)
{
	return a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

int bday_start(struct bday *b, enum bday_role role, struct transport *t, struct shard *sh,
	       const struct sockaddr_storage *target, const uint8_t probe[PUNCH_PROBE_LEN])
{
	bday_close(b);
	if (role == BDAY_OFF)
		return 0;
	if (role == BDAY_SOCKETS && !t->vt->sock_open)
		return -EOPNOTSUPP;
	if (role == BDAY_PROBER && !t->vt->send_datagram)
		return -EOPNOTSUPP;
	if (role == BDAY_SOCKETS && !(b->socks = calloc(BDAY_NSOCKETS, sizeof(*b->socks))))
		return -ENOMEM;
	b->role = role;
	b->t = t;
	b->sh = sh;
	b->target = *target;
	memcpy(b->probe, probe, PUNCH_PROBE_LEN);
	b->nopened = b->nsent = 0;
	return 0;
}

/*
 * SOCKETS: open the next batch, then send the probes that have not left
 * yet (each opens its socket's mapping; a full send queue delays one to
 * the next tick rather than losing that socket's chance).
 */
static bool open_batch(struct bday *b)
{
	for (unsigned k = 0; k < BDAY_BATCH && b->nopened < BDAY_NSOCKETS; k++) {
		struct bday_sock *bs = &b->socks[b->nopened++];
		bs->b = b;
		bs->sent = false;
		if (b->t->vt->sock_open(b->t, b->sh, b->target.ss_family, bs, &bs->s) < 0)
			bs->s = NULL; /* out of descriptors or ports: fewer sockets, lower odds */
	}
	bool more = b->nopened < BDAY_NSOCKETS;
	unsigned sends = 0;
	for (unsigned i = 0; i < b->nopened; i++) {
		struct bday_sock *bs = &b->socks[i];
		if (!bs->s || bs->sent)
			continue;
		if (sends++ >= BDAY_BATCH ||
		    bday_send(bs, &b->target, b->probe, sizeof(b->probe)) == -EAGAIN) {
			more = true;
			continue;
		}
		bs->sent = true;
	}
	return more;
}

/* PROBER: the next batch of probes, each to a uniformly random port of the peer's IP. */
static bool probe_batch(struct bday *b)
{
	struct sockaddr_storage to = b->target;
	for (unsigned k = 0; k < BDAY_BATCH && b->nsent < BDAY_NPROBES; k++) {
		uint32_t port = BDAY_PORT_MIN + randombytes_uniform(BDAY_PORT_MAX - BDAY_PORT_MIN + 1);
		eng_addr_set_port(&to, (uint16_t)port);
		int err = b->t->vt->send_datagram(b->t, b->sh, (const struct sockaddr *)&to,
						  addr_len(&to), b->probe, sizeof(b->probe));
		if (err == -EAGAIN)
			break; /* no send buffer free: the rest next tick */
		b->nsent++;
	}
	return b->nsent < BDAY_NPROBES;
}

bool bday_step(struct bday *b)
{
	if (b->role == BDAY_SOCKETS)
		return open_batch(b);
	if (b->role == BDAY_PROBER)
		return probe_batch(b);
	return false;
}

bool bday_owns(const struct bday *b, const struct bday_sock *bs)
{
	return b->role == BDAY_SOCKETS && bs->b == b && bs->s;
}

int bday_send(struct bday_sock *bs, const struct sockaddr_storage *to, const uint8_t *p,
	      size_t len)
{
	struct transport *t = bs->b->t;
	return t->vt->sock_send(bs->s, (const struct sockaddr *)to, addr_len(to), p, len);
}

struct tp_sock *bday_take(struct bday *b, struct bday_sock *bs)
{
	(void)b;
	struct tp_sock *s = bs->s;
	bs->s = NULL;
	return s;
}

void bday_close(struct bday *b)
{
	for (unsigned i = 0; b->socks && i < b->nopened; i++)
		if (b->socks[i].s)
			b->t->vt->sock_close(b->socks[i].s);
	free(b->socks);
	b->socks = NULL;
	b->nopened = b->nsent = 0;
	b->role = BDAY_OFF;
}
