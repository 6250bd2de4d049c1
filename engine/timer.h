/*
 * timer.h - a hashed timer wheel with millisecond ticks, one per shard.
 *
 * Arming and cancelling are O(1); each tick visits one slot. Timers
 * further out than the wheel's span stay in their slot and are skipped
 * until their tick comes round. Owner thread only.
 */
#ifndef CRUST_ENGINE_TIMER_H
#define CRUST_ENGINE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define ENG_TIMER_SLOTS 512u /* power of two */

struct eng_timer;
typedef void (*eng_timer_fn)(struct eng_timer *t, void *ctx);

struct eng_timer {
	struct eng_timer *next, *prev;
	uint64_t expires_ms;
	eng_timer_fn fn;
	void *ctx;
	bool armed;
};

struct eng_timers {
	struct eng_timer slots[ENG_TIMER_SLOTS]; /* list heads (sentinels) */
	uint64_t now_ms;                         /* last tick processed */
	unsigned count;
};

void eng_timers_init(struct eng_timers *w, uint64_t now_ms);
void eng_timer_init(struct eng_timer *t, eng_timer_fn fn, void *ctx);
/* (Re)arm t to fire at now + delay_ms (at least one tick later). */
void eng_timer_arm(struct eng_timers *w, struct eng_timer *t, uint64_t delay_ms);
void eng_timer_cancel(struct eng_timers *w, struct eng_timer *t);
static inline bool eng_timer_armed(const struct eng_timer *t) { return t->armed; }
/* Fire every timer due at or before now_ms; returns how many fired. */
unsigned eng_timers_run(struct eng_timers *w, uint64_t now_ms);
/*
 * Milliseconds until the next timer is due (capped at the wheel span), 0 if
 * one is due already (now_ms ahead of the last run), or -1 if none.
 */
int64_t eng_timers_next(const struct eng_timers *w, uint64_t now_ms);

#endif
