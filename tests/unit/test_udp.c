/*
 * test_udp.c - datagram sockets on a real shard (engine/udp.c): GSO sends,
 * GRO receives through the provided buffers, send-slot accounting, close.
 *
 * Everything in the engine is shard-thread-only, so the test thread posts
 * mails that run the socket work on the shard and waits on semaphores the
 * callbacks post. Results are read after eng_free() joined the shard.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <semaphore.h>
#include <stdlib.h>
#include <time.h>

#include "engine/listener.h"
#include "engine/udp.h"

#define MAX_SENDS 80
#define MAX_CALLS 256
#define RX_CAP (256 * 1024)

struct rx_call {
	uint32_t len;
	uint16_t gso;
};

struct udp_test {
	struct eng *e;
	struct eng_mail setup_mail, close_mail;
	struct eng_udp a, b;                /* a sends, b receives */
	struct sockaddr_in addr_a, addr_b;
	/* the plan: nsends sends of send_len bytes each, cut by gso */
	unsigned nsends;
	uint32_t send_len;
	uint16_t gso;
	uint8_t *payload;                   /* nsends * send_len, valid until on_sent */
	size_t expect_rx;
	/* results, written on the shard */
	int setup_err;
	int send_ret[MAX_SENDS + 1];
	int extra_send_ret;                 /* one more send than there are slots */
	int sent_res[MAX_SENDS];
	unsigned sent_calls, sent_bad_ctx, wrong_owner;
	uint8_t *rx;
	size_t rx_len;
	struct rx_call calls[MAX_CALLS];
	unsigned ncalls, bad_from;
	int einval_ret, enotconn_ret;
	unsigned closed;
	unsigned live_after_close;
	sem_t setup_done, rx_done, sent_done, closed_sem;
};

static struct udp_test *test_of(struct eng_udp *u)
{
	return u->owner;
}

static void on_datagram(struct eng_udp *u, struct eng_rxbuf *b, const struct sockaddr *from,
			socklen_t fromlen, uint8_t *p, uint32_t len, uint16_t gso_size)
{
	struct udp_test *t = test_of(u);
	(void)b;
	if (u != &t->b)
		t->wrong_owner++;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)from;
	if (fromlen != sizeof(*sin) || sin->sin_family != AF_INET ||
	    sin->sin_port != t->addr_a.sin_port || sin->sin_addr.s_addr != t->addr_a.sin_addr.s_addr)
		t->bad_from++;
	if (t->ncalls < MAX_CALLS)
		t->calls[t->ncalls] = (struct rx_call){ len, gso_size };
	t->ncalls++;
	size_t room = RX_CAP - t->rx_len;
	memcpy(t->rx + t->rx_len, p, len < room ? len : room);
	size_t before = t->rx_len;
	t->rx_len += len;
	if (before < t->expect_rx && t->rx_len >= t->expect_rx)
		sem_post(&t->rx_done);
}

static void on_sent(struct eng_udp *u, void *ctx, int res)
{
	struct udp_test *t = test_of(u);
	uintptr_t i = (uintptr_t)ctx;
	if (u != &t->a)
		t->wrong_owner++;
	if (i >= t->nsends || t->sent_res[i] != 0)
		t->sent_bad_ctx++;
	else
		t->sent_res[i] = res;
	if (++t->sent_calls == t->nsends)
		sem_post(&t->sent_done);
}

static void on_closed(struct eng_udp *u)
{
	struct udp_test *t = test_of(u);
	t->closed++;
	t->live_after_close = u->sh->live;
	sem_post(&t->closed_sem);
}

static const struct eng_udp_ops ops = {
	.on_datagram = on_datagram,
	.on_sent = on_sent,
	.on_closed = on_closed,
};

static int open_bound(struct eng_udp *u, struct shard *sh, struct sockaddr_in *addr, void *owner)
{
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = eng_bind_socket(SOCK_DGRAM, (struct sockaddr *)&lo, sizeof(lo), 0);
	if (fd < 0)
		return fd;
	*addr = lo;
	addr->sin_port = htons(eng_bound_port(fd));
	if (addr->sin_port == 0)
		return -EADDRNOTAVAIL;
	return eng_udp_open(u, sh, fd, &ops, owner);
}

