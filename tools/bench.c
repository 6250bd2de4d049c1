/*
 * bench.c - `crust bench`: the options, the scenario table (one line per
 * scenario: add a scenario by adding its line and its function, declared
 * in bench.h), and the TCP scenarios between services in one process on
 * loopback: throughput (tcp-bulk, tcp-msgs), handshakes per second
 * (handshakes) and the memory an idle connection holds (idle). udp-pps is
 * in bench_udp.c, pingpong in bench_pingpong.c; what they share (clocks,
 * cpu time, packet counters, the traffic block of every JSON) in
 * bench.h / bench_common.c.
 *
 * Throughput. The receiver service (--shards shards from cpu 0) listens on
 * 127.0.0.1; each of --conns sender services (one shard, from cpu 1)
 * connects to it, and one sending thread per connection calls crust_send_msg (or
 * crust_send with --api copy) in a loop, backing off on -ENOBUFS. The
 * receiver counts in its on_event callback, on its shard thread, and
 * checks each message: sequence number in the first 8 bytes, its
 * complement in the last 8, and the length. After a warm-up the counters
 * are sampled over --seconds; one JSON object goes to stdout, progress to
 * stderr.
 *
 * Two processes (--listen ADDR:PORT, --connect ADDR:PORT): the same
 * throughput scenarios with one end per process, for a real or impaired
 * path (perf/impaired.sh runs them in the two namespaces of the lab's
 * wire). The receiver listens on ADDR:PORT (TCP and UDP), takes the first
 * connection, measures --seconds after the warm-up, then drops it and
 * reports; the sender stops queueing after its own window, waits for the
 * receiver's close (at most TAIL_S: the close is one packet, which a lossy
 * path may drop) and reports its side, with the reliable-UDP counters
 * (packets lost, bytes resent) over the whole connection in "totals".
 * The message checks run as usual at the receiver; nothing can be
 * drained across processes, so "missing" is not counted there.
 *
 * Threads: per-connection counters have one writer each (the receiving
 * shard or the sending thread) and are read by the main thread with
 * relaxed atomics: figures, not synchronisation.
 *
 * Connections (handshakes, idle; "connection scenarios" below). A listener
 * service (one shard, cpu 0) and --conns dialer services (one shard each,
 * all on cpu 1). Each dialer is its own node: crust keeps one connection per
 * pair of nodes (docs/PROTOCOL.md), so N connections, or N handshakes in
 * flight, need N dialing identities - N dials from one service to one
 * listener would be duplicates, retired without an event after their
 * handshake. The listener's per-source handshake limits are raised (every
 * dial comes from 127.0.0.1).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "crust.h"
#include "json.h"

#define MAX_CONNS 64          /* throughput: sender services */
#define MAX_DIALERS 20000     /* handshakes, idle: dialer services */
#define CONNECT_TIMEOUT_S 5.0
#define REMOTE_CONNECT_TIMEOUT_S 20.0 /* --connect: across a lossy, slow path */
#define LISTEN_TIMEOUT_S 60.0         /* --listen: for the sender to come */
#define TAIL_S 10.0                   /* --connect: after the window, for the receiver's close */
#define DRAIN_TIMEOUT_S 5.0 /* without a message arriving */
#define BACKOFF_NS 20000 /* after a run of yields: the queue is full, let the shard drain it */
#define YIELDS_BEFORE_SLEEP 8

/* The threads a connection runs on. */
enum role { ROLE_SEND, ROLE_TX_SHARD, ROLE_RX_SHARD, NROLES };

struct bench;

/* One connection: a sender service, its sending thread, the receiver's view of it. */
struct conn {
	struct bench *b;
	unsigned idx;
	struct crust_service *svc;
	struct crust_peer_id id;     /* the sender service's id */
	pthread_t thread;
	bool thread_started;
	atomic_bool up, failed;
	/* sending thread writes */
	_Atomic uint64_t tx_msgs, tx_bytes, enobufs;
	_Atomic int send_err;
	/* receiving shard writes */
	_Atomic uint64_t rx_msgs, rx_bytes, seq_errors, len_errors;
	uint64_t rx_next_seq;
	_Atomic pid_t tid[NROLES];   /* this connection's threads, for their CPU time */
};

struct bench {
	struct bench_opts o;
	struct crust_service *rx;
	struct crust_peer_id rx_id;
	uint16_t rx_port;            /* the receiver's listening port: its sockets' local port */
	struct conn conns[MAX_CONNS];
	atomic_bool stop;
	_Atomic uint64_t lost_conns, send_failed, unknown_peer;
	atomic_bool rx_known;        /* --connect: rx_id was set by NEW_CONNECTION */
};

/* What is sampled at the start and the end of the measured window. */
struct sample {
	double t;
	uint64_t tx_msgs, tx_bytes, rx_msgs, rx_bytes, enobufs;
	struct crust_stats rx_st, tx_st;  /* tx_st: the senders' counters summed */
	double cpu_user, cpu_sys;
	double thread_cpu[NROLES];
	struct tcp_segs segs;
};

/* Both ends are in this process: native byte order will do. */
static void put_u64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* ---- receiving side: the receiver service's on_event, on its shard threads ---- */

static struct conn *find_conn(struct bench *b, const struct crust_peer_id *peer)
{
	for (unsigned i = 0; i < b->o.conns; i++)
		if (crust_peer_eq(&b->conns[i].id, peer))
			return &b->conns[i];
	return NULL;
}

/* Sequence in the first 8 bytes, its complement in the last 8 (when they do not overlap). */
static void check_msg(struct conn *c, const uint8_t *p, size_t len, uint32_t want)
{
	if (len != want) {
		bump(&c->len_errors, 1);
		return;
	}
	if (len < 8)
		return;
	uint64_t seq = get_u64(p);
	bool ok = seq == c->rx_next_seq;
	if (len >= 16 && get_u64(p + len - 8) != ~seq)
		ok = false;
	if (!ok)
		bump(&c->seq_errors, 1);
	c->rx_next_seq = seq + 1; /* resynchronise: count each break once */
}

static void on_rx_message(struct bench *b, const struct crust_event *ev)
{
	struct conn *c = find_conn(b, &ev->peer);
	if (!c) {
		atomic_fetch_add(&b->unknown_peer, 1);
		crust_msg_release(ev->msg);
		return;
	}
	size_t len = crust_msg_len(ev->msg);
	check_msg(c, crust_msg_data(ev->msg), len, b->o.size);
	bump(&c->rx_msgs, 1);
	bump(&c->rx_bytes, len);
	crust_msg_release(ev->msg);
}

static void rx_event(void *ctx, const struct crust_event *ev)
{
	struct bench *b = ctx;
	struct conn *c;
	switch (ev->type) {
	case CRUST_EV_NEW_MESSAGE:
		on_rx_message(b, ev);
		break;
	case CRUST_EV_NEW_CONNECTION:
		if (b->o.listen_at && !atomic_load(&b->conns[0].up)) {
			/* one process per end: the first peer to connect is the sender */
			b->conns[0].id = ev->peer;
			atomic_store(&b->conns[0].up, true);
		}
		c = find_conn(b, &ev->peer);
		if (c)
			atomic_store(&c->tid[ROLE_RX_SHARD], gettid());
		break;
	case CRUST_EV_LOST_CONNECTION:
		if (!atomic_load(&b->stop))
			fprintf(stderr, "crust bench: receiver lost a connection: %s\n", ev->reason);
		atomic_fetch_add(&b->lost_conns, 1);
		break;
	default:
		break;
	}
}

/* ---- sending side ---- */

/* The sender service's on_event, on its shard thread. */
static void tx_event(void *ctx, const struct crust_event *ev)
{
	struct conn *c = ctx;
	switch (ev->type) {
	case CRUST_EV_NEW_CONNECTION:
		if (c->b->o.connect_to) {
			c->b->rx_id = ev->peer; /* whoever listens there */
			atomic_store(&c->b->rx_known, true);
		}
		atomic_store(&c->tid[ROLE_TX_SHARD], gettid());
		atomic_store(&c->up, true);
		break;
	case CRUST_EV_CONNECT_FAILED:
		fprintf(stderr, "crust bench: connect failed: %s\n", ev->reason);
		atomic_store(&c->failed, true);
		break;
	case CRUST_EV_LOST_CONNECTION:
		/* --connect: the receiver's close is the end of the run */
		if (!atomic_load(&c->b->stop) && !c->b->o.connect_to)
			fprintf(stderr, "crust bench: sender lost its connection: %s\n", ev->reason);
		else if (c->b->o.connect_to && !c->b->o.json_only)
			fprintf(stderr, "crust bench: the receiver ended the run (%s)\n", ev->reason);
		atomic_fetch_add(&c->b->lost_conns, 1);
		break;
	case CRUST_EV_SEND_FAILED:
		atomic_fetch_add(&c->b->send_failed, 1);
		break;
	default:
		break;
	}
	crust_msg_release(ev->msg);
}

static void stamp(uint8_t *p, uint32_t size, uint64_t seq)
{
	if (size >= 8)
		put_u64(p, seq);
	if (size >= 16)
		put_u64(p + size - 8, ~seq);
}

/* Zero-copy: the message is filled in place (only its stamps are written). */
static int send_msg_api(struct conn *c, uint64_t seq)
{
	struct bench *b = c->b;
	struct crust_msg *m = crust_msg_alloc(c->svc, b->o.size);
	if (!m)
		return -ENOMEM;
	if (b->o.fill)
		memset(crust_msg_data(m), (int)(seq & 0xff), b->o.size);
	stamp(crust_msg_data(m), b->o.size, seq);
	return crust_send_msg(c->svc, &b->rx_id, m, 0);
}

static int send_copy_api(struct conn *c, uint8_t *buf, uint64_t seq)
{
	struct bench *b = c->b;
	stamp(buf, b->o.size, seq);
	return crust_send(c->svc, &b->rx_id, buf, b->o.size, 0);
}

static void backoff(unsigned *idle)
{
	if ((*idle)++ < YIELDS_BEFORE_SLEEP) {
		sched_yield();
		return;
	}
	struct timespec ts = { 0, BACKOFF_NS };
	nanosleep(&ts, NULL);
}

/*
 * By default a sending thread shares its sender shard's cpu: the shard
 * then drains the queue whenever the thread backs off, and sends gather
 * many messages. On separate cpus both spin and each send carries less.
 */
static int sender_cpu(const struct bench *b, const struct conn *c)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (b->o.sender_cpu == SENDER_ON_SHARD)
		return ncpu > 0 ? (int)((1 + c->idx) % (unsigned long)ncpu) : -1;
	if (b->o.sender_cpu >= ncpu)
		return -1;
	return b->o.sender_cpu;
}

