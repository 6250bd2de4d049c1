/*
 * enet_bench.c - reliable-UDP bulk throughput of ENet (libenet, Debian
 * libenet-dev) over loopback: the baseline of crust's reliable UDP.
 *
 *   enet_bench [--size 1200] [--seconds 5] [--window 4096]
 *
 * One process, two threads, each with its own ENetHost (hosts are not
 * shared between threads): a server (cpu 0) that receives, checks and
 * counts, and a client (cpu 1) that sends reliable packets of --size bytes
 * on one channel as fast as ENet takes them, with at most --window packets
 * not yet acknowledged (a packet's free callback runs when ENet lets go of
 * it, i.e. once acknowledged). Bandwidth limits are off (0 = unlimited).
 * Each packet carries a sequence number; the server checks order and
 * length (ENet's reliable channel is ordered).
 * Prints one JSON object with the fields of crust bench's traffic block;
 * packets are ENet's own UDP datagram counters (totalSentPackets at the
 * client, totalReceivedPackets at the server).
 * Build: cc -O2 -pthread perf/enet_bench.c -lenet -o enet_bench
 */
#define _GNU_SOURCE
#include <enet/enet.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WARMUP_S 0.5
#define CONNECT_TIMEOUT_MS 5000

struct eb {
	unsigned size, window;
	double seconds;
	uint16_t port;
	atomic_bool stop, server_ready, connected, failed;
	_Atomic clockid_t tx_clock, rx_clock;
	/* client thread writes */
	_Atomic uint64_t tx_msgs, tx_bytes, tx_packets, freed;
	/* server thread writes */
	_Atomic uint64_t rx_msgs, rx_bytes, rx_packets, bad;
};

static struct eb g;

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

static void pin(int cpu, _Atomic clockid_t *clk)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	clockid_t id;
	pthread_getcpuclockid(pthread_self(), &id);
	atomic_store(clk, id);
}

static void add(_Atomic uint64_t *v, uint64_t by)
{
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + by,
			      memory_order_relaxed);
}

static void on_receive(ENetPacket *p, uint64_t *next_seq)
{
	uint64_t seq = 0;
	if (p->dataLength >= 8)
		memcpy(&seq, p->data, 8);
	if (p->dataLength != g.size || (g.size >= 8 && seq != *next_seq))
		add(&g.bad, 1);
	*next_seq = seq + 1;
	add(&g.rx_msgs, 1);
	add(&g.rx_bytes, p->dataLength);
}

static void *server_main(void *arg)
{
	(void)arg;
	pin(0, &g.rx_clock);
	ENetAddress addr = { .host = ENET_HOST_ANY, .port = 0 };
	enet_address_set_host(&addr, "127.0.0.1");
	ENetHost *h = enet_host_create(&addr, 1, 1, 0, 0);
	if (!h) {
		atomic_store(&g.failed, true);
		return NULL;
	}
	g.port = h->address.port;
	atomic_store(&g.server_ready, true);
	uint64_t next_seq = 0;
	ENetEvent ev;
	while (!atomic_load_explicit(&g.stop, memory_order_relaxed)) {
		int r = enet_host_service(h, &ev, 1);
		while (r > 0) {
			if (ev.type == ENET_EVENT_TYPE_RECEIVE) {
				on_receive(ev.packet, &next_seq);
				enet_packet_destroy(ev.packet);
			}
			r = enet_host_check_events(h, &ev);
		}
		atomic_store_explicit(&g.rx_packets, h->totalReceivedPackets, memory_order_relaxed);
	}
	enet_host_destroy(h);
	return NULL;
}

static void packet_freed(ENetPacket *p)
{
	(void)p;
	add(&g.freed, 1);
}

static ENetPeer *client_connect(ENetHost *h)
{
	ENetAddress addr = { .port = g.port };
	enet_address_set_host(&addr, "127.0.0.1");
	ENetPeer *peer = enet_host_connect(h, &addr, 1, 0);
	ENetEvent ev;
	double deadline = now_s() + CONNECT_TIMEOUT_MS / 1e3;
	while (peer && now_s() < deadline)
		if (enet_host_service(h, &ev, 10) > 0 && ev.type == ENET_EVENT_TYPE_CONNECT)
			return peer;
	return NULL;
}

/* Queue packets while fewer than window are unacknowledged; then let ENet work. */
static void client_loop(ENetHost *h, ENetPeer *peer)
{
	uint8_t *buf = calloc(1, g.size);
	uint64_t seq = 0;
	ENetEvent ev;
	while (buf && !atomic_load_explicit(&g.stop, memory_order_relaxed)) {
		while (atomic_load(&g.tx_msgs) - atomic_load(&g.freed) < g.window) {
			memcpy(buf, &seq, g.size >= 8 ? 8 : g.size);
			ENetPacket *p = enet_packet_create(buf, g.size, ENET_PACKET_FLAG_RELIABLE);
			if (!p)
				break;
			p->freeCallback = packet_freed;
			if (enet_peer_send(peer, 0, p) < 0) {
				enet_packet_destroy(p);
				atomic_store(&g.failed, true);
				break;
			}
			seq++;
			add(&g.tx_msgs, 1);
			add(&g.tx_bytes, g.size);
		}
		enet_host_service(h, &ev, 0);
		atomic_store_explicit(&g.tx_packets, h->totalSentPackets, memory_order_relaxed);
		if (peer->state != ENET_PEER_STATE_CONNECTED) {
			atomic_store(&g.failed, true);
			break;
		}
	}
	free(buf);
}

