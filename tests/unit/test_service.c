/*
 * test_service.c - the public API end to end (p2p/, over the TCP
 * transport and real shards): services in one process talking over
 * loopback sockets.
 *
 * Every service binds 127.0.0.1 on a random port and learns it from its
 * LISTENER_STARTED event. Waiting is always for an event (or a counter)
 * with a generous deadline that only bounds a hang: no assertion depends
 * on how long anything took. Events that arrive while a test waits for
 * another kind are kept (struct node's stash) and looked at later or
 * released at the end, so no message is ever leaked.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crust.h"
#include "engine/msg.h" /* only to tell VIEW from HEAP messages */
#include "p2p/handshake.h" /* a raw peer that completes the handshake and never reads */
#include "p2p/ports.h"     /* moving the listeners now, not on the bootstrap thread's clock */
#include "p2p/session.h"

#define WAIT_MS 10000 /* ceiling for one expected event: a hang, not a slow run */
#define STASH 512

/* ---- small helpers ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

/* splitmix64: one seeded stream both sender and receiver can replay */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		if (i % 8 == 0)
			seed = mix64(seed);
		p[i] = (uint8_t)(seed >> (8 * (i % 8)));
	}
}

static struct crust_peer_id random_id(uint64_t seed)
{
	struct crust_peer_id id;
	fill_random(id.bytes, sizeof(id.bytes), seed);
	return id;
}

static void quiet_log(void *ctx, enum crust_log_level level, const char *msg)
{
	(void)ctx;
	(void)level;
	(void)msg;
}

static void base_config(struct crust_config *cfg, unsigned shards)
{
	crust_config_init(cfg);
	cfg->shards = shards;
	cfg->pin_shards = false; /* two services in one process: let the scheduler spread them */
	cfg->bind_addr = "127.0.0.1";
	cfg->tcp_port = 0;
	cfg->no_beacon = true; /* tests stay off the host's network */
	cfg->log = quiet_log;
}

/* The transport tests dial with (one helper serves both; Criterion forks per test). */
static enum crust_transport dial_transport = CRUST_TRANSPORT_TCP;

static struct crust_endpoint loopback(uint16_t port)
{
	char s[48];
	struct crust_endpoint ep;
	snprintf(s, sizeof(s), "%s://127.0.0.1:%u", crust_transport_name(dial_transport), port);
	cr_assert(zero(int, crust_endpoint_parse(s, &ep)));
	return ep;
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static bool id_eq(const struct crust_peer_id *a, const struct crust_peer_id *b)
{
	return crust_peer_eq(a, b);
}

/* ---- a service under test and the events it has not handed out yet ---- */

struct node {
	struct crust_service *svc;
	struct crust_peer_id id;
	uint16_t port, rudp_port;
	struct crust_event stash[STASH];
	int nstash;
};

static void stash_push(struct node *n, const struct crust_event *ev)
{
	cr_assert(lt(int, n->nstash, STASH), "too many unexpected events (last: %s)",
		  crust_event_name(ev->type));
	n->stash[n->nstash++] = *ev;
}

/* Take the oldest stashed event of type; false if none. */
static bool stash_take(struct node *n, enum crust_event_type type, struct crust_event *out)
{
	for (int i = 0; i < n->nstash; i++) {
		if (n->stash[i].type != type)
			continue;
		*out = n->stash[i];
		memmove(&n->stash[i], &n->stash[i + 1], (size_t)(n->nstash - i - 1) * sizeof(*out));
		n->nstash--;
		return true;
	}
	return false;
}

static int stash_count(const struct node *n, enum crust_event_type type)
{
	int c = 0;
	for (int i = 0; i < n->nstash; i++)
		c += n->stash[i].type == type;
	return c;
}

/* The next event of type (older ones of other types are stashed); false after timeout_ms. */
static bool wait_event(struct node *n, enum crust_event_type type, int timeout_ms,
		       struct crust_event *out)
{
	if (stash_take(n, type, out))
		return true;
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		uint64_t now = now_ms();
		if (now >= deadline)
			return false;
		struct crust_event ev;
		int got = crust_poll(n->svc, &ev, 1, (int)(deadline - now));
		cr_assert(ge(int, got, 0), "crust_poll: %d", got);
		if (got == 0)
			continue;
		if (ev.type == type) {
			*out = ev;
			return true;
		}
		stash_push(n, &ev);
	}
}

static struct crust_event expect_event(struct node *n, enum crust_event_type type)
{
	struct crust_event ev;
	cr_assert(wait_event(n, type, WAIT_MS, &ev), "no %s event", crust_event_name(type));
	return ev;
}

static void node_start(struct node *n, const struct crust_config *cfg)
{
	memset(n, 0, sizeof(*n));
	cr_assert(zero(int, crust_service_new(cfg, &n->svc)));
	crust_own_id(n->svc, &n->id);
	cr_assert(zero(int, crust_start_listening(n->svc)));
	struct crust_event ev = expect_event(n, CRUST_EV_LISTENER_STARTED);
	cr_assert(eq(int, ev.transport, CRUST_TRANSPORT_TCP));
	cr_assert(not(zero(u16, ev.port)));
	cr_assert(not(ev.fallback), "port 0 asked for: no fallback");
	n->port = ev.port;
	/* a UDP listener wherever TCP listens, on the same port number when it is free */
	ev = expect_event(n, CRUST_EV_LISTENER_STARTED);
	cr_assert(eq(int, ev.transport, CRUST_TRANSPORT_RUDP));
	cr_assert(not(zero(u16, ev.port)));
	n->rudp_port = ev.port;
}

/* The port b dials on a with the transport under test. */
static uint16_t dial_port(const struct node *a)
{
	return dial_transport == CRUST_TRANSPORT_RUDP ? a->rudp_port : a->port;
}

static void node_stop(struct node *n)
{
	for (int i = 0; i < n->nstash; i++)
		crust_msg_release(n->stash[i].msg);
	n->nstash = 0;
	crust_service_free(n->svc);
	n->svc = NULL;
}

/* b dials a; both see the other come up. */
static void connect_nodes(struct node *a, struct node *b)
{
	struct crust_endpoint ep = loopback(dial_port(a));
	cr_assert(zero(int, crust_connect(b->svc, &ep)));
	struct crust_event ea = expect_event(a, CRUST_EV_NEW_CONNECTION);
	struct crust_event eb = expect_event(b, CRUST_EV_NEW_CONNECTION);
	cr_assert(id_eq(&ea.peer, &b->id), "a sees b's id");
	cr_assert(id_eq(&eb.peer, &a->id), "b sees a's id");
	cr_assert(eq(int, ea.transport, dial_transport));
	cr_assert(eq(int, eb.transport, dial_transport));
	cr_assert(eq(u16, addr_port(&eb.addr), dial_port(a)), "b dialled a's port");
}

