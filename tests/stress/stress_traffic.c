/*
 * stress_traffic.c - many connections across shards under concurrent API use.
 *
 * One server S (2 shards, events through crust_poll on its own thread) and
 * NCLIENTS clients (1 shard each, events through on_event callbacks on
 * their shard thread), half dialing S over TCP and half over reliable
 * UDP. Every service has a sender thread (crust_send and crust_msg_alloc
 * + crust_send_msg, three priorities, sizes from 24 B to 160 KiB); a
 * meddler thread calls crust_peers, crust_stats, crust_own_endpoints,
 * crust_maintain and crust_blacklist on every service and releases
 * received messages that the callbacks handed over (release from another
 * thread than the shard's).
 *
 * Phases (STRESS_SECONDS split in three):
 *  A steady traffic: afterwards every pair received exactly what was
 *    accepted for it (count and order-independent digest).
 *  B churn: a churn thread drops (from either side) and redials two
 *    clients (one TCP, one UDP) while traffic flows; the stable pairs are
 *    still exact, the churned pairs receive no more than was sent.
 *  C shutdown under traffic: a client is freed while S sends to it, S
 *    blacklists another (its connection closes on its shard), then S
 *    is freed while the clients send to it, then the clients are freed
 *    with their queues full.
 * Every message is checked on arrival: payload hash, destination, and a
 * sequence that only grows per (source, destination, priority).
 */
#include "stress.h"

#include <pthread.h>

#define NCLIENTS 6
#define NSVC (NCLIENTS + 1) /* 0 is S */
#define NPRIO 3
#define MAX_MSG (160u * 1024u)
#define WAIT_MS 60000u
#define STAMP(what) printf("[%5.1f s] %s\n", (double)(stress_now_ms() - t_start) / 1000.0, what)

struct node {
	int idx;
	struct crust_service *svc;
	struct crust_peer_id id;
	enum crust_transport tp;         /* clients: how they dial S */
	pthread_rwlock_t api;            /* threads calling the API hold it shared; free takes it */
	atomic_bool gone;                /* freed (set under api held exclusively) */
	atomic_int conns;                /* clients: connections to S (NEW - LOST) */
	atomic_uint connect_failed;
	atomic_uint lost;
	pthread_t sender;
	atomic_bool sending;
	uint32_t next_seq[NSVC][NPRIO];  /* sender thread only */
	uint32_t last_seq[NSVC][NPRIO];  /* receiving thread only */
	bool freeing;                    /* under held_lock: release at once, hand nothing over */
	uint64_t rng;                    /* sender thread only */
	uint64_t rx_rng;                 /* receiving thread only */
};

static struct node nodes[NSVC];
static uint64_t t_start;
static struct stress_pair counts[NSVC][NSVC]; /* [src][dst] */
static struct crust_endpoint s_ep[2];         /* S's TCP and reliable-UDP endpoints */
static atomic_bool churny[NSVC];             /* pairs S <-> client that churn: not exact */
static atomic_ullong s_events[CRUST_EV_BOOTSTRAP_ROUND + 1];

/* messages the callbacks handed to the meddler: it releases them on its own thread */
#define HELD_MAX 256
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct crust_msg *held[HELD_MAX];
static int held_owner[HELD_MAX];
static int nheld;
static atomic_ullong released_off_thread;

static atomic_bool meddling = true;
static atomic_bool churning;
static atomic_bool polling = true;
static atomic_ullong churn_cycles;

static uint64_t rnd(uint64_t *s)
{
	*s = stress_mix(*s + 0x9e3779b97f4a7c15ull);
	return *s;
}

static int index_of(const struct crust_peer_id *id)
{
	for (int i = 0; i < NSVC; i++)
		if (crust_peer_eq(&nodes[i].id, id))
			return i;
	STRESS_FAIL("message or event from an unknown peer");
}

/* On the receiving node's single consumer thread. */
static void on_message(struct node *dst, const struct crust_event *ev)
{
	uint8_t *p = crust_msg_data(ev->msg);
	size_t len = crust_msg_len(ev->msg);
	struct stress_hdr h = stress_verify(p, len);
	int src = index_of(&ev->peer);
	STRESS_CHECK(h.src == src && h.dst == dst->idx, "message %u->%u arrived as %d->%d", h.src,
		     h.dst, src, dst->idx);
	STRESS_CHECK(h.prio < NPRIO, "priority %u", h.prio);
	uint32_t *last = &dst->last_seq[src][h.prio];
	STRESS_CHECK(h.seq > *last, "flow %d->%d prio %u: seq %u after %u (reordered or repeated)",
		     src, dst->idx, h.prio, h.seq, *last);
	*last = h.seq;
	stress_received(&counts[src][dst->idx], &h, len);
}

