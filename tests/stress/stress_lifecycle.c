/*
 * stress_lifecycle.c - services born and freed while they connect and talk.
 *
 * A hub H (2 shards) listens; its events are read by a thread that waits
 * on crust_event_fd() with poll(2) and takes them with crust_poll(.., 0),
 * and a hub sender thread sends to whatever crust_peers() lists. WORKERS
 * threads each loop: make a client (1 or 2 shards, callbacks or a poll
 * thread of its own), reach H by crust_connect over TCP or reliable UDP,
 * or by crust_bootstrap with H as a contact (the bootstrap thread dials),
 * send for a random while, then crust_service_free it at a random moment:
 * before the dial, in the middle of the handshake, or with traffic in
 * both directions. Every message is checked on arrival. At the end H must
 * be back where it started: no connection, peer, socket, timer, receive
 * buffer or message left (crust_stats gauges).
 */
#include "stress.h"

#include <poll.h>
#include <pthread.h>

#define WORKERS 4
#define WAIT_MS 60000u

static struct crust_service *hub;
static struct crust_peer_id hub_id;
static struct crust_endpoint hub_ep[2]; /* TCP, reliable UDP */
static atomic_bool running = true;      /* workers and the hub's sender */
static atomic_bool hub_polling = true;  /* the hub's event thread */
static atomic_ullong hub_rx, hub_new, hub_lost, client_rx, cycles, freed_in_handshake;

static void check_msg(struct crust_msg *m)
{
	stress_verify(crust_msg_data(m), crust_msg_len(m));
}

static void *hub_poll_main(void *arg)
{
	(void)arg;
	int fd = crust_event_fd(hub);
	struct crust_event evs[16];
	while (atomic_load(&hub_polling)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, 20);
		STRESS_CHECK(r >= 0 || errno == EINTR, "poll: %s", strerror(errno));
		int n;
		while ((n = crust_poll(hub, evs, 16, 0)) > 0) {
			for (int i = 0; i < n; i++) {
				if (evs[i].type == CRUST_EV_NEW_MESSAGE) {
					check_msg(evs[i].msg);
					atomic_fetch_add(&hub_rx, 1);
				} else if (evs[i].type == CRUST_EV_NEW_CONNECTION) {
					atomic_fetch_add(&hub_new, 1);
				} else if (evs[i].type == CRUST_EV_LOST_CONNECTION) {
					atomic_fetch_add(&hub_lost, 1);
				}
				crust_msg_release(evs[i].msg);
			}
		}
		STRESS_CHECK(n >= 0, "crust_poll: %d", n);
	}
	return NULL;
}

static void *hub_send_main(void *arg)
{
	(void)arg;
	uint8_t buf[2048];
	uint32_t seq = 0;
	while (atomic_load(&running)) {
		struct crust_peer_id ids[32];
		int n = crust_peers(hub, ids, 32);
		STRESS_CHECK(n >= 0, "crust_peers");
		for (int i = 0; i < n && i < 32; i++) {
			uint32_t len = (uint32_t)sizeof(struct stress_hdr) + (seq * 37u) % 1800u;
			stress_fill(buf, len, 0, 1, ++seq, 0);
			int e = crust_send(hub, &ids[i], buf, len, (uint8_t)(seq % 3));
			STRESS_CHECK(e == 0 || e == -ENOTCONN || e == -ENOBUFS, "hub send: %d", e);
		}
		stress_sleep_ms(n ? 1 : 5);
	}
	return NULL;
}

struct client {
	struct crust_service *svc;
	atomic_bool up;
	atomic_bool polling;
	pthread_t poller;
};

static void client_event(void *ctx, const struct crust_event *ev)
{
	struct client *c = ctx;
	if (ev->type == CRUST_EV_NEW_CONNECTION)
		atomic_store(&c->up, true);
	else if (ev->type == CRUST_EV_LOST_CONNECTION)
		atomic_store(&c->up, false);
	else if (ev->type == CRUST_EV_NEW_MESSAGE) {
		check_msg(ev->msg);
		atomic_fetch_add(&client_rx, 1);
		crust_msg_release(ev->msg);
	}
}