static void *send_main(void *arg)
{
	struct conn *c = arg;
	struct bench *b = c->b;
	atomic_store(&c->tid[ROLE_SEND], gettid());
	pin_self(sender_cpu(b, c));
	uint8_t *buf = b->o.api == API_COPY ? calloc(1, b->o.size) : NULL;
	if (b->o.api == API_COPY && !buf) {
		atomic_store(&c->send_err, -ENOMEM);
		return NULL;
	}
	uint64_t seq = 0;
	unsigned idle = 0;
	while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
		int err = b->o.api == API_COPY ? send_copy_api(c, buf, seq) : send_msg_api(c, seq);
		if (err == -ENOBUFS) {
			bump(&c->enobufs, 1);
			backoff(&idle);
			continue;
		}
		if (err) {
			atomic_store(&c->send_err, err);
			break;
		}
		idle = 0;
		seq++;
		bump(&c->tx_msgs, 1);
		bump(&c->tx_bytes, b->o.size);
	}
	free(buf);
	return NULL;
}

/* ---- setup and teardown ---- */

static void quiet_log(void *ctx, enum crust_log_level lvl, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "crust %s: %s\n", lvl == CRUST_LOG_ERROR ? "error" : "warn", msg);
}

/* The transport the scenario measures: rudp-* dial the UDP listener (rudp://), the others TCP. */
static enum crust_transport scenario_transport(const struct bench *b)
{
	return strncmp(b->o.sc->name, "rudp", 4) ? CRUST_TRANSPORT_TCP : CRUST_TRANSPORT_RUDP;
}

/* "ADDR:PORT" of --listen: the address alone in host (bind_addr), the port in *port. */
static int split_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	struct crust_endpoint ep;
	if (crust_endpoint_parse(s, &ep) < 0 || ep.transport != CRUST_TRANSPORT_ANY)
		return -EINVAL;
	const char *colon = strrchr(s, ':');
	size_t n = (size_t)(colon - s);
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n >= hostlen)
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	*port = ntohs(ep.addr.ss_family == AF_INET6
			      ? ((const struct sockaddr_in6 *)&ep.addr)->sin6_port
			      : ((const struct sockaddr_in *)&ep.addr)->sin_port);
	return 0;
}

static int start_receiver(struct bench *b, struct crust_endpoint *ep)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.port_mapping = "off"; /* a benchmark needs no gateway */
	cfg.shards = b->o.shards;
	cfg.pin_shards = true;
	cfg.first_cpu = 0;
	cfg.bind_addr = "127.0.0.1";
	cfg.no_beacon = true; /* no LAN beacon in benchmarks */
	cfg.tcp_port = 0;
	char host[64];
	if (b->o.listen_at) {
		if (split_listen(b->o.listen_at, host, sizeof(host), &cfg.tcp_port) < 0)
			return -EINVAL;
		cfg.rudp_port = cfg.tcp_port;
		cfg.bind_addr = host;
	}
	cfg.rx_buffer_size = b->o.rx_buf;
	cfg.tracer = b->o.tracer;
	cfg.log = quiet_log;
	cfg.on_event = rx_event;
	cfg.on_event_ctx = b;
	int err = crust_service_new(&cfg, &b->rx);
	if (err)
		return err;
	crust_own_id(b->rx, &b->rx_id);
	err = crust_start_listening(b->rx);
	if (err)
		return err;
	enum crust_transport want = scenario_transport(b);
	struct crust_endpoint eps[8];
	int n = crust_own_endpoints(b->rx, eps, 8);
	for (int i = 0; i < n; i++) {
		if (eps[i].transport == want) {
			*ep = eps[i];
			return 0;
		}
	}
	return n < 0 ? n : -EADDRNOTAVAIL;
}

static int start_sender(struct conn *c, const struct crust_endpoint *ep)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.port_mapping = "off"; /* a benchmark needs no gateway */
	cfg.shards = 1;
	cfg.pin_shards = true;
	cfg.first_cpu = 1 + c->idx;
	cfg.bind_addr = c->b->o.connect_to ? NULL : "127.0.0.1"; /* NULL: any address */
	cfg.no_beacon = true; /* no LAN beacon in benchmarks */
	cfg.zerocopy_min = c->b->o.zc_min;
	cfg.max_send_queue = c->b->o.send_queue;
	cfg.tracer = c->b->o.tracer;
	cfg.log = quiet_log;
	cfg.on_event = tx_event;
	cfg.on_event_ctx = c;
	int err = crust_service_new(&cfg, &c->svc);
	if (err)
		return err;
	crust_own_id(c->svc, &c->id);
	return crust_connect(c->svc, ep);
}

