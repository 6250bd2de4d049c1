/*
 * rudp.c - the reliable-UDP transport: one SO_REUSEPORT UDP socket per
 * shard (engine/udp.c: multishot recvmsg with GRO, GSO sends, 4 MB
 * buffers, kernel drops counted), connection-id demultiplexing, the
 * server's side of the first packet (stateless Retry under handshake
 * load), and the transport vtable. Connection logic is in rudp_conn.c.
 *
 * A node that dials before it listens gets an ephemeral socket per
 * shard. Datagrams whose connection id belongs to another shard (the
 * id's first byte) are copied there by mailbox.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "engine/addr.h"
#include "engine/listener.h"
#include "rudp.h"

#define RETRY_PN 0xffffffffull
#define RETRY_PENDING_DEFAULT 64u

static const struct eng_udp_ops udp_ops;

uint64_t rudp_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint32_t now_s(void)
{
	return (uint32_t)(rudp_now_us() / 1000000u);
}

static void count(_Atomic uint64_t *ctr)
{
	atomic_fetch_add_explicit(ctr, 1, memory_order_relaxed);
}

/* ---- send buffers ---- */

struct rudp_txbuf *rudp_txbuf_get(struct rudp_shard *rs)
{
	struct rudp_txbuf *t = rs->free_tx;
	if (t) {
		rs->free_tx = t->next;
		return t;
	}
	if (rs->ntx >= RUDP_TXBUFS_PER_SHARD)
		return NULL;
	t = malloc(sizeof(*t));
	if (t)
		rs->ntx++;
	return t;
}

void rudp_txbuf_put(struct rudp_shard *rs, struct rudp_txbuf *t)
{
	t->next = rs->free_tx;
	rs->free_tx = t;
}

void rudp_block(struct rudp_conn *c)
{
	if (c->blocked)
		return;
	c->blocked = true;
	c->next_blocked = c->rs->blocked;
	c->rs->blocked = c;
}

bool rudp_sock_can_send(const struct rudp_sock *s)
{
	return s->open && !s->udp.closing && s->udp.free_slots;
}

static void close_sock(struct rudp_sock *s)
{
	if (s->open && !s->udp.closing)
		eng_udp_close(&s->udp);
}

/* A heap socket is freed once it is closed and no connection points at it. */
static void sock_maybe_free(struct rudp_sock *s)
{
	if (!(s->listener || s->extra) || s->open || s->nconns)
		return;
	struct rudp_shard *rs = s->rs;
	struct rudp_sock **list = s->extra ? &rs->extras : &rs->retired;
	for (struct rudp_sock **pp = list; *pp; pp = &(*pp)->next_retired) {
		if (*pp == s) {
			*pp = s->next_retired;
			break;
		}
	}
	if (rs->lsock == s)
		rs->lsock = NULL;
	free(s);
}

void rudp_sock_hold(struct rudp_sock *s)
{
	s->nconns++;
}

void rudp_sock_release(struct rudp_sock *s)
{
	if (--s->nconns)
		return;
	if (s->open && (s->retired || s->extra))
		close_sock(s); /* on_sock_closed frees it */
	else
		sock_maybe_free(s);
}

/* A re-bind replaced s: it takes no new connections and closes after its last one. */
static void retire_sock(struct rudp_shard *rs, struct rudp_sock *s)
{
	s->retired = true;
	if (!s->nconns) {
		close_sock(s);
		return;
	}
	s->next_retired = rs->retired;
	rs->retired = s;
}

static int sock_send(struct rudp_sock *s, const struct sockaddr_storage *to, socklen_t tolen,
		     struct rudp_txbuf *t, uint32_t len, uint16_t gso)
{
	struct iovec iov = { .iov_base = t->data, .iov_len = len };
	return eng_udp_send(&s->udp, (const struct sockaddr *)to, tolen, &iov, 1, gso, t);
}

int rudp_conn_output(struct rudp_conn *c, struct rudp_txbuf *t, uint32_t len, uint16_t gso)
{
	int err = sock_send(c->sock, &c->base.remote, c->base.remote_len, t, len, gso);
	if (err == 0)
		c->inflight_tx++;
	return err;
}

/* ---- connection ids ---- */

static unsigned bucket(uint64_t cid)
{
	return (unsigned)((cid * 0x9e3779b97f4a7c15ull) >> 52) & (RUDP_CID_BUCKETS - 1);
}

