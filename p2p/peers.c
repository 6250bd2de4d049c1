/*
 * peers.c - the table of connected peers, by id.
 *
 * Read by user threads on every send (read lock), written by shards when
 * a connection comes up or goes (write lock). Entries are refcounted so
 * a sender can keep using one after the lock is dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

static unsigned bucket_of(const struct crust_peer_id *id)
{
	uint32_t h;
	/* ids are public keys (random): any 4 bytes hash well */
	memcpy(&h, id->bytes, sizeof(h));
	return h % PEER_BUCKETS;
}

struct peer_ref *peer_lookup(struct crust_service *svc, const struct crust_peer_id *id)
{
	pthread_rwlock_rdlock(&svc->peers_lock);
	struct peer_ref *r = svc->peers[bucket_of(id)];
	while (r && !crust_peer_eq(&r->id, id))
		r = r->next;
	if (r)
		atomic_fetch_add(&r->refs, 1);
	pthread_rwlock_unlock(&svc->peers_lock);
	return r;
}

struct peer_ref *peer_insert_or_existing(struct crust_service *svc, struct peer_ref *ref)
{
	unsigned b = bucket_of(&ref->id);
	pthread_rwlock_wrlock(&svc->peers_lock);
	for (struct peer_ref *r = svc->peers[b]; r; r = r->next) {
		if (crust_peer_eq(&r->id, &ref->id)) {
			atomic_fetch_add(&r->refs, 1);
			pthread_rwlock_unlock(&svc->peers_lock);
			return r;
		}
	}
	atomic_fetch_add(&ref->refs, 1);
	ref->next = svc->peers[b];
	svc->peers[b] = ref;
	svc->npeers++;
	pthread_rwlock_unlock(&svc->peers_lock);
	return NULL;
}

bool peer_replace(struct crust_service *svc, struct peer_ref *old, struct peer_ref *ref)
{
	unsigned b = bucket_of(&old->id);
	bool found = false;
	pthread_rwlock_wrlock(&svc->peers_lock);
	for (struct peer_ref **pp = &svc->peers[b]; *pp; pp = &(*pp)->next) {
		if (*pp == old) {
			atomic_fetch_add(&ref->refs, 1); /* the table's */
			ref->next = old->next;
			*pp = ref;
			found = true;
			break;
		}
	}
	pthread_rwlock_unlock(&svc->peers_lock);
	if (found) {
		/* the table's reference to old becomes old's successor link to ref */
		atomic_fetch_add(&ref->refs, 1);
		atomic_store(&old->successor, ref);
		peer_put(old);
	}
	return found;
}

void peer_remove(struct crust_service *svc, struct peer_ref *ref)
{
	unsigned b = bucket_of(&ref->id);
	bool found = false;
	pthread_rwlock_wrlock(&svc->peers_lock);
	for (struct peer_ref **pp = &svc->peers[b]; *pp; pp = &(*pp)->next) {
		if (*pp == ref) {
			*pp = ref->next;
			svc->npeers--;
			found = true;
			break;
		}
	}
	pthread_rwlock_unlock(&svc->peers_lock);
	if (found)
		peer_put(ref);
}

void peer_put(struct peer_ref *ref)
{
	if (ref && atomic_fetch_sub(&ref->refs, 1) == 1) {
		peer_put(atomic_load(&ref->successor));
		free(ref);
	}
}

int peer_list(struct crust_service *svc, struct crust_peer_id *out, size_t n)
{
	size_t got = 0;
	pthread_rwlock_rdlock(&svc->peers_lock);
	for (unsigned b = 0; b < PEER_BUCKETS; b++)
		for (struct peer_ref *r = svc->peers[b]; r; r = r->next)
			if (got < n)
				out[got++] = r->id;
	int total = (int)svc->npeers;
	pthread_rwlock_unlock(&svc->peers_lock);
	return total;
}