static void *client_poll_main(void *arg)
{
	struct client *c = arg;
	struct crust_event evs[8];
	while (atomic_load(&c->polling)) {
		int n = crust_poll(c->svc, evs, 8, 10);
		STRESS_CHECK(n >= 0, "crust_poll: %d", n);
		for (int i = 0; i < n; i++) {
			client_event(c, &evs[i]);
			if (evs[i].type != CRUST_EV_NEW_MESSAGE)
				crust_msg_release(evs[i].msg);
		}
	}
	return NULL;
}

static uint64_t rnd(uint64_t *s)
{
	*s = stress_mix(*s + 0x9e3779b97f4a7c15ull);
	return *s;
}

static void one_cycle(uint64_t *rng, unsigned widx)
{
	struct client c = { 0 };
	uint64_t r = rnd(rng);
	bool callbacks = r & 1, bootstrap = (r >> 1) % 4 == 0, udp = (r >> 3) & 1;
	unsigned when = (unsigned)((r >> 8) % 4); /* 0 before dialing, 1 at once, 2-3 after traffic */
	struct crust_config cfg;
	stress_config(&cfg, 1 + (unsigned)((r >> 4) & 1));
	cfg.no_pex = false; /* peer exchange asks ride along */
	if (callbacks) {
		cfg.on_event = client_event;
		cfg.on_event_ctx = &c;
	}
	if (bootstrap) {
		cfg.contacts = &hub_ep[udp ? 1 : 0];
		cfg.ncontacts = 1;
		cfg.bootstrap_retry_min_ms = 50;
	}
	int e = crust_service_new(&cfg, &c.svc);
	STRESS_CHECK(e == 0, "crust_service_new: %s", crust_strerror(e));
	if (!callbacks) {
		atomic_store(&c.polling, true);
		STRESS_CHECK(pthread_create(&c.poller, NULL, client_poll_main, &c) == 0, "thread");
	}
	if (when > 0) {
		e = bootstrap ? crust_bootstrap(c.svc) : crust_connect(c.svc, &hub_ep[udp ? 1 : 0]);
		STRESS_CHECK(e == 0, "dial: %s", crust_strerror(e));
	}
	if (when == 1) {
		atomic_fetch_add(&freed_in_handshake, 1);
	} else if (when >= 2) {
		uint64_t end = stress_now_ms() + 20000;
		while (!atomic_load(&c.up) && stress_now_ms() < end)
			stress_sleep_ms(2);
		STRESS_CHECK(atomic_load(&c.up), "worker %u: client never connected (%s, %s)", widx,
			     bootstrap ? "bootstrap" : "connect", udp ? "UDP" : "TCP");
		uint8_t buf[4096];
		unsigned n = 20 + (unsigned)(rnd(rng) % 200);
		for (unsigned i = 0; i < n; i++) {
			uint32_t len = (uint32_t)sizeof(struct stress_hdr) + (uint32_t)(rnd(rng) % 4000);
			stress_fill(buf, len, 1, 0, i + 1, 0);
			e = crust_send(c.svc, &hub_id, buf, len, (uint8_t)(i % 3));
			STRESS_CHECK(e == 0 || e == -ENOBUFS || e == -ENOTCONN, "send: %d", e);
			if (i % 16 == 0) {
				struct crust_stats st;
				crust_stats(c.svc, &st);
				(void)crust_maintain(c.svc, &hub_id);
			}
		}
		if (when == 3)
			stress_sleep_ms((unsigned)(rnd(rng) % 30));
	}
	if (!callbacks) {
		atomic_store(&c.polling, false);
		pthread_join(c.poller, NULL);
	}
	crust_service_free(c.svc); /* mid-handshake, mid-traffic, or mid-bootstrap */
	atomic_fetch_add(&cycles, 1);
}

static void *worker_main(void *arg)
{
	unsigned idx = (unsigned)(uintptr_t)arg;
	uint64_t rng = 77 + idx;
	while (atomic_load(&running))
		one_cycle(&rng, idx);
	return NULL;
}

