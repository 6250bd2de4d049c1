/*
 * bench_pingpong.c - `crust bench pingpong`: request/response latency over
 * one crust connection (TCP; sealed records, or clear with --tracer).
 *
 * A server service (one shard, cpu 0) echoes every message back from its
 * on_event callback; a client service (one shard, cpu 1) sends a --size
 * byte request, and from its on_event callback, as each response arrives,
 * takes the round-trip time and sends the next request: one request in
 * flight, no thread but the two shards. Each request carries a sequence
 * number (first 8 bytes); a response of another length or number is an
 * integrity error. Round trips of the measured window are kept (up to
 * PP_MAX_SAMPLES) and sorted for exact percentiles.
 *
 * Threads: the client's shard writes the counters and samples; the main
 * thread reads counters with relaxed atomics and the samples only after
 * recording stopped (the shard publishes their number with release).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "crust.h"

#define PP_MAX_SAMPLES (16u << 20)      /* 64 MiB of samples at most */
#define PP_SAMPLES_PER_S 400000.0       /* what to allocate for (more: stop recording) */
#define PP_CONNECT_TIMEOUT_S 5.0
#define PP_STOP_TIMEOUT_S 2.0

struct pingpong {
	struct bench_opts o;
	struct crust_service *srv, *cli;
	struct crust_peer_id srv_id, cli_id;
	uint16_t srv_port;
	uint8_t *req;                  /* the client shard's request buffer */
	atomic_bool up, failed, stop, recording, idle;
	_Atomic pid_t srv_tid, cli_tid;
	/* the client's shard writes */
	uint64_t seq;
	uint64_t sent_ns;
	_Atomic uint64_t round_trips, tx_bytes, bad, send_errors;
	uint32_t *samples;             /* round trips in ns */
	size_t cap;
	_Atomic size_t nsamples;
	_Atomic uint64_t unrecorded;
	/* the server's shard writes */
	_Atomic uint64_t srv_msgs, srv_bytes, srv_send_errors;
	_Atomic uint64_t lost;
};

struct pp_sample {
	double t, cli_cpu, srv_cpu, cpu;
	uint64_t round_trips, tx_bytes, srv_msgs, srv_bytes;
	struct tcp_segs segs;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void note_tid(_Atomic pid_t *tid)
{
	if (!atomic_load_explicit(tid, memory_order_relaxed))
		atomic_store(tid, gettid());
}

/* ---- server: echo ---- */

static void srv_event(void *ctx, const struct crust_event *ev)
{
	struct pingpong *pp = ctx;
	if (ev->type == CRUST_EV_NEW_MESSAGE) {
		note_tid(&pp->srv_tid); /* LISTENER_STARTED came on the main thread */
		size_t len = crust_msg_len(ev->msg);
		bump(&pp->srv_msgs, 1);
		bump(&pp->srv_bytes, len);
		if (crust_send(pp->srv, &ev->peer, crust_msg_data(ev->msg), len, 0))
			bump(&pp->srv_send_errors, 1);
	} else if (ev->type == CRUST_EV_LOST_CONNECTION && !atomic_load(&pp->stop)) {
		fprintf(stderr, "crust bench: pingpong server lost its connection: %s\n", ev->reason);
		atomic_fetch_add(&pp->lost, 1);
	}
	crust_msg_release(ev->msg);
}

/* ---- client: one request in flight ---- */

/* Send the next request (client shard, or the main thread for the first one). */
static void send_request(struct pingpong *pp)
{
	uint64_t seq = pp->seq;
	memcpy(pp->req, &seq, pp->o.size >= 8 ? 8 : pp->o.size);
	pp->sent_ns = mono_ns();
	if (crust_send(pp->cli, &pp->srv_id, pp->req, pp->o.size, 0)) {
		bump(&pp->send_errors, 1);
		atomic_store(&pp->idle, true);
		return;
	}
	bump(&pp->tx_bytes, pp->o.size);
}

static void record(struct pingpong *pp, uint64_t ns)
{
	if (!atomic_load_explicit(&pp->recording, memory_order_relaxed))
		return;
	size_t n = atomic_load_explicit(&pp->nsamples, memory_order_relaxed);
	if (n == pp->cap) {
		bump(&pp->unrecorded, 1);
		return;
	}
	pp->samples[n] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
	atomic_store_explicit(&pp->nsamples, n + 1, memory_order_release);
}

static void on_response(struct pingpong *pp, struct crust_msg *m)
{
	uint64_t rtt = mono_ns() - pp->sent_ns;
	size_t len = crust_msg_len(m);
	uint64_t seq = 0;
	if (len >= 8)
		memcpy(&seq, crust_msg_data(m), 8);
	if (len != pp->o.size || (len >= 8 && seq != pp->seq))
		bump(&pp->bad, 1);
	record(pp, rtt);
	bump(&pp->round_trips, 1);
	pp->seq++;
	if (atomic_load_explicit(&pp->stop, memory_order_relaxed))
		atomic_store(&pp->idle, true);
	else
		send_request(pp);
}

static void cli_event(void *ctx, const struct crust_event *ev)
{
	struct pingpong *pp = ctx;
	switch (ev->type) {
	case CRUST_EV_NEW_CONNECTION:
		note_tid(&pp->cli_tid);
		atomic_store(&pp->up, true);
		break;
	case CRUST_EV_CONNECT_FAILED:
		fprintf(stderr, "crust bench: pingpong: connect failed: %s\n", ev->reason);
		atomic_store(&pp->failed, true);
		break;
	case CRUST_EV_NEW_MESSAGE:
		on_response(pp, ev->msg);
		break;
	case CRUST_EV_LOST_CONNECTION:
		if (!atomic_load(&pp->stop))
			fprintf(stderr, "crust bench: pingpong client lost its connection: %s\n",
				ev->reason);
		atomic_fetch_add(&pp->lost, 1);
		atomic_store(&pp->idle, true);
		break;
	default:
		break;
	}
	crust_msg_release(ev->msg);
}

/* ---- setup ---- */

static void pp_log(void *ctx, enum crust_log_level lvl, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "crust %s: %s\n", lvl == CRUST_LOG_ERROR ? "error" : "warn", msg);
}

