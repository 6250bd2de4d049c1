/*
 * bench_udp.c - `crust bench udp-pps`: datagrams per second through the
 * engine's UDP sockets (engine/udp.c), no crypto, no transport above.
 *
 * Two engines in this process, one shard each: the receiver on cpu 0, the
 * sender on cpu 1. The sender's shard keeps every send slot of its socket
 * busy (ENG_UDP_SLOTS sendmsg in flight): each send is --batch datagrams
 * of --size bytes cut by the kernel (UDP_SEGMENT), refilled from on_sent.
 * The receiver's multishot recvmsg gets GRO batches (UDP_GRO) in provided
 * buffers and counts their datagrams. The sender is not paced: what the
 * receiver cannot take the kernel drops (SO_RXQ_OVFL), so the sender's
 * view (sent/s) and the receiver's (received/s) differ by the loss, which
 * is reported, not an error. Each datagram carries a sequence number in
 * its first 8 bytes; a datagram of another length is an integrity error.
 *
 * Threads: counters have one writer (the shard that owns the socket) and
 * are read by the main thread with relaxed atomics.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "engine/listener.h"
#include "engine/udp.h"

#define UDP_MAX_PAYLOAD 65507u
#define GSO_MAX_SEGS 64u        /* UDP_MAX_SEGMENTS of older kernels; newer take 128 */
#define GSO_MAX_BYTES 65000u    /* a batch and its headers stay below 64 KiB */
#define UDP_DRAIN_QUIET_S 0.1   /* the receiver saw nothing new this long: drained */
#define UDP_DRAIN_MAX_S 2.0
#define UDP_WAIT_S 5

struct udp_side {
	struct ubench *ub;
	struct eng *e;
	struct eng_udp u;
	struct sockaddr_in addr;
	struct eng_mail open_mail, close_mail, start_mail;
	_Atomic pid_t tid;
	sem_t opened, closed;
	int open_err;
	bool is_open;
};

struct ubench {
	struct bench_opts o;
	uint32_t size;
	unsigned batch;
	uint8_t *bufs;            /* ENG_UDP_SLOTS sends of batch * size bytes */
	struct udp_side tx, rx;
	atomic_bool stop;
	/* the sender's shard writes */
	_Atomic uint64_t tx_dgrams, tx_bytes, tx_sends, tx_errors, inflight;
	_Atomic int tx_first_err;
	uint64_t seq;
	/* the receiver's shard writes */
	_Atomic uint64_t rx_dgrams, rx_bytes, rx_calls, rx_bad_len, rx_kernel_drops;
};

struct udp_sample {
	double t, tx_cpu, rx_cpu, cpu;
	uint64_t tx_dgrams, tx_bytes, tx_sends, rx_dgrams, rx_bytes, rx_calls, drops;
};

/* ---- on the shards ---- */

static void on_datagram(struct eng_udp *u, struct eng_rxbuf *b, const struct sockaddr *from,
			socklen_t fromlen, uint8_t *p, uint32_t len, uint16_t gso_size)
{
	struct ubench *ub = u->owner;
	(void)b;
	(void)from;
	(void)fromlen;
	(void)p;
	uint32_t n = gso_size ? (len + gso_size - 1u) / gso_size : 1;
	bool whole = gso_size ? gso_size == ub->size && len % ub->size == 0 : len == ub->size;
	if (!whole)
		bump(&ub->rx_bad_len, 1);
	bump(&ub->rx_dgrams, n);
	bump(&ub->rx_bytes, len);
	bump(&ub->rx_calls, 1);
	atomic_store_explicit(&ub->rx_kernel_drops, u->rx_kernel_drops, memory_order_relaxed);
}

/* Stamp each datagram of a send with its sequence number, then send it. */
static void send_slot(struct ubench *ub, uintptr_t slot)
{
	uint8_t *p = ub->bufs + slot * ub->batch * ub->size;
	for (unsigned i = 0; i < ub->batch; i++) {
		uint64_t seq = ub->seq++;
		memcpy(p + (size_t)i * ub->size, &seq, ub->size >= 8 ? 8 : ub->size);
	}
	struct iovec iov = { p, (size_t)ub->batch * ub->size };
	int err = eng_udp_send(&ub->tx.u, (const struct sockaddr *)&ub->rx.addr, sizeof(ub->rx.addr),
			       &iov, 1, ub->batch > 1 ? (uint16_t)ub->size : 0, (void *)slot);
	if (err) {
		bump(&ub->tx_errors, 1);
		atomic_store(&ub->tx_first_err, err);
		return;
	}
	bump(&ub->inflight, 1);
	bump(&ub->tx_sends, 1);
}

