/*
 * udp.h - a datagram socket on a shard: multishot recvmsg with UDP_GRO
 * into the provided buffers, sends batched with UDP_SEGMENT (GSO).
 * The primitives the reliable-UDP transport is built on.
 */
#ifndef CRUST_ENGINE_UDP_H
#define CRUST_ENGINE_UDP_H

#include <sys/socket.h>
#include <sys/uio.h>

#include "engine.h"

#define ENG_UDP_IOV 64        /* iovecs per send */
#define ENG_UDP_SLOTS 64      /* sends in flight per socket */
#define ENG_UDP_SOCKBUF (4 << 20)

struct eng_udp;

struct eng_udp_ops {
	/*
	 * A datagram (or a GRO batch of gso_size-byte segments, the last may
	 * be shorter; gso_size 0 = one datagram) of len bytes at p inside b.
	 * Take a reference to b to keep any of it past the callback.
	 */
	void (*on_datagram)(struct eng_udp *u, struct eng_rxbuf *b, const struct sockaddr *from,
			    socklen_t fromlen, uint8_t *p, uint32_t len, uint16_t gso_size);
	/* a send finished: bytes sent or -errno; ctx as given to eng_udp_send */
	void (*on_sent)(struct eng_udp *u, void *ctx, int res);
	void (*on_closed)(struct eng_udp *u);
};

struct eng_udp_send {
	struct eng_op op;
	struct eng_udp *u;
	struct msghdr mh;
	struct iovec iov[ENG_UDP_IOV];
	struct sockaddr_storage to;
	_Alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(uint16_t))];
	void *ctx;
	struct eng_udp_send *next_free;
};

struct eng_udp {
	struct shard *sh;
	int fd;
	const struct eng_udp_ops *ops;
	void *owner;
	struct eng_op recv_op, cancel_op;
	struct eng_timer rearm;
	struct msghdr rmh;            /* sizes for multishot recvmsg */
	struct eng_udp_send *slots, *free_slots;
	unsigned inflight;
	bool closing, closed;
	/*
	 * During on_datagram: the datagram's TTL or hop limit if the owner
	 * turned on IP_RECVTTL / IPV6_RECVHOPLIMIT, else -1.
	 */
	int rx_ttl;
	uint64_t rx_datagrams, rx_truncated, rx_kernel_drops, rx_errors, tx_sends;
};

/*
 * GRO, 4 MB buffers and drop counting on a new UDP socket. eng_bind_socket
 * calls it before the bind: datagrams that arrive before a shard takes the
 * socket over must not meet the default 208 KiB buffer (a burst right
 * after listener_started was dropped). Any thread.
 */
void eng_udp_prepare_socket(int fd);

/*
 * Receive buffers must hold a whole GRO batch (up to 64 KiB) plus the
 * recvmsg header, address and control space: the engine's default
 * buffer size does (ENG_RX_BUFFER_DEFAULT); a smaller one truncates
 * large batches (counted in rx_truncated).
 *
 * Take over a bound UDP socket (eng_bind_socket(SOCK_DGRAM, ...)) and start
 * receiving. Shard thread.
 */
int eng_udp_open(struct eng_udp *u, struct shard *sh, int fd, const struct eng_udp_ops *ops,
		 void *owner);
/*
 * Send iov to addr in one sendmsg; with gso_size > 0 the kernel cuts the
 * bytes into datagrams of gso_size (the last may be shorter). The iov
 * memory must stay valid until on_sent. Returns -EAGAIN when every send
 * slot is in flight, -EINVAL if iovcnt is too large.
 */
int eng_udp_send(struct eng_udp *u, const struct sockaddr *to, socklen_t tolen,
		 const struct iovec *iov, unsigned iovcnt, uint16_t gso_size, void *ctx);
/*
 * The same with nslots sends in flight at most (1..ENG_UDP_SLOTS): for
 * many short-lived sockets, whose send slots would otherwise cost ~80 KB
 * each. -EINVAL for a bad nslots.
 */
int eng_udp_open_slots(struct eng_udp *u, struct shard *sh, int fd,
		       const struct eng_udp_ops *ops, void *owner, unsigned nslots);
void eng_udp_close(struct eng_udp *u);

#endif
