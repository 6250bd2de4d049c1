/*
 * pex.h - peer exchange: a connected peer asks for endpoints of nodes we
 * know and we answer with a bounded random sample (our direct
 * connections, peers' advertised listeners, the bootstrap cache). The
 * answer is the node's "bootstrap list" of docs/PROTOCOL.md. What we
 * learn becomes a bootstrap candidate, never a cache entry: only a
 * direct connection that succeeded goes into the cache.
 *
 * Control messages (docs/PROTOCOL.md, "Peer exchange"):
 *   ask:  u8 3
 *   list: u8 4 | u8 count | count x (u8 transport | u8 family 4/6 |
 *         u16 port | 4 or 16 address bytes | 32-byte peer id)
 */
#ifndef CRUST_P2P_PEX_H
#define CRUST_P2P_PEX_H

#include <stddef.h>
#include <stdint.h>

#include "crust.h"

#define PEX_MAX_ENDPOINTS 64u
#define PEX_SERVE_MIN_MS 1000u      /* at most one answer per connection per this */
#define PEX_ASK_TIMEOUT_MS 5000u    /* an ask unanswered this long (the peer may ignore
				       one that came too soon) no longer blocks the next */
#define PEX_ENTRY_MAX 52u
#define PEX_LIST_MAX (2u + PEX_MAX_ENDPOINTS * PEX_ENTRY_MAX)

struct p2p_conn;
struct crust_service;

struct pex_entry {
	struct crust_endpoint ep;
	struct crust_peer_id id;
};

/* Shard thread: a connection we dialed is up; ask it (newcomers learn from their first contact). */
void pex_on_up(struct p2p_conn *pc);
/* Shard thread: a peer-exchange control message (p[0] is its code). */
void pex_control(struct p2p_conn *pc, const uint8_t *p, uint32_t len);
/* Any thread: ask one connected peer, picked at random. */
void pex_ask_random(struct crust_service *svc);

/* Pure: encode a list message (n <= PEX_MAX_ENDPOINTS) into out (PEX_LIST_MAX bytes); its length. */
size_t pex_encode(uint8_t *out, const struct pex_entry *e, size_t n);
/* Pure: decode a list message; -EBADMSG if malformed. */
int pex_decode(const uint8_t *p, size_t len, struct pex_entry *out, size_t *n);

#endif