static void on_sent(struct eng_udp *u, void *ctx, int res)
{
	struct ubench *ub = u->owner;
	atomic_store_explicit(&ub->inflight, ld(&ub->inflight) - 1, memory_order_relaxed);
	if (res < 0) {
		bump(&ub->tx_errors, 1);
		int none = 0;
		atomic_compare_exchange_strong(&ub->tx_first_err, &none, res);
	} else {
		bump(&ub->tx_dgrams, ((uint64_t)res + ub->size - 1) / ub->size);
		bump(&ub->tx_bytes, (uint64_t)res);
	}
	if (!atomic_load_explicit(&ub->stop, memory_order_relaxed) && !u->closing)
		send_slot(ub, (uintptr_t)ctx);
}

static void on_closed(struct eng_udp *u)
{
	struct ubench *ub = u->owner;
	sem_post(u == &ub->tx.u ? &ub->tx.closed : &ub->rx.closed);
}

static const struct eng_udp_ops udp_ops = {
	.on_datagram = on_datagram,
	.on_sent = on_sent,
	.on_closed = on_closed,
};

static void open_fn(struct shard *sh, struct eng_mail *m)
{
	struct udp_side *s = container_of(m, struct udp_side, open_mail);
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = eng_bind_socket(SOCK_DGRAM, (struct sockaddr *)&lo, sizeof(lo), 0);
	s->open_err = fd < 0 ? fd : 0;
	if (fd >= 0) {
		s->addr = lo;
		s->addr.sin_port = htons(eng_bound_port(fd));
		s->open_err = eng_udp_open(&s->u, sh, fd, &udp_ops, s->ub);
		if (s->open_err)
			close(fd);
	}
	sem_post(&s->opened);
}

static void start_fn(struct shard *sh, struct eng_mail *m)
{
	struct udp_side *s = container_of(m, struct udp_side, start_mail);
	(void)sh;
	for (uintptr_t i = 0; i < ENG_UDP_SLOTS; i++)
		send_slot(s->ub, i);
}

static void close_fn(struct shard *sh, struct eng_mail *m)
{
	struct udp_side *s = container_of(m, struct udp_side, close_mail);
	(void)sh;
	eng_udp_close(&s->u);
}

static void note_shard_tid(struct shard *sh, void *ctx)
{
	struct udp_side *s = ctx;
	(void)sh;
	atomic_store(&s->tid, gettid());
}

/* ---- on the main thread ---- */

static bool wait_sem(sem_t *sem)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += UDP_WAIT_S;
	int ret;
	while ((ret = sem_timedwait(sem, &ts)) < 0 && errno == EINTR)
		;
	return ret == 0;
}

static void udp_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level <= 1)
		fprintf(stderr, "crust bench: engine: %s\n", msg);
}

/* An engine of one shard pinned to cpu, with a bound, open UDP socket. */
static int side_start(struct ubench *ub, struct udp_side *s, unsigned cpu)
{
	s->ub = ub;
	sem_init(&s->opened, 0, 0);
	sem_init(&s->closed, 0, 0);
	struct eng_config cfg = {
		.shards = 1,
		.pin = true,
		.first_cpu = cpu,
		.tx_arena_size = 64 * 1024, /* datagrams go from the bench's own buffers */
		.log = udp_log,
		.on_shard_start = note_shard_tid,
		.ctx = s,
	};
	int err = eng_new(&cfg, &s->e);
	if (err)
		return err;
	s->open_mail.fn = open_fn;
	eng_post(&s->e->shards[0], &s->open_mail);
	if (!wait_sem(&s->opened))
		return -ETIMEDOUT;
	s->is_open = s->open_err == 0;
	return s->open_err;
}

