/*
 * uv_frame.c - small-message throughput of libuv (Debian libuv1-dev) over
 * loopback TCP with crust's framing: each message is a 4-byte big-endian
 * length and the payload (transports/framing.h). The baseline of
 * `crust bench tcp-msgs`.
 *
 *   uv_frame [--size 64] [--seconds 5] [--mode sink|echo] [--coalesce N]
 *
 * One process, two threads, each running its own uv loop: a server (cpu 0)
 * that parses every frame of what it reads (length checked, sequence
 * number in the payload's first 8 bytes checked) and counts it, and a
 * client (cpu 1) that writes frames. The client packs --coalesce frames
 * into one uv_write (default: as many as fit in 64 KiB, the batching an
 * application would do; 1 = a uv_write per message) and keeps up to
 * WRITES_IN_FLIGHT writes queued. --mode echo: the server also writes back
 * what it read, the client parses and counts the echoed frames (the
 * figures are then round-tripped messages).
 * Prints one JSON object with the fields of crust bench's traffic block.
 * Build: cc -O2 -pthread perf/uv_frame.c perf/tcp_segs.c -luv -o uv_frame
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define HDR 4u
#define WRITE_BYTES 65536u
#define WRITES_IN_FLIGHT 4u
#define READ_BYTES 65536u
#define WARMUP_S 0.5

/* A frame decoder: whole frames in place, split ones through a small stage. */
struct decoder {
	uint8_t hdr[HDR];
	unsigned hdr_have;
	uint8_t *stage;
	uint32_t want, have;
	uint64_t next_seq;
	bool broken;
	_Atomic uint64_t msgs, bytes, bad;
};

struct wreq {
	uv_write_t req;
	uv_buf_t buf;
	struct side *s;
};

struct side {
	uv_loop_t loop;
	uv_tcp_t listener, conn;
	uv_async_t stop_async;
	bool connected;
	struct decoder dec;
	_Atomic clockid_t clock;
	atomic_int fd;
	/* client: writes */
	struct wreq w[WRITES_IN_FLIGHT];
	unsigned writes_out, next_slot;
	uint64_t seq;
	_Atomic uint64_t tx_msgs, tx_bytes;
	int err;
};

static struct {
	unsigned size, coalesce;
	bool echo;
	double seconds;
	struct sockaddr_in addr;
	atomic_bool server_ready, client_ready, failed;
	struct side srv, cli;
} g;

static void add(_Atomic uint64_t *v, uint64_t by)
{
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + by,
			      memory_order_relaxed);
}

static void on_frame(struct decoder *d, const uint8_t *p, uint32_t len)
{
	uint64_t seq = 0;
	if (len >= 8)
		memcpy(&seq, p, 8);
	if (len != g.size || (len >= 8 && seq != d->next_seq))
		add(&d->bad, 1);
	d->next_seq = seq + 1;
	add(&d->msgs, 1);
	add(&d->bytes, len);
}