/* The next NEW_MESSAGE; its bytes are compared with want, then it is released. */
static void expect_message(struct node *n, const struct crust_peer_id *from, const void *want,
			   size_t len)
{
	struct crust_event ev = expect_event(n, CRUST_EV_NEW_MESSAGE);
	cr_assert(id_eq(&ev.peer, from), "message from the right peer");
	cr_assert(not(eq(ptr, ev.msg, NULL)));
	cr_assert(eq(sz, crust_msg_len(ev.msg), len));
	cr_assert(zero(int, memcmp(crust_msg_data(ev.msg), want, len)));
	crust_msg_release(ev.msg);
}

static void expect_peers(struct node *n, const struct crust_peer_id *only)
{
	struct crust_peer_id ids[4];
	int got = crust_peers(n->svc, ids, 4);
	if (!only) {
		cr_assert(zero(int, got));
		return;
	}
	cr_assert(eq(int, got, 1));
	cr_assert(id_eq(&ids[0], only));
}

/* ---- lifecycle ---- */

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	cr_assert(not(eq(ptr, d, NULL)));
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

Test(service, new_listen_free_leaves_no_descriptor_behind, .timeout = 60)
{
	/*
	 * Freed right after crust_start_listening, a shard may see the stop
	 * before the mail that starts its listener: that listener must still
	 * be closed.
	 */
	struct crust_config cfg;
	base_config(&cfg, 2);
	int before = open_fds();
	for (int i = 0; i < 30; i++) {
		struct crust_service *svc;
		cr_assert(zero(int, crust_service_new(&cfg, &svc)));
		cr_assert(zero(int, crust_start_listening(svc)));
		cr_assert(eq(int, crust_start_listening(svc), -EALREADY));
		crust_service_free(svc);
	}
	cr_assert(eq(int, open_fds(), before));
}

/* ---- hello world ---- */

struct hello_case {
	unsigned shards;
	enum crust_transport transport;
};

ParameterizedTestParameters(service, hello_world_between_two_services)
{
	static struct hello_case cases[] = {
		{ 1, CRUST_TRANSPORT_TCP }, { 2, CRUST_TRANSPORT_TCP },
		{ 1, CRUST_TRANSPORT_RUDP }, { 2, CRUST_TRANSPORT_RUDP },
	};
	return cr_make_param_array(struct hello_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct hello_case *hc, service, hello_world_between_two_services, .timeout = 30)
{
	struct crust_config cfg;
	base_config(&cfg, hc->shards);
	dial_transport = hc->transport;
	static struct node a, b;
	node_start(&a, &cfg);
	node_start(&b, &cfg);
	cr_assert(not(id_eq(&a.id, &b.id)), "every service has its own id");
	cr_assert(not(eq(u16, a.port, b.port)));
	expect_peers(&a, NULL);

	connect_nodes(&a, &b);
	expect_peers(&a, &b.id);
	expect_peers(&b, &a.id);

	static const char from_a[] = "hello from a", from_b[] = "and hello back from b";
	cr_assert(zero(int, crust_send(a.svc, &b.id, from_a, sizeof(from_a), 0)));
	cr_assert(zero(int, crust_send(b.svc, &a.id, from_b, sizeof(from_b), 0)));
	expect_message(&b, &a.id, from_a, sizeof(from_a));
	expect_message(&a, &b.id, from_b, sizeof(from_b));

	/* the empty message is a message too */
	cr_assert(zero(int, crust_send(a.svc, &b.id, NULL, 0, 0)));
	expect_message(&b, &a.id, "", 0);

	struct crust_endpoint eps[4];
	int n = crust_own_endpoints(a.svc, eps, 4);
	cr_assert(eq(int, n, 2), "bound to one address: TCP, then reliable UDP");
	cr_assert(eq(u16, addr_port(&eps[0].addr), a.port));
	cr_assert(eq(int, eps[0].transport, CRUST_TRANSPORT_TCP));
	cr_assert(eq(u16, addr_port(&eps[1].addr), a.rudp_port));
	cr_assert(eq(int, eps[1].transport, CRUST_TRANSPORT_RUDP));

	cr_assert(zero(int, a.nstash), "nothing unexpected at a");
	cr_assert(zero(int, b.nstash), "nothing unexpected at b");
	node_stop(&b);
	node_stop(&a);
}

/* ---- listeners that move (rebind_interval_ms) ---- */

/* Sockets of this process of type (SOCK_STREAM / SOCK_DGRAM) bound to port. */
static int sockets_on_port(int type, uint16_t port)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	cr_assert(not(eq(ptr, d, NULL)));
	for (struct dirent *e; (e = readdir(d));) {
		int fd = atoi(e->d_name), t = 0;
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss), tl = sizeof(t);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &tl) < 0 || t != type ||
		    getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || ss.ss_family != AF_INET)
			continue;
		n += addr_port(&ss) == port;
	}
	closedir(d);
	return n;
}

/* a's listeners move once: TCP to a new port, UDP to the same number unless it is taken. */
static void move_listeners(struct node *a)
{
	uint16_t old_tcp = a->port, old_udp = a->rudp_port;
	cr_assert(zero(int, ports_rebind(a->svc)));
	struct crust_event t = expect_event(a, CRUST_EV_LISTENER_STARTED);
	struct crust_event u = expect_event(a, CRUST_EV_LISTENER_STARTED);
	cr_assert(eq(int, t.transport, CRUST_TRANSPORT_TCP));
	cr_assert(eq(int, u.transport, CRUST_TRANSPORT_RUDP));
	cr_assert(not(eq(u16, t.port, old_tcp)));
	cr_assert(not(eq(u16, u.port, old_udp)));
	cr_assert(u.port == t.port || u.fallback, "UDP takes the TCP port's number if free");
	cr_assert(not(eq(ptr, strstr(u.reason, "moved from port"), NULL)), "%s", u.reason);
	a->port = t.port;
	a->rudp_port = u.port;
	struct crust_endpoint eps[4];
	cr_assert(eq(int, crust_own_endpoints(a->svc, eps, 4), 2));
	cr_assert(eq(u16, addr_port(&eps[0].addr), a->port), "own endpoints follow the move");
	cr_assert(eq(u16, addr_port(&eps[1].addr), a->rudp_port));
}

static void say(struct node *from, struct node *to, const char *text)
{
	cr_assert(zero(int, crust_send(from->svc, &to->id, text, strlen(text), 0)));
	expect_message(to, &from->id, text, strlen(text));
}