static void side_stop(struct udp_side *s)
{
	if (!s->ub)
		return; /* never started */
	if (s->is_open) {
		s->close_mail.fn = close_fn;
		eng_post(&s->e->shards[0], &s->close_mail);
		if (!wait_sem(&s->closed))
			fprintf(stderr, "crust bench: udp socket did not close in %d s\n", UDP_WAIT_S);
	}
	if (s->e)
		eng_free(s->e);
	sem_destroy(&s->opened);
	sem_destroy(&s->closed);
}

static void udp_take(struct ubench *ub, struct udp_sample *s)
{
	s->t = now_s();
	s->tx_dgrams = ld(&ub->tx_dgrams);
	s->tx_bytes = ld(&ub->tx_bytes);
	s->tx_sends = ld(&ub->tx_sends);
	s->rx_dgrams = ld(&ub->rx_dgrams);
	s->rx_bytes = ld(&ub->rx_bytes);
	s->rx_calls = ld(&ub->rx_calls);
	s->drops = ld(&ub->rx_kernel_drops);
	s->tx_cpu = thread_cpu_s(atomic_load(&ub->tx.tid));
	s->rx_cpu = thread_cpu_s(atomic_load(&ub->rx.tid));
	s->cpu = process_cpu_s();
}

static void udp_measure(struct ubench *ub, struct udp_sample *s0, struct udp_sample *s1)
{
	sleep_until(now_s() + BENCH_WARMUP_S);
	udp_take(ub, s0);
	struct udp_sample prev = *s0;
	double stop_t = s0->t + ub->o.seconds;
	for (double t = next_tick(s0->t, stop_t);; t = next_tick(t, stop_t)) {
		sleep_until(t);
		udp_take(ub, s1);
		double dt = s1->t - prev.t;
		if (!ub->o.json_only)
			fprintf(stderr, "crust bench: %5.1f s  sent %10.0f datagrams/s  received %10.0f/s"
				"  kernel drops %llu\n", s1->t - s0->t,
				(double)(s1->tx_dgrams - prev.tx_dgrams) / dt,
				(double)(s1->rx_dgrams - prev.rx_dgrams) / dt,
				(unsigned long long)(s1->drops - prev.drops));
		prev = *s1;
		if (t >= stop_t || ld(&ub->tx_errors))
			break;
	}
}

/* Stop sending; wait for the sends in flight and what they carried to arrive (bounded). */
static void udp_drain(struct ubench *ub)
{
	atomic_store(&ub->stop, true);
	double t0 = now_s(), quiet_since = t0;
	uint64_t seen = ld(&ub->rx_dgrams);
	while (now_s() - t0 < UDP_DRAIN_MAX_S) {
		usleep(5000);
		uint64_t n = ld(&ub->rx_dgrams);
		if (n != seen || ld(&ub->inflight)) {
			seen = n;
			quiet_since = now_s();
		} else if (now_s() - quiet_since >= UDP_DRAIN_QUIET_S) {
			break;
		}
	}
}

