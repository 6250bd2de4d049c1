/*
 * soak.c - churn soak under ASan (make soak, make soak-short).
 *
 * A hub service (2 shards, 127.0.0.1) takes, for SOAK_SECONDS:
 *  - in-process clients (a new service, so a new identity, each time) that
 *    dial over TCP or reliable UDP, exchange checked messages both ways and
 *    end by a drop from either side, by being freed with traffic in flight,
 *    or by being freed right after the dial (handshake abandoned halfway);
 *  - real `crust node` processes (CRUST=path) that dial the hub over TCP or
 *    reliable UDP, send through their stdin commands, and are killed with
 *    SIGKILL at a random moment (some mid-handshake);
 *  - raw sockets: a TCP frame header and part of msg1, then close or stall
 *    (the hub's handshake and frame timeouts must reap them), a connect that
 *    sends nothing, and truncated or garbage UDP long-header packets.
 * At the end, once the hub has noticed everything: its open descriptors
 * (/proc/self/fd) and its crust_stats gauges (peers, connections, sockets,
 * timers, receive buffers out, held bytes, live messages) must equal the
 * baseline taken before the churn; then the hub is freed and LeakSanitizer
 * checks the heap at exit.
 */
#include "stress.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define WAIT_MS 60000u

static struct crust_service *hub;
static struct crust_peer_id hub_id;
static char hub_hex[CRUST_PEER_HEX_LEN + 1];
static struct crust_endpoint hub_ep[2]; /* TCP, reliable UDP */
static uint16_t hub_port[2];
static const char *crust_bin;
static atomic_bool running = true, hub_polling = true;
static atomic_ullong hub_new[3], hub_lost, hub_hs_failed, hub_rx, hub_rx_node, client_rx;
static atomic_ullong cycles, client_drops, hub_drops, abrupt_frees, early_frees;
static atomic_ullong nodes_started, nodes_killed, raw_partial, raw_stalled, raw_empty, raw_udp;

