/*
 * arena.h - a shard's TX arena: one registered region cut into fixed
 * chunks that stage coalesced small frames before a send. When every
 * chunk is busy, chunks come from the heap instead (never a failure the
 * caller has to handle, short of running out of memory).
 */
#ifndef CRUST_ENGINE_ARENA_H
#define CRUST_ENGINE_ARENA_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#define ENG_ARENA_CHUNK (64u * 1024u)

struct eng_arena {
	uint8_t *base;
	uint32_t nchunks, nfree;
	uint32_t *free_stack;
	bool registered;          /* io_uring_register_buffers succeeded: buf_index 0 */
	uint64_t heap_chunks;     /* fallbacks, for stats */
};

struct shard;

int eng_arena_init(struct eng_arena *a, struct io_uring *ring, uint32_t size);
void eng_arena_destroy(struct eng_arena *a, struct io_uring *ring);
/* A chunk of ENG_ARENA_CHUNK bytes (arena or heap); NULL only without memory. */
uint8_t *eng_arena_get(struct shard *sh);
void eng_arena_put(struct shard *sh, uint8_t *chunk);
/* Is p inside the registered region (buffer index 0)? */
bool eng_arena_owns(const struct eng_arena *a, const uint8_t *p);

#endif