static void udp_report(struct ubench *ub, const struct udp_sample *s0, const struct udp_sample *s1)
{
	double dt = s1->t - s0->t;
	double tx_d = (double)(s1->tx_dgrams - s0->tx_dgrams), rx_d = (double)(s1->rx_dgrams - s0->rx_dgrams);
	double sends = (double)(s1->tx_sends - s0->tx_sends), calls = (double)(s1->rx_calls - s0->rx_calls);
	printf("{\"scenario\":\"udp-pps\",\"size\":%u,\"seconds\":%.3f,\"batch\":%u,\"gso\":%s,"
	       "\"records\":\"none\",\"cipher\":\"none\",\"path\":\"engine/udp.c: multishot recvmsg "
	       "with UDP_GRO, sendmsg with UDP_SEGMENT, %u sends in flight\",",
	       ub->size, dt, ub->batch, ub->batch > 1 ? "true" : "false", ENG_UDP_SLOTS);
	printf("\"tids\":{\"tx_shard\":%d,\"rx_shard\":%d},", (int)atomic_load(&ub->tx.tid),
	       (int)atomic_load(&ub->rx.tid));
	struct bench_side tx = { tx_d, tx_d, (double)(s1->tx_bytes - s0->tx_bytes),
				 s1->tx_cpu - s0->tx_cpu };
	struct bench_side rx = { rx_d, rx_d, (double)(s1->rx_bytes - s0->rx_bytes),
				 s1->rx_cpu - s0->rx_cpu };
	bench_print_traffic(dt, &tx, &rx, s1->cpu - s0->cpu,
			    "UDP datagrams (each one message): sent as the sender's on_sent counted "
			    "them, received as the receiver counted GRO segments");
	printf("\"tx_gbit_s\":%.3f,\"rx_gbit_s\":%.3f,\"sends_s\":%.0f,\"rx_calls_s\":%.0f,"
	       "\"datagrams_per_send\":%.1f,\"datagrams_per_rx_call\":%.1f,",
	       tx.bytes * 8 / dt / 1e9, rx.bytes * 8 / dt / 1e9, sends / dt, calls / dt,
	       sends > 0 ? tx_d / sends : 0, calls > 0 ? rx_d / calls : 0);
	uint64_t sent = ld(&ub->tx_dgrams), got = ld(&ub->rx_dgrams);
	printf("\"window_kernel_drops\":%llu,\"totals\":{\"sent\":%llu,\"received\":%llu,"
	       "\"lost\":%llu,\"kernel_drops\":%llu},",
	       (unsigned long long)(s1->drops - s0->drops), (unsigned long long)sent,
	       (unsigned long long)got, (unsigned long long)(sent > got ? sent - got : 0),
	       (unsigned long long)ld(&ub->rx_kernel_drops));
	printf("\"errors\":{\"bad_len\":%llu,\"send_errors\":%llu,\"first_send_error\":%d}}\n",
	       (unsigned long long)ld(&ub->rx_bad_len), (unsigned long long)ld(&ub->tx_errors),
	       atomic_load(&ub->tx_first_err));
	fflush(stdout);
}

/* Datagrams per send: what the user asked for, else as many as one GSO batch takes. */
static unsigned pick_batch(const struct bench_opts *o)
{
	if (o->batch)
		return o->batch;
	unsigned n = GSO_MAX_BYTES / o->size;
	return n < 1 ? 1 : n > GSO_MAX_SEGS ? GSO_MAX_SEGS : n;
}

int bench_udp_pps(const struct bench_opts *o)
{
	if (o->size > UDP_MAX_PAYLOAD) {
		fprintf(stderr, "crust bench: udp-pps: --size at most %u\n", UDP_MAX_PAYLOAD);
		return 2;
	}
	unsigned batch = pick_batch(o);
	if (batch > 1 && ((uint64_t)batch * o->size > GSO_MAX_BYTES || batch > GSO_MAX_SEGS)) {
		fprintf(stderr, "crust bench: udp-pps: --batch %u x --size %u: a batch is at most %u "
				"datagrams and %u bytes\n", batch, o->size, GSO_MAX_SEGS, GSO_MAX_BYTES);
		return 2;
	}
	struct ubench *ub = calloc(1, sizeof(*ub));
	if (!ub)
		return 1;
	ub->o = *o;
	ub->size = o->size;
	ub->batch = batch;
	ub->bufs = calloc((size_t)ENG_UDP_SLOTS * batch, o->size);
	int ret = 1;
	int err = ub->bufs ? 0 : -ENOMEM;
	if (!err)
		err = side_start(ub, &ub->rx, 0);
	if (!err)
		err = side_start(ub, &ub->tx, 1);
	if (err) {
		fprintf(stderr, "crust bench: udp-pps: setup: %s\n", strerror(-err));
	} else {
		ub->tx.start_mail.fn = start_fn;
		eng_post(&ub->tx.e->shards[0], &ub->tx.start_mail);
		struct udp_sample s0, s1;
		udp_measure(ub, &s0, &s1);
		udp_drain(ub);
		udp_report(ub, &s0, &s1);
		ret = ld(&ub->rx_bad_len) || ld(&ub->tx_errors) || s1.rx_dgrams == s0.rx_dgrams;
		if (ret)
			fprintf(stderr, "crust bench: udp-pps FAILED (see \"errors\"; nothing received?)\n");
	}
	atomic_store(&ub->stop, true);
	side_stop(&ub->tx);
	side_stop(&ub->rx);
	free(ub->bufs);
	free(ub);
	return ret;
}