int rudp_cid_add(struct rudp_shard *rs, uint64_t cid, struct rudp_conn *c)
{
	struct rudp_cid_ent *e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cid = cid;
	e->c = c;
	e->next = rs->cids[bucket(cid)];
	rs->cids[bucket(cid)] = e;
	return 0;
}

void rudp_cid_del(struct rudp_shard *rs, uint64_t cid)
{
	for (struct rudp_cid_ent **pp = &rs->cids[bucket(cid)]; *pp; pp = &(*pp)->next) {
		if ((*pp)->cid == cid) {
			struct rudp_cid_ent *e = *pp;
			*pp = e->next;
			free(e);
			return;
		}
	}
}

struct rudp_conn *rudp_cid_find(struct rudp_shard *rs, uint64_t cid)
{
	for (struct rudp_cid_ent *e = rs->cids[bucket(cid)]; e; e = e->next)
		if (e->cid == cid)
			return e->c;
	return NULL;
}

/* ---- the server's first packet ---- */

static void send_retry(struct rudp_shard *rs, struct rudp_sock *sock, const struct rudp_hdr *h,
		       const struct sockaddr_storage *from, socklen_t fromlen)
{
	struct rudp_txbuf *t = rudp_sock_can_send(sock) ? rudp_txbuf_get(rs) : NULL;
	if (!t)
		return;
	uint8_t token[RUDP_TOKEN_LEN], c2s[32], s2c[32];
	rudp_token_make(rs->rt->secret, from, h->dcid, now_s(), token);
	struct rudp_hdr rh = { .type = RUDP_PKT_RETRY, .dcid = h->scid, .scid = h->dcid,
			       .token = token, .token_len = sizeof(token) };
	uint8_t *q = rudp_write_hdr(t->data, t->data + 256, &rh);
	struct rudp_aead key;
	rudp_initial_secrets(h->dcid, c2s, s2c);
	int err = rudp_aead_init(&key, true, true, s2c);
	if (!err) {
		err = rudp_aead_seal(&key, RETRY_PN, t->data, rh.hdr_len, 0);
		rudp_aead_free(&key);
	}
	sodium_memzero(s2c, sizeof(s2c));
	t->c = NULL;
	if (err || !q || sock_send(sock, from, fromlen, t, rh.hdr_len + RUDP_TAG_LEN, 0) < 0) {
		rudp_txbuf_put(rs, t);
		return;
	}
	count(&rs->n.retries_sent);
}

/* The client's side of a Retry: echo its token in a new Initial. */
static void on_retry(struct rudp_conn *c, const struct rudp_hdr *h, uint8_t *p, uint32_t len)
{
	if (c->state != RS_CONNECTING || c->token_len || h->scid != c->odcid ||
	    h->token_len != RUDP_TOKEN_LEN ||
	    rudp_aead_open(&c->init_rx, RETRY_PN, p, h->hdr_len, len - h->hdr_len) < 0) {
		count(&c->rs->n.bad_packets);
		return;
	}
	memcpy(c->token, h->token, RUDP_TOKEN_LEN);
	c->token_len = RUDP_TOKEN_LEN;
	c->ping_due = true;
	rudp_conn_flush(c);
}

