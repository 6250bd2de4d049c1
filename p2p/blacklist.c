/*
 * blacklist.c - the refused peers and addresses (see blacklist.h).
 *
 * Each set is open addressing with linear probing, keyed by SipHash with a
 * secret key, and at most half full, so a probe ends at an empty slot within
 * a few steps. Nothing is ever deleted, so there are no tombstones. A set
 * grows by doubling under the write lock; readers never see it mid-way.
 */
#define _GNU_SOURCE
#include "blacklist.h"

#include "engine/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define ADDR_KEY_LEN 18          /* 16-byte IP + port in network order */
#define MIN_CAP 16

static void set_init(struct blacklist_set *s, size_t key_len)
{
	s->slots = NULL;
	s->cap = s->count = 0;
	s->key_len = key_len;
}

int blacklist_init(struct blacklist *b)
{
	pthread_rwlockattr_t attr;
	memset(b, 0, sizeof(*b));
	if (sodium_init() < 0)
		return -EIO;
	randombytes_buf(b->hash_key, sizeof(b->hash_key));
	set_init(&b->peers, CRUST_PEER_ID_LEN);
	set_init(&b->addrs, ADDR_KEY_LEN);
	int err = -pthread_rwlockattr_init(&attr);
	if (err)
		return err;
	/* lookups never stop coming: without this an add could wait forever */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	err = -pthread_rwlock_init(&b->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return err;
}

void blacklist_destroy(struct blacklist *b)
{
	pthread_rwlock_destroy(&b->lock);
	free(b->peers.slots);
	free(b->addrs.slots);
	memset(b, 0, sizeof(*b));
}

/* ---- the sets; callers hold the lock ---- */

static uint8_t *slot(const struct blacklist_set *s, size_t i)
{
	return s->slots + i * (s->key_len + 1);
}

static size_t home(const struct blacklist *b, const struct blacklist_set *s, const uint8_t *key)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;
	crypto_shorthash(h, key, s->key_len, b->hash_key);
	memcpy(&v, h, sizeof(v));
	return (size_t)v & (s->cap - 1);
}

/* The slot holding key, or the empty slot where it would go. cap > count. */
static uint8_t *probe(const struct blacklist *b, const struct blacklist_set *s,
		      const uint8_t *key)
{
	for (size_t i = home(b, s, key);; i = (i + 1) & (s->cap - 1)) {
		uint8_t *p = slot(s, i);
		if (!p[s->key_len] || !memcmp(p, key, s->key_len))
			return p;
	}
}

static bool set_has(const struct blacklist *b, const struct blacklist_set *s, const uint8_t *key)
{
	return s->cap && probe(b, s, key)[s->key_len];
}

static int set_grow(const struct blacklist *b, struct blacklist_set *s)
{
	struct blacklist_set old = *s;
	size_t cap = old.cap ? 2 * old.cap : MIN_CAP;
	if (cap > SIZE_MAX / 2 / (s->key_len + 1))
		return -ENOMEM;
	uint8_t *slots = calloc(cap, s->key_len + 1);
	if (!slots)
		return -ENOMEM;
	s->slots = slots;
	s->cap = cap;
	for (size_t i = 0; i < old.cap; i++) {
		const uint8_t *p = slot(&old, i);
		if (p[old.key_len])
			memcpy(probe(b, s, p), p, old.key_len + 1);
	}
	free(old.slots);
	return 0;
}

static int set_add(const struct blacklist *b, struct blacklist_set *s, const uint8_t *key)
{
	if (2 * (s->count + 1) > s->cap) {
		int err = set_grow(b, s);
		if (err)
			return err;
	}
	uint8_t *p = probe(b, s, key);
	if (!p[s->key_len]) {
		memcpy(p, key, s->key_len);
		p[s->key_len] = 1;
		s->count++;
	}
	return 0;
}

/* ---- peers ---- */

int blacklist_add_peer(struct blacklist *b, const struct crust_peer_id *id)
{
	pthread_rwlock_wrlock(&b->lock);
	int err = set_add(b, &b->peers, id->bytes);
	pthread_rwlock_unlock(&b->lock);
	return err;
}

bool blacklist_has_peer(struct blacklist *b, const struct crust_peer_id *id)
{
	pthread_rwlock_rdlock(&b->lock);
	bool has = set_has(b, &b->peers, id->bytes);
	pthread_rwlock_unlock(&b->lock);
	return has;
}