/* Clients: events on their shard thread. */
static void client_event(void *ctx, const struct crust_event *ev)
{
	struct node *n = ctx;
	switch (ev->type) {
	case CRUST_EV_NEW_CONNECTION:
		atomic_fetch_add(&n->conns, 1);
		break;
	case CRUST_EV_LOST_CONNECTION:
		atomic_fetch_sub(&n->conns, 1);
		atomic_fetch_add(&n->lost, 1);
		break;
	case CRUST_EV_CONNECT_FAILED:
		atomic_fetch_add(&n->connect_failed, 1);
		break;
	case CRUST_EV_NEW_MESSAGE:
		on_message(n, ev);
		/* every fourth message goes to the meddler thread to be released there */
		pthread_mutex_lock(&held_lock);
		if (!n->freeing && (rnd(&n->rx_rng) & 3) == 0 && nheld < HELD_MAX) {
			held_owner[nheld] = n->idx;
			held[nheld++] = ev->msg;
		} else {
			crust_msg_release(ev->msg);
		}
		pthread_mutex_unlock(&held_lock);
		break;
	default:
		break;
	}
}

/* Release what the callbacks handed over (owner < 0: everyone's). */
static void release_held(int owner)
{
	pthread_mutex_lock(&held_lock);
	int keep = 0;
	for (int i = 0; i < nheld; i++) {
		if (owner < 0 || held_owner[i] == owner) {
			crust_msg_release(held[i]);
			atomic_fetch_add(&released_off_thread, 1);
		} else {
			held_owner[keep] = held_owner[i];
			held[keep++] = held[i];
		}
	}
	nheld = keep;
	pthread_mutex_unlock(&held_lock);
}

static atomic_int s_conns[NSVC]; /* S's view: connections to client i (NEW - LOST) */

static void *s_poll_main(void *arg)
{
	(void)arg;
	struct node *s = &nodes[0];
	struct crust_event evs[32];
	while (atomic_load(&polling)) {
		int n = crust_poll(s->svc, evs, 32, 20);
		STRESS_CHECK(n >= 0, "crust_poll: %d", n);
		for (int i = 0; i < n; i++) {
			struct crust_event *ev = &evs[i];
			atomic_fetch_add(&s_events[ev->type], 1);
			if (ev->type == CRUST_EV_NEW_CONNECTION)
				atomic_fetch_add(&s_conns[index_of(&ev->peer)], 1);
			else if (ev->type == CRUST_EV_LOST_CONNECTION)
				atomic_fetch_sub(&s_conns[index_of(&ev->peer)], 1);
			else if (ev->type == CRUST_EV_NEW_MESSAGE)
				on_message(s, ev);
			crust_msg_release(ev->msg);
		}
	}
	return NULL;
}

static uint32_t pick_size(uint64_t *rng)
{
	uint64_t r = rnd(rng);
	unsigned kind = (unsigned)(r % 100);
	r >>= 8;
	uint32_t min = (uint32_t)sizeof(struct stress_hdr);
	if (kind < 70)
		return min + (uint32_t)(r % 512);
	if (kind < 95)
		return 512 + (uint32_t)(r % (8 * 1024));
	return 32 * 1024 + (uint32_t)(r % (MAX_MSG - 32 * 1024));
}

/* One message from n to node t; true if the library took it (then it is counted). */
static bool send_one(struct node *n, int t, uint8_t *buf)
{
	uint8_t prio = (uint8_t)(rnd(&n->rng) % NPRIO);
	uint32_t len = pick_size(&n->rng);
	uint32_t seq = n->next_seq[t][prio] + 1;
	if (!stress_send(n->svc, &nodes[t].id, buf, len, (uint16_t)n->idx, (uint16_t)t, seq, prio,
			 rnd(&n->rng) & 1, &counts[n->idx][t]))
		return false;
	n->next_seq[t][prio] = seq;
	return true;
}

static void *sender_main(void *arg)
{
	struct node *n = arg;
	uint8_t *buf = malloc(MAX_MSG);
	STRESS_CHECK(buf, "out of memory");
	while (atomic_load(&n->sending)) {
		bool any = false;
		pthread_rwlock_rdlock(&n->api);
		/* S sends to every client, a client to S */
		for (int t = 0; t < NSVC; t++) {
			if (t == n->idx || (n->idx != 0 && t != 0) || nodes[t].gone)
				continue;
			if (send_one(n, t, buf))
				any = true;
		}
		pthread_rwlock_unlock(&n->api);
		if (!any)
			stress_sleep_ms(1); /* every queue full or no peer: let the shards work */
	}
	free(buf);
	return NULL;
}