/* Wait until every sender has its connection (or one failed). */
static int wait_connected(struct bench *b)
{
	double deadline = now_s() + (b->o.connect_to ? REMOTE_CONNECT_TIMEOUT_S : CONNECT_TIMEOUT_S);
	for (;;) {
		unsigned up = 0;
		for (unsigned i = 0; i < b->o.conns; i++) {
			if (atomic_load(&b->conns[i].failed))
				return -ECONNREFUSED;
			up += atomic_load(&b->conns[i].up);
		}
		if (up == b->o.conns)
			return 0;
		if (now_s() > deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
}

/* --listen: the receiver alone, until the sender's connection is up. */
static int setup_listen(struct bench *b)
{
	struct crust_endpoint ep;
	int err = start_receiver(b, &ep);
	if (err) {
		fprintf(stderr, "crust bench: --listen %s: %s\n", b->o.listen_at, crust_strerror(err));
		return err;
	}
	b->rx_port = ntohs(((const struct sockaddr_in *)&ep.addr)->sin_port);
	b->conns[0].b = b;
	if (!b->o.json_only)
		fprintf(stderr, "crust bench: %s receiver listening on %s\n", b->o.sc->name,
			b->o.listen_at);
	double deadline = now_s() + LISTEN_TIMEOUT_S;
	while (!atomic_load(&b->conns[0].up)) {
		if (now_s() > deadline) {
			fprintf(stderr, "crust bench: no sender connected within %.0f s\n",
				LISTEN_TIMEOUT_S);
			return -ETIMEDOUT;
		}
		usleep(1000);
	}
	return 0;
}

/* --connect: the sender alone, connected to the receiver at connect_to. */
static int setup_connect(struct bench *b)
{
	struct crust_endpoint ep;
	if (crust_endpoint_parse(b->o.connect_to, &ep) < 0) {
		fprintf(stderr, "crust bench: --connect: ADDR:PORT expected, got '%s'\n",
			b->o.connect_to);
		return -EINVAL;
	}
	ep.transport = scenario_transport(b);
	struct conn *c = &b->conns[0];
	c->b = b;
	int err = start_sender(c, &ep);
	if (!err)
		err = wait_connected(b);
	if (err)
		fprintf(stderr, "crust bench: connecting to %s: %s\n", b->o.connect_to,
			crust_strerror(err));
	return err;
}

static int setup(struct bench *b)
{
	if (b->o.listen_at)
		return setup_listen(b);
	if (b->o.connect_to)
		return setup_connect(b);
	struct crust_endpoint ep;
	int err = start_receiver(b, &ep);
	if (!err)
		b->rx_port = ntohs(((const struct sockaddr_in *)&ep.addr)->sin_port);
	if (err) {
		fprintf(stderr, "crust bench: receiver: %s\n", crust_strerror(err));
		return err;
	}
	for (unsigned i = 0; i < b->o.conns; i++) {
		struct conn *c = &b->conns[i];
		c->b = b;
		c->idx = i;
		err = start_sender(c, &ep);
		if (err) {
			fprintf(stderr, "crust bench: sender %u: %s\n", i, crust_strerror(err));
			return err;
		}
	}
	err = wait_connected(b);
	if (err)
		fprintf(stderr, "crust bench: connecting: %s\n", crust_strerror(err));
	return err;
}

static int start_senders(struct bench *b)
{
	if (b->o.listen_at)
		return 0; /* the sender is the other process */
	for (unsigned i = 0; i < b->o.conns; i++) {
		struct conn *c = &b->conns[i];
		int ret = pthread_create(&c->thread, NULL, send_main, c);
		if (ret) {
			fprintf(stderr, "crust bench: thread: %s\n", strerror(ret));
			return -ret;
		}
		c->thread_started = true;
	}
	return 0;
}

static void stop_senders(struct bench *b)
{
	atomic_store(&b->stop, true);
	for (unsigned i = 0; i < b->o.conns; i++)
		if (b->conns[i].thread_started) {
			pthread_join(b->conns[i].thread, NULL);
			b->conns[i].thread_started = false;
		}
}

static void teardown(struct bench *b)
{
	atomic_store(&b->stop, true);
	for (unsigned i = 0; i < b->o.conns; i++)
		crust_service_free(b->conns[i].svc);
	crust_service_free(b->rx);
}

/* ---- sampling and reporting ---- */

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Sum over distinct tids (several connections may share a receiving shard). */
static double threads_cpu_s(struct bench *b, enum role r)
{
	pid_t seen[MAX_CONNS];
	unsigned n = 0;
	double sum = 0;
	for (unsigned i = 0; i < b->o.conns; i++) {
		pid_t tid = atomic_load(&b->conns[i].tid[r]);
		bool dup = false;
		for (unsigned j = 0; j < n; j++)
			dup |= seen[j] == tid;
		if (dup || tid <= 0)
			continue;
		seen[n++] = tid;
		sum += thread_cpu_s(tid);
	}
	return sum;
}

static void take_sample(struct bench *b, struct sample *s)
{
	memset(s, 0, sizeof(*s));
	s->t = now_s();
	for (unsigned i = 0; i < b->o.conns; i++) {
		struct conn *c = &b->conns[i];
		s->tx_msgs += ld(&c->tx_msgs);
		s->tx_bytes += ld(&c->tx_bytes);
		s->rx_msgs += ld(&c->rx_msgs);
		s->rx_bytes += ld(&c->rx_bytes);
		s->enobufs += ld(&c->enobufs);
		if (!c->svc)
			continue; /* --listen: the sender is the other process */
		struct crust_stats st;
		crust_stats(c->svc, &st);
		s->tx_st.tx_bytes += st.tx_bytes;
		s->tx_st.tx_msgs += st.tx_msgs;
		s->tx_st.tx_send_calls += st.tx_send_calls;
		s->tx_st.tx_zc_sends += st.tx_zc_sends;
		s->tx_st.tx_zc_copied += st.tx_zc_copied;
		s->tx_st.udp_tx_packets += st.udp_tx_packets;
		s->tx_st.udp_rx_packets += st.udp_rx_packets;
		s->tx_st.udp_lost_packets += st.udp_lost_packets;
		s->tx_st.udp_retx_bytes += st.udp_retx_bytes;
		s->tx_st.udp_auth_failures += st.udp_auth_failures;
		s->tx_st.udp_rcvbuf_drops += st.udp_rcvbuf_drops;
		s->tx_st.udp_dup_packets += st.udp_dup_packets;
		s->tx_st.udp_late_packets += st.udp_late_packets;
	}
	if (b->rx)
		crust_stats(b->rx, &s->rx_st);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	s->cpu_user = tv_s(ru.ru_utime);
	s->cpu_sys = tv_s(ru.ru_stime);
	for (int r = 0; r < NROLES; r++)
		s->thread_cpu[r] = threads_cpu_s(b, (enum role)r);
	tcp_segs_take(b->rx_port, &s->segs);
}

static void progress(struct bench *b, const struct sample *prev, const struct sample *cur,
		     double t0)
{
	if (b->o.json_only)
		return;
	double dt = cur->t - prev->t;
	/* --connect: only what was accepted for sending is known here */
	bool tx = b->o.connect_to != NULL;
	double bytes = (double)(tx ? cur->tx_bytes - prev->tx_bytes : cur->rx_bytes - prev->rx_bytes);
	double msgs = (double)(tx ? cur->tx_msgs - prev->tx_msgs : cur->rx_msgs - prev->rx_msgs);
	fprintf(stderr, "crust bench: %5.1f s  %7.3f Gbit/s  %11.0f msg/s %s  enobufs %llu\n",
		cur->t - t0, bytes * 8 / dt / 1e9, msgs / dt, tx ? "sent" : "received",
		(unsigned long long)(cur->enobufs - prev->enobufs));
}

/* Stop measuring: a connection is gone (--connect: the receiver's close ends the run) or a send failed. */
static bool failing(struct bench *b)
{
	if (atomic_load(&b->lost_conns))
		return true;
	for (unsigned i = 0; i < b->o.conns; i++)
		if (atomic_load(&b->conns[i].send_err))
			return true;
	return false;
}

/* Warm up, then sample every second; start and end samples of the window out. */
static void measure(struct bench *b, struct sample *start, struct sample *end)
{
	sleep_until(now_s() + BENCH_WARMUP_S);
	take_sample(b, start);
	struct sample prev = *start;
	double stop_t = start->t + b->o.seconds;
	for (double t = next_tick(start->t, stop_t);; t = next_tick(t, stop_t)) {
		sleep_until(t);
		take_sample(b, end);
		progress(b, &prev, end, start->t);
		prev = *end;
		if (failing(b) || t >= stop_t)
			break; /* on failure the report says why; the figures cover what ran */
	}
}

/* --connect: after the window, wait (bounded) until the receiver closes. */
static bool sender_tail(struct bench *b)
{
	double deadline = now_s() + TAIL_S;
	while (!atomic_load(&b->lost_conns)) {
		if (now_s() > deadline)
			return false;
		usleep(1000);
	}
	return true;
}

/* After the senders stopped: wait until what they sent has arrived. */
static uint64_t drain(struct bench *b)
{
	uint64_t sent = 0, got = 0, before = 0;
	for (unsigned i = 0; i < b->o.conns; i++)
		sent += ld(&b->conns[i].tx_msgs);
	/* a message is missing when the flow stalls, not when a loaded machine (or a
	 * sanitizer build) is slow to deliver what the send queues still hold */
	double deadline = now_s() + DRAIN_TIMEOUT_S;
	do {
		got = 0;
		for (unsigned i = 0; i < b->o.conns; i++)
			got += ld(&b->conns[i].rx_msgs);
		if (got >= sent || failing(b))
			break;
		if (got > before) {
			before = got;
			deadline = now_s() + DRAIN_TIMEOUT_S;
		}
		usleep(1000);
	} while (now_s() < deadline);
	return sent > got ? sent - got : 0;
}

static double per(uint64_t num, uint64_t den)
{
	return den ? (double)num / (double)den : 0;
}

/* Everything the integrity checks found, summed over connections. */
struct errors {
	uint64_t seq, len, missing, lost_conns, send_failed, unknown_peer;
	int send_err;
	/* --connect: the receiver's close was not heard within TAIL_S; no error: its CLOSE
	 * packet is sent once, and a lossy path may drop it (the receiver's own report counts) */
	bool no_close;
};

static void count_errors(struct bench *b, uint64_t missing, struct errors *e)
{
	memset(e, 0, sizeof(*e));
	e->missing = missing;
	e->lost_conns = atomic_load(&b->lost_conns);
	e->send_failed = atomic_load(&b->send_failed);
	e->unknown_peer = atomic_load(&b->unknown_peer);
	for (unsigned i = 0; i < b->o.conns; i++) {
		struct conn *c = &b->conns[i];
		e->seq += ld(&c->seq_errors);
		e->len += ld(&c->len_errors);
		if (atomic_load(&c->send_err))
			e->send_err = atomic_load(&c->send_err);
	}
	if (b->o.connect_to) {
		/* the receiver's close ends the run: losing the connection then is no error,
		 * nor are the sends it cut short */
		e->lost_conns = e->send_failed = 0;
		if (e->send_err == -ENOTCONN)
			e->send_err = 0;
	}
}

static bool any_error(const struct errors *e)
{
	return e->seq || e->len || e->missing || e->lost_conns || e->send_failed ||
	       e->unknown_peer || e->send_err;
}

static void report_params(const struct bench *b, double dt)
{
	char pin[16];
	if (b->o.sender_cpu == SENDER_ON_SHARD)
		snprintf(pin, sizeof(pin), "shard");
	else if (b->o.sender_cpu == SENDER_UNPINNED)
		snprintf(pin, sizeof(pin), "none");
	else
		snprintf(pin, sizeof(pin), "%d", b->o.sender_cpu);
	const char *mode = b->o.listen_at ? "listen" : b->o.connect_to ? "connect" : "local";
	const char *at = b->o.listen_at ? b->o.listen_at : b->o.connect_to;
	printf("{\"scenario\":\"%s\",\"mode\":\"%s\",\"at\":\"%s\",\"size\":%u,\"seconds\":%.3f,\"conns\":%u,\"shards\":%u,"
	       "\"api\":\"%s\",\"sender_cpu\":\"%s\",\"rx_buffer_size\":%u,\"zerocopy_min\":%u,"
	       "\"send_queue\":%u,\"fill\":%s,\"records\":\"%s\",\"cipher\":\"%s\",",
	       b->o.sc->name, mode, at ? at : "", b->o.size, dt, b->o.conns, b->o.shards,
	       b->o.api == API_COPY ? "crust_send" : "crust_send_msg", pin, b->o.rx_buf,
	       b->o.zc_min, b->o.send_queue, b->o.fill ? "true" : "false",
	       b->o.tracer ? "tracer" : "sealed", cipher_name(b->o.tracer));
	/* the first connection's threads, for profiles (perf report --tid) */
	const struct conn *c = &b->conns[0];
	printf("\"tids\":{\"send\":%d,\"tx_shard\":%d,\"rx_shard\":%d},",
	       (int)atomic_load(&c->tid[ROLE_SEND]), (int)atomic_load(&c->tid[ROLE_TX_SHARD]),
	       (int)atomic_load(&c->tid[ROLE_RX_SHARD]));
}

/* Rates as the application saw them: accepted by crust_send*, delivered to on_event. */
/*
 * Rates as the application saw them: accepted by crust_send* (sender),
 * delivered to on_event (receiver); packets are TCP data segments of each
 * side's sockets (TCP_INFO); cpu per side: the sending threads and tx
 * shards, the rx shards.
 */
static void report_rates(const struct bench *b, const struct sample *s0, const struct sample *s1)
{
	double dt = s1->t - s0->t;
	double rx_bytes = (double)(s1->rx_bytes - s0->rx_bytes);
	double tx_bytes = (double)(s1->tx_bytes - s0->tx_bytes);
	struct bench_side tx = {
		.packets = (double)(s1->segs.tx_data_segs_out - s0->segs.tx_data_segs_out),
		.msgs = (double)(s1->tx_msgs - s0->tx_msgs),
		.bytes = tx_bytes,
		.cpu_s = s1->thread_cpu[ROLE_SEND] - s0->thread_cpu[ROLE_SEND] +
			 s1->thread_cpu[ROLE_TX_SHARD] - s0->thread_cpu[ROLE_TX_SHARD],
	};
	struct bench_side rx = {
		.packets = (double)(s1->segs.rx_data_segs_in - s0->segs.rx_data_segs_in),
		.msgs = (double)(s1->rx_msgs - s0->rx_msgs),
		.bytes = rx_bytes,
		.cpu_s = s1->thread_cpu[ROLE_RX_SHARD] - s0->thread_cpu[ROLE_RX_SHARD],
	};
	double cpu = s1->cpu_user - s0->cpu_user + s1->cpu_sys - s0->cpu_sys;
	bench_print_traffic(dt, &tx, &rx, cpu,
			    "TCP data segments (TCP_INFO of each side's sockets; loopback MSS ~64 KiB)");
	printf("\"tx_gbit_s\":%.3f,\"rx_gbit_s\":%.3f,", tx_bytes * 8 / dt / 1e9,
	       rx_bytes * 8 / dt / 1e9);
	/* what the receiver got, in the units of network benchmarks (none at a lone sender) */
	printf("\"goodput_mbps\":");
	json_num(b->o.connect_to ? NAN : rx_bytes * 8 / dt / 1e6, 2);
	printf(",");
	printf("\"enobufs_retries\":%llu,", (unsigned long long)(s1->enobufs - s0->enobufs));
}

/* Process CPU (getrusage) split by user and system, and where it went by thread. */
static void report_cpu(const struct sample *s0, const struct sample *s1)
{
	double user = s1->cpu_user - s0->cpu_user, sys = s1->cpu_sys - s0->cpu_sys;
	printf("\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,", user, sys);
	printf("\"thread_cpu_s\":{\"send_threads\":%.3f,\"tx_shards\":%.3f,\"rx_shards\":%.3f},",
	       s1->thread_cpu[ROLE_SEND] - s0->thread_cpu[ROLE_SEND],
	       s1->thread_cpu[ROLE_TX_SHARD] - s0->thread_cpu[ROLE_TX_SHARD],
	       s1->thread_cpu[ROLE_RX_SHARD] - s0->thread_cpu[ROLE_RX_SHARD]);
}

/* crust_stats over the window: receiver's receive side, senders' send side. */
static void report_stats(const struct sample *s0, const struct sample *s1)
{
	uint64_t rx_calls = s1->rx_st.rx_recv_calls - s0->rx_st.rx_recv_calls;
	uint64_t tx_calls = s1->tx_st.tx_send_calls - s0->tx_st.tx_send_calls;
	uint64_t rx_bytes = s1->rx_st.rx_bytes - s0->rx_st.rx_bytes;
	uint64_t tx_bytes = s1->tx_st.tx_bytes - s0->tx_st.tx_bytes;
	printf("\"stats\":{\"rx_recv_calls\":%llu,\"tx_send_calls\":%llu,\"rx_bytes\":%llu,"
	       "\"tx_bytes\":%llu,\"bytes_per_recv_call\":%.0f,\"bytes_per_send_call\":%.0f,",
	       (unsigned long long)rx_calls, (unsigned long long)tx_calls,
	       (unsigned long long)rx_bytes, (unsigned long long)tx_bytes,
	       per(rx_bytes, rx_calls), per(tx_bytes, tx_calls));
	printf("\"rx_enobufs\":%llu,\"rx_pauses\":%llu,\"tx_zc_sends\":%llu,\"tx_zc_copied\":%llu},",
	       (unsigned long long)(s1->rx_st.rx_enobufs - s0->rx_st.rx_enobufs),
	       (unsigned long long)(s1->rx_st.rx_pauses - s0->rx_st.rx_pauses),
	       (unsigned long long)(s1->tx_st.tx_zc_sends - s0->tx_st.tx_zc_sends),
	       (unsigned long long)(s1->tx_st.tx_zc_copied - s0->tx_st.tx_zc_copied));
}

static void report_errors(const struct errors *e)
{
	printf("\"errors\":{\"seq\":%llu,\"len\":%llu,\"missing\":%llu,\"lost_conns\":%llu,"
	       "\"send_failed\":%llu,\"unknown_peer\":%llu,\"send_err\":%d,\"no_close\":%s}}\n",
	       (unsigned long long)e->seq, (unsigned long long)e->len,
	       (unsigned long long)e->missing, (unsigned long long)e->lost_conns,
	       (unsigned long long)e->send_failed, (unsigned long long)e->unknown_peer,
	       e->send_err, e->no_close ? "true" : "false");
}

/* One side's reliable-UDP counters, b minus a (a NULL: since the service started). */
static void print_udp(const char *name, const struct crust_stats *a, const struct crust_stats *b)
{
	static const struct crust_stats zero;
	if (!a)
		a = &zero;
#define D(f) (unsigned long long)(b->f - a->f)
	printf("\"%s\":{\"udp_tx_packets\":%llu,\"udp_rx_packets\":%llu,\"udp_lost_packets\":%llu,"
	       "\"udp_retx_bytes\":%llu,\"udp_auth_failures\":%llu,\"udp_dup_packets\":%llu,"
	       "\"udp_late_packets\":%llu,\"udp_rcvbuf_drops\":%llu}",
	       name, D(udp_tx_packets), D(udp_rx_packets), D(udp_lost_packets), D(udp_retx_bytes),
	       D(udp_auth_failures), D(udp_dup_packets), D(udp_late_packets), D(udp_rcvbuf_drops));
#undef D
}

/*
 * Reliable-UDP counters of each side in this process, over the window ("udp")
 * and over the whole connection up to the end ("totals", with the
 * application's bytes and messages): retx_ratio = bytes resent by the sender /
 * bytes the receiver got, when both ends are here.
 */
static void report_udp(const struct bench *b, const struct sample *s0, const struct sample *s1,
		       const struct sample *fin)
{
	bool tx = !b->o.listen_at, rx = !b->o.connect_to;
	printf("\"udp\":{");
	if (tx)
		print_udp("sender", &s0->tx_st, &s1->tx_st);
	if (rx) {
		printf(tx ? "," : "");
		print_udp("receiver", &s0->rx_st, &s1->rx_st);
	}
	printf("},\"totals\":{\"tx_msgs\":%llu,\"tx_bytes\":%llu,\"rx_msgs\":%llu,\"rx_bytes\":%llu",
	       (unsigned long long)fin->tx_msgs, (unsigned long long)fin->tx_bytes,
	       (unsigned long long)fin->rx_msgs, (unsigned long long)fin->rx_bytes);
	if (tx) {
		printf(",");
		print_udp("sender", NULL, &fin->tx_st);
	}
	if (rx) {
		printf(",");
		print_udp("receiver", NULL, &fin->rx_st);
	}
	printf("},\"retx_ratio\":");
	json_num(tx && rx ? per(fin->tx_st.udp_retx_bytes, fin->rx_bytes) : NAN, 5);
	printf(",");
}

static void report(const struct bench *b, const struct sample *s0, const struct sample *s1,
		   const struct sample *fin, const struct errors *e)
{
	report_params(b, s1->t - s0->t);
	report_rates(b, s0, s1);
	report_cpu(s0, s1);
	report_stats(s0, s1);
	report_udp(b, s0, s1, fin);
	report_errors(e);
	fflush(stdout);
}

static int run_throughput(const struct bench_opts *o)
{
	if (o->conns > MAX_CONNS) {
		fprintf(stderr, "crust bench: %s: at most %u connections\n", o->sc->name, MAX_CONNS);
		return EXIT_USAGE;
	}
	struct bench *b = calloc(1, sizeof(*b));
	if (!b)
		return 1;
	b->o = *o;
	int ret = 1;
	if (setup(b) == 0 && start_senders(b) == 0) {
		struct sample s0, s1, fin;
		measure(b, &s0, &s1);
		stop_senders(b);
		/* --connect: what is queued still flows (the send queue holds seconds of it)
		 * until the receiver, its window over, closes */
		bool closed = b->o.connect_to ? sender_tail(b) : true;
		struct errors e;
		/* across processes nothing can be drained: the receiver's checks still run */
		count_errors(b, b->o.listen_at || b->o.connect_to ? 0 : drain(b), &e);
		e.no_close = !closed;
		if (b->o.listen_at)
			(void)crust_drop(b->rx, &b->conns[0].id); /* the sender's signal to stop */
		take_sample(b, &fin);
		report(b, &s0, &s1, &fin, &e);
		ret = any_error(&e) ? 1 : 0;
		if (ret)
			fprintf(stderr, "crust bench: integrity check FAILED (see \"errors\")\n");
	}
	stop_senders(b);
	teardown(b);
	free(b);
	return ret;
}

/* ---- connection scenarios: handshakes, idle ---- */

/*
 * Handshakes: every dialer service keeps its dials in flight (one by
 * default); as its connection comes up the dialer drops it, hears
 * lost_connection and dials again. The dialer drops, not the listener:
 * with key confirmation the dialer announces a connection only after the
 * listener's first record opened, so both ends have it by then, while a
 * listener dropping in its new_connection callback closes before that
 * record leaves, and the dial fails (--drop-by listener shows it).
 * Counted: new_connection on each side, failures (connect_failed,
 * handshake_failed, abuse, refused drops, dials never answered),
 * dial-to-new_connection latency, cpu.
 *
 * Idle: every dialer connects (at most IDLE_DIAL_WINDOW dials in flight),
 * twice. The first round warms the services up and is dropped: a dialer's
 * first connection also pays one-off costs of its service (its shard
 * thread's stack grows through the key exchange, a receive buffer's first
 * page, per-thread library state), which one connection per service would
 * otherwise count as the connection's. Then, with malloc's free memory
 * given back (malloc_trim), the second round's N connections are counted
 * against the process's memory just before it; the first round's figures
 * (against the fresh services) are reported too. Then the connections are
 * held for --seconds: none may be lost.
 */

#define HS_LIMIT_OFF 1000000u    /* listener's per-source handshake limits, out of the way */
#define DIALER_RX_BUFFER 4096u   /* dialers are load generators: handshake frames are small */
#define DIALER_RX_BUFFERS 16u
#define DIALER_TX_ARENA 1u       /* below one chunk: no registered arena (4 MiB pinned each) */
#define LAT_BUCKETS 800          /* latency histogram: 2% wide buckets from 1 us (to ~7 s) */
#define LAT_GROWTH 1.02
#define IDLE_DIAL_WINDOW 128
#define IDLE_SETTLE_S 0.5
#define STOP_TIMEOUT_S 5.0

struct cbench;

struct dialer {
	struct cbench *cb;
	struct crust_service *svc;
	_Atomic pid_t tid;
	unsigned want;        /* handshakes: dials this service keeps in flight */
	atomic_uint active;   /* dials or connections not yet over */
	double dial_t;        /* when its (single) dial began: main thread, then its shard */
};

struct cbench {
	struct bench_opts o;
	bool handshakes;      /* else idle */
	struct crust_service *lsn;
	struct crust_endpoint ep;
	struct dialer *d;
	unsigned nd;
	atomic_bool stop;
	atomic_bool warming;  /* idle: the warm-up round's connections are being dropped */
	_Atomic pid_t lsn_tid;
	/* the listener's shard writes */
	_Atomic uint64_t l_new, l_lost, l_hs_failed, l_abuse;
	/* the dialers' shards write: several threads, atomic adds */
	_Atomic uint64_t dials, ups, connect_failed, lost, drop_failed, d_abuse;
	_Atomic uint64_t lat[LAT_BUCKETS];
	/* the first failure, in words: written once (failure_noted), published by failure_set */
	atomic_flag failure_noted;
	atomic_bool failure_set;
	char failure[CRUST_REASON_LEN + 64];
};

static void note_failure(struct cbench *cb, const char *what, const char *reason)
{
	if (!atomic_flag_test_and_set(&cb->failure_noted)) {
		snprintf(cb->failure, sizeof(cb->failure), "%s: %s", what, reason);
		atomic_store_explicit(&cb->failure_set, true, memory_order_release);
	}
	if (!cb->o.json_only)
		fprintf(stderr, "crust bench: %s: %s\n", what, reason);
}

/* The first failure noted, or "" (main thread). */
static const char *first_failure(struct cbench *cb)
{
	return atomic_load_explicit(&cb->failure_set, memory_order_acquire) ? cb->failure : "";
}

static void note_tid(_Atomic pid_t *tid)
{
	if (!atomic_load_explicit(tid, memory_order_relaxed))
		atomic_store(tid, gettid());
}

static void lat_add(struct cbench *cb, double secs)
{
	double us = secs * 1e6;
	int i = us <= 1 ? 0 : (int)(log(us) / log(LAT_GROWTH));
	if (i >= LAT_BUCKETS)
		i = LAT_BUCKETS - 1;
	atomic_fetch_add_explicit(&cb->lat[i], 1, memory_order_relaxed);
}

/* The q-quantile (0..1) of a histogram, in microseconds (the bucket's middle). */
static double lat_quantile(const uint64_t *h, double q)
{
	uint64_t n = 0, seen = 0;
	for (int i = 0; i < LAT_BUCKETS; i++)
		n += h[i];
	if (!n)
		return 0;
	uint64_t want = (uint64_t)ceil(q * (double)n);
	for (int i = 0; i < LAT_BUCKETS; i++) {
		seen += h[i];
		if (seen >= want && h[i])
			return pow(LAT_GROWTH, i + 0.5);
	}
	return 0;
}

static void dial(struct dialer *d)
{
	struct cbench *cb = d->cb;
	d->dial_t = now_s();
	atomic_fetch_add(&cb->dials, 1);
	int err = crust_connect(d->svc, &cb->ep);
	if (err) {
		atomic_fetch_add(&cb->connect_failed, 1);
		note_failure(cb, "crust_connect", crust_strerror(err));
		atomic_fetch_sub(&d->active, 1);
	}
}

/* A dial (or the connection it made) is over: dial again unless stopping. */
static void redial(struct dialer *d)
{
	if (atomic_load(&d->cb->stop))
		atomic_fetch_sub(&d->active, 1);
	else
		dial(d);
}

static void lsn_event(void *ctx, const struct crust_event *ev)
{
	struct cbench *cb = ctx;
	switch (ev->type) {
	case CRUST_EV_NEW_CONNECTION:
		note_tid(&cb->lsn_tid); /* LISTENER_STARTED came on the main thread */
		bump(&cb->l_new, 1);
		if (cb->handshakes && cb->o.drop_by == DROP_BY_LISTENER &&
		    crust_drop(cb->lsn, &ev->peer) < 0) {
			atomic_fetch_add(&cb->drop_failed, 1);
			note_failure(cb, "listener: crust_drop", "peer not connected");
		}
		break;
	case CRUST_EV_LOST_CONNECTION:
		bump(&cb->l_lost, 1);
		if (!cb->handshakes && !atomic_load(&cb->stop) && !atomic_load(&cb->warming))
			note_failure(cb, "listener lost a connection", ev->reason);
		break;
	case CRUST_EV_HANDSHAKE_FAILED:
		bump(&cb->l_hs_failed, 1);
		note_failure(cb, "listener: handshake failed", ev->reason);
		break;
	case CRUST_EV_ABUSE:
		bump(&cb->l_abuse, 1);
		note_failure(cb, "listener: abuse", ev->reason);
		break;
	default:
		break;
	}
	crust_msg_release(ev->msg);
}

static void hs_dialer_event(void *ctx, const struct crust_event *ev)
{
	struct dialer *d = ctx;
	struct cbench *cb = d->cb;
	note_tid(&d->tid);
	switch (ev->type) {
	case CRUST_EV_NEW_CONNECTION:
		atomic_fetch_add(&cb->ups, 1);
		if (d->want == 1)
			lat_add(cb, now_s() - d->dial_t);
		if (cb->o.drop_by == DROP_BY_DIALER && crust_drop(d->svc, &ev->peer) < 0) {
			atomic_fetch_add(&cb->drop_failed, 1);
			note_failure(cb, "dialer: crust_drop", "peer not connected");
			redial(d);
		}
		break;
	case CRUST_EV_LOST_CONNECTION:
		atomic_fetch_add(&cb->lost, 1);
		redial(d);
		break;
	case CRUST_EV_CONNECT_FAILED:
		atomic_fetch_add(&cb->connect_failed, 1);
		note_failure(cb, "dialer: connect failed", ev->reason);
		redial(d);
		break;
	case CRUST_EV_ABUSE:
		atomic_fetch_add(&cb->d_abuse, 1);
		note_failure(cb, "dialer: abuse", ev->reason);
		break;
	default:
		break;
	}
	crust_msg_release(ev->msg);
}

static void idle_dialer_event(void *ctx, const struct crust_event *ev)
{
	struct dialer *d = ctx;
	struct cbench *cb = d->cb;
	note_tid(&d->tid);
	switch (ev->type) {
	case CRUST_EV_NEW_CONNECTION:
		atomic_fetch_add(&cb->ups, 1);
		break;
	case CRUST_EV_CONNECT_FAILED:
		atomic_fetch_add(&cb->connect_failed, 1);
		note_failure(cb, "dialer: connect failed", ev->reason);
		break;
	case CRUST_EV_LOST_CONNECTION:
		atomic_fetch_add(&cb->lost, 1);
		if (!atomic_load(&cb->stop) && !atomic_load(&cb->warming))
			note_failure(cb, "a dialer lost its connection", ev->reason);
		break;
	case CRUST_EV_ABUSE:
		atomic_fetch_add(&cb->d_abuse, 1);
		note_failure(cb, "dialer: abuse", ev->reason);
		break;
	default:
		break;
	}
	crust_msg_release(ev->msg);
}

static int start_listener(struct cbench *cb)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.port_mapping = "off"; /* a benchmark needs no gateway */
	cfg.shards = 1;
	cfg.pin_shards = true;
	cfg.first_cpu = 0;
	cfg.bind_addr = "127.0.0.1";
	cfg.no_beacon = true; /* no LAN beacon in benchmarks */
	cfg.tracer = cb->o.tracer;
	/* every dial comes from 127.0.0.1: the per-source limits would throttle the bench */
	cfg.hs_rate_per_s = HS_LIMIT_OFF;
	cfg.hs_burst = HS_LIMIT_OFF;
	cfg.hs_max_pending = HS_LIMIT_OFF;
	cfg.provisional_grace_ms = UINT32_MAX; /* idle: never "not maintained" */
	cfg.log = quiet_log;
	cfg.on_event = lsn_event;
	cfg.on_event_ctx = cb;
	int err = crust_service_new(&cfg, &cb->lsn);
	if (!err)
		err = crust_start_listening(cb->lsn);
	if (!err) {
		int n = crust_own_endpoints(cb->lsn, &cb->ep, 1);
		err = n == 1 ? 0 : n < 0 ? n : -EADDRNOTAVAIL;
	}
	if (err)
		fprintf(stderr, "crust bench: listener: %s\n", crust_strerror(err));
	return err;
}

static int start_dialer(struct cbench *cb, struct dialer *d)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.port_mapping = "off"; /* a benchmark needs no gateway */
	cfg.shards = 1;
	cfg.pin_shards = true;
	cfg.first_cpu = 1;
	cfg.bind_addr = "127.0.0.1";
	cfg.no_beacon = true; /* no LAN beacon in benchmarks */
	cfg.tracer = cb->o.tracer;
	cfg.rx_buffer_size = DIALER_RX_BUFFER;
	cfg.rx_buffer_count = DIALER_RX_BUFFERS;
	cfg.tx_arena_size = DIALER_TX_ARENA;
	cfg.provisional_grace_ms = UINT32_MAX;
	cfg.log = quiet_log;
	cfg.on_event = cb->handshakes ? hs_dialer_event : idle_dialer_event;
	cfg.on_event_ctx = d;
	d->cb = cb;
	int err = crust_service_new(&cfg, &d->svc);
	if (err)
		fprintf(stderr, "crust bench: dialer service %u: %s\n", (unsigned)(d - cb->d),
			crust_strerror(err));
	return err;
}