/* On the shard: open both sockets and issue every planned send at once. */
static void setup_fn(struct shard *sh, struct eng_mail *m)
{
	struct udp_test *t = container_of(m, struct udp_test, setup_mail);
	t->setup_err = open_bound(&t->a, sh, &t->addr_a, t);
	if (!t->setup_err)
		t->setup_err = open_bound(&t->b, sh, &t->addr_b, t);
	if (t->setup_err) {
		sem_post(&t->setup_done);
		return;
	}
	for (unsigned i = 0; i < t->nsends; i++) {
		struct iovec iov = { t->payload + (size_t)i * t->send_len, t->send_len };
		t->send_ret[i] = eng_udp_send(&t->a, (struct sockaddr *)&t->addr_b, sizeof(t->addr_b),
					      &iov, 1, t->gso, (void *)(uintptr_t)i);
	}
	if (t->nsends == ENG_UDP_SLOTS) {
		/* nothing has completed yet: every slot is still in flight */
		struct iovec iov = { t->payload, 1 };
		t->extra_send_ret = eng_udp_send(&t->a, (struct sockaddr *)&t->addr_b,
						 sizeof(t->addr_b), &iov, 1, 0, (void *)(uintptr_t)~0u);
	}
	sem_post(&t->setup_done);
}

static void close_fn(struct shard *sh, struct eng_mail *m)
{
	struct udp_test *t = container_of(m, struct udp_test, close_mail);
	struct iovec iov[ENG_UDP_IOV + 1];
	(void)sh;
	memset(iov, 0, sizeof(iov));
	t->einval_ret = eng_udp_send(&t->a, (struct sockaddr *)&t->addr_b, sizeof(t->addr_b), iov,
				     ENG_UDP_IOV + 1, 0, NULL);
	eng_udp_close(&t->a);
	eng_udp_close(&t->b);
	eng_udp_close(&t->b); /* idempotent */
	t->enotconn_ret = eng_udp_send(&t->a, (struct sockaddr *)&t->addr_b, sizeof(t->addr_b), iov,
				       1, 0, NULL);
}

static void wait_sem(sem_t *s, const char *what)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	int ret;
	while ((ret = sem_timedwait(s, &ts)) < 0 && errno == EINTR)
		;
	cr_assert(zero(int, ret), "timed out waiting for %s", what);
}

static struct udp_test *udp_test_new(unsigned nsends, uint32_t send_len, uint16_t gso)
{
	struct udp_test *t = calloc(1, sizeof(*t));
	cr_assert(not(eq(ptr, t, NULL)));
	cr_assert(le(uint, nsends, MAX_SENDS));
	t->nsends = nsends;
	t->send_len = send_len;
	t->gso = gso;
	t->expect_rx = (size_t)nsends * send_len;
	t->payload = malloc(t->expect_rx);
	t->rx = malloc(RX_CAP);
	cr_assert(t->payload && t->rx);
	for (size_t i = 0; i < t->expect_rx; i++)
		t->payload[i] = (uint8_t)(i * 13 + (i >> 9) + 1);
	for (unsigned i = 0; i < nsends; i++)
		t->payload[(size_t)i * send_len] = (uint8_t)i; /* names its send */
	sem_init(&t->setup_done, 0, 0);
	sem_init(&t->rx_done, 0, 0);
	sem_init(&t->sent_done, 0, 0);
	sem_init(&t->closed_sem, 0, 0);
	struct eng_config cfg = {
		.shards = 1,
		.sq_entries = 32, /* fewer than one test's SQEs: eng_sqe must submit when full */
		.rx_buffer_size = 64 * 1024,
		.rx_buffer_count = 128,
		.tx_arena_size = 64 * 1024,
	};
	cr_assert(zero(int, eng_new(&cfg, &t->e)));
	return t;
}

/* Send the plan, wait for every byte and every on_sent, close, stop the engine. */
static void udp_test_run(struct udp_test *t)
{
	struct shard *sh = &t->e->shards[0];
	t->setup_mail.fn = setup_fn;
	eng_post(sh, &t->setup_mail);
	wait_sem(&t->setup_done, "setup");
	cr_assert(zero(int, t->setup_err), "setup: %s", strerror(-t->setup_err));
	for (unsigned i = 0; i < t->nsends; i++)
		cr_assert(zero(int, t->send_ret[i]), "send %u: %d", i, t->send_ret[i]);
	wait_sem(&t->sent_done, "every on_sent");
	wait_sem(&t->rx_done, "every byte");
	t->close_mail.fn = close_fn;
	eng_post(sh, &t->close_mail);
	wait_sem(&t->closed_sem, "on_closed");
	wait_sem(&t->closed_sem, "on_closed");
	eng_free(t->e);
	t->e = NULL;
	cr_assert(eq(uint, t->closed, 2), "on_closed exactly once per socket");
	cr_assert(zero(uint, t->live_after_close), "the shard counts no live socket");
	cr_assert(eq(int, t->einval_ret, -EINVAL));
	cr_assert(eq(int, t->enotconn_ret, -ENOTCONN));
	cr_assert(zero(uint, t->wrong_owner));
	cr_assert(zero(uint, t->bad_from), "the source address is the sender's");
	cr_assert(zero(uint, t->sent_bad_ctx));
	cr_assert(eq(uint, t->sent_calls, t->nsends));
	for (unsigned i = 0; i < t->nsends; i++)
		cr_assert(eq(int, t->sent_res[i], (int)t->send_len), "send %u", i);
	cr_assert(eq(sz, t->rx_len, t->expect_rx), "nothing more, nothing less");
	cr_assert(zero(u64, t->b.rx_truncated));
	cr_assert(le(uint, t->ncalls, MAX_CALLS));
}