static void *meddler_main(void *arg)
{
	(void)arg;
	uint64_t rng = 42;
	unsigned blacklisted = 0;
	while (atomic_load(&meddling)) {
		for (int i = 0; i < NSVC; i++) {
			struct node *n = &nodes[i];
			pthread_rwlock_rdlock(&n->api);
			if (n->gone) {
				pthread_rwlock_unlock(&n->api);
				continue;
			}
			struct crust_peer_id ids[NSVC];
			int np = crust_peers(n->svc, ids, NSVC);
			STRESS_CHECK(np >= 0 && np <= NSVC, "crust_peers: %d", np);
			for (int k = 0; k < np && k < NSVC; k++) {
				int r = crust_maintain(n->svc, &ids[k]);
				STRESS_CHECK(r == 0 || r == -ENOTCONN, "crust_maintain: %d", r);
			}
			struct crust_stats st;
			crust_stats(n->svc, &st);
			struct crust_endpoint eps[4];
			int ne = crust_own_endpoints(n->svc, eps, 4);
			STRESS_CHECK(ne >= 0, "crust_own_endpoints: %d", ne);
			if (blacklisted < 64 && (rnd(&rng) & 7) == 0) {
				/* addresses and ids nobody here uses: the shards scan, nothing closes */
				char what[80];
				if (blacklisted & 1) {
					snprintf(what, sizeof(what), "192.0.2.%u", 1 + blacklisted);
				} else {
					struct crust_peer_id other;
					for (size_t b = 0; b < sizeof(other.bytes); b++)
						other.bytes[b] = (uint8_t)rnd(&rng);
					crust_peer_to_hex(&other, what);
				}
				STRESS_CHECK(crust_blacklist(n->svc, what) == 0, "blacklist %s", what);
				blacklisted++;
			}
			pthread_rwlock_unlock(&n->api);
		}
		release_held(-1);
		stress_sleep_ms(2);
	}
	return NULL;
}

static void wait_until(bool (*cond)(void *), void *arg, const char *what)
{
	uint64_t end = stress_now_ms() + WAIT_MS;
	while (!cond(arg)) {
		STRESS_CHECK(stress_now_ms() < end, "timed out waiting for %s", what);
		stress_sleep_ms(5);
	}
}

static bool pair_up(void *arg)
{
	int j = (int)(intptr_t)arg;
	return atomic_load(&nodes[j].conns) > 0 && atomic_load(&s_conns[j]) > 0;
}

static bool pair_down(void *arg)
{
	int j = (int)(intptr_t)arg;
	return atomic_load(&nodes[j].conns) <= 0 && atomic_load(&s_conns[j]) <= 0;
}

static void dial(int j)
{
	struct node *n = &nodes[j];
	pthread_rwlock_rdlock(&n->api);
	int r = crust_connect(n->svc, &s_ep[n->tp == CRUST_TRANSPORT_TCP ? 0 : 1]);
	pthread_rwlock_unlock(&n->api);
	STRESS_CHECK(r == 0, "crust_connect: %d", r);
}

/* Dial until the pair is up (a dial can fail while S still closes the last one). */
static void connect_client(int j)
{
	uint64_t end = stress_now_ms() + WAIT_MS;
	for (;;) {
		unsigned failed = atomic_load(&nodes[j].connect_failed);
		dial(j);
		while (!pair_up((void *)(intptr_t)j) &&
		       atomic_load(&nodes[j].connect_failed) == failed) {
			STRESS_CHECK(stress_now_ms() < end, "client %d never connected", j);
			stress_sleep_ms(5);
		}
		if (pair_up((void *)(intptr_t)j))
			return;
		stress_sleep_ms(20);
	}
}

static void *churn_main(void *arg)
{
	(void)arg;
	uint64_t rng = 7;
	while (atomic_load(&churning)) {
		int j = NCLIENTS - (int)(rnd(&rng) % 2); /* the last two clients churn */
		struct node *from = (rnd(&rng) & 1) ? &nodes[0] : &nodes[j];
		struct crust_peer_id whom = from == &nodes[0] ? nodes[j].id : nodes[0].id;
		pthread_rwlock_rdlock(&from->api);
		int r = crust_drop(from->svc, &whom);
		pthread_rwlock_unlock(&from->api);
		STRESS_CHECK(r == 0, "crust_drop: %s", crust_strerror(r));
		uint64_t t0 = stress_now_ms();
		wait_until(pair_down, (void *)(intptr_t)j, "a dropped pair to go down");
		uint64_t t1 = stress_now_ms();
		connect_client(j);
		printf("churn: client %d (%s) dropped by %s: down in %llu ms, up again in %llu ms\n", j,
		       nodes[j].tp == CRUST_TRANSPORT_TCP ? "TCP" : "UDP", from == &nodes[0] ? "S" : "it",
		       (unsigned long long)(t1 - t0), (unsigned long long)(stress_now_ms() - t1));
		atomic_fetch_add(&churn_cycles, 1);
	}
	return NULL;
}