/* Feed n bytes of the stream; every whole frame goes to on_frame. */
static void decode(struct decoder *d, const uint8_t *p, size_t n)
{
	while (n && !d->broken) {
		if (d->hdr_have < HDR) {
			d->hdr[d->hdr_have++] = *p++;
			n--;
			if (d->hdr_have < HDR)
				continue;
			d->want = (uint32_t)d->hdr[0] << 24 | (uint32_t)d->hdr[1] << 16 |
				  (uint32_t)d->hdr[2] << 8 | d->hdr[3];
			d->have = 0;
			if (d->want > g.size) { /* not a frame we sent: stop trusting the stream */
				add(&d->bad, 1);
				d->broken = true;
			}
			continue;
		}
		uint32_t need = d->want - d->have;
		if (d->have == 0 && n >= need) { /* whole frame in place: no copy */
			on_frame(d, p, need);
			d->hdr_have = 0;
			p += need;
			n -= need;
			continue;
		}
		uint32_t take = n < need ? (uint32_t)n : need;
		memcpy(d->stage + d->have, p, take);
		d->have += take;
		p += take;
		n -= take;
		if (d->have == d->want) {
			on_frame(d, d->stage, d->want);
			d->hdr_have = 0;
		}
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	buf->base = malloc(READ_BYTES);
	buf->len = buf->base ? READ_BYTES : 0;
}

static void close_all(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void stop_cb(uv_async_t *a)
{
	uv_walk(a->loop, close_all, NULL);
}

static void echo_done(uv_write_t *req, int status)
{
	(void)status;
	free(req->data);
	free(req);
}

/* Echo mode: send back exactly what was read (the stream, frames and all). */
static void echo(uv_stream_t *stream, char *base, size_t n)
{
	uv_write_t *req = malloc(sizeof(*req));
	uv_buf_t b = uv_buf_init(base, (unsigned)n);
	req->data = base;
	if (uv_write(req, stream, &b, 1, echo_done) < 0) {
		free(base);
		free(req);
	}
}

static void read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct side *s = stream->data;
	if (n > 0) {
		decode(&s->dec, (const uint8_t *)buf->base, (size_t)n);
		if (g.echo && s == &g.srv) {
			echo(stream, buf->base, (size_t)n);
			return;
		}
	} else if (n < 0 && n != UV_EOF) {
		s->err = (int)n;
	}
	free(buf->base);
}

static void pin_side(struct side *s, int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	clockid_t id;
	pthread_getcpuclockid(pthread_self(), &id);
	atomic_store(&s->clock, id);
}

static void note_fd(struct side *s, uv_tcp_t *t)
{
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)t, &fd) == 0)
		atomic_store(&s->fd, fd);
}

static void on_accept(uv_stream_t *l, int status)
{
	struct side *s = &g.srv;
	if (status < 0 || s->connected)
		return;
	uv_tcp_init(&s->loop, &s->conn);
	s->conn.data = s;
	if (uv_accept(l, (uv_stream_t *)&s->conn) == 0) {
		s->connected = true;
		uv_tcp_nodelay(&s->conn, 1);
		note_fd(s, &s->conn);
		uv_read_start((uv_stream_t *)&s->conn, alloc_cb, read_cb);
	}
}

static void *server_main(void *arg)
{
	struct side *s = arg;
	pin_side(s, 0);
	uv_loop_init(&s->loop);
	uv_async_init(&s->loop, &s->stop_async, stop_cb);
	uv_tcp_init(&s->loop, &s->listener);
	struct sockaddr_in lo;
	uv_ip4_addr("127.0.0.1", 0, &lo);
	int len = sizeof(g.addr);
	if (uv_tcp_bind(&s->listener, (struct sockaddr *)&lo, 0) ||
	    uv_listen((uv_stream_t *)&s->listener, 8, on_accept) ||
	    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&g.addr, &len))
		atomic_store(&g.failed, true);
	atomic_store(&g.server_ready, true);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	uv_loop_close(&s->loop);
	return NULL;
}

static void write_more(struct side *s);

static void write_done(uv_write_t *req, int status)
{
	struct wreq *w = req->data;
	struct side *s = w->s;
	s->writes_out--;
	if (status == UV_ECANCELED) /* closing at the end */
		return;
	if (status < 0) {
		s->err = status;
		return;
	}
	write_more(s);
}

/* Fill one buffer with --coalesce frames, stamped with their sequence numbers. */
static void fill(struct side *s, struct wreq *w)
{
	uint8_t *p = (uint8_t *)w->buf.base;
	uint32_t be = htonl(g.size);
	for (unsigned i = 0; i < g.coalesce; i++) {
		memcpy(p, &be, HDR);
		memcpy(p + HDR, &s->seq, g.size >= 8 ? 8 : g.size);
		s->seq++;
		p += HDR + g.size;
	}
}