ParameterizedTestParameters(service, listeners_move_and_connections_on_the_old_port_stay)
{
	static struct hello_case cases[] = {
		{ 2, CRUST_TRANSPORT_TCP }, { 1, CRUST_TRANSPORT_RUDP }, { 2, CRUST_TRANSPORT_RUDP },
	};
	return cr_make_param_array(struct hello_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct hello_case *hc, service, listeners_move_and_connections_on_the_old_port_stay,
		  .timeout = 60)
{
	struct crust_config cfg;
	base_config(&cfg, hc->shards);
	dial_transport = hc->transport;
	int type = hc->transport == CRUST_TRANSPORT_RUDP ? SOCK_DGRAM : SOCK_STREAM;
	static struct node a, b, c;
	node_start(&a, &cfg);
	node_start(&b, &cfg);
	uint16_t first = dial_port(&a);
	connect_nodes(&a, &b);

	move_listeners(&a);
	move_listeners(&a);
	/* the connection made on the first port works both ways */
	say(&b, &a, "still here after two moves");
	say(&a, &b, "and back");

	/* new connections: on the newest port, not on the first (it only serves b) */
	cfg.connect_timeout_ms = 1500;
	node_start(&c, &cfg);
	struct crust_endpoint old = loopback(first);
	cr_assert(zero(int, crust_connect(c.svc, &old)));
	struct crust_event f = expect_event(&c, CRUST_EV_CONNECT_FAILED);
	cr_log_info("dial of the old port: %s", f.reason);
	connect_nodes(&a, &c);
	say(&c, &a, "a newcomer on the new port");
	say(&a, &c, "welcome");
	say(&b, &a, "the old connection lives on");
	cr_assert(ge(int, sockets_on_port(type, first), 1), "b's connection holds the old port");

	/* its last connection gone, nothing is left on the first port */
	cr_assert(zero(int, crust_drop(a.svc, &b.id)));
	expect_event(&a, CRUST_EV_LOST_CONNECTION);
	expect_event(&b, CRUST_EV_LOST_CONNECTION);
	uint64_t deadline = now_ms() + WAIT_MS;
	while (sockets_on_port(type, first) && now_ms() < deadline)
		usleep(10000);
	cr_assert(zero(int, sockets_on_port(type, first)), "the old port's sockets are closed");
	node_stop(&c);
	node_stop(&b);
	node_stop(&a);
}

/* ---- 10,000 messages each way, 0 B .. 1 MiB ---- */

#ifdef CRUST_VALGRIND
/*
 * make valgrind: the same paths at a fiftieth of the count. Memcheck runs the reliable-UDP
 * pair at ~1.2 MB/s (a congestion window of ~10 packets over a 10 ms RTT, seen with gdb
 * through vgdb): 1,000 messages (~500 MB each way) outlasted the deadline while still moving.
 */
#define BULK_N 200u
#else
#define BULK_N 10000u
#endif
#define BULK_MAX (1u << 20)
#define POOL_SLACK 65536u
#define POOL_LEN (BULK_MAX + POOL_SLACK)
#define BULK_DEADLINE_MS (400 * 1000)

/*
 * Message i of a direction with seed s: its length, and where its body
 * comes from in the shared random pool. The first min(8, len) bytes are
 * i ^ s (little-endian); the rest is pool[off + 8 .. off + len).
 * Lengths are uniform over 0..1 MiB, with 0 and exactly 1 MiB forced in.
 */
static uint32_t bulk_len(uint64_t s, uint64_t i)
{
	switch (i) {
	case 0: case BULK_N / 2: case BULK_N - 1:
		return 0;
	case 1: case BULK_N / 2 + 1: case BULK_N - 2:
		return BULK_MAX;
	case 2:
		return 1;
	case 3:
		return 8;
	default:
		return (uint32_t)(mix64(s ^ (i << 20)) % (BULK_MAX + 1));
	}
}

static uint32_t bulk_off(uint64_t s, uint64_t i)
{
	return (uint32_t)(mix64(~s ^ i) % POOL_SLACK);
}

struct bulk_dir {
	/* set up by the test */
	struct node *from, *to;
	uint64_t seed;
	const uint8_t *pool;
	/* sender's results */
	uint64_t sent, enobufs;
	int send_err;             /* first return other than 0 / -ENOBUFS */
	/* receiver's results */
	uint64_t received, bad_len, bad_data, bad_peer, first_bad;
	uint64_t other_events;
	int last_other_type, last_other_error;
	char last_other_reason[CRUST_REASON_LEN];
	int poll_err;
	bool timed_out;
};

static atomic_bool bulk_abort;

static void *bulk_sender(void *arg)
{
	struct bulk_dir *d = arg;
	/* our own copy: the message's first bytes are written into it in place */
	uint8_t *pool = malloc(POOL_LEN + 8);
	if (!pool) {
		d->send_err = -ENOMEM;
		return NULL;
	}
	memcpy(pool + 8, d->pool, POOL_LEN);
	long backoff = 50;
	for (uint64_t i = 0; i < BULK_N && !atomic_load(&bulk_abort);) {
		uint32_t len = bulk_len(d->seed, i);
		uint8_t *p = pool + bulk_off(d->seed, i); /* = d->pool + off - 8 */
		uint8_t saved[8];
		uint64_t head = i ^ d->seed;
		memcpy(saved, p, 8);
		memcpy(p, &head, 8);
		int ret = crust_send(d->from->svc, &d->to->id, p, len, 0);
		memcpy(p, saved, 8);
		if (ret == -ENOBUFS) {
			/* the peer's queue is full: wait for it to drain, nothing was queued */
			d->enobufs++;
			sleep_us(backoff);
			if (backoff < 2000)
				backoff *= 2;
			continue;
		}
		backoff = 50;
		if (ret != 0) {
			d->send_err = ret;
			/* the receiver would wait for the rest until its deadline (seen under faults) */
			atomic_store(&bulk_abort, true);
			break;
		}
		d->sent++;
		i++;
	}
	free(pool);
	return NULL;
}

static void bulk_check(struct bulk_dir *d, const struct crust_event *ev)
{
	uint64_t i = d->received++;
	uint32_t want = bulk_len(d->seed, i);
	uint32_t len = (uint32_t)crust_msg_len(ev->msg);
	const uint8_t *p = crust_msg_data(ev->msg);
	uint64_t head = i ^ d->seed;
	bool bad = false;
	if (!id_eq(&ev->peer, &d->from->id)) {
		d->bad_peer++;
		bad = true;
	}
	if (len != want) {
		d->bad_len++;
		bad = true;
	} else if (memcmp(p, &head, len < 8 ? len : 8) != 0 ||
		   (len > 8 && memcmp(p + 8, d->pool + bulk_off(d->seed, i), len - 8) != 0)) {
		d->bad_data++;
		bad = true;
	}
	if (bad && d->bad_len + d->bad_data + d->bad_peer == 1)
		d->first_bad = i;
}

static void *bulk_receiver(void *arg)
{
	struct bulk_dir *d = arg;
	struct crust_event evs[64];
	uint64_t deadline = now_ms() + BULK_DEADLINE_MS;
	while (d->received < BULK_N && !atomic_load(&bulk_abort)) {
		if (now_ms() > deadline) {
			d->timed_out = true;
			break;
		}
		int got = crust_poll(d->to->svc, evs, 64, 200);
		if (got < 0) {
			d->poll_err = got;
			break;
		}
		for (int k = 0; k < got; k++) {
			if (evs[k].type == CRUST_EV_NEW_MESSAGE) {
				bulk_check(d, &evs[k]);
			} else {
				d->other_events++;
				d->last_other_type = (int)evs[k].type;
				d->last_other_error = evs[k].error;
				memcpy(d->last_other_reason, evs[k].reason, sizeof(evs[k].reason));
			}
			crust_msg_release(evs[k].msg);
		}
	}
	if (d->received != BULK_N || d->other_events)
		atomic_store(&bulk_abort, true); /* let the senders stop */
	return NULL;
}

static bool bulk_failed(const struct bulk_dir *d)
{
	return d->send_err || d->poll_err || d->timed_out || d->other_events ||
	       d->sent != BULK_N || d->received != BULK_N;
}

/* Both directions are logged before either is judged: one's failure stops the other (bulk_abort). */
static void bulk_log(const char *name, const struct bulk_dir *d)
{
	cr_log_warn("%s: sent %llu, received %llu, ENOBUFS %llu, send %d, poll %d, timed out %d, "
		    "%llu other events (last %s, error %d, \"%s\")",
		    name, (unsigned long long)d->sent, (unsigned long long)d->received,
		    (unsigned long long)d->enobufs, d->send_err, d->poll_err, d->timed_out,
		    (unsigned long long)d->other_events,
		    d->other_events ? crust_event_name((enum crust_event_type)d->last_other_type) : "-",
		    d->last_other_error, d->last_other_reason);
}

static void bulk_report(const char *name, const struct bulk_dir *d)
{
	cr_assert(zero(int, d->send_err), "%s: send failed with %d", name, d->send_err);
	cr_assert(zero(int, d->poll_err), "%s: poll failed with %d", name, d->poll_err);
	cr_assert(not(d->timed_out), "%s: stuck after %llu of %u messages", name,
		  (unsigned long long)d->received, BULK_N);
	cr_assert(zero(u64, d->other_events), "%s: unexpected event %s", name,
		  crust_event_name((enum crust_event_type)d->last_other_type));
	cr_assert(eq(u64, d->sent, BULK_N), "%s: all sent", name);
	cr_assert(eq(u64, d->received, BULK_N), "%s: all received", name);
	cr_assert(zero(u64, d->bad_peer), "%s: wrong sender id from message %llu", name,
		  (unsigned long long)d->first_bad);
	cr_assert(zero(u64, d->bad_len), "%s: wrong length or order from message %llu", name,
		  (unsigned long long)d->first_bad);
	cr_assert(zero(u64, d->bad_data), "%s: corrupt bytes from message %llu", name,
		  (unsigned long long)d->first_bad);
}

ParameterizedTestParameters(service, ten_thousand_messages_both_ways_arrive_intact_and_in_order)
{
	static enum crust_transport t[] = { CRUST_TRANSPORT_TCP, CRUST_TRANSPORT_RUDP };
	return cr_make_param_array(enum crust_transport, t, 2);
}

ParameterizedTest(enum crust_transport *transport, service,
		  ten_thousand_messages_both_ways_arrive_intact_and_in_order, .timeout = 600)
{
	/* CRUST_BULK_ONLY=tcp|rudp: one transport (a slow reproduction, e.g. under valgrind) */
	const char *only = getenv("CRUST_BULK_ONLY");
	if (only && strcmp(only, crust_transport_name(*transport)) != 0)
		cr_skip_test("CRUST_BULK_ONLY=%s", only);
	struct crust_config cfg;
	base_config(&cfg, 1);
	dial_transport = *transport;
	cfg.max_msg_size = BULK_MAX + 4096;
	static struct node a, b;
	node_start(&a, &cfg);
	node_start(&b, &cfg);
	connect_nodes(&a, &b);

	uint8_t *pool = malloc(POOL_LEN);
	cr_assert(not(eq(ptr, pool, NULL)));
	fill_random(pool, POOL_LEN, 2024);
	static struct bulk_dir ab, ba;
	ab = (struct bulk_dir){ .from = &a, .to = &b, .seed = 0x1111, .pool = pool };
	ba = (struct bulk_dir){ .from = &b, .to = &a, .seed = 0x2222, .pool = pool };
	pthread_t t[4];
	cr_assert(zero(int, pthread_create(&t[0], NULL, bulk_receiver, &ab)));
	cr_assert(zero(int, pthread_create(&t[1], NULL, bulk_receiver, &ba)));
	cr_assert(zero(int, pthread_create(&t[2], NULL, bulk_sender, &ab)));
	cr_assert(zero(int, pthread_create(&t[3], NULL, bulk_sender, &ba)));
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);

	if (bulk_failed(&ab) || bulk_failed(&ba)) {
		bulk_log("a->b", &ab);
		bulk_log("b->a", &ba);
		/* and what the transports saw (a stall under make valgrind) */
		const struct node *nodes[2] = { &a, &b };
		for (int k = 0; k < 2; k++) {
			struct crust_stats st;
			crust_stats(nodes[k]->svc, &st);
			cr_log_warn("%c: msgs rx %llu tx %llu, held %llu B, live msgs %llu; "
				    "udp rx %llu tx %llu lost %llu retx %llu B rcvbuf drops %llu "
				    "dup %llu late %llu auth fail %llu; tx %llu B rx %llu B",
				    'a' + k, (unsigned long long)st.rx_msgs,
				    (unsigned long long)st.tx_msgs, (unsigned long long)st.rx_held_bytes,
				    (unsigned long long)st.live_msgs,
				    (unsigned long long)st.udp_rx_packets,
				    (unsigned long long)st.udp_tx_packets,
				    (unsigned long long)st.udp_lost_packets,
				    (unsigned long long)st.udp_retx_bytes,
				    (unsigned long long)st.udp_rcvbuf_drops,
				    (unsigned long long)st.udp_dup_packets,
				    (unsigned long long)st.udp_late_packets,
				    (unsigned long long)st.udp_auth_failures,
				    (unsigned long long)st.tx_bytes, (unsigned long long)st.rx_bytes);
		}
	}
	bulk_report("a->b", &ab);
	bulk_report("b->a", &ba);
	struct crust_stats sa, sb;
	crust_stats(a.svc, &sa);
	crust_stats(b.svc, &sb);
	cr_assert(eq(u64, sa.rx_msgs, BULK_N));
	cr_assert(eq(u64, sb.rx_msgs, BULK_N));
	cr_assert(eq(u64, sa.connections, 1));
	cr_log_info("bulk: %llu + %llu MiB, ENOBUFS retries %llu / %llu",
		    (unsigned long long)(sa.tx_bytes >> 20), (unsigned long long)(sb.tx_bytes >> 20),
		    (unsigned long long)ab.enobufs, (unsigned long long)ba.enobufs);
	free(pool);
	node_stop(&a);
	node_stop(&b);
}