static int start_dialers(struct cbench *cb, unsigned n)
{
	cb->d = calloc(n, sizeof(*cb->d));
	if (!cb->d)
		return -ENOMEM;
	for (; cb->nd < n; cb->nd++) {
		int err = start_dialer(cb, &cb->d[cb->nd]);
		if (err)
			return err;
	}
	return 0;
}

/* Stop dialing; wait (bounded) until every dial and connection is over. Returns those that aren't. */
static unsigned settle_dialers(struct cbench *cb)
{
	atomic_store(&cb->stop, true);
	double deadline = now_s() + STOP_TIMEOUT_S;
	for (;;) {
		unsigned busy = 0;
		for (unsigned i = 0; i < cb->nd; i++)
			busy += atomic_load(&cb->d[i].active);
		if (!busy || now_s() > deadline)
			return busy;
		usleep(1000);
	}
}

static void free_cbench(struct cbench *cb)
{
	atomic_store(&cb->stop, true);
	for (unsigned i = 0; i < cb->nd; i++)
		crust_service_free(cb->d[i].svc);
	crust_service_free(cb->lsn);
	free(cb->d);
	free(cb);
}

static double dialers_cpu_s(struct cbench *cb)
{
	double sum = 0;
	for (unsigned i = 0; i < cb->nd; i++)
		sum += thread_cpu_s(atomic_load(&cb->d[i].tid));
	return sum;
}

