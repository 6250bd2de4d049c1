/*
 * blacklist.h - peers and addresses this node refuses (behind crust_blacklist).
 *
 * Two hash sets: peer ids, and addresses. An address entry is an IP with
 * port 0, meaning every port of that IP, or an exact IP:port. An IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) is the same IP as a.b.c.d, in entries and in
 * lookups alike.
 *
 * Entries are never removed: they live for the service's life and the sets
 * grow as needed (no cap), so the memory is that of what the user added.
 *
 * Threads: add and has may be called from any thread. Lookups run on every
 * connection and take a read lock; adds are rare and take the write lock,
 * which is preferred over new readers so adds cannot starve. init and
 * destroy are not concurrent with anything.
 */
#ifndef CRUST_P2P_BLACKLIST_H
#define CRUST_P2P_BLACKLIST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "crust.h"

/* An open-addressing set of fixed-size keys; private to blacklist.c. */
struct blacklist_set {
	uint8_t *slots;          /* cap slots of key_len bytes + 1 "used" byte */
	size_t cap, count, key_len;
};

struct blacklist {
	pthread_rwlock_t lock;
	struct blacklist_set peers;        /* struct crust_peer_id */
	struct blacklist_set addrs;        /* 16-byte IP (v4 as ::ffff:a.b.c.d) + port */
	uint8_t hash_key[16];              /* random: entries cannot pick their slots */
};

/* An empty blacklist (allocates on the first add). Returns 0, -EIO or -errno. */
CRUST_MUST_CHECK int blacklist_init(struct blacklist *b);

/* Free every entry. Nothing may use b any more. */
void blacklist_destroy(struct blacklist *b);

/*
 * Refuse peer id from now on (the id is copied). Adding an entry already
 * there is not an error. Returns 0 or -ENOMEM. Any thread.
 */
int blacklist_add_peer(struct blacklist *b, const struct crust_peer_id *id);

/*
 * Refuse addr from now on: port 0 = every port of its IP, else that IP:port
 * only (copied). Returns 0, -EAFNOSUPPORT unless AF_INET or AF_INET6, or
 * -ENOMEM. Any thread.
 */
int blacklist_add_addr(struct blacklist *b, const struct sockaddr_storage *addr);

/* Whether id was added. Any thread. */
bool blacklist_has_peer(struct blacklist *b, const struct crust_peer_id *id);

/*
 * Whether addr is refused: its IP was added with port 0, or its exact
 * IP:port was added. false for families other than AF_INET and AF_INET6.
 * Any thread.
 */
bool blacklist_has_addr(struct blacklist *b, const struct sockaddr_storage *addr);

/*
 * Parse one entry as the user writes it: a peer id in 64 hex digits, an IP
 * ("203.0.113.5", "2001:db8::1", "[2001:db8::1]"), or an IP and port
 * ("203.0.113.5:4000", "[2001:db8::1]:4000"; port 1-65535). An IPv6 address
 * with a port needs its brackets. On success *is_peer says which output was
 * filled: *id_out, or *addr_out (port 0 for an IP alone); the other is left
 * alone. Returns 0 or -EINVAL. Pure: no lock, no state.
 */
int blacklist_parse(const char *s, struct crust_peer_id *id_out,
		    struct sockaddr_storage *addr_out, bool *is_peer);

#endif