/* ---- zero copy ---- */

Test(service, allocated_message_is_sent_and_received_message_forwarded, .timeout = 60)
{
	struct crust_config cfg;
	base_config(&cfg, 1);
	static struct node a, b, c;
	node_start(&a, &cfg);
	node_start(&b, &cfg);
	node_start(&c, &cfg);
	connect_nodes(&a, &b); /* b dials a */
	connect_nodes(&c, &b); /* b dials c: b is in the middle */

	/* a -> b with crust_msg_alloc; b forwards what it got to c untouched */
	static const uint32_t sizes[] = { 0, 1, 100, 1000, 4000, 60000, 200000, 1000, 50, 3 };
	unsigned views = 0;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct crust_msg *m = crust_msg_alloc(a.svc, sizes[k]);
		cr_assert(not(eq(ptr, m, NULL)));
		cr_assert(eq(sz, crust_msg_len(m), sizes[k]));
		fill_random(crust_msg_data(m), sizes[k], 77 + k);
		uint8_t *want = malloc(sizes[k] + 1);
		memcpy(want, crust_msg_data(m), sizes[k]);
		cr_assert(zero(int, crust_send_msg(a.svc, &b.id, m, 0)));

		struct crust_event ev = expect_event(&b, CRUST_EV_NEW_MESSAGE);
		cr_assert(id_eq(&ev.peer, &a.id));
		cr_assert(eq(sz, crust_msg_len(ev.msg), sizes[k]));
		cr_assert(zero(int, memcmp(crust_msg_data(ev.msg), want, sizes[k])));
		views += ev.msg->kind == ENG_MSG_VIEW;
		cr_assert(zero(int, crust_send_msg(b.svc, &c.id, ev.msg, 0)), "forward %zu", k);

		expect_message(&c, &b.id, want, sizes[k]);
		free(want);
	}
	/*
	 * Small messages sent one at a time arrive whole in one receive
	 * buffer: the forwarding path above has seen views, not only copies.
	 */
	cr_assert(gt(u32, views, 0), "some received messages were views");

	/* send_msg owns the message whatever happens (ASan sees a leak or a double free) */
	struct crust_peer_id nobody = random_id(5);
	struct crust_msg *m = crust_msg_alloc(a.svc, 10);
	cr_assert(eq(int, crust_send_msg(a.svc, &nobody, m, 0), -ENOTCONN));
	cr_assert(eq(int, crust_send_msg(a.svc, &b.id, NULL, 0), -EINVAL));
	/* an allocated message never sent is given back with release */
	crust_msg_release(crust_msg_alloc(a.svc, 100));
	crust_msg_release(NULL);

	node_stop(&a);
	node_stop(&b);
	node_stop(&c);
}

