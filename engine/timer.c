/*
 * timer.c - hashed timer wheel (Varghese & Lauck, scheme 6).
 *
 * Slot of a timer = expires_ms mod ENG_TIMER_SLOTS. Running the wheel
 * walks the slots between the last processed tick and now; a timer whose
 * expiry is more than one revolution away is left in place.
 */
#include "timer.h"

#include <stddef.h>

#define SLOT_MASK (ENG_TIMER_SLOTS - 1)

void eng_timers_init(struct eng_timers *w, uint64_t now_ms)
{
	for (unsigned i = 0; i < ENG_TIMER_SLOTS; i++)
		w->slots[i].next = w->slots[i].prev = &w->slots[i];
	w->now_ms = now_ms;
	w->count = 0;
}

void eng_timer_init(struct eng_timer *t, eng_timer_fn fn, void *ctx)
{
	t->next = t->prev = NULL;
	t->fn = fn;
	t->ctx = ctx;
	t->armed = false;
	t->expires_ms = 0;
}

static void unlink_timer(struct eng_timers *w, struct eng_timer *t)
{
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = t->prev = NULL;
	t->armed = false;
	w->count--;
}

void eng_timer_arm(struct eng_timers *w, struct eng_timer *t, uint64_t delay_ms)
{
	if (t->armed)
		unlink_timer(w, t);
	t->expires_ms = w->now_ms + (delay_ms ? delay_ms : 1);
	struct eng_timer *head = &w->slots[t->expires_ms & SLOT_MASK];
	t->next = head;
	t->prev = head->prev;
	head->prev->next = t;
	head->prev = t;
	t->armed = true;
	w->count++;
}

void eng_timer_cancel(struct eng_timers *w, struct eng_timer *t)
{
	if (t->armed)
		unlink_timer(w, t);
}

/*
 * Fire the due timers of one slot. A callback may arm or cancel any
 * timer, so the scan restarts from the head after each firing.
 */
static unsigned run_slot(struct eng_timers *w, struct eng_timer *head, uint64_t now_ms)
{
	unsigned fired = 0;
	for (;;) {
		struct eng_timer *t = head->next;
		while (t != head && t->expires_ms > now_ms)
			t = t->next;
		if (t == head)
			return fired;
		unlink_timer(w, t);
		fired++;
		t->fn(t, t->ctx);
	}
}

unsigned eng_timers_run(struct eng_timers *w, uint64_t now_ms)
{
	if (now_ms < w->now_ms)
		return 0;
	uint64_t span = now_ms - w->now_ms;
	if (span >= ENG_TIMER_SLOTS)
		span = ENG_TIMER_SLOTS - 1;
	/* timers armed by callbacks count from now, so they never fire in this run */
	w->now_ms = now_ms;
	unsigned fired = 0;
	for (uint64_t i = 0; i <= span && w->count; i++) {
		uint64_t tick = now_ms - span + i;
		fired += run_slot(w, &w->slots[tick & SLOT_MASK], now_ms);
	}
	return fired;
}

/*
 * Scan tick by tick from the first one not yet run: every armed timer
 * expires after w->now_ms, so the first hit is the earliest expiry. If the
 * caller's now_ms is ahead of the last run, that hit may already be due (0).
 */
int64_t eng_timers_next(const struct eng_timers *w, uint64_t now_ms)
{
	if (w->count == 0)
		return -1;
	uint64_t first = w->now_ms < now_ms ? w->now_ms + 1 : now_ms;
	if (now_ms - first >= ENG_TIMER_SLOTS)
		first = now_ms - (ENG_TIMER_SLOTS - 1); /* one revolution sees every slot */
	for (uint64_t tick = first; tick < now_ms + ENG_TIMER_SLOTS; tick++) {
		const struct eng_timer *head = &w->slots[tick & SLOT_MASK];
		for (const struct eng_timer *t = head->next; t != head; t = t->next)
			if (t->expires_ms <= tick)
				return tick > now_ms ? (int64_t)(tick - now_ms) : 0;
	}
	return ENG_TIMER_SLOTS;
}
