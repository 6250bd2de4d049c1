/*
 * test_listener.c - engine/listener.c's socket helpers on their error
 * paths: families the kernel refuses, addresses that are not ours, ports
 * taken by someone else (the fallback to a random port), and a listener
 * whose accept fails and is retried. Loopback only; 192.0.2.1 (TEST-NET-1)
 * is only bound to, never sent to.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/addr.h"
#include "engine/engine.h"
#include "engine/listener.h"
#include "addrs.h"

Test(listener, a_family_the_kernel_lacks_is_an_errno)
{
	struct sockaddr_storage ss = v4("127.0.0.1", 0);
	ss.ss_family = AF_APPLETALK + 200; /* no such family */
	int fd = eng_bind_socket(SOCK_STREAM, (struct sockaddr *)&ss, sizeof(struct sockaddr_in),
				 ENG_BIND_REUSEPORT);
	cr_assert(eq(int, fd, -EAFNOSUPPORT));
}

Test(listener, an_address_that_is_not_ours_cannot_be_bound)
{
	struct sockaddr_storage ss = v4("192.0.2.1", 0);
	int fd = eng_bind_socket(SOCK_DGRAM, (struct sockaddr *)&ss, sizeof(struct sockaddr_in),
				 ENG_BIND_REUSEPORT);
	cr_assert(eq(int, fd, -EADDRNOTAVAIL));
	bool fallback = true;
	int fds[2];
	cr_assert(eq(int, eng_bind_port_group(SOCK_STREAM, &ss, sizeof(struct sockaddr_in), 2, fds,
					      &fallback),
		     -EADDRNOTAVAIL));
	cr_assert(not(fallback), "a refused address is not a taken port");
}

Test(listener, a_bad_length_is_an_errno_and_leaks_no_descriptor)
{
	struct sockaddr_storage ss = v4("127.0.0.1", 0);
	int probe = open("/dev/null", O_RDONLY); /* the lowest free descriptor */
	cr_assert(ge(int, probe, 0));
	close(probe);
	cr_assert(eq(int, eng_bind_socket(SOCK_STREAM, (struct sockaddr *)&ss, 3, 0), -EINVAL));
	int next = open("/dev/null", O_RDONLY);
	cr_assert(eq(int, next, probe), "the failed socket was closed");
	close(next);
}

Test(listener, a_udp_port_is_shared_only_when_asked)
{
	/* another process's beacon-like socket: SO_REUSEADDR on a UDP port */
	struct sockaddr_storage ss = v4("127.0.0.1", 0);
	socklen_t len = sizeof(struct sockaddr_in);
	int shared = eng_bind_socket(SOCK_DGRAM, (struct sockaddr *)&ss, len, ENG_BIND_SHARED);
	cr_assert(ge(int, shared, 0));
	eng_addr_set_port(&ss, eng_bound_port(shared));
	/* a plain or reuseport socket must not slip in beside it (both with SO_REUSEADDR, the
	 * kernel would let it and split the port's datagrams) */
	cr_assert(eq(int, eng_bind_socket(SOCK_DGRAM, (struct sockaddr *)&ss, len, 0), -EADDRINUSE));
	int fds[2];
	bool fallback = false;
	cr_assert(zero(int, eng_bind_port_group(SOCK_DGRAM, &ss, len, 2, fds, &fallback)));
	cr_assert(fallback, "the group went to another port");
	cr_assert(not(eq(u16, eng_addr_port(&ss), eng_bound_port(shared))));
	/* a group asked for port 0 gets a port nobody holds */
	struct sockaddr_storage any = v4("127.0.0.1", 0);
	int g[2];
	cr_assert(zero(int, eng_bind_port_group(SOCK_DGRAM, &any, len, 2, g, &fallback)));
	cr_assert(not(fallback));
	cr_assert(not(eq(u16, eng_addr_port(&any), eng_bound_port(shared))));
	cr_assert(eq(u16, eng_bound_port(g[0]), eng_bound_port(g[1])));
	for (int i = 0; i < 2; i++) {
		close(fds[i]);
		close(g[i]);
	}
	close(shared);
}