static void udp_test_free(struct udp_test *t)
{
	sem_destroy(&t->setup_done);
	sem_destroy(&t->rx_done);
	sem_destroy(&t->sent_done);
	sem_destroy(&t->closed_sem);
	free(t->payload);
	free(t->rx);
	free(t);
}

/* Datagrams the callbacks stand for: a GRO batch is ceil(len / gso) of them. */
static unsigned datagrams(const struct udp_test *t)
{
	unsigned n = 0;
	for (unsigned i = 0; i < t->ncalls; i++) {
		const struct rx_call *c = &t->calls[i];
		n += c->gso ? (c->len + c->gso - 1) / c->gso : 1;
	}
	return n;
}

/* Every GRO batch is whole segments of its gso_size, except possibly the last. */
static void check_segments(const struct udp_test *t, uint16_t seg)
{
	for (unsigned i = 0; i < t->ncalls; i++) {
		const struct rx_call *c = &t->calls[i];
		cr_assert(c->gso == 0 || c->gso == seg, "call %u: gso %u", i, c->gso);
		cr_assert(le(u32, c->len, c->gso ? 64u * 1024 : seg), "call %u: %u bytes", i, c->len);
	}
}

Test(udp, gso_batch_arrives_whole_and_in_order, .timeout = 15)
{
	struct udp_test *t = udp_test_new(1, 10 * 1000, 1000);
	udp_test_run(t);
	cr_assert(zero(int, memcmp(t->rx, t->payload, t->expect_rx)), "content and order");
	check_segments(t, 1000);
	cr_assert(eq(uint, datagrams(t), 10), "ten segments went out");
	cr_assert(eq(u64, t->a.tx_sends, 1));
	udp_test_free(t);
}

Test(udp, gso_batch_with_a_short_last_segment, .timeout = 15)
{
	struct udp_test *t = udp_test_new(1, 3500, 1000);
	udp_test_run(t);
	cr_assert(zero(int, memcmp(t->rx, t->payload, t->expect_rx)));
	check_segments(t, 1000);
	cr_assert(eq(uint, datagrams(t), 4), "1000 + 1000 + 1000 + 500");
	udp_test_free(t);
}

Test(udp, plain_datagram_without_gso, .timeout = 15)
{
	struct udp_test *t = udp_test_new(1, 700, 0);
	udp_test_run(t);
	cr_assert(eq(uint, t->ncalls, 1));
	cr_assert(eq(u32, t->calls[0].len, 700));
	cr_assert(eq(u16, t->calls[0].gso, 0));
	cr_assert(zero(int, memcmp(t->rx, t->payload, 700)));
	udp_test_free(t);
}

Test(udp, every_send_slot_busy_gives_eagain_then_all_complete, .timeout = 15)
{
	/* 64 sends in one go, 100 bytes each: the 65th finds no free slot */
	struct udp_test *t = udp_test_new(ENG_UDP_SLOTS, 100, 0);
	udp_test_run(t);
	cr_assert(eq(int, t->extra_send_ret, -EAGAIN));
	cr_assert(eq(u64, t->a.tx_sends, ENG_UDP_SLOTS));
	cr_assert(eq(uint, datagrams(t), ENG_UDP_SLOTS));
	/* each datagram whole and exactly once; loopback order is not promised */
	bool seen[ENG_UDP_SLOTS] = { false };
	size_t off = 0;
	for (unsigned i = 0; i < t->ncalls; i++) {
		cr_assert(eq(u32, t->calls[i].len, 100));
		const uint8_t *d = t->rx + off;
		unsigned k = d[0];
		cr_assert(lt(uint, k, ENG_UDP_SLOTS), "datagram %u names no send", i);
		cr_assert(zero(int, memcmp(d, t->payload + (size_t)k * 100, 100)), "send %u", k);
		cr_assert(not(seen[k]), "send %u arrived twice", k);
		seen[k] = true;
		off += 100;
	}
	udp_test_free(t);
}
