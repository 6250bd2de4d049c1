/*
 * udp_limits.c - the machine's own UDP limits over loopback, the ceiling
 * for `crust bench udp-pps`: plain blocking sockets, one sending thread
 * (cpu 1) and one receiving thread (cpu 0), no io_uring, no library.
 *
 *   udp_limits --mode sendmmsg|gso [--size 1200] [--batch N] [--seconds 5]
 *
 *   sendmmsg  the sender sends N datagrams per sendmmsg() (default 64), the
 *             receiver takes up to 64 per recvmmsg()
 *   gso       the sender sends N datagrams per sendmsg() cut by the kernel
 *             (UDP_SEGMENT; default: as many as fit in 65000 bytes, at most
 *             64), the receiver reads coalesced batches (UDP_GRO) of 64 KiB
 *
 * Both sockets get 4 MiB buffers (as engine/udp.c sets). The sender is not
 * paced: the receiver's count is the figure, the sender's shows the loss.
 * Prints one JSON object with the fields of crust bench's traffic block.
 * Build: cc -O2 -pthread perf/udp_limits.c -o udp_limits
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define MAX_BATCH 64
#define GSO_MAX_BYTES 65000
#define SOCKBUF (4 << 20)
#define WARMUP_S 0.5

enum mode { MODE_SENDMMSG, MODE_GSO };

struct lim {
	enum mode mode;
	unsigned size, batch;
	double seconds;
	int tx_fd, rx_fd;
	struct sockaddr_in rx_addr;
	atomic_bool stop;
	_Atomic uint64_t tx_dgrams, tx_bytes, tx_calls, rx_dgrams, rx_bytes, rx_calls;
	_Atomic clockid_t tx_clock, rx_clock;
	atomic_bool tx_ready, rx_ready;
	int tx_err;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double clock_s(clockid_t c)
{
	struct timespec ts;
	if (clock_gettime(c, &ts) < 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void add(_Atomic uint64_t *v, uint64_t by)
{
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + by,
			      memory_order_relaxed);
}

static void note_clock(_Atomic clockid_t *c, atomic_bool *ready)
{
	clockid_t id;
	pthread_getcpuclockid(pthread_self(), &id);
	atomic_store(c, id);
	atomic_store(ready, true);
}

static void *tx_main(void *arg)
{
	struct lim *l = arg;
	pin(1);
	note_clock(&l->tx_clock, &l->tx_ready);
	size_t bytes = (size_t)l->size * l->batch;
	uint8_t *buf = calloc(1, bytes);
	struct mmsghdr mm[MAX_BATCH];
	struct iovec iov[MAX_BATCH];
	memset(mm, 0, sizeof(mm));
	for (unsigned i = 0; i < l->batch; i++) {
		iov[i] = (struct iovec){ buf + (size_t)i * l->size, l->size };
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	struct iovec whole = { buf, bytes };
	char ctl[CMSG_SPACE(sizeof(uint16_t))];
	struct msghdr mh = { .msg_iov = &whole, .msg_iovlen = 1 };
	if (l->batch > 1) {
		mh.msg_control = ctl;
		mh.msg_controllen = sizeof(ctl);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_UDP;
		c->cmsg_type = UDP_SEGMENT;
		c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
		uint16_t seg = (uint16_t)l->size;
		memcpy(CMSG_DATA(c), &seg, sizeof(seg));
	}
	uint64_t seq = 0;
	while (buf && !atomic_load_explicit(&l->stop, memory_order_relaxed)) {
		for (unsigned i = 0; i < l->batch; i++, seq++)
			memcpy(buf + (size_t)i * l->size, &seq, l->size >= 8 ? 8 : l->size);
		if (l->mode == MODE_SENDMMSG) {
			int n = sendmmsg(l->tx_fd, mm, l->batch, 0);
			if (n < 0) {
				l->tx_err = errno;
				break;
			}
			add(&l->tx_dgrams, (uint64_t)n);
			add(&l->tx_bytes, (uint64_t)n * l->size);
		} else {
			ssize_t n = sendmsg(l->tx_fd, &mh, 0);
			if (n < 0) {
				l->tx_err = errno;
				break;
			}
			add(&l->tx_dgrams, ((uint64_t)n + l->size - 1) / l->size);
			add(&l->tx_bytes, (uint64_t)n);
		}
		add(&l->tx_calls, 1);
	}
	free(buf);
	return NULL;
}

/* recvmmsg of up to MAX_BATCH datagrams; returns false when the loop should end. */
static bool rx_mmsg(struct lim *l, struct mmsghdr *mm)
{
	int n = recvmmsg(l->rx_fd, mm, MAX_BATCH, 0, NULL);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	uint64_t bytes = 0;
	for (int i = 0; i < n; i++)
		bytes += mm[i].msg_len;
	add(&l->rx_dgrams, (uint64_t)n);
	add(&l->rx_bytes, bytes);
	add(&l->rx_calls, 1);
	return true;
}