static uint64_t rnd(uint64_t *s)
{
	*s = stress_mix(*s + 0x9e3779b97f4a7c15ull);
	return *s;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	STRESS_CHECK(d, "opendir /proc/self/fd: %s", strerror(errno));
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

/* A message to the hub: a checked one from an in-process client, or a node's text. */
static void hub_message(struct crust_msg *m)
{
	const uint8_t *p = crust_msg_data(m);
	size_t len = crust_msg_len(m);
	if (len >= 5 && !memcmp(p, "node ", 5)) {
		atomic_fetch_add(&hub_rx_node, 1);
		return;
	}
	stress_verify(p, len);
	atomic_fetch_add(&hub_rx, 1);
}

static void *hub_poll_main(void *arg)
{
	(void)arg;
	struct crust_event evs[32];
	uint8_t buf[1024];
	uint32_t seq = 0;
	while (atomic_load(&hub_polling)) {
		int n = crust_poll(hub, evs, 32, 20);
		STRESS_CHECK(n >= 0, "crust_poll: %d", n);
		for (int i = 0; i < n; i++) {
			struct crust_event *ev = &evs[i];
			switch (ev->type) {
			case CRUST_EV_NEW_CONNECTION:
				atomic_fetch_add(&hub_new[ev->transport % 3], 1);
				/* greet: a few checked messages for the newcomer */
				for (int k = 0; k < 4; k++) {
					uint32_t len = (uint32_t)sizeof(struct stress_hdr) + 97u * (uint32_t)k;
					stress_fill(buf, len, 0, 1, ++seq, 0);
					int e = crust_send(hub, &ev->peer, buf, len, 0);
					STRESS_CHECK(e == 0 || e == -ENOTCONN, "hub greet: %d", e);
				}
				break;
			case CRUST_EV_LOST_CONNECTION:
				atomic_fetch_add(&hub_lost, 1);
				break;
			case CRUST_EV_HANDSHAKE_FAILED:
				atomic_fetch_add(&hub_hs_failed, 1);
				break;
			case CRUST_EV_NEW_MESSAGE:
				hub_message(ev->msg);
				break;
			default:
				break;
			}
			crust_msg_release(ev->msg);
		}
	}
	return NULL;
}

/* --- in-process clients ------------------------------------------------------ */

struct client {
	atomic_bool up;
	atomic_uint rx;
	atomic_uint lost;
};

static void client_event(void *ctx, const struct crust_event *ev)
{
	struct client *c = ctx;
	if (ev->type == CRUST_EV_NEW_CONNECTION) {
		atomic_store(&c->up, true);
	} else if (ev->type == CRUST_EV_LOST_CONNECTION) {
		atomic_store(&c->up, false);
		atomic_fetch_add(&c->lost, 1);
	} else if (ev->type == CRUST_EV_NEW_MESSAGE) {
		stress_verify(crust_msg_data(ev->msg), crust_msg_len(ev->msg));
		atomic_fetch_add(&c->rx, 1);
		atomic_fetch_add(&client_rx, 1);
		crust_msg_release(ev->msg);
	}
}

static bool wait_flag(atomic_bool *f, bool want, unsigned ms)
{
	uint64_t end = stress_now_ms() + ms;
	while (atomic_load(f) != want && stress_now_ms() < end)
		stress_sleep_ms(2);
	return atomic_load(f) == want;
}

static void client_cycle(uint64_t *rng)
{
	struct client c = { 0 };
	struct crust_config cfg;
	stress_config(&cfg, 1);
	cfg.rx_buffer_count = 16;
	cfg.tx_arena_size = 256u << 10;
	cfg.on_event = client_event;
	cfg.on_event_ctx = &c;
	struct crust_service *svc;
	int e = crust_service_new(&cfg, &svc);
	STRESS_CHECK(e == 0, "client: %s", crust_strerror(e));
	uint64_t r = rnd(rng);
	bool udp = r & 1;
	unsigned how = (unsigned)((r >> 1) % 4);
	e = crust_connect(svc, &hub_ep[udp]);
	STRESS_CHECK(e == 0, "connect: %s", crust_strerror(e));
	if (how == 0) {
		/* freed right away: the hub is left with half a handshake */
		atomic_fetch_add(&early_frees, 1);
		crust_service_free(svc);
		atomic_fetch_add(&cycles, 1);
		return;
	}
	STRESS_CHECK(wait_flag(&c.up, true, 20000), "client never connected over %s",
		     udp ? "UDP" : "TCP");
	uint8_t buf[8192];
	unsigned n = 8 + (unsigned)(rnd(rng) % 24);
	for (unsigned i = 0; i < n; i++) {
		uint32_t len = (uint32_t)sizeof(struct stress_hdr) + (uint32_t)(rnd(rng) % 8000);
		stress_fill(buf, len, 1, 0, i + 1, (uint8_t)(i % 3));
		e = crust_send(svc, &hub_id, buf, len, (uint8_t)(i % 3));
		STRESS_CHECK(e == 0 || e == -ENOTCONN, "client send: %d", e);
	}
	/* the hub's greeting arrives (used both ways) unless it is slow: then drop anyway */
	uint64_t end = stress_now_ms() + 5000;
	while (atomic_load(&c.rx) < 4 && stress_now_ms() < end)
		stress_sleep_ms(2);
	if (how == 1) {
		atomic_fetch_add(&client_drops, 1);
		(void)crust_drop(svc, &hub_id);
		wait_flag(&c.up, false, 10000);
	} else if (how == 2) {
		struct crust_peer_id me;
		crust_own_id(svc, &me);
		atomic_fetch_add(&hub_drops, 1);
		(void)crust_drop(hub, &me);
		wait_flag(&c.up, false, 10000);
	} else {
		atomic_fetch_add(&abrupt_frees, 1); /* sends may still be queued */
	}
	crust_service_free(svc);
	atomic_fetch_add(&cycles, 1);
}

static void *client_main(void *arg)
{
	uint64_t rng = 100 + (uintptr_t)arg;
	while (atomic_load(&running))
		client_cycle(&rng);
	return NULL;
}

/* --- crust node processes, killed with SIGKILL ---------------------------------- */

static void node_cycle(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	bool udp = r & 1;
	char target[80];
	snprintf(target, sizeof(target), "%s://127.0.0.1:%u", udp ? "rudp" : "tcp", hub_port[udp]);
	int in[2];
	STRESS_CHECK(pipe2(in, O_CLOEXEC) == 0, "pipe");
	pid_t pid = fork();
	STRESS_CHECK(pid >= 0, "fork");
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(in[0], 0);
		dup2(null, 1);
		dup2(null, 2);
		execl(crust_bin, crust_bin, "node", "--bind", "127.0.0.1", "--tcp-port", "0",
		      "--shards", "1", "--no-pex", "--no-beacon", "--no-cache", "--no-bootstrap",
		      "--connect", target, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	atomic_fetch_add(&nodes_started, 1);
	/* commands until the kill: the node sends to the hub once it is connected */
	unsigned life = 50 + (unsigned)(rnd(rng) % 700);
	uint64_t end = stress_now_ms() + life;
	char line[256];
	int len = snprintf(line, sizeof(line), "send %s node says hello\n", hub_hex);
	signal(SIGPIPE, SIG_IGN);
	while (stress_now_ms() < end) {
		if (write(in[1], line, (size_t)len) < 0)
			break;
		stress_sleep_ms(25);
	}
	STRESS_CHECK(kill(pid, SIGKILL) == 0, "kill %d", (int)pid);
	int status;
	STRESS_CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	STRESS_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		     "crust node (pid %d) ended by itself (status %d): is CRUST=%s right?", (int)pid,
		     status, crust_bin);
	close(in[1]);
	atomic_fetch_add(&nodes_killed, 1);
}

static void *node_main(void *arg)
{
	uint64_t rng = 900 + (uintptr_t)arg;
	while (atomic_load(&running))
		node_cycle(&rng);
	return NULL;
}

/* --- raw sockets abandoning handshakes --------------------------------------- */

static int tcp_to_hub(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	STRESS_CHECK(fd >= 0, "socket");
	if (connect(fd, (struct sockaddr *)&hub_ep[0].addr, hub_ep[0].addrlen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A frame header for msg1 (48 bytes) and only its first part. */
static void send_partial_msg1(int fd, uint64_t *rng)
{
	uint8_t b[4 + 48];
	uint32_t flen = htonl(48);
	memcpy(b, &flen, 4);
	memcpy(b + 4, "CRST", 4);
	b[8] = 2;  /* version */
	b[9] = 1;  /* msg1 */
	b[10] = b[11] = 0;
	for (size_t i = 12; i < sizeof(b); i++)
		b[i] = (uint8_t)rnd(rng);
	size_t n = 2 + (size_t)(rnd(rng) % 40); /* never the whole frame */
	(void)!send(fd, b, n, MSG_NOSIGNAL);
}

#define STALLED_MAX 8

static void *raw_main(void *arg)
{
	(void)arg;
	uint64_t rng = 5150;
	int stalled[STALLED_MAX];
	uint64_t stalled_at[STALLED_MAX];
	int nstalled = 0;
	int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	STRESS_CHECK(udp >= 0, "udp socket");
	while (atomic_load(&running)) {
		unsigned what = (unsigned)(rnd(&rng) % 4);
		if (what == 0 || what == 1) {
			int fd = tcp_to_hub();
			if (fd >= 0) {
				send_partial_msg1(fd, &rng);
				if (what == 1 && nstalled < STALLED_MAX) {
					/* stall: the hub must time it out (handshake_timeout_ms) */
					stalled[nstalled] = fd;
					stalled_at[nstalled++] = stress_now_ms();
					atomic_fetch_add(&raw_stalled, 1);
				} else {
					close(fd);
					atomic_fetch_add(&raw_partial, 1);
				}
			}
		} else if (what == 2) {
			int fd = tcp_to_hub();
			if (fd >= 0)
				close(fd);
			atomic_fetch_add(&raw_empty, 1);
		} else {
			/* a long header cut short, or a padded one full of noise */
			uint8_t p[1200];
			for (size_t i = 0; i < sizeof(p); i++)
				p[i] = (uint8_t)rnd(&rng);
			p[0] = 0xc0;
			uint32_t ver = htonl(0x43520001);
			memcpy(p + 1, &ver, 4);
			size_t n = (rnd(&rng) & 1) ? 1 + (size_t)(rnd(&rng) % 30) : sizeof(p);
			(void)!sendto(udp, p, n, 0, (struct sockaddr *)&hub_ep[1].addr,
				      hub_ep[1].addrlen);
			atomic_fetch_add(&raw_udp, 1);
		}
		/* stalled sockets: closed by us after a while if the hub has not closed them */
		for (int i = 0; i < nstalled;) {
			if (stress_now_ms() - stalled_at[i] > 4000) {
				close(stalled[i]);
				stalled[i] = stalled[--nstalled];
				stalled_at[i] = stalled_at[nstalled];
			} else {
				i++;
			}
		}
		stress_sleep_ms(15);
	}
	for (int i = 0; i < nstalled; i++)
		close(stalled[i]);
	close(udp);
	return NULL;
}

/* --- baseline ------------------------------------------------------------------ */

struct gauges {
	int fds;
	struct crust_stats st;
};

static void take(struct gauges *g)
{
	g->fds = count_fds();
	crust_stats(hub, &g->st);
}

static bool same(const struct gauges *a, const struct gauges *b)
{
	return a->fds == b->fds && a->st.connections == b->st.connections &&
	       a->st.live_conns == b->st.live_conns && a->st.live_sockets == b->st.live_sockets &&
	       a->st.live_timers == b->st.live_timers &&
	       a->st.rx_buffers_out == b->st.rx_buffers_out &&
	       a->st.rx_held_bytes == b->st.rx_held_bytes && a->st.live_msgs == b->st.live_msgs;
}

static void show(const char *what, const struct gauges *g)
{
	printf("%s: fds %d, peers %llu, connections %llu, sockets %llu, timers %llu, rx buffers "
	       "out %llu, held bytes %llu, messages %llu\n", what, g->fds,
	       (unsigned long long)g->st.connections, (unsigned long long)g->st.live_conns,
	       (unsigned long long)g->st.live_sockets, (unsigned long long)g->st.live_timers,
	       (unsigned long long)g->st.rx_buffers_out, (unsigned long long)g->st.rx_held_bytes,
	       (unsigned long long)g->st.live_msgs);
}

static unsigned soak_seconds(void)
{
	const char *s = getenv("SOAK_SECONDS");
	long v = s ? strtol(s, NULL, 10) : 0;
	return v > 0 && v < 100000 ? (unsigned)v : 180;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	unsigned secs = soak_seconds();
	crust_bin = getenv("CRUST");
	STRESS_CHECK(crust_bin && access(crust_bin, X_OK) == 0,
		     "set CRUST to the crust binary (the killed peers are crust node processes)");
	struct crust_config cfg;
	stress_config(&cfg, 2);
	/* every peer comes from 127.0.0.1: lift the per-source handshake limits */
	cfg.hs_rate_per_s = 100000;
	cfg.hs_burst = 100000;
	cfg.hs_max_pending = 100000;
	cfg.handshake_timeout_ms = 1500; /* abandoned handshakes are reaped within the soak */
	cfg.frame_timeout_ms = 1500;
	cfg.idle_timeout_ms = 3000;      /* a killed UDP peer says nothing: notice it soon */
	cfg.keepalive_ms = 1000;
	cfg.rudp_retry_pending = 100000;
	STRESS_CHECK(crust_service_new(&cfg, &hub) == 0, "hub");
	crust_own_id(hub, &hub_id);
	crust_peer_to_hex(&hub_id, hub_hex);
	STRESS_CHECK(crust_start_listening(hub) == 0, "hub listens");
	struct crust_endpoint eps[4];
	int ne = crust_own_endpoints(hub, eps, 4);
	for (int k = 0; k < ne; k++) {
		int t = eps[k].transport == CRUST_TRANSPORT_TCP ? 0 : 1;
		hub_ep[t] = eps[k];
		hub_port[t] = ntohs(((struct sockaddr_in *)&eps[k].addr)->sin_port);
	}
	STRESS_CHECK(hub_port[0] && hub_port[1], "hub endpoints");
	pthread_t poller, clients[2], nodes, raw;
	STRESS_CHECK(pthread_create(&poller, NULL, hub_poll_main, NULL) == 0, "thread");
	stress_sleep_ms(300);
	struct gauges base, now;
	take(&base);
	show("baseline", &base);

	uint64_t t0 = stress_now_ms();
	for (uintptr_t i = 0; i < 2; i++)
		STRESS_CHECK(pthread_create(&clients[i], NULL, client_main, (void *)i) == 0, "thread");
	STRESS_CHECK(pthread_create(&nodes, NULL, node_main, NULL) == 0, "thread");
	STRESS_CHECK(pthread_create(&raw, NULL, raw_main, NULL) == 0, "thread");
	for (unsigned s = 1; s <= secs; s++) {
		stress_sleep_ms(1000);
		if (s % 20 == 0 || s == secs) {
			struct crust_stats st;
			crust_stats(hub, &st);
			printf("t=%us: %llu connections up, %llu lost, %llu client lives, %llu nodes "
			       "killed, hub now %llu conns %llu msgs\n", s,
			       (unsigned long long)(hub_new[1] + hub_new[2]),
			       (unsigned long long)hub_lost, (unsigned long long)cycles,
			       (unsigned long long)nodes_killed, (unsigned long long)st.live_conns,
			       (unsigned long long)st.live_msgs);
		}
	}
	atomic_store(&running, false);
	for (int i = 0; i < 2; i++)
		pthread_join(clients[i], NULL);
	pthread_join(nodes, NULL);
	pthread_join(raw, NULL);
	uint64_t churn_ms = stress_now_ms() - t0;

	/* the hub notices the last closes and timeouts; then it must be where it started */
	uint64_t end = stress_now_ms() + WAIT_MS;
	do {
		stress_sleep_ms(50);
		take(&now);
	} while (!same(&base, &now) && stress_now_ms() < end);
	uint64_t settle_ms = stress_now_ms() - t0 - churn_ms;
	atomic_store(&hub_polling, false);
	pthread_join(poller, NULL);

	struct crust_stats st = now.st;
	printf("soak: %.1f s of churn, %.1f s to settle\n", (double)churn_ms / 1000.0,
	       (double)settle_ms / 1000.0);
	printf("soak: hub accepted %llu connections (%llu TCP, %llu reliable UDP), lost %llu, "
	       "%llu handshakes failed\n",
	       (unsigned long long)(hub_new[1] + hub_new[2]), (unsigned long long)hub_new[1],
	       (unsigned long long)hub_new[2], (unsigned long long)hub_lost,
	       (unsigned long long)hub_hs_failed);
	printf("soak: %llu client lives (%llu dropped by the client, %llu by the hub, %llu freed "
	       "with traffic, %llu freed mid-handshake)\n", (unsigned long long)cycles,
	       (unsigned long long)client_drops, (unsigned long long)hub_drops,
	       (unsigned long long)abrupt_frees, (unsigned long long)early_frees);
	printf("soak: %llu crust node processes started, %llu killed with SIGKILL\n",
	       (unsigned long long)nodes_started, (unsigned long long)nodes_killed);
	printf("soak: raw: %llu partial msg1 closed, %llu partial msg1 stalled, %llu empty "
	       "connects, %llu bad UDP long packets\n", (unsigned long long)raw_partial,
	       (unsigned long long)raw_stalled, (unsigned long long)raw_empty,
	       (unsigned long long)raw_udp);
	printf("soak: messages checked: %llu at the hub from clients, %llu from nodes, %llu at "
	       "clients; udp bad packets %llu\n", (unsigned long long)hub_rx,
	       (unsigned long long)hub_rx_node, (unsigned long long)client_rx,
	       (unsigned long long)st.udp_bad_packets);
	show("baseline", &base);
	show("after   ", &now);
	STRESS_CHECK(same(&base, &now), "descriptors and live objects are back to the baseline");
	STRESS_CHECK(hub_new[1] > 0 && hub_new[2] > 0 && nodes_killed > 0 && raw_stalled > 0,
		     "every kind of churn happened");
	crust_service_free(hub);
	printf("soak: ok (LeakSanitizer checks the heap at exit)\n");
	return 0;
}