/* A client's first Initial: a new connection, a Retry, or nothing. */
static struct rudp_conn *accept_initial(struct rudp_shard *rs, struct rudp_sock *sock,
					const struct rudp_hdr *h, uint8_t *p, uint32_t len,
					const struct sockaddr_storage *from, socklen_t fromlen,
					struct eng_rxbuf *b, uint64_t now)
{
	struct rudp_transport *rt = rs->rt;
	/* small Initials are never answered: no amplification from a spoofed source */
	if (len < RUDP_MIN_INITIAL || rs->stopping || !rt->bound) {
		count(&rs->n.bad_packets);
		return NULL;
	}
	/* the listener moved away from this port: new connections go to the new one;
	 * an extra socket only dials */
	if (sock->retired || sock->extra) {
		count(&rs->n.unknown_cid);
		return NULL;
	}
	bool token_ok = h->token_len &&
			rudp_token_check(rt->secret, from, h->dcid, now_s(), h->token, h->token_len);
	if (h->token_len && !token_ok) {
		count(&rs->n.bad_packets);
		return NULL;
	}
	if (!token_ok && rs->pending_hs >= rt->retry_pending) {
		send_retry(rs, sock, h, from, fromlen);
		return NULL;
	}
	struct rudp_conn *c = rudp_conn_new(rs, sock, false, h->dcid);
	if (!c)
		return NULL;
	uint64_t pn = h->pn_trunc;
	if (rudp_aead_open(&c->init_rx, pn, p, h->hdr_len, len - h->hdr_len) < 0 ||
	    rudp_cid_add(rs, c->odcid, c) < 0) {
		count(&rs->n.auth_failures);
		c->silent = true;
		rudp_conn_close(c, -EBADMSG, "first packet did not authenticate", false);
		return NULL;
	}
	memcpy(&c->base.remote, from, fromlen);
	c->base.remote_len = fromlen;
	c->peer_cid = h->scid;
	c->state = RS_OPEN;
	c->validated = token_ok;
	c->counted_pending = true;
	rs->pending_hs++;
	rt->base.cb->accepted(rt->base.cb_ctx, &c->base);
	rudp_conn_input(c, h, p, len, from, fromlen, b, now, true);
	return c;
}

/* ---- receiving ---- */

struct fwd_mail {
	struct eng_mail m;
	struct rudp_shard *rs;
	struct sockaddr_storage from;
	socklen_t fromlen;
	uint32_t len;
	uint8_t data[];
};

static struct rudp_conn *handle_packet(struct rudp_shard *rs, struct rudp_sock *sock,
				       struct eng_rxbuf *b, const struct sockaddr_storage *from,
				       socklen_t fromlen, uint8_t *p, uint32_t len, uint64_t now);

static void forwarded_on_shard(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct fwd_mail *fm = (struct fwd_mail *)m;
	struct rudp_conn *c = handle_packet(fm->rs, NULL, NULL, &fm->from, fm->fromlen, fm->data,
					    fm->len, rudp_now_us());
	if (c)
		rudp_conn_flush(c);
	free(fm);
}

static void forward(struct rudp_shard *rs, unsigned to, const struct sockaddr_storage *from,
		    socklen_t fromlen, const uint8_t *p, uint32_t len)
{
	struct fwd_mail *fm = malloc(sizeof(*fm) + len);
	if (!fm)
		return;
	fm->m.fn = forwarded_on_shard;
	fm->rs = &rs->rt->shards[to];
	memcpy(&fm->from, from, fromlen);
	fm->fromlen = fromlen;
	fm->len = len;
	memcpy(fm->data, p, len);
	count(&rs->n.forwarded);
	eng_post(&rs->rt->base.eng->shards[to], &fm->m);
}

/* One packet (one datagram, or one GRO segment). sock NULL: forwarded from another shard. */
static struct rudp_conn *handle_packet(struct rudp_shard *rs, struct rudp_sock *sock,
				       struct eng_rxbuf *b, const struct sockaddr_storage *from,
				       socklen_t fromlen, uint8_t *p, uint32_t len, uint64_t now)
{
	uint64_t dcid;
	struct rudp_hdr h;
	if (!len || !rudp_peek_dcid(p, len, &dcid) || !rudp_parse_hdr(p, p + len, &h)) {
		count(&rs->n.bad_packets);
		return NULL;
	}
	struct rudp_conn *c = rudp_cid_find(rs, dcid);
	if (c) {
		if (h.type == RUDP_PKT_RETRY)
			on_retry(c, &h, p, len);
		else
			rudp_conn_input(c, &h, p, len, from, fromlen, b, now, false);
		return c;
	}
	if (h.type == RUDP_PKT_INITIAL && sock && len >= RUDP_MIN_INITIAL)
		return accept_initial(rs, sock, &h, p, len, from, fromlen, b, now);
	unsigned owner = (unsigned)(dcid >> 56);
	if (sock && owner < rs->rt->base.eng->nshards && owner != rs->sh->id) {
		forward(rs, owner, from, fromlen, p, len);
		return NULL;
	}
	count(&rs->n.unknown_cid);
	return NULL;
}

/* One packet as if it came in on sock, without a receive buffer (tests/fuzz/fuzz_rudp_conn.c). */
struct rudp_conn *rudp_packet_in(struct rudp_shard *rs, struct rudp_sock *sock,
				 const struct sockaddr_storage *from, socklen_t fromlen, uint8_t *p,
				 uint32_t len)
{
	return handle_packet(rs, sock, NULL, from, fromlen, p, len, rudp_now_us());
}