/* One GRO batch: its segment size comes in a UDP_GRO cmsg. */
static bool rx_gro(struct lim *l, struct msghdr *mh)
{
	mh->msg_controllen = CMSG_SPACE(sizeof(int));
	ssize_t n = recvmsg(l->rx_fd, mh, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	int gso = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO)
			memcpy(&gso, CMSG_DATA(c), sizeof(gso));
	add(&l->rx_dgrams, gso > 0 ? ((uint64_t)n + (uint64_t)gso - 1) / (uint64_t)gso : 1);
	add(&l->rx_bytes, (uint64_t)n);
	add(&l->rx_calls, 1);
	return true;
}

static void *rx_main(void *arg)
{
	struct lim *l = arg;
	pin(0);
	note_clock(&l->rx_clock, &l->rx_ready);
	static uint8_t bufs[MAX_BATCH][2048];
	static uint8_t big[65536];
	struct mmsghdr mm[MAX_BATCH];
	struct iovec iov[MAX_BATCH];
	memset(mm, 0, sizeof(mm));
	for (unsigned i = 0; i < MAX_BATCH; i++) {
		iov[i] = (struct iovec){ bufs[i], l->size <= sizeof(bufs[i]) ? l->size : sizeof(bufs[i]) };
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	struct iovec bigv = { big, sizeof(big) };
	char ctl[CMSG_SPACE(sizeof(int))];
	struct msghdr mh = { .msg_iov = &bigv, .msg_iovlen = 1, .msg_control = ctl };
	bool ok = true;
	while (ok && !atomic_load_explicit(&l->stop, memory_order_relaxed))
		ok = l->mode == MODE_SENDMMSG ? rx_mmsg(l, mm) : rx_gro(l, &mh);
	return NULL;
}

static int open_sockets(struct lim *l)
{
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(l->rx_addr);
	int buf = SOCKBUF, one = 1;
	struct timeval tv = { 0, 100000 }; /* the receiver notices stop within 0.1 s */
	l->rx_fd = socket(AF_INET, SOCK_DGRAM, 0);
	l->tx_fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (l->rx_fd < 0 || l->tx_fd < 0 || bind(l->rx_fd, (struct sockaddr *)&lo, sizeof(lo)) < 0 ||
	    getsockname(l->rx_fd, (struct sockaddr *)&l->rx_addr, &len) < 0 ||
	    connect(l->tx_fd, (struct sockaddr *)&l->rx_addr, sizeof(l->rx_addr)) < 0)
		return -errno;
	if (setsockopt(l->rx_fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) < 0)
		setsockopt(l->rx_fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (setsockopt(l->tx_fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) < 0)
		setsockopt(l->tx_fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(l->rx_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (l->mode == MODE_GSO && setsockopt(l->rx_fd, IPPROTO_UDP, UDP_GRO, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}

struct snap {
	double t, tx_cpu, rx_cpu;
	uint64_t tx_dgrams, tx_bytes, tx_calls, rx_dgrams, rx_bytes, rx_calls;
};

static void take(struct lim *l, struct snap *s)
{
	s->t = now_s();
	s->tx_cpu = clock_s(atomic_load(&l->tx_clock));
	s->rx_cpu = clock_s(atomic_load(&l->rx_clock));
	s->tx_dgrams = atomic_load(&l->tx_dgrams);
	s->tx_bytes = atomic_load(&l->tx_bytes);
	s->tx_calls = atomic_load(&l->tx_calls);
	s->rx_dgrams = atomic_load(&l->rx_dgrams);
	s->rx_bytes = atomic_load(&l->rx_bytes);
	s->rx_calls = atomic_load(&l->rx_calls);
}

static void side(const char *name, double dt, double pkts, double bytes, double cpu)
{
	printf("\"%s\":{\"packets_s\":%.0f,\"msgs_s\":%.0f,\"bytes_s\":%.0f,\"cpu_s\":%.3f,"
	       "\"cpu_s_per_gb\":%.3f}", name, pkts / dt, pkts / dt, bytes / dt, cpu,
	       bytes > 0 ? cpu / (bytes / 1e9) : 0);
}

static void report(const struct lim *l, const struct snap *a, const struct snap *b)
{
	double dt = b->t - a->t;
	double txp = (double)(b->tx_dgrams - a->tx_dgrams), rxp = (double)(b->rx_dgrams - a->rx_dgrams);
	double txb = (double)(b->tx_bytes - a->tx_bytes), rxb = (double)(b->rx_bytes - a->rx_bytes);
	double txc = b->tx_cpu - a->tx_cpu, rxc = b->rx_cpu - a->rx_cpu;
	double calls = (double)(b->tx_calls - a->tx_calls), rcalls = (double)(b->rx_calls - a->rx_calls);
	printf("{\"tool\":\"udp_limits\",\"mode\":\"%s\",\"size\":%u,\"batch\":%u,\"seconds\":%.3f,",
	       l->mode == MODE_GSO ? "gso" : "sendmmsg", l->size, l->batch, dt);
	printf("\"tx_packets_s\":%.0f,\"rx_packets_s\":%.0f,\"tx_msgs_s\":%.0f,\"rx_msgs_s\":%.0f,"
	       "\"tx_bytes_s\":%.0f,\"rx_bytes_s\":%.0f,\"cpu_s\":%.3f,\"cpu_s_per_gb\":%.3f,",
	       txp / dt, rxp / dt, txp / dt, rxp / dt, txb / dt, rxb / dt, txc + rxc,
	       rxb > 0 ? (txc + rxc) / (rxb / 1e9) : 0);
	side("sender", dt, txp, txb, txc);
	printf(",");
	side("receiver", dt, rxp, rxb, rxc);
	printf(",\"tx_calls_s\":%.0f,\"rx_calls_s\":%.0f,\"rx_gbit_s\":%.3f,\"tx_error\":\"%s\"}\n",
	       calls / dt, rcalls / dt, rxb * 8 / dt / 1e9, l->tx_err ? strerror(l->tx_err) : "");
}

static int usage(void)
{
	fprintf(stderr, "usage: udp_limits --mode sendmmsg|gso [--size N] [--batch N] [--seconds S]\n");
	return 2;
}

static int parse(int argc, char **argv, struct lim *l)
{
	bool have_mode = false;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return usage();
		if (!strcmp(argv[i], "--mode") && (!strcmp(v, "sendmmsg") || !strcmp(v, "gso"))) {
			l->mode = strcmp(v, "gso") ? MODE_SENDMMSG : MODE_GSO;
			have_mode = true;
		} else if (!strcmp(argv[i], "--size")) {
			l->size = (unsigned)atoi(v);
		} else if (!strcmp(argv[i], "--batch")) {
			l->batch = (unsigned)atoi(v);
		} else if (!strcmp(argv[i], "--seconds")) {
			l->seconds = atof(v);
		} else {
			return usage();
		}
		i++;
	}
	if (!have_mode || l->size < 8 || l->size > 2048 || l->batch > MAX_BATCH || l->seconds <= 0)
		return usage();
	if (!l->batch) {
		unsigned n = l->mode == MODE_GSO ? GSO_MAX_BYTES / l->size : MAX_BATCH;
		l->batch = n > MAX_BATCH ? MAX_BATCH : n;
	}
	if (l->mode == MODE_GSO && l->batch * l->size > GSO_MAX_BYTES)
		return usage();
	return 0;
}

int main(int argc, char **argv)
{
	static struct lim l = { .size = 1200, .seconds = 5 };
	if (parse(argc, argv, &l))
		return 2;
	int err = open_sockets(&l);
	if (err) {
		fprintf(stderr, "udp_limits: sockets: %s\n", strerror(-err));
		return 1;
	}
	pthread_t rx, tx;
	pthread_create(&rx, NULL, rx_main, &l);
	pthread_create(&tx, NULL, tx_main, &l);
	while (!atomic_load(&l.tx_ready) || !atomic_load(&l.rx_ready))
		usleep(1000);
	usleep((useconds_t)(WARMUP_S * 1e6));
	struct snap a, b;
	take(&l, &a);
	usleep((useconds_t)(l.seconds * 1e6));
	take(&l, &b);
	atomic_store(&l.stop, true);
	pthread_join(tx, NULL);
	pthread_join(rx, NULL);
	report(&l, &a, &b);
	return l.tx_err ? 1 : 0;
}