/* ---- handshakes ---- */

/* Traffic of the connection scenarios: dialers send, the listener receives. */
struct cb_traffic {
	uint64_t segs_out, segs_in;  /* the namespace's TCP segments */
	uint64_t d_tx_bytes, d_tx_msgs, l_rx_bytes, l_rx_msgs;
};

static void cb_traffic_take(struct cbench *cb, struct cb_traffic *t)
{
	memset(t, 0, sizeof(*t));
	netns_tcp_segs(&t->segs_out, &t->segs_in);
	struct crust_stats st;
	for (unsigned i = 0; i < cb->nd; i++) {
		crust_stats(cb->d[i].svc, &st);
		t->d_tx_bytes += st.tx_bytes;
		t->d_tx_msgs += st.tx_msgs;
	}
	crust_stats(cb->lsn, &st);
	t->l_rx_bytes = st.rx_bytes;
	t->l_rx_msgs = st.rx_msgs;
}

/* The common traffic block over a window: sender = the dialers, receiver = the listener. */
static void cb_traffic_print(const struct cb_traffic *a, const struct cb_traffic *b, double dt,
			     double dialers_cpu, double lsn_cpu, double cpu)
{
	struct bench_side tx = { (double)(b->segs_out - a->segs_out),
				 (double)(b->d_tx_msgs - a->d_tx_msgs),
				 (double)(b->d_tx_bytes - a->d_tx_bytes), dialers_cpu };
	struct bench_side rx = { (double)(b->segs_in - a->segs_in),
				 (double)(b->l_rx_msgs - a->l_rx_msgs),
				 (double)(b->l_rx_bytes - a->l_rx_bytes), lsn_cpu };
	bench_print_traffic(dt, &tx, &rx, cpu,
			    "TCP segments out/in of the whole network namespace (/proc/net/snmp): both "
			    "ends and any other loopback traffic; msgs are user messages (none here), "
			    "bytes the services' own (handshakes, keepalives)");
}

struct hs_sample {
	double t, cpu, lsn_cpu, dialers_cpu;
	uint64_t dials, ups, l_new, fails;
	struct cb_traffic traffic;
	uint64_t lat[LAT_BUCKETS];
};

static uint64_t hs_failures(struct cbench *cb)
{
	return ld(&cb->connect_failed) + ld(&cb->l_hs_failed) + ld(&cb->l_abuse) +
	       ld(&cb->d_abuse) + ld(&cb->drop_failed);
}

