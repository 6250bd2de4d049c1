/*
 * tcp_segs.c - TCP data segments a socket sent or received (TCP_INFO), for
 * the baselines in perf/ whose headers (uv.h) pull in glibc's older
 * struct tcp_info, which lacks these fields.
 */
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

uint64_t tcp_data_segs(int fd, bool out);

/* Data segments out (or in) of socket fd; 0 if fd is not a TCP socket. */
uint64_t tcp_data_segs(int fd, bool out)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (fd <= 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return 0;
	return out ? ti.tcpi_data_segs_out : ti.tcpi_data_segs_in;
}
