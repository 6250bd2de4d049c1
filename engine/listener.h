/*
 * listener.h - a listening stream socket on a shard with multishot accept.
 *
 * Each shard gets its own SO_REUSEPORT listener on the same port, so the
 * kernel spreads incoming connections across shards and no accepted
 * socket ever has to change threads.
 */
#ifndef CRUST_ENGINE_LISTENER_H
#define CRUST_ENGINE_LISTENER_H

#include <sys/socket.h>

#include "engine.h"

struct eng_listener;
/* An accepted connection: the callee owns fd. */
typedef void (*eng_accept_fn)(struct eng_listener *l, int fd);

struct eng_listener {
	struct shard *sh;
	int fd;
	struct eng_op accept_op, cancel_op;
	struct eng_timer retry;
	eng_accept_fn on_accept;
	void (*on_closed)(struct eng_listener *l);
	void *owner;
	unsigned inflight;
	bool closing, closed;
};

/* eng_bind_socket flags */
#define ENG_BIND_REUSEPORT 1u /* found or join one of our per-shard SO_REUSEPORT groups */
#define ENG_BIND_SHARED    2u /* a datagram port several processes share (SO_REUSEADDR: the LAN beacon) */

/*
 * Bind a socket of type (SOCK_STREAM / SOCK_DGRAM) to addr, and listen()
 * if it is a stream. Streams always get SO_REUSEADDR (a restarted node
 * rebinds past TIME_WAIT); datagram sockets only with ENG_BIND_SHARED,
 * since two UDP sockets that both have it may hold one port and split
 * its traffic. Any thread. Returns the fd or -errno.
 */
int eng_bind_socket(int type, const struct sockaddr *addr, socklen_t len, unsigned flags);
/*
 * Bind n SO_REUSEPORT sockets of type on ss's port (one per shard), the
 * ancestor's "live port, random backup": the port is first probed with a
 * plain bind, so a port held by any other socket (even another node's
 * reuseport group) counts as taken; a taken port (or port 0) becomes a
 * random one, with *fallback set when the live port was taken. On success
 * fds[0..n) are bound and ss holds the port. Any thread.
 */
int eng_bind_port_group(int type, struct sockaddr_storage *ss, socklen_t len, unsigned n,
			int *fds, bool *fallback);
/*
 * On shard sh, which owns fd from now on: take it as the shard's listening
 * socket of a group (closing or retiring the one it had, on a re-bind).
 */
typedef void (*eng_take_listener_fn)(struct shard *sh, int fd, int family, void *ctx);
/*
 * Listen on addr from every shard of eng: bind a port group
 * (eng_bind_port_group; *fallback may be NULL) and hand each shard its
 * socket by mail, take(sh, fd, family, ctx) running there. Serves a
 * transport's first listen and its re-binds alike. *port: the port bound.
 * Any thread. Returns 0 or -errno (then nothing was bound).
 */
int eng_listen_group(struct eng *eng, int type, const struct sockaddr *addr, socklen_t len,
		     uint16_t *port, bool *fallback, eng_take_listener_fn take, void *ctx);
/* The port a socket is bound to, or 0. */
uint16_t eng_bound_port(int fd);

/* Start accepting on fd (the listener owns it from now on). Shard thread. */
void eng_listener_start(struct eng_listener *l, struct shard *sh, int fd, eng_accept_fn on_accept,
			void (*on_closed)(struct eng_listener *l), void *owner);
/* Stop accepting and close; on_closed follows once nothing is in flight. */
void eng_listener_close(struct eng_listener *l);

#endif