static bool hub_quiet(const struct crust_stats *base, struct crust_stats *now)
{
	crust_stats(hub, now);
	return now->connections == 0 && now->live_conns == 0 &&
	       now->live_sockets == base->live_sockets && now->live_timers == base->live_timers &&
	       now->rx_buffers_out == base->rx_buffers_out && now->rx_held_bytes == 0 &&
	       now->live_msgs == base->live_msgs;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	unsigned secs = stress_seconds(6);
	struct crust_config cfg;
	stress_config(&cfg, 2);
	/* every client comes from 127.0.0.1: lift the per-source handshake limits */
	cfg.hs_rate_per_s = 100000;
	cfg.hs_burst = 100000;
	cfg.hs_max_pending = 100000;
	cfg.handshake_timeout_ms = 2000; /* clients freed mid-handshake are reaped soon */
	cfg.idle_timeout_ms = 3000;      /* a freed UDP client says nothing: notice soon */
	cfg.keepalive_ms = 1000;
	STRESS_CHECK(crust_service_new(&cfg, &hub) == 0, "hub");
	crust_own_id(hub, &hub_id);
	STRESS_CHECK(crust_start_listening(hub) == 0, "hub listens");
	struct crust_endpoint eps[4];
	int ne = crust_own_endpoints(hub, eps, 4);
	for (int k = 0; k < ne; k++)
		hub_ep[eps[k].transport == CRUST_TRANSPORT_TCP ? 0 : 1] = eps[k];
	STRESS_CHECK(hub_ep[0].addrlen && hub_ep[1].addrlen, "hub endpoints");
	stress_sleep_ms(200);
	struct crust_stats base, now;
	crust_stats(hub, &base);

	pthread_t poller, sender, workers[WORKERS];
	STRESS_CHECK(pthread_create(&poller, NULL, hub_poll_main, NULL) == 0, "thread");
	STRESS_CHECK(pthread_create(&sender, NULL, hub_send_main, NULL) == 0, "thread");
	for (unsigned i = 0; i < WORKERS; i++)
		STRESS_CHECK(pthread_create(&workers[i], NULL, worker_main, (void *)(uintptr_t)i) == 0,
			     "thread");
	stress_sleep_ms(secs * 1000u);
	atomic_store(&running, false);
	for (unsigned i = 0; i < WORKERS; i++)
		pthread_join(workers[i], NULL);
	pthread_join(sender, NULL);
	/* the hub keeps taking events until every freed client is gone from it */
	uint64_t end = stress_now_ms() + WAIT_MS;
	while (!hub_quiet(&base, &now) && stress_now_ms() < end)
		stress_sleep_ms(20);
	atomic_store(&hub_polling, false);
	pthread_join(poller, NULL);
	printf("stress_lifecycle: %llu client lives (%llu freed mid-handshake), hub: %llu connections "
	       "up, %llu lost, %llu messages in, clients %llu messages in\n",
	       (unsigned long long)cycles, (unsigned long long)freed_in_handshake,
	       (unsigned long long)hub_new, (unsigned long long)hub_lost,
	       (unsigned long long)hub_rx, (unsigned long long)client_rx);
	printf("hub after: peers %llu, conns %llu, sockets %llu/%llu, timers %llu/%llu, rx buffers "
	       "out %llu/%llu, held %llu, msgs %llu/%llu\n",
	       (unsigned long long)now.connections, (unsigned long long)now.live_conns,
	       (unsigned long long)now.live_sockets, (unsigned long long)base.live_sockets,
	       (unsigned long long)now.live_timers, (unsigned long long)base.live_timers,
	       (unsigned long long)now.rx_buffers_out, (unsigned long long)base.rx_buffers_out,
	       (unsigned long long)now.rx_held_bytes, (unsigned long long)now.live_msgs,
	       (unsigned long long)base.live_msgs);
	STRESS_CHECK(hub_quiet(&base, &now), "the hub is back to its baseline");
	STRESS_CHECK(cycles > 0 && hub_new > 0 && hub_rx > 0, "clients came, talked and went");
	crust_service_free(hub);
	printf("stress_lifecycle: ok\n");
	return 0;
}