static void on_datagram(struct eng_udp *u, struct eng_rxbuf *b, const struct sockaddr *from,
			socklen_t fromlen, uint8_t *p, uint32_t len, uint16_t gso_size)
{
	struct rudp_sock *sock = u->owner;
	struct rudp_shard *rs = sock->rs;
	struct sockaddr_storage ss;
	if (fromlen > sizeof(ss))
		return;
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, from, fromlen);
	/* the kernel's drop count is per socket and sockets come and go: keep the sum per shard */
	if (u->rx_kernel_drops > sock->drops_seen) {
		atomic_fetch_add_explicit(&rs->n.kernel_drops, u->rx_kernel_drops - sock->drops_seen,
					  memory_order_relaxed);
		sock->drops_seen = u->rx_kernel_drops;
	}
	uint64_t now = rudp_now_us();
	uint32_t seg = gso_size ? gso_size : len;
	struct rudp_conn *last = NULL;
	for (uint32_t off = 0; off < len; off += seg) {
		uint32_t n = len - off < seg ? len - off : seg;
		if ((p[off] & 0xc0) == 0) {
			/* not ours (our packets set bit 6): STUN, punch probes - the layer above's */
			const struct tp_callbacks *cb = rs->rt->base.cb;
			if (cb->datagram && sock == rs->lsock)
				cb->datagram(rs->rt->base.cb_ctx, rs->sh, &ss, fromlen, p + off, n, NULL);
			else if (cb->datagram && sock->extra && sock->user)
				cb->datagram(rs->rt->base.cb_ctx, rs->sh, &ss, fromlen, p + off, n,
					     sock->user);
			else if (!sock->extra) /* late punch probes to a taken extra socket: expected */
				count(&rs->n.bad_packets);
			continue;
		}
		struct rudp_conn *c = handle_packet(rs, sock, b, &ss, fromlen, p + off, n, now);
		/* one flush per connection and batch: ACKs for the whole batch at once */
		if (last && c != last)
			rudp_conn_flush(last);
		if (c)
			last = c;
	}
	if (last)
		rudp_conn_flush(last);
}

static void on_sent(struct eng_udp *u, void *ctx, int res)
{
	struct rudp_sock *sock = u->owner;
	struct rudp_shard *rs = sock->rs;
	struct rudp_txbuf *t = ctx;
	struct rudp_conn *c = t->c;
	rudp_txbuf_put(rs, t);
	if (c)
		rudp_conn_sent(c, res);
	/* a buffer came back: let connections that waited for one go on */
	struct rudp_conn *blocked = rs->blocked;
	rs->blocked = NULL;
	while (blocked) {
		struct rudp_conn *next = blocked->next_blocked;
		blocked->blocked = false;
		rudp_conn_flush(blocked);
		blocked = next;
	}
}

static void on_sock_closed(struct eng_udp *u)
{
	struct rudp_sock *sock = u->owner;
	sock->open = false;
	sock_maybe_free(sock);
}

static const struct eng_udp_ops udp_ops = {
	.on_datagram = on_datagram,
	.on_sent = on_sent,
	.on_closed = on_sock_closed,
};

/* Don't fragment: path MTU is ours to find (RFC 8899), and probes must fail rather than split. */
static void set_dont_fragment(int fd, int family)
{
	int v = IP_PMTUDISC_PROBE;
	if (family == AF_INET6) {
		int v6 = IPV6_PMTUDISC_PROBE;
		setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v6, sizeof(v6));
	} else {
		setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof(v));
	}
}

static int open_sock(struct rudp_shard *rs, struct rudp_sock *s, int fd, int family,
		     unsigned nslots)
{
	set_dont_fragment(fd, family);
	s->rs = rs;
	s->family = family;
	s->drops_seen = 0;
	int err = eng_udp_open_slots(&s->udp, rs->sh, fd, &udp_ops, s, nslots);
	if (err) {
		close(fd);
		return err;
	}
	s->open = true;
	return 0;
}

/* ---- the vtable ---- */