static void hs_take(struct cbench *cb, struct hs_sample *s)
{
	s->t = now_s();
	s->dials = ld(&cb->dials);
	s->ups = ld(&cb->ups);
	s->l_new = ld(&cb->l_new);
	s->fails = hs_failures(cb);
	for (int i = 0; i < LAT_BUCKETS; i++)
		s->lat[i] = ld(&cb->lat[i]);
	s->cpu = process_cpu_s();
	s->lsn_cpu = thread_cpu_s(atomic_load(&cb->lsn_tid));
	s->dialers_cpu = dialers_cpu_s(cb);
	cb_traffic_take(cb, &s->traffic);
}

static void hs_measure(struct cbench *cb, struct hs_sample *s0, struct hs_sample *s1)
{
	sleep_until(now_s() + BENCH_WARMUP_S);
	hs_take(cb, s0);
	struct hs_sample prev = *s0;
	double stop_t = s0->t + cb->o.seconds;
	for (double t = next_tick(s0->t, stop_t);; t = next_tick(t, stop_t)) {
		sleep_until(t);
		hs_take(cb, s1);
		double dt = s1->t - prev.t;
		if (!cb->o.json_only)
			fprintf(stderr, "crust bench: %5.1f s  %8.0f handshakes/s (listener %8.0f/s)  "
				"failures %llu\n", s1->t - s0->t, (double)(s1->ups - prev.ups) / dt,
				(double)(s1->l_new - prev.l_new) / dt,
				(unsigned long long)(s1->fails - prev.fails));
		prev = *s1;
		if (t >= stop_t)
			break;
	}
}

static double per_k(double cpu, uint64_t n)
{
	return n ? cpu / ((double)n / 1000.0) : 0;
}

static void hs_report(struct cbench *cb, const struct hs_sample *s0, const struct hs_sample *s1,
		      unsigned unresolved)
{
	double dt = s1->t - s0->t;
	uint64_t ups = s1->ups - s0->ups, acc = s1->l_new - s0->l_new;
	double cpu = s1->cpu - s0->cpu, lcpu = s1->lsn_cpu - s0->lsn_cpu;
	double dcpu = s1->dialers_cpu - s0->dialers_cpu;
	uint64_t lat[LAT_BUCKETS];
	for (int i = 0; i < LAT_BUCKETS; i++)
		lat[i] = s1->lat[i] - s0->lat[i];
	printf("{\"scenario\":\"handshakes\",\"seconds\":%.3f,\"conns\":%u,\"dialers\":%u,"
	       "\"drop_by\":\"%s\",\"records\":\"%s\",\"cipher\":\"%s\",",
	       dt, cb->o.conns, cb->nd, cb->o.drop_by == DROP_BY_DIALER ? "dialer" : "listener",
	       cb->o.tracer ? "tracer" : "sealed", cipher_name(cb->o.tracer));
	/* for profiles: every other thread but main is a dialer's shard */
	printf("\"tids\":{\"listener\":%d,\"main\":%d},", (int)atomic_load(&cb->lsn_tid),
	       (int)gettid());
	cb_traffic_print(&s0->traffic, &s1->traffic, dt, dcpu, lcpu, cpu);
	printf("\"handshakes_s\":%.0f,\"accepted_s\":%.0f,\"dials_s\":%.0f,",
	       (double)ups / dt, (double)acc / dt, (double)(s1->dials - s0->dials) / dt);
	printf("\"latency_us\":{\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f},", lat_quantile(lat, 0.5),
	       lat_quantile(lat, 0.9), lat_quantile(lat, 0.99));
	printf("\"cpu_s_per_1000\":%.4f,\"thread_cpu_s\":{\"listener\":%.3f,"
	       "\"dialers\":%.3f},\"listener_cpu_s_per_1000\":%.4f,\"dialers_cpu_s_per_1000\":%.4f,",
	       per_k(cpu, ups), lcpu, dcpu, per_k(lcpu, acc), per_k(dcpu, ups));
	printf("\"window_failures\":%llu,\"errors\":{\"connect_failed\":%llu,\"handshake_failed\":%llu,"
	       "\"abuse\":%llu,\"drop_failed\":%llu,\"unresolved\":%u},\"first_failure\":",
	       (unsigned long long)(s1->fails - s0->fails), (unsigned long long)ld(&cb->connect_failed),
	       (unsigned long long)ld(&cb->l_hs_failed),
	       (unsigned long long)(ld(&cb->l_abuse) + ld(&cb->d_abuse)),
	       (unsigned long long)ld(&cb->drop_failed), unresolved);
	json_string(stdout, first_failure(cb), strlen(first_failure(cb)));
	struct crust_stats st;
	crust_stats(cb->lsn, &st);
	printf(",\"totals\":{\"dials\":%llu,\"dialer_new\":%llu,\"dialer_lost\":%llu,"
	       "\"listener_new\":%llu,\"listener_lost\":%llu,\"listener_peers_at_end\":%llu}}\n",
	       (unsigned long long)ld(&cb->dials), (unsigned long long)ld(&cb->ups),
	       (unsigned long long)ld(&cb->lost), (unsigned long long)ld(&cb->l_new),
	       (unsigned long long)ld(&cb->l_lost), (unsigned long long)st.connections);
	fflush(stdout);
}

static int run_handshakes(const struct bench_opts *o)
{
	struct cbench *cb = calloc(1, sizeof(*cb));
	if (!cb)
		return 1;
	cb->o = *o;
	cb->handshakes = true;
	unsigned nd = o->dialers && o->dialers < o->conns ? o->dialers : o->conns;
	int ret = 1;
	if (start_listener(cb) == 0 && start_dialers(cb, nd) == 0) {
		for (unsigned i = 0; i < nd; i++) {
			struct dialer *d = &cb->d[i];
			d->want = o->conns / nd + (i < o->conns % nd);
			atomic_store(&d->active, d->want);
			for (unsigned k = 0; k < d->want; k++)
				dial(d);
		}
		struct hs_sample *s = calloc(2, sizeof(*s));
		if (s) {
			hs_measure(cb, &s[0], &s[1]);
			unsigned unresolved = settle_dialers(cb);
			hs_report(cb, &s[0], &s[1], unresolved);
			bool bad = hs_failures(cb) || unresolved || s[1].ups == s[0].ups;
			ret = bad ? 1 : 0;
			if (bad)
				fprintf(stderr, "crust bench: handshakes FAILED or went unanswered (see "
						"\"errors\", \"first_failure\")\n");
			free(s);
		}
	}
	free_cbench(cb);
	return ret;
}

/* ---- idle ---- */

struct mem_sample {
	double rss_kb, anon_kb, file_kb, shmem_kb; /* /proc/self/status */
	double heap_bytes;                         /* mallinfo2: in use, arenas + mmapped */
	double slab_kb;                            /* /proc/meminfo: the whole machine */
	double tcp_inuse, tcp_mem_pages;           /* /proc/net/sockstat: the whole machine */
	unsigned threads, fds;
};

static unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;
	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own descriptor */
}

static double field_kb(const char *path, const char *name)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[256];
	double v = 0;
	size_t n = strlen(name);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, n) && line[n] == ':') {
			v = atof(line + n + 1);
			break;
		}
	fclose(f);
	return v;
}

static void sockstat_tcp(double *inuse, double *mem)
{
	*inuse = *mem = 0;
	FILE *f = fopen("/proc/net/sockstat", "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, m;
		if (sscanf(line, "TCP: inuse %llu orphan %*u tw %*u alloc %*u mem %llu", &a, &m) == 2) {
			*inuse = (double)a;
			*mem = (double)m;
		}
	}
	fclose(f);
}

static void mem_take(struct mem_sample *m)
{
	m->rss_kb = field_kb("/proc/self/status", "VmRSS");
	m->anon_kb = field_kb("/proc/self/status", "RssAnon");
	m->file_kb = field_kb("/proc/self/status", "RssFile");
	m->shmem_kb = field_kb("/proc/self/status", "RssShmem");
	m->threads = (unsigned)field_kb("/proc/self/status", "Threads");
	m->fds = count_fds();
	struct mallinfo2 mi = mallinfo2();
	m->heap_bytes = (double)(mi.uordblks + mi.hblkhd);
	m->slab_kb = field_kb("/proc/meminfo", "Slab");
	sockstat_tcp(&m->tcp_inuse, &m->tcp_mem_pages);
}

/*
 * Descriptors: 3 per dialer service (its ring, its eventfd and one spare
 * the engine keeps) and 2 per connection (a socket at each end): 5 per
 * idle connection here, where a node with N peers needs about N.
 */
#define IDLE_FDS_PER_CONN 5u
#define IDLE_FDS_SPARE 64u

static int raise_nofile(unsigned conns)
{
	rlim_t need = (rlim_t)conns * IDLE_FDS_PER_CONN + IDLE_FDS_SPARE;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur >= need)
		return 0;
	struct rlimit want = { need, rl.rlim_max > need ? rl.rlim_max : need };
	if (setrlimit(RLIMIT_NOFILE, &want) == 0)
		return 0;
	int err = -errno;
	fprintf(stderr, "crust bench: idle: %u connections need %llu descriptors; the hard limit is "
			"%llu and this process may not raise it (%s): at most %llu connections\n",
		conns, (unsigned long long)need, (unsigned long long)rl.rlim_max, strerror(-err),
		(unsigned long long)((rl.rlim_max - IDLE_FDS_SPARE) / IDLE_FDS_PER_CONN));
	return err;
}

/* Dial every dialer once, IDLE_DIAL_WINDOW at a time; wait until both ends have all N. */
static int idle_connect(struct cbench *cb, double *secs)
{
	unsigned n = cb->nd, next = 0;
	double t0 = now_s(), deadline = t0 + 30 + n / 200.0;
	for (;;) {
		uint64_t done = ld(&cb->ups) + ld(&cb->connect_failed);
		while (next < n && next - done < IDLE_DIAL_WINDOW) {
			atomic_store(&cb->d[next].active, 1);
			dial(&cb->d[next++]);
		}
		if (ld(&cb->connect_failed) || ld(&cb->lost) || ld(&cb->l_hs_failed) ||
		    ld(&cb->l_abuse))
			return -ECONNREFUSED;
		if (done == n && ld(&cb->l_new) == n)
			break;
		if (now_s() > deadline) {
			fprintf(stderr, "crust bench: idle: %llu of %u connections up after %.0f s\n",
				(unsigned long long)ld(&cb->ups), n, now_s() - t0);
			return -ETIMEDOUT;
		}
		usleep(1000);
	}
	*secs = now_s() - t0;
	return 0;
}