/* ---- errors ---- */

Test(service, send_errors_are_reported_and_nothing_is_queued, .timeout = 30)
{
	struct crust_config cfg;
	base_config(&cfg, 1);
	cfg.max_msg_size = 1000;
	static struct node a, b;
	node_start(&a, &cfg);
	node_start(&b, &cfg);
	connect_nodes(&a, &b);

	static uint8_t buf[1001];
	struct crust_peer_id nobody = random_id(9);
	cr_assert(eq(int, crust_send(a.svc, &nobody, buf, 10, 0), -ENOTCONN));
	cr_assert(eq(int, crust_drop(a.svc, &nobody), -ENOTCONN));
	cr_assert(eq(int, crust_maintain(a.svc, &nobody), -ENOTCONN));
	cr_assert(eq(int, crust_send(a.svc, &b.id, buf, 1001, 0), -EMSGSIZE));
	cr_assert(eq(int, crust_send(a.svc, &nobody, buf, 1001, 0), -EMSGSIZE));
	cr_assert(eq(ptr, crust_msg_alloc(a.svc, 1001), NULL));
	cr_assert(eq(int, crust_send(a.svc, &b.id, NULL, 1, 0), -EINVAL));
	cr_assert(zero(int, crust_maintain(a.svc, &b.id)));

	/* exactly the maximum goes through, and is the next thing b sees */
	fill_random(buf, 1000, 3);
	cr_assert(zero(int, crust_send(a.svc, &b.id, buf, 1000, 0)));
	expect_message(&b, &a.id, buf, 1000);
	cr_assert(zero(int, b.nstash));
	node_stop(&a);
	node_stop(&b);
}

Test(service, frame_above_the_receivers_maximum_ends_the_connection, .timeout = 30)
{
	struct crust_config big, small;
	base_config(&big, 1);
	base_config(&small, 1);
	small.max_msg_size = 1000;
	static struct node a, b;
	node_start(&a, &big);
	node_start(&b, &small);
	connect_nodes(&a, &b);

	static uint8_t buf[2000];
	cr_assert(zero(int, crust_send(a.svc, &b.id, buf, sizeof(buf), 0)));
	struct crust_event lb = expect_event(&b, CRUST_EV_LOST_CONNECTION);
	cr_assert(id_eq(&lb.peer, &a.id));
	cr_assert(eq(int, lb.error, -EMSGSIZE));
	cr_assert(not(eq(ptr, strstr(lb.reason, "above the maximum"), NULL)), "reason: %s",
		  lb.reason);
	struct crust_event la = expect_event(&a, CRUST_EV_LOST_CONNECTION);
	cr_assert(id_eq(&la.peer, &b.id));
	cr_assert(zero(int, stash_count(&b, CRUST_EV_NEW_MESSAGE)), "nothing delivered");
	node_stop(&a);
	node_stop(&b);
}

/* A listening socket of the test's own: a crust peer that never reads. */
struct raw_peer {
	int lfd, fd;
	uint16_t port;
	struct crust_peer_id id;
	struct identity ident;
};

static void raw_identity(struct raw_peer *r)
{
	char why[64];
	cr_assert(zero(int, identity_load(NULL, &r->ident, why, sizeof(why))));
	memcpy(r->id.bytes, r->ident.pk, 32);
}