/* The shard takes fd as its listening socket; the one it had (a re-bind) is retired. */
static void start_listener(struct shard *sh, int fd, int family, void *ctx)
{
	struct rudp_transport *rt = ctx;
	struct rudp_shard *rs = &rt->shards[sh->id];
	struct rudp_sock *s = NULL;
	if (!atomic_load(&sh->stop) && !rs->stopping)
		s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return;
	}
	s->listener = true;
	if (open_sock(rs, s, fd, family, ENG_UDP_SLOTS) < 0) {
		free(s);
		return;
	}
	if (rs->lsock)
		retire_sock(rs, rs->lsock);
	rs->lsock = s;
}

static int rudp_listen(struct transport *t, const struct sockaddr *addr, socklen_t len,
		       uint16_t *port, bool *fallback)
{
	struct rudp_transport *rt = (struct rudp_transport *)t;
	/* set before the shards get their sockets: an Initial on one must find it (TSan) */
	if (atomic_exchange(&rt->bound, true))
		return -EALREADY;
	int err = eng_listen_group(t->eng, SOCK_DGRAM, addr, len, port, fallback, start_listener,
				   rt);
	if (err)
		atomic_store(&rt->bound, false);
	return err;
}

/*
 * Move the listeners: bind a new group on addr's port (random if 0 or
 * taken), then each shard swaps. Connections on the old sockets keep
 * them, both ways; each old socket closes after its shard's last one.
 */
static int rudp_rebind(struct transport *t, const struct sockaddr *addr, socklen_t len,
		       uint16_t *port)
{
	struct rudp_transport *rt = (struct rudp_transport *)t;
	if (!rt->bound)
		return -ENOTCONN;
	return eng_listen_group(t->eng, SOCK_DGRAM, addr, len, port, NULL, start_listener, rt);
}

/* A socket on a random port of family's wildcard address. */
static int bind_ephemeral(int family)
{
	struct sockaddr_storage any;
	memset(&any, 0, sizeof(any));
	any.ss_family = (sa_family_t)family;
	socklen_t len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	return eng_bind_socket(SOCK_DGRAM, (struct sockaddr *)&any, len, 0);
}

/* The socket a dial from this shard uses: the listener's (one port for both ways), else our own. */
static int dial_sock(struct rudp_shard *rs, int family, struct rudp_sock **out)
{
	if (rs->lsock && rs->lsock->open && !rs->lsock->udp.closing) {
		*out = rs->lsock;
		return 0;
	}
	if (!rs->csock.open) {
		int fd = bind_ephemeral(family);
		if (fd < 0)
			return fd;
		int err = open_sock(rs, &rs->csock, fd, family, ENG_UDP_SLOTS);
		if (err)
			return err;
	}
	*out = &rs->csock;
	return 0;
}

/* A client connection from sock to addr (sock's family already checked). */
static int dial_from(struct rudp_shard *rs, struct rudp_sock *sock, const struct sockaddr *addr,
		     socklen_t len, void *user, struct tp_conn **out)
{
	struct rudp_conn *c = rudp_conn_new(rs, sock, true, 0);
	if (!c)
		return -ENOMEM;
	c->base.user = user;
	c->base.outgoing = true;
	memcpy(&c->base.remote, addr, len);
	c->base.remote_len = len;
	*out = &c->base;
	return rudp_conn_start(c);
}

static int rudp_connect(struct transport *t, struct shard *sh, const struct sockaddr *addr,
			socklen_t len, void *user, struct tp_conn **out)
{
	struct rudp_transport *rt = (struct rudp_transport *)t;
	struct rudp_shard *rs = &rt->shards[sh->id];
	struct rudp_sock *sock;
	if (rs->stopping)
		return -ESHUTDOWN;
	if (len > sizeof(struct sockaddr_storage))
		return -EINVAL;
	int err = dial_sock(rs, addr->sa_family, &sock);
	if (err)
		return err;
	if (sock == rs->lsock && addr->sa_family != rs->lsock->family)
		return -EAFNOSUPPORT;
	return dial_from(rs, sock, addr, len, user, out);
}

/* ---- extra sockets (birthday hole punching) ---- */

#define EXTRA_SLOTS 8u   /* sends in flight: enough for probes and one connection's bursts */

