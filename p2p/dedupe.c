/*
 * dedupe.c - at most one connection between any two nodes.
 *
 * When a second connection to a connected peer comes up (both dialed at
 * once, or a redial), both ends pick the same survivor without talking:
 * the connection dialed by the node with the smaller id wins; if one node
 * dialed both, the smaller handshake transcript hash wins (both ends
 * hash the same bytes). The loser is retired: it tells the peer
 * (CTRL_RETIRE), sends what it still has queued, half-closes and goes
 * away without an event; messages sent to it meanwhile are forwarded to
 * the winner. The user sees one new_connection, and no lost_connection
 * while the peer stays reachable. If the peer retires our connection
 * before our end has seen the winner, the peer's entry waits up to the
 * handshake timeout for it before lost_connection is reported.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

/* <0: a survives, >0: b survives. Both ends compute the same answer. */
static int compare(const struct crust_peer_id *self, const struct peer_ref *a,
		   const struct peer_ref *b)
{
	const struct crust_peer_id *ia = a->we_initiated ? self : &a->id;
	const struct crust_peer_id *ib = b->we_initiated ? self : &b->id;
	int c = memcmp(ia->bytes, ib->bytes, CRUST_PEER_ID_LEN);
	return c ? c : memcmp(a->transcript, b->transcript, sizeof(a->transcript));
}

static void retire_timeout_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct p2p_conn *pc = ctx;
	pc->stopping = true; /* quiet either way */
	conn_close(pc, 0, "duplicate connection retired");
}

void dedupe_retire(struct p2p_conn *pc)
{
	if (pc->state != CONN_UP)
		return;
	pc->state = CONN_RETIRING;
	liveness_stop(pc);
	conn_send_ctrl(pc, CTRL_RETIRE);
	pc->tc->t->vt->shutdown(pc->tc, 0, "duplicate connection retired");
	eng_timer_init(&pc->hs_timer, retire_timeout_cb, pc);
	eng_timer_arm(&pc->tc->sh->timers, &pc->hs_timer, pc->svc->cfg.handshake_timeout_ms);
}

struct retire_mail {
	struct eng_mail m;
	struct peer_ref *ref;
	struct crust_service *svc;
};

static void retire_on_shard(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	struct retire_mail *rm = (struct retire_mail *)m;
	if (rm->ref->conn)
		dedupe_retire(rm->ref->conn);
	conn_flush_parked(rm->svc, rm->ref, false); /* the successor is set: they go to it */
	peer_put(rm->ref);
	free(rm);
}

/* old's connection lost to ref's: ref takes over the table entry, old retires on its shard. */
static bool take_over(struct p2p_conn *pc, struct peer_ref *ref, struct peer_ref *old)
{
	if (!peer_replace(pc->svc, old, ref))
		return false;
	struct retire_mail *rm = malloc(sizeof(*rm));
	if (rm) {
		rm->m.fn = retire_on_shard;
		rm->ref = old; /* our lookup reference moves into the mail */
		rm->svc = pc->svc;
		eng_post(old->sh, &rm->m);
	} else {
		peer_put(old);
	}
	return true;
}

bool dedupe_register(struct p2p_conn *pc, struct peer_ref *ref)
{
	struct crust_service *svc = pc->svc;
	for (int tries = 0; tries < 4; tries++) {
		struct peer_ref *old = peer_insert_or_existing(svc, ref);
		if (!old)
			return true; /* the first connection to this peer */
		if (atomic_load(&old->closing) && !atomic_load(&old->dead)) {
			/* a drop (or error) is ending the peer's connection: it wins over a racing duplicate */
			peer_put(old);
			pc->stopping = true;
			conn_close(pc, -ECONNABORTED, "duplicate of a connection being closed");
			return false;
		}
		bool old_dead = atomic_load(&old->dead);
		if (old_dead || compare(&svc->id, ref, old) < 0) {
			/* quietly replace: the user already knows this peer */
			if (take_over(pc, ref, old))
				return false;
			peer_put(old);
			continue; /* old left the table meanwhile: try again */
		}
		peer_put(old);
		dedupe_retire(pc);
		return false;
	}
	conn_close(pc, -EAGAIN, "peer entry kept changing");
	return false;
}

struct wait_successor {
	struct eng_timer timer;
	struct crust_service *svc;
	struct peer_ref *ref;
	struct crust_event lost;
	struct wait_successor *prev, *next; /* the shard's pending waits */
	struct shard *sh;
};

static void wait_unlink(struct wait_successor *w)
{
	struct p2p_shard *ps = &w->svc->shards[w->sh->id];
	if (w->prev)
		w->prev->next = w->next;
	else
		ps->waits = w->next;
	if (w->next)
		w->next->prev = w->prev;
}

static void wait_done_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct wait_successor *w = ctx;
	wait_unlink(w);
	if (!atomic_load(&w->ref->successor)) {
		peer_remove(w->svc, w->ref);
		conn_flush_parked(w->svc, w->ref, true);
		event_emit(w->svc, &w->lost);
	}
	peer_put(w->ref);
	free(w);
}

void dedupe_stop(struct crust_service *svc, struct shard *sh)
{
	struct p2p_shard *ps = &svc->shards[sh->id];
	while (ps->waits) {
		struct wait_successor *w = ps->waits;
		eng_timer_cancel(&sh->timers, &w->timer);
		wait_unlink(w);
		conn_flush_parked(svc, w->ref, true); /* parked messages hold references: end them */
		peer_put(w->ref);
		free(w);
	}
}

enum dedupe_close dedupe_closed(struct p2p_conn *pc, const struct crust_event *lost)
{
	struct peer_ref *ref = pc->ref;
	if (pc->state == CONN_RETIRING || atomic_load(&ref->successor) || ref->conn != pc)
		return DEDUPE_QUIET;
	if (!pc->peer_retired || pc->stopping)
		return DEDUPE_REPORT;
	/* the peer kept another connection to us that we have not seen yet: wait for it */
	struct wait_successor *w = calloc(1, sizeof(*w));
	if (!w)
		return DEDUPE_REPORT;
	w->svc = pc->svc;
	w->ref = ref;
	w->sh = pc->tc->sh;
	struct p2p_shard *ps = &pc->svc->shards[w->sh->id];
	w->next = ps->waits;
	if (ps->waits)
		ps->waits->prev = w;
	ps->waits = w;
	atomic_fetch_add(&ref->refs, 1);
	w->lost = *lost;
	ref->conn = NULL;
	atomic_store(&ref->dead, true);
	eng_timer_init(&w->timer, wait_done_cb, w);
	eng_timer_arm(&pc->tc->sh->timers, &w->timer, pc->svc->cfg.handshake_timeout_ms);
	return DEDUPE_WAIT;
}
