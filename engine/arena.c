/* arena.c - the TX arena (see arena.h). Owner thread only. */
#include "arena.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "engine.h"

int eng_arena_init(struct eng_arena *a, struct io_uring *ring, uint32_t size)
{
	memset(a, 0, sizeof(*a));
	a->nchunks = size / ENG_ARENA_CHUNK;
	if (a->nchunks == 0)
		return 0;
	size_t len = (size_t)a->nchunks * ENG_ARENA_CHUNK;
	a->base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (a->base == MAP_FAILED) {
		a->base = NULL;
		return -ENOMEM;
	}
	a->free_stack = malloc(a->nchunks * sizeof(*a->free_stack));
	if (!a->free_stack) {
		munmap(a->base, len);
		a->base = NULL;
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < a->nchunks; i++)
		a->free_stack[i] = a->nchunks - 1 - i;
	a->nfree = a->nchunks;
	/* pinned once, so fixed-buffer sends skip per-call page pinning */
	struct iovec iov = { a->base, len };
	a->registered = io_uring_register_buffers(ring, &iov, 1) == 0;
	return 0;
}

void eng_arena_destroy(struct eng_arena *a, struct io_uring *ring)
{
	if (!a->base)
		return;
	if (a->registered)
		io_uring_unregister_buffers(ring);
	munmap(a->base, (size_t)a->nchunks * ENG_ARENA_CHUNK);
	free(a->free_stack);
	a->base = NULL;
}

bool eng_arena_owns(const struct eng_arena *a, const uint8_t *p)
{
	return a->base && p >= a->base && p < a->base + (size_t)a->nchunks * ENG_ARENA_CHUNK;
}

uint8_t *eng_arena_get(struct shard *sh)
{
	struct eng_arena *a = &sh->arena;
	if (a->nfree)
		return a->base + (size_t)a->free_stack[--a->nfree] * ENG_ARENA_CHUNK;
	a->heap_chunks++;
	return malloc(ENG_ARENA_CHUNK);
}

void eng_arena_put(struct shard *sh, uint8_t *chunk)
{
	struct eng_arena *a = &sh->arena;
	if (!chunk)
		return;
	if (!eng_arena_owns(a, chunk)) {
		free(chunk);
		return;
	}
	a->free_stack[a->nfree++] = (uint32_t)((chunk - a->base) / ENG_ARENA_CHUNK);
}