/* ---- addresses ---- */

/* addr's key: its IP (see engine/addr.h), then its port (0 = every port). */
static int addr_key(const struct sockaddr_storage *addr, uint8_t key[ADDR_KEY_LEN])
{
	memset(key, 0, ADDR_KEY_LEN);
	if (!eng_addr_ip_key(addr, key))
		return -EAFNOSUPPORT;
	uint16_t port = eng_addr_port(addr);
	key[16] = (uint8_t)(port >> 8);
	key[17] = (uint8_t)port;
	return 0;
}

int blacklist_add_addr(struct blacklist *b, const struct sockaddr_storage *addr)
{
	uint8_t key[ADDR_KEY_LEN];
	int err = addr_key(addr, key);
	if (err)
		return err;
	pthread_rwlock_wrlock(&b->lock);
	err = set_add(b, &b->addrs, key);
	pthread_rwlock_unlock(&b->lock);
	return err;
}

bool blacklist_has_addr(struct blacklist *b, const struct sockaddr_storage *addr)
{
	uint8_t exact[ADDR_KEY_LEN], any[ADDR_KEY_LEN];
	if (addr_key(addr, exact))
		return false;
	memcpy(any, exact, 16);
	any[16] = any[17] = 0;
	pthread_rwlock_rdlock(&b->lock);
	bool has = set_has(b, &b->addrs, any) || set_has(b, &b->addrs, exact);
	pthread_rwlock_unlock(&b->lock);
	return has;
}

/* ---- text ---- */

/* "1".."65535": digits only, no sign, no spaces, no zero port. */
static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	if (!*s || strlen(s) > 5)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* host (an IP, NUL-terminated) of family (AF_UNSPEC: either) and port, into addr. */
static int fill_addr(const char *host, int family, uint16_t port, struct sockaddr_storage *addr)
{
	struct sockaddr_storage a;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&a;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a;
	memset(&a, 0, sizeof(a));
	if (family != AF_INET && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
	} else if (family != AF_INET6 && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
	} else {
		return -EINVAL;
	}
	*addr = a;
	return 0;
}

/* The len bytes at s as a host string for fill_addr. */
static int copy_host(char *host, size_t n, const char *s, size_t len)
{
	if (len >= n)
		return -EINVAL;
	memcpy(host, s, len);
	host[len] = 0;
	return 0;
}

/* "[v6]" or "[v6]:port". */
static int parse_bracketed(const char *s, struct sockaddr_storage *addr)
{
	char host[INET6_ADDRSTRLEN];
	const char *close = strchr(s, ']');
	uint16_t port = 0;
	if (!close || copy_host(host, sizeof(host), s + 1, (size_t)(close - s - 1)))
		return -EINVAL;
	if (close[1] && (close[1] != ':' || parse_port(close + 2, &port)))
		return -EINVAL;
	return fill_addr(host, AF_INET6, port, addr);
}

/* "a.b.c.d:port": a bare IPv6 address was tried first, so ':' ends an IPv4. */
static int parse_v4_port(const char *s, struct sockaddr_storage *addr)
{
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');
	uint16_t port;
	if (!colon || copy_host(host, sizeof(host), s, (size_t)(colon - s)) ||
	    parse_port(colon + 1, &port))
		return -EINVAL;
	return fill_addr(host, AF_INET, port, addr);
}

int blacklist_parse(const char *s, struct crust_peer_id *id_out,
		    struct sockaddr_storage *addr_out, bool *is_peer)
{
	if (!s || !*s)
		return -EINVAL;
	struct crust_peer_id id;
	/* 64 hex digits cannot be an address: an IPv6 address has colons */
	if (strlen(s) == CRUST_PEER_HEX_LEN && !crust_peer_from_hex(s, &id)) {
		*id_out = id;
		*is_peer = true;
		return 0;
	}
	int err;
	if (*s == '[')
		err = parse_bracketed(s, addr_out);
	else if (fill_addr(s, AF_UNSPEC, 0, addr_out))
		err = parse_v4_port(s, addr_out);   /* not a bare IP: maybe IPv4:port */
	else
		err = 0;
	if (!err)
		*is_peer = false;
	return err;
}
