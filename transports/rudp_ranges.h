/*
 * rudp_ranges.h - a set of closed ranges [lo, hi] of u64, kept sorted and
 * merged: received packet numbers (what ACK frames describe) and stream
 * bytes acknowledged or received ahead of the in-order point.
 *
 * A set holds at most `cap` ranges; inserting past that forgets the
 * lowest range (for packet numbers: ACKs then stop repeating very old
 * news; for stream bytes: the data is merely sent or kept again).
 * Owner thread only; pure.
 */
#ifndef CRUST_RUDP_RANGES_H
#define CRUST_RUDP_RANGES_H

#include <stdbool.h>
#include <stdint.h>

struct rudp_range {
	uint64_t lo, hi;
};

struct rudp_ranges {
	struct rudp_range *r;    /* ascending */
	unsigned n, alloc, cap;
};

void rudp_ranges_init(struct rudp_ranges *s, unsigned cap);
void rudp_ranges_free(struct rudp_ranges *s);
/* Add [lo, hi]. Returns 1 if anything new was added, 0 if all of it was present, -ENOMEM. */
int rudp_ranges_add(struct rudp_ranges *s, uint64_t lo, uint64_t hi);
bool rudp_ranges_has(const struct rudp_ranges *s, uint64_t v);
/* Forget everything below v. */
void rudp_ranges_drop_below(struct rudp_ranges *s, uint64_t v);
static inline bool rudp_ranges_empty(const struct rudp_ranges *s) { return s->n == 0; }
static inline uint64_t rudp_ranges_max(const struct rudp_ranges *s) { return s->r[s->n - 1].hi; }

#endif