Test(listener, a_taken_port_falls_back_to_a_random_one)
{
	struct sockaddr_storage ss = v4("127.0.0.1", 0);
	socklen_t len = sizeof(struct sockaddr_in);
	/* someone else holds the port, without SO_REUSEPORT */
	int other = eng_bind_socket(SOCK_STREAM, (struct sockaddr *)&ss, len, 0);
	cr_assert(ge(int, other, 0));
	uint16_t taken = eng_bound_port(other);
	cr_assert(gt(u16, taken, 0));
	eng_addr_set_port(&ss, taken);
	int fds[3];
	bool fallback = false;
	cr_assert(zero(int, eng_bind_port_group(SOCK_STREAM, &ss, len, 3, fds, &fallback)));
	cr_assert(fallback);
	uint16_t got = eng_addr_port(&ss);
	cr_assert(ne(u16, got, taken));
	for (int i = 0; i < 3; i++) {
		cr_assert(eq(u16, eng_bound_port(fds[i]), got), "every shard on the same port");
		close(fds[i]);
	}
	close(other);
}

Test(listener, a_free_port_is_used_as_asked)
{
	struct sockaddr_storage ss = v4("127.0.0.1", 0);
	socklen_t len = sizeof(struct sockaddr_in);
	int fds[2];
	bool fallback = true;
	cr_assert(zero(int, eng_bind_port_group(SOCK_DGRAM, &ss, len, 2, fds, &fallback)));
	cr_assert(not(fallback));
	uint16_t port = eng_addr_port(&ss);
	close(fds[0]);
	close(fds[1]);
	cr_assert(zero(int, eng_bind_port_group(SOCK_DGRAM, &ss, len, 2, fds, &fallback)));
	cr_assert(not(fallback));
	cr_assert(eq(u16, eng_addr_port(&ss), port));
	close(fds[0]);
	close(fds[1]);
}

Test(listener, bound_port_of_a_closed_descriptor_is_zero)
{
	cr_assert(zero(u16, eng_bound_port(-1)));
}

/* --- a running listener whose socket stops listening: accept fails and is retried --- */

struct accept_test {
	struct eng *e;
	struct eng_listener l;
	struct eng_mail start, stop;
	int fd;
	sem_t closed;
};

static atomic_int retries_logged;

static void count_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)level;
	if (strstr(msg, "accept:") && strstr(msg, "retrying"))
		atomic_fetch_add(&retries_logged, 1);
}

static void on_accept(struct eng_listener *l, int fd)
{
	(void)l;
	close(fd);
}

static void on_closed(struct eng_listener *l)
{
	struct accept_test *t = l->owner;
	sem_post(&t->closed);
}

static void start_fn(struct shard *sh, struct eng_mail *m)
{
	struct accept_test *t = container_of(m, struct accept_test, start);
	eng_listener_start(&t->l, sh, t->fd, on_accept, on_closed, t);
}

static void stop_fn(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct accept_test *t = container_of(m, struct accept_test, stop);
	eng_listener_close(&t->l);
}

Test(listener, an_accept_on_a_socket_that_does_not_listen_is_retried_until_closed, .timeout = 20)
{
	static struct accept_test t;
	sem_init(&t.closed, 0, 0);
	struct eng_config cfg = { .shards = 1, .rx_buffer_count = 8, .rx_buffer_size = 4096,
				  .tx_arena_size = 65536, .log = count_log };
	cr_assert(zero(int, eng_new(&cfg, &t.e)));
	struct sockaddr_storage ss = v4("127.0.0.1", 0);
	/* a datagram socket: every accept ends with -EOPNOTSUPP */
	t.fd = eng_bind_socket(SOCK_DGRAM, (struct sockaddr *)&ss, sizeof(struct sockaddr_in), 0);
	cr_assert(ge(int, t.fd, 0));
	t.start.fn = start_fn;
	eng_post(&t.e->shards[0], &t.start);
	struct timespec ts = { 0, 350 * 1000000 }; /* a few retries (100 ms apart) */
	nanosleep(&ts, NULL);
	t.stop.fn = stop_fn;
	eng_post(&t.e->shards[0], &t.stop);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	cr_assert(zero(int, sem_timedwait(&t.closed, &ts)), "on_closed after close");
	cr_assert(zero(uint, t.e->shards[0].live));
	cr_assert(ge(int, atomic_load(&retries_logged), 2), "the failed accept was retried");
	eng_free(t.e);
}
