/*
 * bench.c - `crust bench`: throughput of the TCP path between two services
 * in one process on loopback.
 *
 * The receiver service (--shards shards from cpu 0) listens on 127.0.0.1;
 * each of --conns sender services (one shard, from cpu 1) connects to it,
 * and one sending thread per connection calls crust_send_msg (or
 * crust_send with --api copy) in a loop, backing off on -ENOBUFS. The
 * receiver counts in its on_event callback, on its shard thread, and
 * checks each message: sequence number in the first 8 bytes, its
 * complement in the last 8, and the length. After a warm-up the counters
 * are sampled over --seconds; one JSON object goes to stdout, progress to
 * stderr.
 *
 * Threads: per-connection counters have one writer each (the receiving
 * shard or the sending thread) and are read by the main thread with
 * relaxed atomics: figures, not synchronisation.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "crust.h"

#define MAX_CONNS 64
#define WARMUP_S 0.5
#define CONNECT_TIMEOUT_S 5.0
#define DRAIN_TIMEOUT_S 5.0
#define BACKOFF_NS 20000 /* after a run of yields: the queue is full, let the shard drain it */
#define YIELDS_BEFORE_SLEEP 8

enum send_api { API_MSG, API_COPY };
enum { SENDER_ON_SHARD = -2, SENDER_UNPINNED = -1 };
/* The threads a connection runs on. */
enum role { ROLE_SEND, ROLE_TX_SHARD, ROLE_RX_SHARD, NROLES };

struct scenario {
	const char *name;
	uint32_t default_size;
};

static const struct scenario scenarios[] = {
	{ "tcp-bulk", 128 * 1024 },
	{ "tcp-msgs", 64 },
};

struct bench_opts {
	const struct scenario *sc;
	uint32_t size;
	unsigned seconds, conns, shards;
	enum send_api api;
	int sender_cpu; /* SENDER_ON_SHARD, SENDER_UNPINNED or a cpu */
	uint32_t rx_buf;    /* receiver's rx_buffer_size; 0 = the library default */
	uint32_t zc_min;    /* senders' zerocopy_min; 0 = off (the library default) */
	bool tracer;        /* clear records on both ends instead of AEAD-sealed ones */
	bool json_only;
};

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
	struct conn conns[MAX_CONNS];
	atomic_bool stop;
	_Atomic uint64_t lost_conns, send_failed, unknown_peer;
};