static int rudp_sock_open(struct transport *t, struct shard *sh, int family, void *user,
			  struct tp_sock **out)
{
	struct rudp_transport *rt = (struct rudp_transport *)t;
	struct rudp_shard *rs = &rt->shards[sh->id];
	if (rs->stopping)
		return -ESHUTDOWN;
	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	struct rudp_sock *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	int fd = bind_ephemeral(family);
	if (fd < 0) {
		free(s);
		return fd;
	}
	s->extra = true;
	s->user = user;
	int err = open_sock(rs, s, fd, family, EXTRA_SLOTS);
	if (err) {
		free(s);
		return err;
	}
	s->next_retired = rs->extras;
	rs->extras = s;
	*out = (struct tp_sock *)s;
	return 0;
}

/* One datagram outside any connection (STUN, punch probes): copied into a send buffer. */
static int send_raw(struct rudp_sock *s, const struct sockaddr *to, socklen_t tolen,
		    const void *p, size_t len)
{
	if (len > RUDP_TXBUF || tolen > sizeof(struct sockaddr_storage))
		return -EMSGSIZE;
	struct rudp_txbuf *t = rudp_sock_can_send(s) ? rudp_txbuf_get(s->rs) : NULL;
	if (!t)
		return -EAGAIN;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, to, tolen);
	memcpy(t->data, p, len);
	t->c = NULL; /* like a stateless reply: on_sent just recycles it */
	int err = sock_send(s, &ss, tolen, t, (uint32_t)len, 0);
	if (err)
		rudp_txbuf_put(s->rs, t);
	return err;
}

static int rudp_sock_send(struct tp_sock *ts, const struct sockaddr *to, socklen_t tolen,
			  const void *p, size_t len)
{
	struct rudp_sock *s = (struct rudp_sock *)ts;
	if (to->sa_family != s->family)
		return -EAFNOSUPPORT;
	return send_raw(s, to, tolen, p, len);
}

static void rudp_sock_close(struct tp_sock *ts)
{
	struct rudp_sock *s = (struct rudp_sock *)ts;
	s->user = NULL;
	if (!s->nconns)
		close_sock(s); /* on_sock_closed frees it */
}

static int rudp_connect_on(struct tp_sock *ts, const struct sockaddr *addr, socklen_t len,
			   void *user, struct tp_conn **out)
{
	struct rudp_sock *s = (struct rudp_sock *)ts;
	struct rudp_shard *rs = s->rs;
	s->user = NULL; /* the connection's now: no more datagram callbacks */
	int err = -ESHUTDOWN;
	if (rs->stopping || !s->open || s->udp.closing)
		goto close;
	err = -EINVAL;
	if (len > sizeof(struct sockaddr_storage))
		goto close;
	err = -EAFNOSUPPORT;
	if (addr->sa_family != s->family)
		goto close;
	/* the connection holds the socket from rudp_conn_new on: its end closes it */
	err = dial_from(rs, s, addr, len, user, out);
	if (s->nconns)
		return err;
close:
	rudp_sock_close(ts);
	return err;
}

static int rudp_send_datagram(struct transport *t, struct shard *sh, const struct sockaddr *to,
			      socklen_t tolen, const void *p, size_t len)
{
	struct rudp_transport *rt = (struct rudp_transport *)t;
	struct rudp_shard *rs = &rt->shards[sh->id];
	struct rudp_sock *ls = rs->lsock; /* the current listening socket: STUN sees its mapping */
	if (!ls || !ls->open || ls->udp.closing)
		return -ENOTCONN;
	return send_raw(ls, to, tolen, p, len);
}

static int rudp_send(struct tp_conn *tc, struct crust_msg *m)
{
	return rudp_conn_send_msg((struct rudp_conn *)tc, m);
}

static void rudp_close(struct tp_conn *tc, int err, const char *reason)
{
	rudp_conn_close((struct rudp_conn *)tc, err, reason, true);
}

static void rudp_shutdown(struct tp_conn *tc, int err, const char *reason)
{
	rudp_conn_shutdown((struct rudp_conn *)tc, err, reason);
}

static void rudp_set_sealer(struct tp_conn *tc, const struct eng_sealer *sealer)
{
	rudp_conn_set_sealer((struct rudp_conn *)tc, sealer);
}

static int rudp_set_packet_keys(struct tp_conn *tc, const struct tp_packet_keys *keys)
{
	return rudp_conn_set_keys((struct rudp_conn *)tc, keys);
}