static void start_senders(void)
{
	for (int i = 0; i < NSVC; i++) {
		if (nodes[i].gone)
			continue;
		atomic_store(&nodes[i].sending, true);
		STRESS_CHECK(pthread_create(&nodes[i].sender, NULL, sender_main, &nodes[i]) == 0,
			     "pthread_create");
	}
}

static void stop_sender(int i)
{
	if (!atomic_exchange(&nodes[i].sending, false))
		return;
	pthread_join(nodes[i].sender, NULL);
}

static void stop_senders(void)
{
	for (int i = 0; i < NSVC; i++)
		stop_sender(i);
}

/* Wait until every stable pair received what was sent, then compare digests. */
static bool stable_settled(void *arg)
{
	(void)arg;
	for (int s = 0; s < NSVC; s++)
		for (int d = 0; d < NSVC; d++) {
			int client = s ? s : d;
			if (s == d || (s && d) || atomic_load(&churny[client]))
				continue;
			if (atomic_load(&counts[s][d].recv) != atomic_load(&counts[s][d].sent))
				return false;
		}
	return true;
}

static void check_pairs(const char *phase)
{
	wait_until(stable_settled, NULL, "every message of the stable pairs");
	uint64_t total = 0, churned = 0, sent_churned = 0;
	for (int s = 0; s < NSVC; s++)
		for (int d = 0; d < NSVC; d++) {
			int client = s ? s : d;
			if (s == d || (s && d))
				continue;
			stress_pair_settle(&counts[s][d], atomic_load(&churny[client]), s, d, &total,
					   &churned, &sent_churned);
		}
	printf("[%5.1f s] phase %s: stable pairs %llu messages exact (count and digest); churned pairs "
	       "%llu of %llu delivered\n", (double)(stress_now_ms() - t_start) / 1000.0, phase, (unsigned long long)total,
	       (unsigned long long)churned, (unsigned long long)sent_churned);
	fflush(stdout);
}

static void free_node(int i)
{
	struct node *n = &nodes[i];
	stop_sender(i);
	pthread_mutex_lock(&held_lock);
	n->freeing = true;
	pthread_mutex_unlock(&held_lock);
	release_held(i);
	pthread_rwlock_wrlock(&n->api);
	crust_service_free(n->svc); /* its shards still have queued sends and incoming traffic */
	n->svc = NULL;
	n->gone = true;
	pthread_rwlock_unlock(&n->api);
}

static bool s_sees_client_gone(void *arg)
{
	return atomic_load(&s_conns[(int)(intptr_t)arg]) <= 0;
}

static bool clients_lost_s(void *arg)
{
	(void)arg;
	for (int j = 1; j < NSVC; j++)
		if (!nodes[j].gone && atomic_load(&nodes[j].conns) > 0)
			return false;
	return true;
}

static void init_node(int i, unsigned shards)
{
	struct node *n = &nodes[i];
	n->idx = i;
	n->rng = 1000u + (uint64_t)i;
	pthread_rwlockattr_t a;
	pthread_rwlockattr_init(&a);
	/* the free must get in between the senders' many short read holds */
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&n->api, &a);
	pthread_rwlockattr_destroy(&a);
	struct crust_config cfg;
	stress_config(&cfg, shards);
	if (i) {
		cfg.on_event = client_event;
		cfg.on_event_ctx = n;
		n->tp = (i & 1) ? CRUST_TRANSPORT_TCP : CRUST_TRANSPORT_RUDP;
	}
	int r = crust_service_new(&cfg, &n->svc);
	STRESS_CHECK(r == 0, "crust_service_new: %s", crust_strerror(r));
	crust_own_id(n->svc, &n->id);
}

