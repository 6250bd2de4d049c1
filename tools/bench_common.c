/*
 * bench_common.c - helpers the `crust bench` scenarios share (bench.h):
 * clocks, cpu time, pinning, packet counters and the traffic block every
 * scenario's JSON carries.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_until(double t)
{
	struct timespec ts = { (time_t)t, (long)((t - (double)(time_t)t) * 1e9) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Linux: the clock id glibc builds for a tid (CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED). */
double thread_cpu_s(pid_t tid)
{
	if (tid <= 0)
		return 0;
	clockid_t id = (clockid_t)((~(unsigned)tid << 3) | 6);
	struct timespec ts;
	if (clock_gettime(id, &ts) < 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

double process_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
}

void pin_self(int cpu)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

const char *cipher_name(bool tracer)
{
	if (tracer)
		return "none";
	if (sodium_init() < 0)
		return "?";
	return crypto_aead_aes256gcm_is_available() ? "aes-256-gcm" : "chacha20-poly1305-ietf";
}

/* The local port of a TCP socket, or 0 if fd is not one. */
static uint16_t tcp_local_port(int fd)
{
	int type;
	socklen_t tl = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM)
		return 0;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

void tcp_segs_take(uint16_t rx_port, struct tcp_segs *out)
{
	memset(out, 0, sizeof(*out));
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (fd <= 2 || fd == dirfd(d))
			continue;
		uint16_t port = tcp_local_port(fd);
		struct tcp_info ti;
		socklen_t len = sizeof(ti);
		memset(&ti, 0, sizeof(ti));
		if (!port || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
			continue;
		if (port == rx_port)
			out->rx_data_segs_in += ti.tcpi_data_segs_in;
		else
			out->tx_data_segs_out += ti.tcpi_data_segs_out;
	}
	closedir(d);
}

void netns_tcp_segs(uint64_t *out_segs, uint64_t *in_segs)
{
	*out_segs = *in_segs = 0;
	FILE *f = fopen("/proc/net/snmp", "r");
	if (!f)
		return;
	char names[1024], values[1024];
	while (fgets(names, sizeof(names), f) && fgets(values, sizeof(values), f)) {
		if (strncmp(names, "Tcp:", 4) || strncmp(values, "Tcp:", 4))
			continue;
		/* the header line names the columns of the value line below it */
		char *sn, *sv;
		char *n = strtok_r(names, " \n", &sn);
		char *v = strtok_r(values, " \n", &sv);
		while (n && v) {
			if (!strcmp(n, "InSegs"))
				*in_segs = strtoull(v, NULL, 10);
			else if (!strcmp(n, "OutSegs"))
				*out_segs = strtoull(v, NULL, 10);
			n = strtok_r(NULL, " \n", &sn);
			v = strtok_r(NULL, " \n", &sv);
		}
		break;
	}
	fclose(f);
}

void json_num(double v, int digits)
{
	if (isnan(v) || isinf(v))
		printf("null");
	else
		printf("%.*f", digits, v);
}

static double rate(double v, double secs)
{
	return secs > 0 ? v / secs : NAN;
}

static double per_gb(double cpu, double bytes)
{
	return bytes > 0 ? cpu / (bytes / 1e9) : NAN;
}

static void print_side(const char *name, double secs, const struct bench_side *s)
{
	printf("\"%s\":{\"packets_s\":", name);
	json_num(rate(s->packets, secs), 0);
	printf(",\"msgs_s\":");
	json_num(rate(s->msgs, secs), 0);
	printf(",\"bytes_s\":");
	json_num(rate(s->bytes, secs), 0);
	printf(",\"cpu_s\":");
	json_num(s->cpu_s, 3);
	printf(",\"cpu_s_per_gb\":");
	json_num(per_gb(s->cpu_s, s->bytes), 3);
	printf("}");
}

void bench_print_traffic(double secs, const struct bench_side *tx, const struct bench_side *rx,
			 double cpu_s, const char *packets_are)
{
	printf("\"tx_packets_s\":");
	json_num(rate(tx->packets, secs), 0);
	printf(",\"rx_packets_s\":");
	json_num(rate(rx->packets, secs), 0);
	printf(",\"tx_msgs_s\":");
	json_num(rate(tx->msgs, secs), 0);
	printf(",\"rx_msgs_s\":");
	json_num(rate(rx->msgs, secs), 0);
	printf(",\"tx_bytes_s\":");
	json_num(rate(tx->bytes, secs), 0);
	printf(",\"rx_bytes_s\":");
	json_num(rate(rx->bytes, secs), 0);
	printf(",\"cpu_s\":");
	json_num(cpu_s, 3);
	printf(",\"cpu_s_per_gb\":");
	json_num(per_gb(cpu_s, rx->bytes), 3);
	printf(",\"packets_are\":\"%s\",", packets_are);
	print_side("sender", secs, tx);
	printf(",");
	print_side("receiver", secs, rx);
	printf(",");
}