static void rudp_stop_shard(struct transport *t, struct shard *sh)
{
	struct rudp_transport *rt = (struct rudp_transport *)t;
	struct rudp_shard *rs = &rt->shards[sh->id];
	rs->stopping = true;
	for (struct rudp_conn *c = rs->conns; c; c = c->next)
		rudp_conn_close(c, 0, "service stopped", true);
	/* each listening socket is freed by its close, or by its last connection's end */
	for (struct rudp_sock *s = rs->retired, *next; s; s = next) {
		next = s->next_retired;
		close_sock(s);
	}
	if (rs->lsock)
		close_sock(rs->lsock);
	for (struct rudp_sock *s = rs->extras; s; s = s->next_retired) {
		s->user = NULL;
		close_sock(s);
	}
	close_sock(&rs->csock);
}

static void rudp_stats(struct transport *t, struct tp_stats *out)
{
	struct rudp_transport *rt = (struct rudp_transport *)t;
	for (unsigned i = 0; i < t->eng->nshards; i++) {
		struct rudp_counters *n = &rt->shards[i].n;
#define ADD(f) out->f += atomic_load_explicit(&n->f, memory_order_relaxed)
		ADD(rx_packets);
		ADD(tx_packets);
		ADD(bad_packets);
		ADD(auth_failures);
		ADD(unknown_cid);
		ADD(lost_packets);
		ADD(retx_bytes);
		ADD(retries_sent);
		ADD(kernel_drops);
		ADD(dup_packets);
		ADD(late_packets);
#undef ADD
	}
}

static void rudp_destroy(struct transport *t)
{
	struct rudp_transport *rt = (struct rudp_transport *)t;
	for (unsigned i = 0; rt->shards && i < rt->nshards; i++) {
		struct rudp_shard *rs = &rt->shards[i];
		while (rs->free_tx) {
			struct rudp_txbuf *n = rs->free_tx->next;
			free(rs->free_tx);
			rs->free_tx = n;
		}
		for (unsigned b = 0; b < RUDP_CID_BUCKETS; b++) {
			while (rs->cids[b]) {
				struct rudp_cid_ent *e = rs->cids[b];
				rs->cids[b] = e->next;
				free(e);
			}
		}
	}
	free(rt->shards);
	sodium_memzero(rt->secret, sizeof(rt->secret));
	free(rt);
}

static const struct transport_vtable rudp_vtable = {
	.kind = CRUST_TRANSPORT_RUDP,
	.name = "rudp",
	.listen = rudp_listen,
	.rebind = rudp_rebind,
	.connect = rudp_connect,
	.send_datagram = rudp_send_datagram,
	.sock_open = rudp_sock_open,
	.sock_send = rudp_sock_send,
	.connect_on = rudp_connect_on,
	.sock_close = rudp_sock_close,
	.send = rudp_send,
	.close = rudp_close,
	.shutdown = rudp_shutdown,
	.set_sealer = rudp_set_sealer,
	.set_packet_keys = rudp_set_packet_keys,
	.stats = rudp_stats,
	.stop_shard = rudp_stop_shard,
	.destroy = rudp_destroy,
};

int rudp_transport_new(struct eng *eng, const struct tp_callbacks *cb, void *cb_ctx,
		       const struct tp_limits *limits, const struct rudp_options *opt,
		       struct transport **out)
{
	const struct rudp_cc_ops *cc = rudp_cc_find(opt ? opt->cc : NULL);
	if (!cc)
		return -EINVAL;
	struct rudp_transport *rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->shards = calloc(eng->nshards, sizeof(*rt->shards));
	if (!rt->shards) {
		free(rt);
		return -ENOMEM;
	}
	rt->nshards = eng->nshards;
	for (unsigned i = 0; i < eng->nshards; i++) {
		rt->shards[i].rt = rt;
		rt->shards[i].sh = &eng->shards[i];
		rt->shards[i].csock.udp.fd = -1;
	}
	randombytes_buf(rt->secret, sizeof(rt->secret));
	rt->cc = cc;
	rt->retry_pending = opt && opt->retry_pending ? opt->retry_pending : RETRY_PENDING_DEFAULT;
	rt->base.vt = &rudp_vtable;
	rt->base.eng = eng;
	rt->base.cb = cb;
	rt->base.cb_ctx = cb_ctx;
	rt->base.limits = *limits;
	if (!rt->base.limits.idle_timeout_ms)
		rt->base.limits.idle_timeout_ms = 30000;
	*out = &rt->base;
	return 0;
}
