/*
 * beacon_peers.h - what the LAN beacon remembers about the peers it heard,
 * and the pacing rules it applies to them: replay guard, expiry, who dials,
 * how often a query is answered.
 *
 * Pure: time is the caller's (milliseconds on a monotonic clock), no I/O,
 * so the rules are tested by hand-driven time. Fixed size: at most
 * BEACON_MAX_PEERS entries, never allocates. One owner thread (the
 * beacon's shard); nothing here locks.
 */
#ifndef CRUST_P2P_BEACON_PEERS_H
#define CRUST_P2P_BEACON_PEERS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "crust.h"
#include "beacon_wire.h"

#define BEACON_MAX_PEERS 256
#define BEACON_ANSWER_GAP_MS 1000   /* at most one answer per second, overall and per peer */
#define BEACON_DIAL_GRACE_MS 3000   /* the larger id waits this long for the smaller to dial */
#define BEACON_REDIAL_MS 10000      /* at most one dial per peer this often */

struct beacon_peer {
	struct crust_peer_id id;
	struct sockaddr_storage addr;   /* its TCP listener: the sender's IP and its TCP port */
	uint16_t rudp_port;             /* 0 = none */
	uint64_t last_ts;               /* newest timestamp accepted from it (replay guard) */
	uint64_t first_seen_ms;         /* when it was (re)discovered */
	uint64_t last_heard_ms;
	uint64_t last_dial_ms;          /* valid when dialed */
	uint64_t last_answer_ms;        /* valid when answered: our last answer it caused */
	bool used;                      /* slot holds a peer (live or remembered) */
	bool live;                      /* heard within the expiry time */
	bool dialed, answered;
	bool delegated;                 /* the candidate hook took over dialing it */
};

struct beacon_peers {
	struct beacon_peer slots[BEACON_MAX_PEERS];
	uint64_t expire_ms;             /* not heard this long: gone */
	/* the overall answer pacing */
	uint64_t last_answer_ms;
	bool answered_ever;
	bool answer_pending;            /* an answer is scheduled for last_answer_ms + gap */
};

enum beacon_seen {
	BEACON_SEEN_NEW,                /* not live before: discovered */
	BEACON_SEEN_MOVED,              /* live, but its address or ports changed */
	BEACON_SEEN_AGAIN,              /* nothing new */
};

enum beacon_answer {
	BEACON_ANSWER_NO,               /* this peer had its answer less than a second ago */
	BEACON_ANSWER_NOW,
	BEACON_ANSWER_LATER,            /* the overall limit: answer at beacon_peers_answer_due */
};

void beacon_peers_init(struct beacon_peers *t, uint64_t expire_ms);

/* The entry for id (live or remembered), or NULL. */
struct beacon_peer *beacon_peers_find(struct beacon_peers *t, const struct crust_peer_id *id);

/*
 * Cheap, before the signature check: true if m is not newer than what
 * was already accepted from its peer (a replay, or a reordered old one).
 */
bool beacon_peers_is_replay(struct beacon_peers *t, const struct beacon_msg *m);

/*
 * Record a verified m that came from IP from (its port is ignored; the
 * entry's address takes m's TCP port). *out is the entry. When the table
 * is full, the peer heard least recently gives up its slot.
 */
enum beacon_seen beacon_peers_record(struct beacon_peers *t, const struct beacon_msg *m,
				     const struct sockaddr_storage *from, uint64_t now_ms,
				     struct beacon_peer **out);

/* Peers not heard for expire_ms stop being live (kept for the replay guard). Returns how many. */
unsigned beacon_peers_expire(struct beacon_peers *t, uint64_t now_ms);

/* Live peers. */
unsigned beacon_peers_live(const struct beacon_peers *t);

/*
 * Should we dial p (not connected) now? The smaller peer id dials at
 * once, the larger after BEACON_DIAL_GRACE_MS (so one side dials, yet a
 * node that cannot dial out is still reached); never more often than
 * BEACON_REDIAL_MS. Returns true and notes the dial.
 */
bool beacon_peers_dial(struct beacon_peer *p, const struct crust_peer_id *self, uint64_t now_ms);

/*
 * A verified query from p at now: answer now, later (one answer for
 * every query of that second, at beacon_peers_answer_due) or not at all.
 * NOW and LATER count as p's answer.
 */
enum beacon_answer beacon_peers_answer(struct beacon_peers *t, struct beacon_peer *p,
				       uint64_t now_ms);
/* When the scheduled answer is due. */
uint64_t beacon_peers_answer_due(const struct beacon_peers *t);
/* The scheduled answer was sent at now. */
void beacon_peers_answered(struct beacon_peers *t, uint64_t now_ms);

#endif