static int new_service(struct pingpong *pp, unsigned cpu, crust_event_fn fn,
		       struct crust_service **out)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.port_mapping = "off"; /* a benchmark needs no gateway */
	cfg.shards = 1;
	cfg.pin_shards = true;
	cfg.first_cpu = cpu;
	cfg.bind_addr = "127.0.0.1";
	cfg.tracer = pp->o.tracer;
	cfg.log = pp_log;
	cfg.on_event = fn;
	cfg.on_event_ctx = pp;
	return crust_service_new(&cfg, out);
}

static int pp_connect(struct pingpong *pp)
{
	struct crust_endpoint ep;
	int err = new_service(pp, 0, srv_event, &pp->srv);
	if (!err)
		err = crust_start_listening(pp->srv);
	if (!err) {
		int n = crust_own_endpoints(pp->srv, &ep, 1);
		err = n == 1 ? 0 : n < 0 ? n : -EADDRNOTAVAIL;
	}
	if (!err)
		err = new_service(pp, 1, cli_event, &pp->cli);
	if (err)
		return err;
	crust_own_id(pp->srv, &pp->srv_id);
	crust_own_id(pp->cli, &pp->cli_id);
	pp->srv_port = ntohs(((const struct sockaddr_in *)&ep.addr)->sin_port);
	err = crust_connect(pp->cli, &ep);
	double deadline = now_s() + PP_CONNECT_TIMEOUT_S;
	while (!err && !atomic_load(&pp->up)) {
		if (atomic_load(&pp->failed))
			return -ECONNREFUSED;
		if (now_s() > deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
	return err;
}

/* ---- measuring ---- */

static void pp_take(struct pingpong *pp, struct pp_sample *s)
{
	s->t = now_s();
	s->round_trips = ld(&pp->round_trips);
	s->tx_bytes = ld(&pp->tx_bytes);
	s->srv_msgs = ld(&pp->srv_msgs);
	s->srv_bytes = ld(&pp->srv_bytes);
	s->cli_cpu = thread_cpu_s(atomic_load(&pp->cli_tid));
	s->srv_cpu = thread_cpu_s(atomic_load(&pp->srv_tid));
	s->cpu = process_cpu_s();
	tcp_segs_take(pp->srv_port, &s->segs);
}

static bool pp_failing(struct pingpong *pp)
{
	return ld(&pp->lost) || ld(&pp->send_errors) || ld(&pp->srv_send_errors);
}

static void pp_measure(struct pingpong *pp, struct pp_sample *s0, struct pp_sample *s1)
{
	sleep_until(now_s() + BENCH_WARMUP_S);
	atomic_store(&pp->recording, true);
	pp_take(pp, s0);
	struct pp_sample prev = *s0;
	double stop_t = s0->t + pp->o.seconds;
	for (double t = next_tick(s0->t, stop_t);; t = next_tick(t, stop_t)) {
		sleep_until(t);
		pp_take(pp, s1);
		double dt = s1->t - prev.t;
		double n = (double)(s1->round_trips - prev.round_trips);
		if (!pp->o.json_only)
			fprintf(stderr, "crust bench: %5.1f s  %9.0f round trips/s  mean %7.1f us\n",
				s1->t - s0->t, n / dt, n > 0 ? dt / n * 1e6 : 0);
		prev = *s1;
		if (t >= stop_t || pp_failing(pp))
			break;
	}
	atomic_store(&pp->recording, false);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* The q-quantile of sorted samples (nearest rank), in microseconds. */
static double quantile_us(const uint32_t *v, size_t n, double q)
{
	if (!n)
		return NAN;
	size_t rank = (size_t)ceil(q * (double)n);
	return v[rank ? rank - 1 : 0] / 1e3;
}

static void print_latency(struct pingpong *pp)
{
	size_t n = atomic_load_explicit(&pp->nsamples, memory_order_acquire);
	qsort(pp->samples, n, sizeof(*pp->samples), cmp_u32);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += pp->samples[i];
	static const struct { const char *name; double q; } qs[] = {
		{ "p50", 0.5 }, { "p90", 0.9 }, { "p99", 0.99 }, { "p999", 0.999 },
	};
	printf("\"latency_us\":{\"samples\":%zu,\"unrecorded\":%llu,\"min\":", n,
	       (unsigned long long)ld(&pp->unrecorded));
	json_num(quantile_us(pp->samples, n, 0), 2);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		printf(",\"%s\":", qs[i].name);
		json_num(quantile_us(pp->samples, n, qs[i].q), 2);
	}
	printf(",\"max\":");
	json_num(n ? pp->samples[n - 1] / 1e3 : NAN, 2);
	printf(",\"mean\":");
	json_num(n ? sum / (double)n / 1e3 : NAN, 2);
	printf("},");
}

static void pp_report(struct pingpong *pp, const struct pp_sample *s0, const struct pp_sample *s1)
{
	double dt = s1->t - s0->t;
	double rts = (double)(s1->round_trips - s0->round_trips);
	printf("{\"scenario\":\"pingpong\",\"size\":%u,\"seconds\":%.3f,\"conns\":1,"
	       "\"records\":\"%s\",\"cipher\":\"%s\",\"in_flight\":1,",
	       pp->o.size, dt, pp->o.tracer ? "tracer" : "sealed", cipher_name(pp->o.tracer));
	printf("\"tids\":{\"client_shard\":%d,\"server_shard\":%d},",
	       (int)atomic_load(&pp->cli_tid), (int)atomic_load(&pp->srv_tid));
	/* sender = the client's requests, receiver = the server's view of them */
	struct bench_side tx = {
		(double)(s1->segs.tx_data_segs_out - s0->segs.tx_data_segs_out), rts,
		(double)(s1->tx_bytes - s0->tx_bytes), s1->cli_cpu - s0->cli_cpu };
	struct bench_side rx = {
		(double)(s1->segs.rx_data_segs_in - s0->segs.rx_data_segs_in),
		(double)(s1->srv_msgs - s0->srv_msgs), (double)(s1->srv_bytes - s0->srv_bytes),
		s1->srv_cpu - s0->srv_cpu };
	bench_print_traffic(dt, &tx, &rx, s1->cpu - s0->cpu,
			    "TCP data segments (TCP_INFO): the client's sockets out, the server's in; "
			    "msgs: requests sent (= round trips) and requests the server received");
	printf("\"round_trips_s\":%.0f,", rts / dt);
	print_latency(pp);
	printf("\"errors\":{\"bad_response\":%llu,\"send_errors\":%llu,\"server_send_errors\":%llu,"
	       "\"lost_conns\":%llu}}\n",
	       (unsigned long long)ld(&pp->bad), (unsigned long long)ld(&pp->send_errors),
	       (unsigned long long)ld(&pp->srv_send_errors), (unsigned long long)ld(&pp->lost));
	fflush(stdout);
}

/* Stop after the request in flight comes back (bounded). */
static void pp_stop(struct pingpong *pp)
{
	atomic_store(&pp->stop, true);
	double deadline = now_s() + PP_STOP_TIMEOUT_S;
	while (!atomic_load(&pp->idle) && now_s() < deadline)
		usleep(1000);
}

int bench_pingpong(const struct bench_opts *o)
{
	struct pingpong *pp = calloc(1, sizeof(*pp));
	if (!pp)
		return 1;
	pp->o = *o;
	double want = (o->seconds + 1) * PP_SAMPLES_PER_S;
	pp->cap = want > PP_MAX_SAMPLES ? PP_MAX_SAMPLES : (size_t)want;
	pp->samples = malloc(pp->cap * sizeof(*pp->samples));
	pp->req = calloc(1, o->size);
	int ret = 1;
	int err = pp->samples && pp->req ? pp_connect(pp) : -ENOMEM;
	if (err) {
		fprintf(stderr, "crust bench: pingpong: setup: %s\n", crust_strerror(err));
	} else {
		/* the first request from here; the client's shard sends every later one */
		send_request(pp);
		struct pp_sample s0, s1;
		pp_measure(pp, &s0, &s1);
		pp_stop(pp);
		pp_report(pp, &s0, &s1);
		ret = ld(&pp->bad) || pp_failing(pp) || s1.round_trips == s0.round_trips;
		if (ret)
			fprintf(stderr, "crust bench: pingpong FAILED (see \"errors\")\n");
	}
	atomic_store(&pp->stop, true);
	crust_service_free(pp->cli);
	crust_service_free(pp->srv);
	free(pp->samples);
	free(pp->req);
	free(pp);
	return ret;
}