/* The warm-up round: every dialer drops its connection; wait until both ends saw it go. */
static int idle_drop_all(struct cbench *cb)
{
	struct crust_peer_id lsn_id;
	crust_own_id(cb->lsn, &lsn_id);
	atomic_store(&cb->warming, true);
	for (unsigned i = 0; i < cb->nd; i++)
		if (crust_drop(cb->d[i].svc, &lsn_id) < 0)
			return -ENOTCONN;
	double deadline = now_s() + 30 + cb->nd / 200.0;
	while (ld(&cb->lost) < cb->nd || ld(&cb->l_lost) < cb->nd) {
		if (now_s() > deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
	atomic_store(&cb->ups, 0);
	atomic_store(&cb->l_new, 0);
	atomic_store(&cb->lost, 0);
	atomic_store(&cb->l_lost, 0);
	atomic_store(&cb->warming, false);
	return 0;
}

struct idle_result {
	struct mem_sample fresh, before, connected, after_hold;
	double services_s, first_connect_s, connect_s, hold_s, hold_cpu, teardown_s;
	double hold_lsn_cpu, hold_dialers_cpu;
	struct cb_traffic hold0, hold1;   /* keepalive traffic over the hold */
	uint64_t l_lost;
};

static void per_conn(const char *name, const struct mem_sample *a, const struct mem_sample *b,
		     double n)
{
	printf("\"%s\":{\"rss\":%.0f,\"rss_anon\":%.0f,\"rss_file_shmem\":%.0f,\"heap_in_use\":%.0f,"
	       "\"kernel_slab\":%.0f,\"tcp_buffers\":%.0f}",
	       name, (b->rss_kb - a->rss_kb) * 1024 / n, (b->anon_kb - a->anon_kb) * 1024 / n,
	       (b->file_kb + b->shmem_kb - a->file_kb - a->shmem_kb) * 1024 / n,
	       (b->heap_bytes - a->heap_bytes) / n, (b->slab_kb - a->slab_kb) * 1024 / n,
	       (b->tcp_mem_pages - a->tcp_mem_pages) * 4096 / n);
}

static void idle_report(struct cbench *cb, const struct idle_result *r)
{
	double n = cb->o.conns;
	printf("{\"scenario\":\"idle\",\"conns\":%u,\"records\":\"%s\",\"cipher\":\"%s\","
	       "\"process\":\"listener and %u dialer services in one process\",",
	       cb->o.conns, cb->o.tracer ? "tracer" : "sealed", cipher_name(cb->o.tracer),
	       cb->o.conns);
	cb_traffic_print(&r->hold0, &r->hold1, r->hold_s, r->hold_dialers_cpu, r->hold_lsn_cpu,
			 r->hold_cpu);
	printf("\"services_s\":%.3f,\"first_connect_s\":%.3f,\"connect_s\":%.3f,\"connects_s\":%.0f,"
	       "\"hold_s\":%.3f,\"teardown_s\":%.3f,\"threads\":%u,\"fds\":{\"services\":%u,"
	       "\"connected\":%u},",
	       r->services_s, r->first_connect_s, r->connect_s,
	       r->connect_s > 0 ? n / r->connect_s : 0, r->hold_s, r->teardown_s,
	       r->connected.threads, r->fresh.fds, r->connected.fds);
	printf("\"rss_kb\":{\"services\":%.0f,\"before\":%.0f,\"connected\":%.0f,\"after_hold\":%.0f},",
	       r->fresh.rss_kb, r->before.rss_kb, r->connected.rss_kb, r->after_hold.rss_kb);
	per_conn("per_conn_bytes", &r->before, &r->connected, n);
	printf(",");
	per_conn("per_first_conn_bytes", &r->fresh, &r->connected, n);
	printf(",\"rss_growth_during_hold_per_conn\":%.0f,",
	       (r->after_hold.rss_kb - r->connected.rss_kb) * 1024 / n);
	printf("\"tcp_sockets\":%.0f,\"hold_cpu_s\":%.3f,\"hold_cpu_per_s\":%.4f,",
	       r->connected.tcp_inuse - r->before.tcp_inuse, r->hold_cpu,
	       r->hold_s > 0 ? r->hold_cpu / r->hold_s : 0);
	printf("\"errors\":{\"connect_failed\":%llu,\"lost\":%llu,\"listener_lost\":%llu,"
	       "\"handshake_failed\":%llu,\"abuse\":%llu},\"first_failure\":",
	       (unsigned long long)ld(&cb->connect_failed), (unsigned long long)ld(&cb->lost),
	       (unsigned long long)r->l_lost, (unsigned long long)ld(&cb->l_hs_failed),
	       (unsigned long long)(ld(&cb->l_abuse) + ld(&cb->d_abuse)));
	json_string(stdout, first_failure(cb), strlen(first_failure(cb)));
	printf("}\n");
	fflush(stdout);
}

/* Hold the connections for --seconds; true if none was lost. */
static bool idle_hold(struct cbench *cb, double *secs, double *cpu)
{
	double t0 = now_s(), c0 = process_cpu_s();
	double stop_t = t0 + cb->o.seconds;
	for (double t = next_tick(t0, stop_t);; t = next_tick(t, stop_t)) {
		sleep_until(t);
		if (!cb->o.json_only)
			fprintf(stderr, "crust bench: %5.1f s  %u connections held, %.3f cpu-s so far\n",
				now_s() - t0, cb->nd - (unsigned)ld(&cb->lost), process_cpu_s() - c0);
		if (ld(&cb->lost) || ld(&cb->l_lost) || t >= stop_t)
			break;
	}
	*secs = now_s() - t0;
	*cpu = process_cpu_s() - c0;
	return !ld(&cb->lost) && !ld(&cb->l_lost);
}

/* Both rounds, the measurements and the hold; false on any failure. */
static bool idle_rounds(struct cbench *cb, struct idle_result *r)
{
	sleep_until(now_s() + IDLE_SETTLE_S);
	mem_take(&r->fresh);
	if (idle_connect(cb, &r->first_connect_s) < 0 || idle_drop_all(cb) < 0) {
		fprintf(stderr, "crust bench: idle: warm-up round failed: %s\n", first_failure(cb));
		return false;
	}
	malloc_trim(0);
	sleep_until(now_s() + IDLE_SETTLE_S);
	mem_take(&r->before);
	if (idle_connect(cb, &r->connect_s) < 0) {
		fprintf(stderr, "crust bench: idle: connecting failed: %s\n", first_failure(cb));
		return false;
	}
	sleep_until(now_s() + IDLE_SETTLE_S);
	mem_take(&r->connected);
	cb_traffic_take(cb, &r->hold0);
	double lc = thread_cpu_s(atomic_load(&cb->lsn_tid)), dc = dialers_cpu_s(cb);
	bool held = idle_hold(cb, &r->hold_s, &r->hold_cpu);
	cb_traffic_take(cb, &r->hold1);
	r->hold_lsn_cpu = thread_cpu_s(atomic_load(&cb->lsn_tid)) - lc;
	r->hold_dialers_cpu = dialers_cpu_s(cb) - dc;
	mem_take(&r->after_hold);
	r->l_lost = ld(&cb->l_lost);
	return held;
}

static int run_idle(const struct bench_opts *o)
{
	if (raise_nofile(o->conns) < 0)
		return 1;
	struct cbench *cb = calloc(1, sizeof(*cb));
	struct idle_result *r = calloc(1, sizeof(*r));
	if (!cb || !r) {
		free(cb);
		free(r);
		return 1;
	}
	cb->o = *o;
	int ret = 1;
	double t0 = now_s();
	if (start_listener(cb) == 0 && start_dialers(cb, o->conns) == 0) {
		r->services_s = now_s() - t0;
		bool ok = idle_rounds(cb, r);
		if (r->connected.rss_kb > 0) {
			double t1 = now_s();
			atomic_store(&cb->stop, true);
			for (unsigned i = 0; i < cb->nd; i++)
				crust_service_free(cb->d[i].svc);
			cb->nd = 0;
			r->teardown_s = now_s() - t1;
			idle_report(cb, r);
		}
		ret = ok ? 0 : 1;
	}
	free_cbench(cb);
	free(r);
	return ret;
}

/* ---- options ---- */

/*
 * One line per scenario: name, default --size, default and largest --conns,
 * the function (bench.h). Reliable UDP (rudp-bulk, rudp-msgs: tools/bench_rudp.c)
 * goes here too; perf/run.sh runs whatever `crust bench --list` names.
 */
static const struct scenario scenarios[] = {
	{ "tcp-bulk", 128 * 1024, 1, MAX_CONNS, run_throughput },
	{ "tcp-msgs", 64, 1, MAX_CONNS, run_throughput },
	{ "rudp-bulk", 128 * 1024, 1, MAX_CONNS, run_throughput },
	{ "rudp-msgs", 64, 1, MAX_CONNS, run_throughput },
	{ "handshakes", 0, 64, 4096, run_handshakes },
	{ "idle", 0, 1000, MAX_DIALERS, run_idle },
	{ "udp-pps", 1200, 1, 1, bench_udp_pps },
	{ "pingpong", 64, 1, 1, bench_pingpong },
};

static void bench_usage(FILE *f)
{
	fputs("usage: crust bench --list | --help\n"
	      "       crust bench SCENARIO [--seconds S] [--conns N] [--tracer] [--json-only]\n"
	      "                           [--size N] [--shards N] [--api msg|copy]\n"
	      "                           [--sender-cpu N|none] [--rx-buffer-size N]\n"
	      "                           [--zerocopy-min N] [--send-queue N] [--fill]\n"
	      "                           [--dialers N] [--drop-by listener|dialer] [--batch N]\n"
	      "                           [--listen ADDR:PORT | --connect ADDR:PORT]\n"
	      "scenarios:\n"
	      "  tcp-bulk    throughput, 131072-byte messages (--size)\n"
	      "  tcp-msgs    throughput, 64-byte messages (--size)\n"
	      "  rudp-bulk, rudp-msgs  the same over reliable UDP\n"
	      "  handshakes  handshakes per second: --conns dials in flight (default 64), each\n"
	      "              from its own dialer service; each new connection is dropped and\n"
	      "              its dialer dials again\n"
	      "  idle        --conns idle connections (default 1000), each from its own dialer\n"
	      "              service: memory per connection, then held for --seconds\n"
	      "  udp-pps     datagrams/s through the engine's UDP sockets (UDP_SEGMENT sends,\n"
	      "              UDP_GRO receives), 1200-byte datagrams (--size), no crypto\n"
	      "  pingpong    request/response latency over one connection (p50/p99/p999 us),\n"
	      "              64-byte messages (--size), sealed or --tracer\n"
	      "common:\n"
	      "  --seconds S     measured (idle: held) seconds after a 0.5 s warm-up (default 5;\n"
	      "                  fractions allowed, from 0.05)\n"
	      "  --conns N       tcp-*: connections, one sender service and thread each (default 1)\n"
	      "  --tracer        clear (tracer-mode) records on both ends: the cost without AEAD\n"
	      "  --json-only     no progress on stderr\n"
	      "tcp-bulk, tcp-msgs:\n"
	      "  --size N        message size in bytes\n"
	      "  --shards N      receiver shards, pinned from cpu 0 (default 1)\n"
	      "  --api msg|copy  crust_msg_alloc+crust_send_msg (default) or crust_send\n"
	      "  --sender-cpu N  pin every sending thread to cpu N; none: unpinned\n"
	      "                  (default: each on its sender shard's cpu, 1, 2, ...)\n"
	      "  --rx-buffer-size N  receiver's provided-buffer size (default: the library's)\n"
	      "  --zerocopy-min N    senders use SEND_ZC for sends of N bytes or more (default off)\n"
	      "  --send-queue N  senders' max_send_queue in bytes (default: the library's, 64 MiB)\n"
	      "  --fill          the sending thread writes every byte of a message (default: only\n"
	      "                  the 16 bytes of sequence stamps)\n"
	      "tcp-*, rudp-* with one end per process (a real or impaired path, one connection):\n"
	      "  --listen ADDR:PORT   the receiver: listen there (TCP and UDP), take the first\n"
	      "                  connection, measure --seconds, close it and report (goodput_mbps)\n"
	      "  --connect ADDR:PORT  the sender: dial the receiver there (rudp-*: over UDP),\n"
	      "                  send until it closes, report the sender's side and, in\n"
	      "                  \"totals\", its reliable-UDP counters (udp_retx_bytes ...)\n"
	      "handshakes:\n"
	      "  --dialers N     spread the dials over N dialer services (default: one each);\n"
	      "                  fewer services than dials makes duplicate connections, which\n"
	      "                  crust retires without an event: for showing that, not measuring\n"
	      "  --drop-by listener|dialer  which end drops each new connection (default dialer)\n"
	      "udp-pps:\n"
	      "  --batch N       datagrams per send (1: no UDP_SEGMENT; default: as many as fit\n"
	      "                  in 65000 bytes, at most 64)\n"
	      "stdout: one JSON object; exit 1 if a check failed (integrity, a failed or\n"
	      "unanswered handshake, a lost idle connection)\n", f);
}

enum { OPT_SIZE = 1000, OPT_SECONDS, OPT_CONNS, OPT_SHARDS, OPT_API, OPT_SENDER_CPU,
       OPT_RX_BUF, OPT_ZC_MIN, OPT_SEND_QUEUE, OPT_FILL, OPT_DIALERS, OPT_DROP_BY, OPT_BATCH, OPT_TRACER,
       OPT_JSON_ONLY, OPT_LISTEN, OPT_CONNECT, OPT_HELP };

static const struct option options[] = {
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "seconds", required_argument, NULL, OPT_SECONDS },
	{ "conns", required_argument, NULL, OPT_CONNS },
	{ "shards", required_argument, NULL, OPT_SHARDS },
	{ "api", required_argument, NULL, OPT_API },
	{ "sender-cpu", required_argument, NULL, OPT_SENDER_CPU },
	{ "rx-buffer-size", required_argument, NULL, OPT_RX_BUF },
	{ "zerocopy-min", required_argument, NULL, OPT_ZC_MIN },
	{ "send-queue", required_argument, NULL, OPT_SEND_QUEUE },
	{ "fill", no_argument, NULL, OPT_FILL },
	{ "dialers", required_argument, NULL, OPT_DIALERS },
	{ "drop-by", required_argument, NULL, OPT_DROP_BY },
	{ "batch", required_argument, NULL, OPT_BATCH },
	{ "tracer", no_argument, NULL, OPT_TRACER },
	{ "json-only", no_argument, NULL, OPT_JSON_ONLY },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "connect", required_argument, NULL, OPT_CONNECT },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static const struct scenario *find_scenario(const char *name)
{
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (!strcmp(scenarios[i].name, name))
			return &scenarios[i];
	return NULL;
}

/* Seconds: a decimal number in [0.05, 3600] (fractions for smoke runs). */
static bool parse_seconds(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.05 && v <= 3600)) {
		fprintf(stderr, "crust bench: --seconds: a number from 0.05 to 3600, got '%s'\n", s);
		return false;
	}
	*out = v;
	return true;
}