static void raw_listen(struct raw_peer *r, int rcvbuf)
{
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(ge(int, r->lfd, 0));
	/* set before listen: accepted sockets inherit it (and lose autotuning) */
	if (rcvbuf)
		cr_assert(zero(int, setsockopt(r->lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
					       sizeof(rcvbuf))));
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert(zero(int, bind(r->lfd, (struct sockaddr *)&sin, sizeof(sin))));
	socklen_t len = sizeof(sin);
	cr_assert(zero(int, getsockname(r->lfd, (struct sockaddr *)&sin, &len)));
	r->port = ntohs(sin.sin_port);
	r->fd = -1;
}

static void read_full(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t got = read(fd, p, n);
		cr_assert(gt(sz, (size_t)(got > 0 ? got : 0), 0), "the service hung up mid-handshake");
		p += got;
		n -= (size_t)got;
	}
}

static size_t read_frame(int fd, uint8_t *p, size_t cap)
{
	uint8_t h[4];
	read_full(fd, h, 4);
	size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	cr_assert(le(sz, len, cap));
	read_full(fd, p, len);
	return len;
}

static void write_frame(int fd, const uint8_t *p, size_t len)
{
	uint8_t f[4 + HS_MAX_LEN] = { 0, 0, (uint8_t)(len >> 8), (uint8_t)len };
	memcpy(f + 4, p, len);
	cr_assert(eq(sz, (size_t)write(fd, f, 4 + len), 4 + len));
}

/* Accept the service's connection and answer its handshake as a real peer would. */
static void raw_accept_and_hello(struct raw_peer *r)
{
	struct pollfd pfd = { .fd = r->lfd, .events = POLLIN };
	cr_assert(eq(int, poll(&pfd, 1, WAIT_MS), 1), "the service dialled");
	r->fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(ge(int, r->fd, 0));
	struct hs_config cfg = { .id = &r->ident };
	struct handshake hs;
	uint8_t in[HS_MAX_LEN], out[HS_MAX_LEN];
	size_t outlen;
	char why[128];
	hs_start(&hs, &cfg, false, out, &outlen);
	size_t len = read_frame(r->fd, in, sizeof(in));
	cr_assert(eq(int, hs_recv(&hs, in, len, out, &outlen, why, sizeof(why)), HS_CONTINUE), "%s",
		  why);
	write_frame(r->fd, out, outlen);
	len = read_frame(r->fd, in, sizeof(in));
	cr_assert(eq(int, hs_recv(&hs, in, len, out, &outlen, why, sizeof(why)), HS_DONE), "%s",
		  why);
	/* a first (empty) record confirms to the dialer that we accepted it */
	struct session ses;
	cr_assert(zero(int, session_init(&ses, false, hs.aes, hs.tx_key, hs.rx_key)));
	uint8_t rec[64];
	cr_assert(zero(int, session_seal(&ses, rec, 0)));
	size_t rlen = session_hdr_room(&ses) + session_tag_room(&ses);
	cr_assert(eq(sz, (size_t)write(r->fd, rec, rlen), rlen));
	session_wipe(&ses);
	hs_wipe(&hs);
}

static void raw_close(struct raw_peer *r)
{
	if (r->fd >= 0)
		close(r->fd);
	close(r->lfd);
}

static uint64_t sysctl_third(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long long a = 0, b = 0, c = 0;
	if (f) {
		if (fscanf(f, "%llu %llu %llu", &a, &b, &c) != 3)
			c = 0;
		fclose(f);
	}
	return c;
}

Test(service, full_send_queue_gives_enobufs_and_loses_nothing_silently, .timeout = 120)
{
	enum { MSG = 64 * 1024 };
	struct raw_peer raw = { .fd = -1 };
	raw_identity(&raw);
	raw_listen(&raw, 16 * 1024);
	cr_assert(zero(int, listen(raw.lfd, 4)));
	int rcvbuf = 0;
	socklen_t olen = sizeof(rcvbuf);
	cr_assert(zero(int, getsockopt(raw.lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &olen)));
	/*
	 * What the kernel can hold for a peer that never reads is at most our
	 * socket's largest send buffer plus the peer's receive buffer. Once
	 * the service accepted more than that (plus a margin), the surplus can
	 * only be in crust's own queue: so the queue must be allowed to hold
	 * that much, and dropping then must report unsent messages.
	 */
	uint64_t wmem = sysctl_third("/proc/sys/net/ipv4/tcp_wmem");
	cr_assert(gt(u64, wmem, 0));
	uint64_t kernel_cap = wmem + (uint64_t)rcvbuf + (1u << 20);
	cr_assert(lt(u64, kernel_cap, 256u << 20), "an unusually large tcp_wmem");

	struct crust_config cfg;
	base_config(&cfg, 1);
	cfg.max_send_queue = (uint32_t)kernel_cap + (2u << 20);
	static struct node a;
	node_start(&a, &cfg);
	struct crust_endpoint ep = loopback(raw.port);
	cr_assert(zero(int, crust_connect(a.svc, &ep)));
	raw_accept_and_hello(&raw);
	struct crust_event up = expect_event(&a, CRUST_EV_NEW_CONNECTION);
	cr_assert(id_eq(&up.peer, &raw.id));

	static uint8_t buf[MSG];
	uint64_t accepted = 0, enobufs = 0;
	bool full_after_cap = false;
	uint64_t deadline = now_ms() + 60000;
	while (!full_after_cap) {
		cr_assert(lt(u64, now_ms(), deadline), "queue never filled (%llu accepted)",
			  (unsigned long long)accepted);
		int ret = crust_send(a.svc, &raw.id, buf, MSG, 0);
		if (ret == -ENOBUFS) {
			enobufs++;
			full_after_cap = accepted * MSG > kernel_cap;
			sleep_us(200);
			continue;
		}
		cr_assert(zero(int, ret), "only success or -ENOBUFS (got %d)", ret);
		accepted++;
	}
	cr_assert(gt(u64, enobufs, 0));
	cr_assert(gt(u64, accepted * MSG, kernel_cap));

	cr_assert(zero(int, crust_drop(a.svc, &raw.id)));
	struct crust_event lost = expect_event(&a, CRUST_EV_LOST_CONNECTION);
	cr_assert(id_eq(&lost.peer, &raw.id));
	cr_assert(eq(str, lost.reason, "dropped"));
	/* anything refused after it was accepted was reported before the close */
	uint64_t failed = 0;
	struct crust_event ev;
	while (stash_take(&a, CRUST_EV_SEND_FAILED, &ev)) {
		cr_assert(id_eq(&ev.peer, &raw.id));
		failed += ev.unsent_msgs;
	}
	struct crust_stats st;
	crust_stats(a.svc, &st);
	cr_log_info("accepted %llu, to the kernel %llu, unsent %llu, failed %llu, ENOBUFS %llu",
		    (unsigned long long)accepted, (unsigned long long)st.tx_msgs,
		    (unsigned long long)lost.unsent_msgs, (unsigned long long)failed,
		    (unsigned long long)enobufs);
	cr_assert(gt(u64, lost.unsent_msgs, 0), "the surplus was reported unsent");
	cr_assert(eq(u64, lost.unsent_bytes, lost.unsent_msgs * MSG));
	cr_assert(eq(u64, st.tx_msgs + lost.unsent_msgs + failed, accepted),
		  "every accepted message is either sent or reported");
	cr_assert(eq(int, crust_send(a.svc, &raw.id, buf, MSG, 0), -ENOTCONN));
	expect_peers(&a, NULL);
	node_stop(&a);
	raw_close(&raw);
}

