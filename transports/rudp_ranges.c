/* rudp_ranges.c - sorted, merged u64 range sets (see rudp_ranges.h). */
#include "rudp_ranges.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void rudp_ranges_init(struct rudp_ranges *s, unsigned cap)
{
	memset(s, 0, sizeof(*s));
	s->cap = cap;
}

void rudp_ranges_free(struct rudp_ranges *s)
{
	free(s->r);
	s->r = NULL;
	s->n = s->alloc = 0;
}

/* First index whose range ends at or above v - 1 (could touch v). */
static unsigned lower_bound(const struct rudp_ranges *s, uint64_t v)
{
	unsigned lo = 0, hi = s->n;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (s->r[mid].hi + 1 < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool rudp_ranges_has(const struct rudp_ranges *s, uint64_t v)
{
	unsigned i = lower_bound(s, v + 1);
	return i < s->n && s->r[i].lo <= v && v <= s->r[i].hi;
}

static int grow(struct rudp_ranges *s)
{
	if (s->n < s->alloc)
		return 0;
	unsigned na = s->alloc ? s->alloc * 2 : 8;
	struct rudp_range *r = realloc(s->r, na * sizeof(*r));
	if (!r)
		return -ENOMEM;
	s->r = r;
	s->alloc = na;
	return 0;
}

int rudp_ranges_add(struct rudp_ranges *s, uint64_t lo, uint64_t hi)
{
	/* fast path: extends the highest range (in-order arrival) */
	if (s->n && lo <= s->r[s->n - 1].hi + 1 && lo >= s->r[s->n - 1].lo) {
		struct rudp_range *t = &s->r[s->n - 1];
		if (hi <= t->hi)
			return 0;
		t->hi = hi;
		return 1;
	}
	unsigned i = lower_bound(s, lo);
	if (i < s->n && s->r[i].lo <= lo && hi <= s->r[i].hi)
		return 0;
	/* ranges i..j-1 touch [lo, hi]: merge them into one */
	unsigned j = i;
	while (j < s->n && s->r[j].lo <= hi + 1) {
		if (s->r[j].lo < lo)
			lo = s->r[j].lo;
		if (s->r[j].hi > hi)
			hi = s->r[j].hi;
		j++;
	}
	if (j == i) {
		if (grow(s) < 0)
			return -ENOMEM;
		memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(*s->r));
		s->n++;
	} else if (j > i + 1) {
		memmove(&s->r[i + 1], &s->r[j], (s->n - j) * sizeof(*s->r));
		s->n -= j - i - 1;
	}
	s->r[i].lo = lo;
	s->r[i].hi = hi;
	if (s->cap && s->n > s->cap) {
		memmove(&s->r[0], &s->r[1], (s->n - 1) * sizeof(*s->r));
		s->n--;
	}
	return 1;
}

void rudp_ranges_drop_below(struct rudp_ranges *s, uint64_t v)
{
	unsigned i = 0;
	while (i < s->n && s->r[i].hi < v)
		i++;
	if (i) {
		memmove(&s->r[0], &s->r[i], (s->n - i) * sizeof(*s->r));
		s->n -= i;
	}
	if (s->n && s->r[0].lo < v)
		s->r[0].lo = v;
}