static void write_more(struct side *s)
{
	if (uv_is_closing((uv_handle_t *)&s->conn))
		return;
	while (s->writes_out < WRITES_IN_FLIGHT) {
		/* writes on a stream complete in order: the slots are a ring */
		struct wreq *w = &s->w[s->next_slot];
		s->next_slot = (s->next_slot + 1) % WRITES_IN_FLIGHT;
		fill(s, w);
		w->req.data = w;
		if (uv_write(&w->req, (uv_stream_t *)&s->conn, &w->buf, 1, write_done) < 0) {
			s->err = -1;
			return;
		}
		s->writes_out++;
		add(&s->tx_msgs, g.coalesce);
		add(&s->tx_bytes, (uint64_t)g.coalesce * g.size);
	}
}

static void on_connect(uv_connect_t *req, int status)
{
	struct side *s = req->data;
	free(req);
	if (status < 0) {
		atomic_store(&g.failed, true);
		return;
	}
	uv_tcp_nodelay(&s->conn, 1);
	note_fd(s, &s->conn);
	if (g.echo)
		uv_read_start((uv_stream_t *)&s->conn, alloc_cb, read_cb);
	atomic_store(&g.client_ready, true);
	write_more(s);
}

static void *client_main(void *arg)
{
	struct side *s = arg;
	pin_side(s, 1);
	uv_loop_init(&s->loop);
	uv_async_init(&s->loop, &s->stop_async, stop_cb);
	uv_tcp_init(&s->loop, &s->conn);
	s->conn.data = s;
	for (unsigned i = 0; i < WRITES_IN_FLIGHT; i++) {
		s->w[i].s = s;
		s->w[i].buf = uv_buf_init(malloc((size_t)g.coalesce * (HDR + g.size)),
					  g.coalesce * (HDR + g.size));
	}
	uv_connect_t *req = malloc(sizeof(*req));
	req->data = s;
	if (uv_tcp_connect(req, &s->conn, (struct sockaddr *)&g.addr, on_connect) < 0)
		atomic_store(&g.failed, true);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	uv_loop_close(&s->loop);
	for (unsigned i = 0; i < WRITES_IN_FLIGHT; i++)
		free(s->w[i].buf.base);
	return NULL;
}

/* ---- main thread: sampling and the report ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double clock_s(clockid_t c)
{
	struct timespec ts;
	if (!c || clock_gettime(c, &ts) < 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t tcp_data_segs(int fd, bool out); /* perf/tcp_segs.c */

struct snap {
	double t, tx_cpu, rx_cpu;
	uint64_t tx_msgs, tx_bytes, rx_msgs, rx_bytes, back_msgs, tx_segs, rx_segs;
};

static void take(struct snap *s)
{
	s->t = now_s();
	s->tx_cpu = clock_s(atomic_load(&g.cli.clock));
	s->rx_cpu = clock_s(atomic_load(&g.srv.clock));
	s->tx_msgs = atomic_load(&g.cli.tx_msgs);
	s->tx_bytes = atomic_load(&g.cli.tx_bytes);
	s->rx_msgs = atomic_load(&g.srv.dec.msgs);
	s->rx_bytes = atomic_load(&g.srv.dec.bytes);
	s->back_msgs = atomic_load(&g.cli.dec.msgs);
	s->tx_segs = tcp_data_segs(atomic_load(&g.cli.fd), true);
	s->rx_segs = tcp_data_segs(atomic_load(&g.srv.fd), false);
}

static void side(const char *name, double dt, double pkts, double msgs, double bytes, double cpu)
{
	printf("\"%s\":{\"packets_s\":%.0f,\"msgs_s\":%.0f,\"bytes_s\":%.0f,\"cpu_s\":%.3f,"
	       "\"cpu_s_per_gb\":%.3f}", name, pkts / dt, msgs / dt, bytes / dt, cpu,
	       bytes > 0 ? cpu / (bytes / 1e9) : 0);
}

