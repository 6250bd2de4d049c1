/*
 * birthday.h - birthday-paradox hole punching through a random symmetric
 * NAT (punch.c runs it; docs/PROTOCOL.md, "Predicted").
 *
 * A random symmetric NAT gives every new destination a random public
 * port, so the port its host's listener has toward us cannot be guessed.
 * Instead the symmetric side (BDAY_SOCKETS) opens BDAY_NSOCKETS extra
 * sockets and sends one probe from each to the cone peer's public UDP
 * endpoint: each opens a mapping on a random port that lets that one
 * endpoint in. The cone side (BDAY_PROBER) sends BDAY_NPROBES probes
 * from its listener to random ports of the symmetric side's public IP,
 * each opening its own NAT toward that port. A probe that lands on one
 * of the open mappings reaches an extra socket; that socket answers and
 * carries the reliable-UDP connection (the transport's connect_on), the
 * others are closed.
 *
 * The odds (Linux NATs pick UDP ports from 1024..65535, P = 64512): each
 * random probe misses all N = 256 mappings with probability 1 - N/P, so
 * M = 2048 independent probes all miss with (1 - 256/64512)^2048 =
 * e^(-8.14) = 0.03 %: a win 99.97 % of the time.
 *
 * Rates are bounded: BDAY_BATCH sockets opened or probes sent per
 * BDAY_TICK_MS (3200 a second), BDAY_NPROBES probes per punch at most.
 *
 * Threads: everything runs on shard 0 under the rendezvous lock, like
 * the punch that owns the struct bday.
 */
#ifndef CRUST_P2P_BIRTHDAY_H
#define CRUST_P2P_BIRTHDAY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rendezvous_wire.h"
#include "transports/transport.h"

#define BDAY_NSOCKETS 256u
#define BDAY_NPROBES 2048u
#define BDAY_BATCH 32u
#define BDAY_TICK_MS 10u
#define BDAY_DELAY_MS 300u       /* after the punch starts: plain punching had its round trips */
#define BDAY_PROBER_LAG_MS 150u  /* the prober starts later: the peer's mappings exist by then */
#define BDAY_PORT_MIN 1024u      /* the range Linux NATs map UDP ports >= 1024 into */
#define BDAY_PORT_MAX 65535u

enum bday_role { BDAY_OFF, BDAY_SOCKETS, BDAY_PROBER };

struct bday;

/* One extra socket; its address is the sock_user the datagram callback gets. */
struct bday_sock {
	struct bday *b;
	struct tp_sock *s;
	bool sent;                       /* its probe left (a full send queue: next tick) */
};

struct bday {
	enum bday_role role;
	struct transport *t;
	struct shard *sh;
	struct sockaddr_storage target;  /* SOCKETS: the peer's endpoint; PROBER: its IP */
	uint8_t probe[PUNCH_PROBE_LEN];
	struct bday_sock *socks;         /* SOCKETS: BDAY_NSOCKETS slots, s NULL once closed */
	unsigned nopened;                /* SOCKETS: slots used so far */
	unsigned nsent;                  /* PROBER: probes sent so far */
};

/*
 * Begin a role (shard 0, at or after the start time): target as in
 * struct bday, probe the datagram to send (copied). -ENOMEM, or
 * -EOPNOTSUPP when the transport has no extra sockets.
 */
int bday_start(struct bday *b, enum bday_role role, struct transport *t, struct shard *sh,
	       const struct sockaddr_storage *target, const uint8_t probe[PUNCH_PROBE_LEN]);

/* Open the next sockets or send the next probes (BDAY_BATCH); false once all are done. */
bool bday_step(struct bday *b);

/* True if bs is one of b's open sockets. */
bool bday_owns(const struct bday *b, const struct bday_sock *bs);

/* Send len bytes from bs's socket to `to` (0 or -errno). */
int bday_send(struct bday_sock *bs, const struct sockaddr_storage *to, const uint8_t *p,
	      size_t len);

/* Take bs's socket out of b (the caller owns it now: connect_on or sock_close). */
struct tp_sock *bday_take(struct bday *b, struct bday_sock *bs);

/* Close every socket b still owns and free them; b is BDAY_OFF after. */
void bday_close(struct bday *b);

#endif