/* What is sampled at the start and the end of the measured window. */
struct sample {
	double t;
	uint64_t tx_msgs, tx_bytes, rx_msgs, rx_bytes, enobufs;
	struct crust_stats rx_st, tx_st;
	double cpu_user, cpu_sys;
	double thread_cpu[NROLES];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t ld(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* Single writer: a plain add published with a relaxed store (no locked instruction). */
static void bump(_Atomic uint64_t *v, uint64_t by)
{
	atomic_store_explicit(v, ld(v) + by, memory_order_relaxed);
}

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
		atomic_store(&c->tid[ROLE_TX_SHARD], gettid());
		atomic_store(&c->up, true);
		break;
	case CRUST_EV_CONNECT_FAILED:
		fprintf(stderr, "crust bench: connect failed: %s\n", ev->reason);
		atomic_store(&c->failed, true);
		break;
	case CRUST_EV_LOST_CONNECTION:
		if (!atomic_load(&c->b->stop))
			fprintf(stderr, "crust bench: sender lost its connection: %s\n", ev->reason);
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

static void pin_self(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
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

static int start_receiver(struct bench *b, struct crust_endpoint *ep)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.shards = b->o.shards;
	cfg.pin_shards = true;
	cfg.first_cpu = 0;
	cfg.bind_addr = "127.0.0.1";
	cfg.tcp_port = 0;
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
	int n = crust_own_endpoints(b->rx, ep, 1);
	return n == 1 ? 0 : n < 0 ? n : -EADDRNOTAVAIL;
}

static int start_sender(struct conn *c, const struct crust_endpoint *ep)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.shards = 1;
	cfg.pin_shards = true;
	cfg.first_cpu = 1 + c->idx;
	cfg.bind_addr = "127.0.0.1";
	cfg.zerocopy_min = c->b->o.zc_min;
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
	double deadline = now_s() + CONNECT_TIMEOUT_S;
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

static int setup(struct bench *b)
{
	struct crust_endpoint ep;
	int err = start_receiver(b, &ep);
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

/* CPU time of one thread of this process (Linux: the clock id glibc builds for a tid). */
static double thread_cpu_s(pid_t tid)
{
	if (tid <= 0)
		return 0;
	clockid_t id = (clockid_t)((~(unsigned)tid << 3) | 6); /* CPUCLOCK_PERTHREAD | SCHED */
	struct timespec ts;
	if (clock_gettime(id, &ts) < 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
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
		struct crust_stats st;
		crust_stats(c->svc, &st);
		s->tx_st.tx_bytes += st.tx_bytes;
		s->tx_st.tx_msgs += st.tx_msgs;
		s->tx_st.tx_send_calls += st.tx_send_calls;
		s->tx_st.tx_zc_sends += st.tx_zc_sends;
		s->tx_st.tx_zc_copied += st.tx_zc_copied;
	}
	crust_stats(b->rx, &s->rx_st);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	s->cpu_user = tv_s(ru.ru_utime);
	s->cpu_sys = tv_s(ru.ru_stime);
	for (int r = 0; r < NROLES; r++)
		s->thread_cpu[r] = threads_cpu_s(b, (enum role)r);
}

static void progress(struct bench *b, const struct sample *prev, const struct sample *cur,
		     double t0)
{
	if (b->o.json_only)
		return;
	double dt = cur->t - prev->t;
	double bytes = (double)(cur->rx_bytes - prev->rx_bytes);
	fprintf(stderr, "crust bench: %5.1f s  %7.2f Gbit/s  %11.0f msg/s  enobufs %llu\n",
		cur->t - t0, bytes * 8 / dt / 1e9, (double)(cur->rx_msgs - prev->rx_msgs) / dt,
		(unsigned long long)(cur->enobufs - prev->enobufs));
}

static bool failing(struct bench *b)
{
	if (atomic_load(&b->lost_conns))
		return true;
	for (unsigned i = 0; i < b->o.conns; i++)
		if (atomic_load(&b->conns[i].send_err))
			return true;
	return false;
}

/* Sleep until an absolute time on the monotonic clock. */
static void sleep_until(double t)
{
	struct timespec ts = { (time_t)t, (long)((t - (double)(time_t)t) * 1e9) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Warm up, then sample every second; start and end samples of the window out. */
static void measure(struct bench *b, struct sample *start, struct sample *end)
{
	sleep_until(now_s() + WARMUP_S);
	take_sample(b, start);
	struct sample prev = *start;
	for (unsigned s = 1; s <= b->o.seconds; s++) {
		sleep_until(start->t + s);
		take_sample(b, end);
		progress(b, &prev, end, start->t);
		prev = *end;
		if (failing(b))
			break; /* the report says why; the figures cover what ran */
	}
}

/* After the senders stopped: wait until what they sent has arrived. */
static uint64_t drain(struct bench *b)
{
	uint64_t sent = 0, got = 0;
	for (unsigned i = 0; i < b->o.conns; i++)
		sent += ld(&b->conns[i].tx_msgs);
	double deadline = now_s() + DRAIN_TIMEOUT_S;
	do {
		got = 0;
		for (unsigned i = 0; i < b->o.conns; i++)
			got += ld(&b->conns[i].rx_msgs);
		if (got >= sent || failing(b))
			break;
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
	printf("{\"scenario\":\"%s\",\"size\":%u,\"seconds\":%.3f,\"conns\":%u,\"shards\":%u,"
	       "\"api\":\"%s\",\"sender_cpu\":\"%s\",\"rx_buffer_size\":%u,\"zerocopy_min\":%u,"
	       "\"records\":\"%s\",",
	       b->o.sc->name, b->o.size, dt, b->o.conns, b->o.shards,
	       b->o.api == API_COPY ? "crust_send" : "crust_send_msg", pin, b->o.rx_buf,
	       b->o.zc_min, b->o.tracer ? "tracer" : "sealed");
}

/* Rates as the application saw them: accepted by crust_send*, delivered to on_event. */
static void report_rates(const struct sample *s0, const struct sample *s1)
{
	double dt = s1->t - s0->t;
	double rx_bytes = (double)(s1->rx_bytes - s0->rx_bytes);
	double tx_bytes = (double)(s1->tx_bytes - s0->tx_bytes);
	printf("\"tx_msgs_s\":%.0f,\"rx_msgs_s\":%.0f,\"tx_bytes_s\":%.0f,\"rx_bytes_s\":%.0f,"
	       "\"tx_gbit_s\":%.3f,\"rx_gbit_s\":%.3f,",
	       (double)(s1->tx_msgs - s0->tx_msgs) / dt, (double)(s1->rx_msgs - s0->rx_msgs) / dt,
	       tx_bytes / dt, rx_bytes / dt, tx_bytes * 8 / dt / 1e9, rx_bytes * 8 / dt / 1e9);
	printf("\"enobufs_retries\":%llu,", (unsigned long long)(s1->enobufs - s0->enobufs));
}

/* Process CPU (getrusage) per GB (1e9 bytes) received, and where it went by thread. */
static void report_cpu(const struct sample *s0, const struct sample *s1)
{
	double rx_gb = (double)(s1->rx_bytes - s0->rx_bytes) / 1e9;
	double user = s1->cpu_user - s0->cpu_user, sys = s1->cpu_sys - s0->cpu_sys;
	printf("\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"cpu_s_per_gb\":%.3f,", user, sys,
	       rx_gb > 0 ? (user + sys) / rx_gb : 0);
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
	       "\"send_failed\":%llu,\"unknown_peer\":%llu,\"send_err\":%d}}\n",
	       (unsigned long long)e->seq, (unsigned long long)e->len,
	       (unsigned long long)e->missing, (unsigned long long)e->lost_conns,
	       (unsigned long long)e->send_failed, (unsigned long long)e->unknown_peer,
	       e->send_err);
}

static void report(const struct bench *b, const struct sample *s0, const struct sample *s1,
		   const struct errors *e)
{
	report_params(b, s1->t - s0->t);
	report_rates(s0, s1);
	report_cpu(s0, s1);
	report_stats(s0, s1);
	report_errors(e);
	fflush(stdout);
}

/* ---- options ---- */

static void bench_usage(FILE *f)
{
	fputs("usage: crust bench SCENARIO [--size N] [--seconds S] [--conns N] [--shards N]\n"
	      "                           [--api msg|copy] [--sender-cpu N|none]\n"
	      "                           [--rx-buffer-size N] [--zerocopy-min N] [--tracer]\n"
	      "                           [--json-only]\n"
	      "scenarios: tcp-bulk (default size 131072), tcp-msgs (default size 64)\n"
	      "  --size N        message size in bytes\n"
	      "  --seconds S     measured seconds after a 0.5 s warm-up (default 5)\n"
	      "  --conns N       connections, one sender service and thread each (default 1)\n"
	      "  --shards N      receiver shards, pinned from cpu 0 (default 1)\n"
	      "  --api msg|copy  crust_msg_alloc+crust_send_msg (default) or crust_send\n"
	      "  --sender-cpu N  pin every sending thread to cpu N; none: unpinned\n"
	      "                  (default: each on its sender shard's cpu, 1, 2, ...)\n"
	      "  --rx-buffer-size N  receiver's provided-buffer size (default: the library's)\n"
	      "  --zerocopy-min N    senders use SEND_ZC for sends of N bytes or more (default off)\n"
	      "  --tracer        clear (tracer-mode) records on both ends: the cost without AEAD\n"
	      "  --json-only     no progress on stderr\n"
	      "stdout: one JSON object; exit 1 if any integrity check failed\n", f);
}

enum { OPT_SIZE = 1000, OPT_SECONDS, OPT_CONNS, OPT_SHARDS, OPT_API, OPT_SENDER_CPU,
       OPT_RX_BUF, OPT_ZC_MIN, OPT_TRACER, OPT_JSON_ONLY, OPT_HELP };

static const struct option options[] = {
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "seconds", required_argument, NULL, OPT_SECONDS },
	{ "conns", required_argument, NULL, OPT_CONNS },
	{ "shards", required_argument, NULL, OPT_SHARDS },
	{ "api", required_argument, NULL, OPT_API },
	{ "sender-cpu", required_argument, NULL, OPT_SENDER_CPU },
	{ "rx-buffer-size", required_argument, NULL, OPT_RX_BUF },
	{ "zerocopy-min", required_argument, NULL, OPT_ZC_MIN },
	{ "tracer", no_argument, NULL, OPT_TRACER },
	{ "json-only", no_argument, NULL, OPT_JSON_ONLY },
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
		if (!cli_uint("--seconds", optarg, 1, 3600, &v))
			return EXIT_USAGE;
		o->seconds = (unsigned)v;
		return 0;
	case OPT_CONNS:
		if (!cli_uint("--conns", optarg, 1, MAX_CONNS, &v))
			return EXIT_USAGE;
		o->conns = (unsigned)v;
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
		} else if (c == OPT_API) {
			if (strcmp(optarg, "msg") && strcmp(optarg, "copy")) {
				fprintf(stderr, "crust bench: --api: msg or copy, got '%s'\n", optarg);
				return EXIT_USAGE;
			}
			o->api = strcmp(optarg, "copy") ? API_MSG : API_COPY;
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
	return 0;
}

/* ---- the command ---- */

int cmd_bench(int argc, char **argv)
{
	struct bench *b = calloc(1, sizeof(*b));
	if (!b)
		return 1;
	b->o = (struct bench_opts){ .seconds = 5, .conns = 1, .shards = 1, .api = API_MSG,
				    .sender_cpu = SENDER_ON_SHARD };
	int ret = parse_options(argc, argv, &b->o);
	if (ret) {
		free(b);
		return ret;
	}
	ret = 1;
	if (setup(b) == 0 && start_senders(b) == 0) {
		struct sample s0, s1;
		measure(b, &s0, &s1);
		stop_senders(b);
		struct errors e;
		count_errors(b, drain(b), &e);
		report(b, &s0, &s1, &e);
		ret = any_error(&e) ? 1 : 0;
		if (ret)
			fprintf(stderr, "crust bench: integrity check FAILED (see \"errors\")\n");
	}
	stop_senders(b);
	teardown(b);
	free(b);
	return ret;
}