int main(void)
{
	t_start = stress_now_ms();
	unsigned secs = stress_seconds(6);
	unsigned phase_ms = secs * 1000u / 3u;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < NSVC; i++)
		init_node(i, i == 0 ? 2 : 1);
	STRESS_CHECK(crust_start_listening(nodes[0].svc) == 0, "S listens");
	struct crust_endpoint eps[4];
	int ne = crust_own_endpoints(nodes[0].svc, eps, 4);
	for (int k = 0; k < ne; k++) {
		if (eps[k].transport == CRUST_TRANSPORT_TCP)
			s_ep[0] = eps[k];
		else if (eps[k].transport == CRUST_TRANSPORT_RUDP)
			s_ep[1] = eps[k];
	}
	STRESS_CHECK(s_ep[0].addrlen && s_ep[1].addrlen, "S has a TCP and a UDP endpoint");

	pthread_t poller, meddler, churner;
	STRESS_CHECK(pthread_create(&poller, NULL, s_poll_main, NULL) == 0, "pthread_create");
	for (int j = 1; j < NSVC; j++)
		dial(j);
	for (int j = 1; j < NSVC; j++)
		wait_until(pair_up, (void *)(intptr_t)j, "every client connected");
	printf("%d clients connected (%d TCP, %d reliable UDP) to a 2-shard server\n", NCLIENTS,
	       (NCLIENTS + 1) / 2, NCLIENTS / 2);
	STRESS_CHECK(pthread_create(&meddler, NULL, meddler_main, NULL) == 0, "pthread_create");

	/* A: steady traffic, everything exact */
	start_senders();
	stress_sleep_ms(phase_ms);
	stop_senders();
	check_pairs("A (steady)");

	/* B: churn two clients while everything sends */
	atomic_store(&churny[NCLIENTS], true);
	atomic_store(&churny[NCLIENTS - 1], true);
	atomic_store(&churning, true);
	start_senders();
	STRESS_CHECK(pthread_create(&churner, NULL, churn_main, NULL) == 0, "pthread_create");
	stress_sleep_ms(phase_ms);
	atomic_store(&churning, false);
	pthread_join(churner, NULL);
	stop_senders();
	check_pairs("B (churn)");
	printf("churn: %llu drop/redial cycles\n", (unsigned long long)atomic_load(&churn_cycles));

	/* C: free while traffic flows */
	start_senders();
	stress_sleep_ms(phase_ms / 2);
	free_node(1); /* S keeps sending to it */
	STAMP("client 1 freed under traffic");
	wait_until(s_sees_client_gone, (void *)(intptr_t)1, "S to lose the freed client");
	STAMP("S lost client 1");
	/* blacklisting a connected peer closes it on its shard while both send */
	char hex[CRUST_PEER_HEX_LEN + 1];
	crust_peer_to_hex(&nodes[2].id, hex);
	atomic_store(&churny[2], true);
	pthread_rwlock_rdlock(&nodes[0].api);
	STRESS_CHECK(crust_blacklist(nodes[0].svc, hex) == 0, "blacklist client 2");
	pthread_rwlock_unlock(&nodes[0].api);
	wait_until(pair_down, (void *)(intptr_t)2, "the blacklisted client to be closed");
	STAMP("blacklisted client 2 closed");
	stress_sleep_ms(phase_ms / 2);
	stop_sender(0);
	atomic_store(&polling, false);
	pthread_join(poller, NULL);
	free_node(0); /* the clients keep sending to it */
	printf("[%5.1f s] S freed under traffic\n", (double)(stress_now_ms() - t_start) / 1000.0);
	wait_until(clients_lost_s, NULL, "every client to lose S");
	printf("[%5.1f s] every client lost S\n", (double)(stress_now_ms() - t_start) / 1000.0);
	atomic_store(&meddling, false);
	pthread_join(meddler, NULL);
	for (int j = 2; j < NSVC; j++)
		free_node(j); /* queued messages to nobody are dropped at free */
	release_held(-1);

	unsigned long long sent = 0, recv = 0, enobufs = 0;
	for (int s = 0; s < NSVC; s++)
		for (int d = 0; d < NSVC; d++) {
			sent += atomic_load(&counts[s][d].sent);
			recv += atomic_load(&counts[s][d].recv);
			enobufs += atomic_load(&counts[s][d].enobufs);
		}
	printf("stress_traffic: %llu messages sent, %llu received and checked, %llu ENOBUFS "
	       "retries, %llu released off the shard thread, S saw %llu lost connections\n",
	       sent, recv, enobufs, (unsigned long long)atomic_load(&released_off_thread),
	       (unsigned long long)atomic_load(&s_events[CRUST_EV_LOST_CONNECTION]));
	STRESS_CHECK(recv > 0 && atomic_load(&churn_cycles) > 0, "traffic and churn happened");
	printf("stress_traffic: ok\n");
	return 0;
}