/* ---- events through the callback ---- */

#define CB_MAX 64

struct cb_log {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct crust_event ev[CB_MAX];
	char text[CB_MAX][32];
	bool off_thread[CB_MAX];
	int n;
	pthread_t main;
};

static void on_event(void *ctx, const struct crust_event *ev)
{
	struct cb_log *l = ctx;
	pthread_mutex_lock(&l->mu);
	if (l->n < CB_MAX) {
		l->ev[l->n] = *ev;
		l->ev[l->n].msg = NULL;
		if (ev->msg) {
			size_t len = crust_msg_len(ev->msg);
			if (len >= sizeof(l->text[0]))
				len = sizeof(l->text[0]) - 1;
			memcpy(l->text[l->n], crust_msg_data(ev->msg), len);
		}
		l->off_thread[l->n] = !pthread_equal(pthread_self(), l->main);
		l->n++;
	}
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	/* the callback owns the message like a poller does */
	crust_msg_release(ev->msg);
}

static int cb_wait(struct cb_log *l, enum crust_event_type type)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&l->mu);
	int found = -1;
	for (;;) {
		for (int i = 0; i < l->n && found < 0; i++)
			if (l->ev[i].type == type)
				found = i;
		if (found >= 0 || pthread_cond_timedwait(&l->cv, &l->mu, &until) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&l->mu);
	cr_assert(ge(int, found, 0), "no %s through the callback", crust_event_name(type));
	return found;
}

Test(service, events_through_the_callback_bypass_poll, .timeout = 30)
{
	static struct cb_log log = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	log.main = pthread_self();
	struct crust_config cfg;
	base_config(&cfg, 1);
	static struct node b;
	node_start(&b, &cfg);
	cfg.on_event = on_event;
	cfg.on_event_ctx = &log;
	struct crust_service *a;
	cr_assert(zero(int, crust_service_new(&cfg, &a)));
	struct crust_peer_id a_id;
	crust_own_id(a, &a_id);
	cr_assert(zero(int, crust_start_listening(a)));
	int i = cb_wait(&log, CRUST_EV_LISTENER_STARTED);
	cr_assert(not(log.off_thread[i]), "listening reports on the caller's thread");
	cr_assert(not(zero(u16, log.ev[i].port)));

	struct crust_endpoint ep = loopback(b.port);
	cr_assert(zero(int, crust_connect(a, &ep)));
	i = cb_wait(&log, CRUST_EV_NEW_CONNECTION);
	cr_assert(id_eq(&log.ev[i].peer, &b.id));
	cr_assert(log.off_thread[i], "connection events come from a shard");
	struct crust_event eb = expect_event(&b, CRUST_EV_NEW_CONNECTION);
	cr_assert(id_eq(&eb.peer, &a_id));
	cr_assert(not(eq(u16, addr_port(&eb.addr), 0)));

	cr_assert(zero(int, crust_send(b.svc, &a_id, "via callback", 13, 0)));
	i = cb_wait(&log, CRUST_EV_NEW_MESSAGE);
	cr_assert(id_eq(&log.ev[i].peer, &b.id));
	cr_assert(eq(str, log.text[i], "via callback"));
	cr_assert(log.off_thread[i]);

	struct crust_event ev;
	cr_assert(zero(int, crust_poll(a, &ev, 1, 0)), "nothing for poll");
	cr_assert(zero(int, crust_poll(a, &ev, 1, 100)), "nothing for poll, even waiting");

	crust_service_free(a); /* LOST_CONNECTION runs through the callback during the free */
	struct crust_event lb = expect_event(&b, CRUST_EV_LOST_CONNECTION);
	cr_assert(id_eq(&lb.peer, &a_id));
	node_stop(&b);
}

/* ---- connect failures and drops ---- */

Test(service, connect_to_a_closed_port_fails_with_a_reason, .timeout = 30)
{
	/* a bound socket that does not listen: the port answers with a reset */
	struct raw_peer closed;
	raw_listen(&closed, 0);
	struct crust_config cfg;
	base_config(&cfg, 2);
	static struct node a;
	node_start(&a, &cfg);
	struct crust_endpoint ep = loopback(closed.port);
	cr_assert(zero(int, crust_connect(a.svc, &ep)));
	struct crust_event ev = expect_event(&a, CRUST_EV_CONNECT_FAILED);
	cr_assert(eq(int, ev.error, -ECONNREFUSED));
	cr_assert(not(eq(chr, ev.reason[0], 0)), "a reason in words");
	cr_assert(eq(u16, addr_port(&ev.addr), closed.port));
	cr_assert(eq(int, ev.transport, CRUST_TRANSPORT_TCP));
	expect_peers(&a, NULL);

	struct crust_endpoint bad = ep;
	bad.addrlen = 0;
	cr_assert(eq(int, crust_connect(a.svc, &bad), -EINVAL));
	node_stop(&a);
	raw_close(&closed);
}

Test(service, a_plain_endpoint_tries_tcp_then_rudp_and_says_why_both_failed, .timeout = 30)
{
	struct raw_peer closed; /* TCP: refused; UDP on that port: nobody answers */
	raw_listen(&closed, 0);
	struct crust_config cfg;
	base_config(&cfg, 1);
	cfg.connect_timeout_ms = 500;
	static struct node a;
	node_start(&a, &cfg);
	char s[32];
	snprintf(s, sizeof(s), "127.0.0.1:%u", closed.port);
	struct crust_endpoint ep;
	cr_assert(zero(int, crust_endpoint_parse(s, &ep)));
	cr_assert(eq(int, ep.transport, CRUST_TRANSPORT_ANY));
	cr_assert(zero(int, crust_connect(a.svc, &ep)));
	struct crust_event ev = expect_event(&a, CRUST_EV_CONNECT_FAILED);
	cr_assert(eq(int, ev.transport, CRUST_TRANSPORT_RUDP), "the last try was reliable UDP");
	cr_assert(eq(int, ev.error, -ETIMEDOUT));
	cr_assert(not(eq(ptr, strstr(ev.reason, "tcp: Connection refused"), NULL)), "%s", ev.reason);
	cr_assert(not(eq(ptr, strstr(ev.reason, "rudp: "), NULL)), "%s", ev.reason);
	expect_peers(&a, NULL);
	node_stop(&a);
	raw_close(&closed);
}