static void report(const struct snap *a, const struct snap *b)
{
	double dt = b->t - a->t;
	double txp = (double)(b->tx_segs - a->tx_segs), rxp = (double)(b->rx_segs - a->rx_segs);
	double txm = (double)(b->tx_msgs - a->tx_msgs), rxm = (double)(b->rx_msgs - a->rx_msgs);
	double txb = (double)(b->tx_bytes - a->tx_bytes), rxb = (double)(b->rx_bytes - a->rx_bytes);
	double txc = b->tx_cpu - a->tx_cpu, rxc = b->rx_cpu - a->rx_cpu;
	printf("{\"tool\":\"uv_frame\",\"libuv\":\"%s\",\"mode\":\"%s\",\"size\":%u,\"coalesce\":%u,"
	       "\"seconds\":%.3f,", uv_version_string(), g.echo ? "echo" : "sink", g.size, g.coalesce,
	       dt);
	printf("\"tx_packets_s\":%.0f,\"rx_packets_s\":%.0f,\"tx_msgs_s\":%.0f,\"rx_msgs_s\":%.0f,"
	       "\"tx_bytes_s\":%.0f,\"rx_bytes_s\":%.0f,\"cpu_s\":%.3f,\"cpu_s_per_gb\":%.3f,",
	       txp / dt, rxp / dt, txm / dt, rxm / dt, txb / dt, rxb / dt, txc + rxc,
	       rxb > 0 ? (txc + rxc) / (rxb / 1e9) : 0);
	printf("\"packets_are\":\"TCP data segments (TCP_INFO: client out, server in)\",");
	side("sender", dt, txp, txm, txb, txc);
	printf(",");
	side("receiver", dt, rxp, rxm, rxb, rxc);
	printf(",\"echoed_msgs_s\":%.0f,\"errors\":{\"server_bad\":%llu,\"client_bad\":%llu,"
	       "\"client_err\":%d,\"server_err\":%d}}\n", (double)(b->back_msgs - a->back_msgs) / dt,
	       (unsigned long long)atomic_load(&g.srv.dec.bad),
	       (unsigned long long)atomic_load(&g.cli.dec.bad), g.cli.err, g.srv.err);
}

static int parse(int argc, char **argv)
{
	g.size = 64;
	g.seconds = 5;
	for (int i = 1; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return -1;
		if (!strcmp(argv[i], "--size"))
			g.size = (unsigned)atoi(v);
		else if (!strcmp(argv[i], "--seconds"))
			g.seconds = atof(v);
		else if (!strcmp(argv[i], "--coalesce"))
			g.coalesce = (unsigned)atoi(v);
		else if (!strcmp(argv[i], "--mode") && (!strcmp(v, "sink") || !strcmp(v, "echo")))
			g.echo = !strcmp(v, "echo");
		else
			return -1;
	}
	if (g.size < 1 || g.size > (1u << 20) || g.seconds <= 0)
		return -1;
	if (!g.coalesce)
		g.coalesce = WRITE_BYTES / (HDR + g.size) ? WRITE_BYTES / (HDR + g.size) : 1;
	return 0;
}

int main(int argc, char **argv)
{
	if (parse(argc, argv)) {
		fprintf(stderr, "usage: uv_frame [--size N] [--seconds S] [--mode sink|echo] "
				"[--coalesce N]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* the peer closing at the end is not an error */
	g.srv.dec.stage = malloc(g.size);
	g.cli.dec.stage = malloc(g.size);
	pthread_t srv, cli;
	pthread_create(&srv, NULL, server_main, &g.srv);
	while (!atomic_load(&g.server_ready))
		usleep(1000);
	if (!atomic_load(&g.failed))
		pthread_create(&cli, NULL, client_main, &g.cli);
	while (!atomic_load(&g.failed) && !atomic_load(&g.client_ready))
		usleep(1000);
	struct snap a, b;
	if (!atomic_load(&g.failed)) {
		usleep((useconds_t)(WARMUP_S * 1e6));
		take(&a);
		usleep((useconds_t)(g.seconds * 1e6));
		take(&b);
		uv_async_send(&g.cli.stop_async);
		pthread_join(cli, NULL);
	}
	uv_async_send(&g.srv.stop_async);
	pthread_join(srv, NULL);
	if (atomic_load(&g.failed)) {
		fprintf(stderr, "uv_frame: could not connect\n");
		return 1;
	}
	report(&a, &b);
	return atomic_load(&g.srv.dec.bad) || atomic_load(&g.cli.dec.bad) ? 1 : 0;
}