static int parse_value(int c, struct bench_opts *o, bool *size_set)
{
	uint64_t v;
	switch (c) {
	case OPT_SIZE:
		if (!cli_uint("--size", optarg, 1, 16u << 20, &v))
			return EXIT_USAGE;
		o->size = (uint32_t)v;
		*size_set = true;
		return 0;
	case OPT_SECONDS:
		return parse_seconds(optarg, &o->seconds) ? 0 : EXIT_USAGE;
	case OPT_CONNS:
		if (!cli_uint("--conns", optarg, 1, MAX_DIALERS, &v))
			return EXIT_USAGE;
		o->conns = (unsigned)v;
		o->conns_set = true;
		return 0;
	case OPT_DIALERS:
		if (!cli_uint("--dialers", optarg, 1, MAX_DIALERS, &v))
			return EXIT_USAGE;
		o->dialers = (unsigned)v;
		return 0;
	case OPT_BATCH:
		if (!cli_uint("--batch", optarg, 1, 64, &v))
			return EXIT_USAGE;
		o->batch = (unsigned)v;
		return 0;
	case OPT_SHARDS:
		if (!cli_uint("--shards", optarg, 1, 256, &v))
			return EXIT_USAGE;
		o->shards = (unsigned)v;
		return 0;
	case OPT_RX_BUF:
		if (!cli_uint("--rx-buffer-size", optarg, 4096, 16u << 20, &v))
			return EXIT_USAGE;
		o->rx_buf = (uint32_t)v;
		return 0;
	case OPT_ZC_MIN:
		if (!cli_uint("--zerocopy-min", optarg, 0, UINT32_MAX, &v))
			return EXIT_USAGE;
		o->zc_min = (uint32_t)v;
		return 0;
	case OPT_SEND_QUEUE:
		if (!cli_uint("--send-queue", optarg, 1, UINT32_MAX, &v))
			return EXIT_USAGE;
		o->send_queue = (uint32_t)v;
		return 0;
	case OPT_SENDER_CPU:
		if (!strcmp(optarg, "none")) {
			o->sender_cpu = SENDER_UNPINNED;
			return 0;
		}
		if (!cli_uint("--sender-cpu", optarg, 0, CPU_SETSIZE - 1, &v))
			return EXIT_USAGE;
		o->sender_cpu = (int)v;
		return 0;
	}
	return EXIT_USAGE;
}

static int parse_word(int c, struct bench_opts *o)
{
	if (c == OPT_API) {
		if (strcmp(optarg, "msg") && strcmp(optarg, "copy")) {
			fprintf(stderr, "crust bench: --api: msg or copy, got '%s'\n", optarg);
			return EXIT_USAGE;
		}
		o->api = strcmp(optarg, "copy") ? API_MSG : API_COPY;
		return 0;
	}
	if (strcmp(optarg, "listener") && strcmp(optarg, "dialer")) {
		fprintf(stderr, "crust bench: --drop-by: listener or dialer, got '%s'\n", optarg);
		return EXIT_USAGE;
	}
	o->drop_by = strcmp(optarg, "dialer") ? DROP_BY_LISTENER : DROP_BY_DIALER;
	return 0;
}

/* --listen / --connect: one of them, a throughput scenario, one connection, a valid ADDR:PORT. */
static int check_two_process(const struct bench_opts *o)
{
	const char *opt = o->listen_at ? "--listen" : "--connect";
	const char *at = o->listen_at ? o->listen_at : o->connect_to;
	if (!at)
		return 0;
	if (o->listen_at && o->connect_to) {
		fprintf(stderr, "crust bench: --listen and --connect: one end per process\n");
		return EXIT_USAGE;
	}
	if (o->sc->run != run_throughput) {
		fprintf(stderr, "crust bench: %s: only tcp-* and rudp-* run one end per process\n",
			opt);
		return EXIT_USAGE;
	}
	if (o->conns != 1) {
		fprintf(stderr, "crust bench: %s: one connection (--conns 1)\n", opt);
		return EXIT_USAGE;
	}
	struct crust_endpoint ep;
	if (crust_endpoint_parse(at, &ep) < 0 || ep.transport != CRUST_TRANSPORT_ANY) {
		fprintf(stderr, "crust bench: %s: ADDR:PORT expected (e.g. 198.18.100.2:5201), got '%s'\n",
			opt, at);
		return EXIT_USAGE;
	}
	return 0;
}

static int parse_options(int argc, char **argv, struct bench_opts *o)
{
	bool size_set = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c == OPT_HELP) {
			bench_usage(stdout);
			exit(0);
		} else if (c == OPT_JSON_ONLY) {
			o->json_only = true;
		} else if (c == OPT_TRACER) {
			o->tracer = true;
		} else if (c == OPT_FILL) {
			o->fill = true;
		} else if (c == OPT_LISTEN) {
			o->listen_at = optarg;
		} else if (c == OPT_CONNECT) {
			o->connect_to = optarg;
		} else if (c == OPT_API || c == OPT_DROP_BY) {
			if (parse_word(c, o))
				return EXIT_USAGE;
		} else if (c == '?' || parse_value(c, o, &size_set)) {
			bench_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "crust bench: %s\n", optind < argc ? "one scenario, please"
								  : "which scenario?");
		bench_usage(stderr);
		return EXIT_USAGE;
	}
	o->sc = find_scenario(argv[optind]);
	if (!o->sc) {
		fprintf(stderr, "crust bench: unknown scenario '%s'\n", argv[optind]);
		bench_usage(stderr);
		return EXIT_USAGE;
	}
	if (!size_set)
		o->size = o->sc->default_size;
	if (!o->conns_set)
		o->conns = o->sc->default_conns;
	if (o->conns > o->sc->max_conns) {
		fprintf(stderr, "crust bench: %s: --conns at most %u\n", o->sc->name, o->sc->max_conns);
		return EXIT_USAGE;
	}
	return check_two_process(o);
}

/* ---- the command ---- */

int cmd_bench(int argc, char **argv)
{
	struct bench_opts o = { .seconds = 5, .conns = 1, .shards = 1, .api = API_MSG,
				.sender_cpu = SENDER_ON_SHARD, .drop_by = DROP_BY_DIALER };
	if (argc == 2 && !strcmp(argv[1], "--list")) {
		for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
			puts(scenarios[i].name);
		return 0;
	}
	int ret = parse_options(argc, argv, &o);
	if (ret)
		return ret;
	return o.sc->run(&o);
}
