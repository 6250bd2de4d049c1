/*
 * bench.h - what the scenarios of `crust bench` share (tools/bench*.c).
 *
 * A scenario is one line in bench.c's table: a name, its defaults and a
 * function that takes the parsed options, prints one JSON object on
 * stdout (progress on stderr unless json_only) and returns the exit status
 * (0, 1 = a check failed, EXIT_USAGE).
 *
 * Every scenario's JSON carries the same traffic block (bench_print_traffic):
 * tx/rx packets/s, messages/s, bytes/s, cpu seconds per GB, and a "sender"
 * and a "receiver" object with each side's own view.
 */
#ifndef CRUST_TOOLS_BENCH_H
#define CRUST_TOOLS_BENCH_H

#define _GNU_SOURCE
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define BENCH_WARMUP_S 0.5

enum send_api { API_MSG, API_COPY };
enum { SENDER_ON_SHARD = -2, SENDER_UNPINNED = -1 };
enum drop_by { DROP_BY_LISTENER, DROP_BY_DIALER };

struct bench_opts;
typedef int (*scenario_fn)(const struct bench_opts *o);

struct scenario {
	const char *name;
	uint32_t default_size;
	unsigned default_conns, max_conns;
	scenario_fn run;
};

struct bench_opts {
	const struct scenario *sc;
	uint32_t size;
	double seconds;     /* measured seconds (fractions allowed: smoke runs) */
	unsigned conns, shards;
	bool conns_set;
	enum send_api api;
	int sender_cpu; /* SENDER_ON_SHARD, SENDER_UNPINNED or a cpu */
	uint32_t rx_buf;    /* receiver's rx_buffer_size; 0 = the library default */
	uint32_t zc_min;    /* senders' zerocopy_min; 0 = off (the library default) */
	uint32_t send_queue; /* senders' max_send_queue; 0 = the library default */
	bool fill;          /* the sending thread writes every byte of each message */
	bool tracer;        /* clear records on both ends instead of AEAD-sealed ones */
	bool json_only;
	unsigned dialers;   /* handshakes: dialer services (0 = one per dial in flight) */
	enum drop_by drop_by; /* handshakes: which end drops each new connection */
	unsigned batch;     /* udp-pps: datagrams per send (1 = no UDP_SEGMENT; 0 = as many as fit) */
	/* throughput across a real path: one end per process (NULL: both ends here) */
	const char *listen_at;  /* the receiver: listen on ADDR:PORT, take one connection */
	const char *connect_to; /* the sender: dial ADDR:PORT, send until the receiver closes */
};

/* The scenarios outside bench.c. */
int bench_udp_pps(const struct bench_opts *o);
int bench_pingpong(const struct bench_opts *o);

/* ---- helpers (tools/bench_common.c) ---- */

double now_s(void);
/* Sleep until an absolute time on the monotonic clock. */
void sleep_until(double t);
/* CPU seconds of one thread of this process (0 if it is gone), of the whole process. */
double thread_cpu_s(pid_t tid);
double process_cpu_s(void);
/* Pin the calling thread to cpu (nothing if cpu < 0). */
void pin_self(int cpu);
/* The record cipher a secure session picks here ("none" in tracer mode). */
const char *cipher_name(bool tracer);

/* Single-writer counters: relaxed loads, a plain add published with a relaxed store. */
static inline uint64_t ld(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static inline void bump(_Atomic uint64_t *v, uint64_t by)
{
	atomic_store_explicit(v, ld(v) + by, memory_order_relaxed);
}

/* The next progress tick: a second on, but never past end. */
static inline double next_tick(double t, double end)
{
	return t + 1 < end ? t + 1 : end;
}

/*
 * TCP segments this process's sockets moved, split by side: sockets whose
 * local port is rx_port are the receiver's (its listener's and the ones it
 * accepted), the others the senders'. From TCP_INFO of every socket in
 * /proc/self/fd: data segments out of the senders', in at the receiver.
 */
struct tcp_segs {
	uint64_t tx_data_segs_out; /* senders' sockets */
	uint64_t rx_data_segs_in;  /* receiver's sockets */
};
void tcp_segs_take(uint16_t rx_port, struct tcp_segs *out);

/* The namespace's TCP segment counters (/proc/net/snmp: OutSegs, InSegs). */
void netns_tcp_segs(uint64_t *out_segs, uint64_t *in_segs);

/* One side's counts over the measured window (NAN: not known for this scenario). */
struct bench_side {
	double packets, msgs, bytes, cpu_s;
};

/*
 * The traffic block every scenario prints (no braces; ends with a comma):
 * tx_* from the sender's view, rx_* from the receiver's, cpu_s_per_gb =
 * cpu_s (the whole process) per 1e9 bytes received; then "sender" and
 * "receiver" with each side's packets_s, msgs_s, bytes_s, cpu_s and
 * cpu_s_per_gb (its own threads' cpu per GB it moved). packets_are says
 * what a packet is in this scenario.
 */
void bench_print_traffic(double secs, const struct bench_side *tx, const struct bench_side *rx,
			 double cpu_s, const char *packets_are);

/* Print a JSON number, or null for NAN/infinity. */
void json_num(double v, int digits);

#endif