Test(service, drop_ends_the_connection_on_both_sides, .timeout = 30)
{
	struct crust_config cfg;
	base_config(&cfg, 2);
	static struct node a, b;
	node_start(&a, &cfg);
	node_start(&b, &cfg);
	connect_nodes(&a, &b);

	cr_assert(zero(int, crust_drop(a.svc, &b.id)));
	struct crust_event la = expect_event(&a, CRUST_EV_LOST_CONNECTION);
	cr_assert(id_eq(&la.peer, &b.id));
	cr_assert(eq(str, la.reason, "dropped"));
	cr_assert(zero(u64, la.unsent_msgs));
	struct crust_event lb = expect_event(&b, CRUST_EV_LOST_CONNECTION);
	cr_assert(id_eq(&lb.peer, &a.id));
	cr_assert(not(eq(chr, lb.reason[0], 0)), "b says why");
	cr_log_info("far side: %s (%d)", lb.reason, lb.error);

	expect_peers(&a, NULL);
	expect_peers(&b, NULL);
	cr_assert(eq(int, crust_send(a.svc, &b.id, "x", 1, 0), -ENOTCONN));
	cr_assert(eq(int, crust_send(b.svc, &a.id, "x", 1, 0), -ENOTCONN));
	cr_assert(eq(int, crust_drop(a.svc, &b.id), -ENOTCONN));

	/* and they can meet again */
	connect_nodes(&b, &a);
	cr_assert(zero(int, crust_send(a.svc, &b.id, "again", 5, 0)));
	expect_message(&b, &a.id, "again", 5);
	node_stop(&a);
	node_stop(&b);
}

/* ---- freeing a busy service ---- */

struct flood {
	struct node *from;
	struct crust_peer_id to;
	atomic_bool stop;
	uint64_t sent;
	int last_err;
};

/* Mixed sizes: small ones arrive as views of receive buffers, large ones as copies. */
static void *flood_sender(void *arg)
{
	struct flood *f = arg;
	static uint8_t buf[300000];
	uint64_t i = 0;
	while (!atomic_load(&f->stop)) {
		size_t len = i % 4 == 3 ? 100000 + i % 200000 : i % 2000;
		int ret = crust_send(f->from->svc, &f->to, buf, len, (uint8_t)(i % 3));
		i++;
		if (ret == -ENOBUFS) {
			sleep_us(100);
			continue;
		}
		if (ret) {
			f->last_err = ret;
			break; /* the peer went away */
		}
		f->sent++;
	}
	return NULL;
}

/* Until n has delivered want messages and run out of receive buffers at least once. */
static void wait_starved(struct node *n, uint64_t want)
{
	uint64_t deadline = now_ms() + 60000;
	struct crust_stats st;
	for (;;) {
		crust_stats(n->svc, &st);
		if (st.rx_msgs >= want && st.rx_enobufs > 0)
			return;
		cr_assert(lt(u64, now_ms(), deadline), "%llu messages in, %llu buffer shortages",
			  (unsigned long long)st.rx_msgs, (unsigned long long)st.rx_enobufs);
		sleep_us(1000);
	}
}

Test(service, free_while_traffic_flows_and_events_wait_unpolled, .timeout = 120)
{
	struct crust_config cfg;
	base_config(&cfg, 2);
	static struct node a, b;
	node_start(&a, &cfg);
	node_start(&b, &cfg);
	connect_nodes(&a, &b);

	/* both directions busy; b never polls, so its queue fills with messages */
	static struct flood ab, ba;
	ab = (struct flood){ .from = &a, .to = b.id };
	ba = (struct flood){ .from = &b, .to = a.id };
	pthread_t t1, t2;
	cr_assert(zero(int, pthread_create(&t1, NULL, flood_sender, &ab)));
	cr_assert(zero(int, pthread_create(&t2, NULL, flood_sender, &ba)));
	/*
	 * Unpolled views hold b's receive buffers, so b soon starves: at
	 * least one message per buffer (256) comes in before that.
	 */
	wait_starved(&b, 200);

	/* a polls some and holds them across b's death (they are a's, not b's) */
	struct crust_msg *held[16];
	int nheld = 0;
	while (nheld < 16) {
		struct crust_event ev = expect_event(&a, CRUST_EV_NEW_MESSAGE);
		held[nheld++] = ev.msg;
	}

	atomic_store(&ba.stop, true); /* b's own user stops calling b before freeing it */
	pthread_join(t2, NULL);
	crust_service_free(b.svc);
	b.svc = NULL;

	struct crust_event lost;
	/* a's stash may hold many messages: release them as they come */
	uint64_t deadline = now_ms() + WAIT_MS;
	for (;;) {
		cr_assert(lt(u64, now_ms(), deadline), "a never saw b go");
		struct crust_event ev;
		int got = crust_poll(a.svc, &ev, 1, 100);
		cr_assert(ge(int, got, 0));
		if (got && ev.type == CRUST_EV_LOST_CONNECTION) {
			lost = ev;
			break;
		}
		if (got)
			crust_msg_release(ev.msg);
	}
	cr_assert(id_eq(&lost.peer, &b.id));
	/* a's sender sees the peer gone and stops by itself */
	pthread_join(t1, NULL);
	cr_assert(eq(int, ab.last_err, -ENOTCONN));
	cr_assert(gt(u64, ab.sent, 0));
	for (int k = 0; k < nheld; k++)
		crust_msg_release(held[k]);
	node_stop(&a);
	b.nstash = 0;
}

Test(service, free_with_messages_held_by_the_user, .timeout = 60)
{
	/*
	 * Views and copies polled from a service and still held while its
	 * peer goes away; the API asks for release before the service's own
	 * free (views point into its receive buffers), and so does this test.
	 */
	struct crust_config cfg;
	base_config(&cfg, 1);
	static struct node a, b;
	node_start(&a, &cfg);
	node_start(&b, &cfg);
	connect_nodes(&a, &b);
	static uint8_t buf[200000];
	struct crust_msg *held[20];
	unsigned views = 0;
	for (int k = 0; k < 20; k++) {
		/* one at a time: a small one lands whole in one buffer (a view), a big one is copied */
		cr_assert(zero(int, crust_send(a.svc, &b.id, buf, k % 2 ? 100 : sizeof(buf), 0)));
		struct crust_event ev = expect_event(&b, CRUST_EV_NEW_MESSAGE);
		held[k] = ev.msg;
		views += ev.msg->kind == ENG_MSG_VIEW;
	}
	cr_assert(gt(u32, views, 0));
	node_stop(&a); /* b loses a while it holds a's messages */
	for (int k = 0; k < 20; k++)
		crust_msg_release(held[k]);
	node_stop(&b);
}