static void *client_main(void *arg)
{
	(void)arg;
	pin(1, &g.tx_clock);
	ENetHost *h = enet_host_create(NULL, 1, 1, 0, 0);
	ENetPeer *peer = h ? client_connect(h) : NULL;
	if (!peer) {
		atomic_store(&g.failed, true);
	} else {
		atomic_store(&g.connected, true);
		client_loop(h, peer);
		enet_peer_reset(peer);
	}
	if (h)
		enet_host_destroy(h);
	return NULL;
}

struct snap {
	double t, tx_cpu, rx_cpu;
	uint64_t tx_msgs, tx_bytes, tx_packets, rx_msgs, rx_bytes, rx_packets;
};

static void take(struct snap *s)
{
	s->t = now_s();
	s->tx_cpu = clock_s(atomic_load(&g.tx_clock));
	s->rx_cpu = clock_s(atomic_load(&g.rx_clock));
	s->tx_msgs = atomic_load(&g.tx_msgs);
	s->tx_bytes = atomic_load(&g.tx_bytes);
	s->tx_packets = atomic_load(&g.tx_packets);
	s->rx_msgs = atomic_load(&g.rx_msgs);
	s->rx_bytes = atomic_load(&g.rx_bytes);
	s->rx_packets = atomic_load(&g.rx_packets);
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
	double txp = (double)(b->tx_packets - a->tx_packets), rxp = (double)(b->rx_packets - a->rx_packets);
	double txm = (double)(b->tx_msgs - a->tx_msgs), rxm = (double)(b->rx_msgs - a->rx_msgs);
	double txb = (double)(b->tx_bytes - a->tx_bytes), rxb = (double)(b->rx_bytes - a->rx_bytes);
	double txc = b->tx_cpu - a->tx_cpu, rxc = b->rx_cpu - a->rx_cpu;
	printf("{\"tool\":\"enet_bench\",\"enet\":\"%u.%u.%u\",\"size\":%u,\"window\":%u,"
	       "\"seconds\":%.3f,", ENET_VERSION_MAJOR, ENET_VERSION_MINOR, ENET_VERSION_PATCH, g.size,
	       g.window, dt);
	printf("\"tx_packets_s\":%.0f,\"rx_packets_s\":%.0f,\"tx_msgs_s\":%.0f,\"rx_msgs_s\":%.0f,"
	       "\"tx_bytes_s\":%.0f,\"rx_bytes_s\":%.0f,\"cpu_s\":%.3f,\"cpu_s_per_gb\":%.3f,",
	       txp / dt, rxp / dt, txm / dt, rxm / dt, txb / dt, rxb / dt, txc + rxc,
	       rxb > 0 ? (txc + rxc) / (rxb / 1e9) : 0);
	printf("\"packets_are\":\"UDP datagrams as ENet counts them (client sent, server received)\",");
	side("sender", dt, txp, txm, txb, txc);
	printf(",");
	side("receiver", dt, rxp, rxm, rxb, rxc);
	printf(",\"rx_gbit_s\":%.3f,\"errors\":{\"bad\":%llu,\"failed\":%s}}\n", rxb * 8 / dt / 1e9,
	       (unsigned long long)atomic_load(&g.bad), atomic_load(&g.failed) ? "true" : "false");
}

int main(int argc, char **argv)
{
	g.size = 1200;
	g.window = 4096;
	g.seconds = 5;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--size"))
			g.size = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			g.seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--window"))
			g.window = (unsigned)atoi(argv[i + 1]);
		else
			argc = -1;
	}
	if (argc < 0 || argc % 2 == 0 || g.size < 1 || g.size > (1u << 24) || g.seconds <= 0 ||
	    !g.window) {
		fprintf(stderr, "usage: enet_bench [--size N] [--seconds S] [--window PACKETS]\n");
		return 2;
	}
	if (enet_initialize()) {
		fprintf(stderr, "enet_bench: enet_initialize failed\n");
		return 1;
	}
	pthread_t srv, cli;
	pthread_create(&srv, NULL, server_main, NULL);
	while (!atomic_load(&g.server_ready) && !atomic_load(&g.failed))
		usleep(1000);
	pthread_create(&cli, NULL, client_main, NULL);
	while (!atomic_load(&g.connected) && !atomic_load(&g.failed))
		usleep(1000);
	struct snap a, b;
	if (!atomic_load(&g.failed)) {
		usleep((useconds_t)(WARMUP_S * 1e6));
		take(&a);
		usleep((useconds_t)(g.seconds * 1e6));
		take(&b);
	}
	atomic_store(&g.stop, true);
	pthread_join(cli, NULL);
	pthread_join(srv, NULL);
	enet_deinitialize();
	if (atomic_load(&g.failed) && !atomic_load(&g.connected)) {
		fprintf(stderr, "enet_bench: could not connect\n");
		return 1;
	}
	report(&a, &b);
	return atomic_load(&g.bad) || atomic_load(&g.failed) ? 1 : 0;
}
