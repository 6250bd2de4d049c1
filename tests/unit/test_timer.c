/*
 * test_timer.c - the hashed timer wheel (engine/timer.c).
 *
 * Pure logic: every test drives the wheel with explicit now_ms values, so
 * nothing depends on the clock. The start time is not a multiple of the
 * wheel size on purpose, so slot arithmetic is exercised off zero.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdlib.h>

#include "engine/timer.h"

#define T0 1000003u

/* A timer plus what its callback saw. */
struct probe {
	struct eng_timer t;
	struct eng_timers *w;
	unsigned fired;
	uint64_t fired_at;      /* w->now_ms when the callback ran */
	/* optional actions for the callback */
	struct probe *cancel_other;
	struct probe *arm_other;
	uint64_t arm_other_delay;
	uint64_t rearm_self;    /* 0 = do not re-arm */
	unsigned max_fires;     /* re-arm only while fired < max_fires */
	bool cancel_self;
};

static void probe_fn(struct eng_timer *t, void *ctx)
{
	struct probe *p = ctx;
	cr_assert(eq(ptr, t, &p->t));
	cr_assert(not(eng_timer_armed(t)), "a timer is disarmed when its callback runs");
	p->fired++;
	p->fired_at = p->w->now_ms;
	if (p->cancel_other)
		eng_timer_cancel(p->w, &p->cancel_other->t);
	if (p->arm_other)
		eng_timer_arm(p->w, &p->arm_other->t, p->arm_other_delay);
	if (p->rearm_self && (!p->max_fires || p->fired < p->max_fires))
		eng_timer_arm(p->w, t, p->rearm_self);
	if (p->cancel_self)
		eng_timer_cancel(p->w, t);
}

static void probe_init(struct probe *p, struct eng_timers *w)
{
	memset(p, 0, sizeof(*p));
	p->w = w;
	eng_timer_init(&p->t, probe_fn, p);
}

Test(timer, fires_at_its_tick_and_not_before)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 10);
	cr_assert(eng_timer_armed(&p.t));
	cr_assert(eq(u64, p.t.expires_ms, T0 + 10));

	for (uint64_t now = T0; now < T0 + 10; now++)
		cr_assert(zero(uint, eng_timers_run(&w, now)), "fired early at +%llu",
			  (unsigned long long)(now - T0));
	cr_assert(zero(uint, p.fired));
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 10), 1));
	cr_assert(eq(uint, p.fired, 1));
	cr_assert(eq(u64, p.fired_at, T0 + 10));
	cr_assert(not(eng_timer_armed(&p.t)));
	cr_assert(zero(uint, w.count));
	/* a fired one-shot timer stays quiet */
	cr_assert(zero(uint, eng_timers_run(&w, T0 + 5000)));
	cr_assert(eq(uint, p.fired, 1));
}

Test(timer, late_run_fires_everything_due_in_one_call)
{
	struct eng_timers w;
	struct probe p[3];
	eng_timers_init(&w, T0);
	for (int i = 0; i < 3; i++)
		probe_init(&p[i], &w);
	eng_timer_arm(&w, &p[0].t, 5);
	eng_timer_arm(&w, &p[1].t, 300);
	eng_timer_arm(&w, &p[2].t, 301);
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 300), 2));
	cr_assert(eq(uint, p[0].fired, 1));
	cr_assert(eq(uint, p[1].fired, 1));
	cr_assert(zero(uint, p[2].fired));
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 301), 1));
	cr_assert(eq(uint, p[2].fired, 1));
}

Test(timer, zero_delay_means_next_tick)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 0);
	cr_assert(eq(u64, p.t.expires_ms, T0 + 1));
	cr_assert(zero(uint, eng_timers_run(&w, T0)));
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 1), 1));
	cr_assert(eq(uint, p.fired, 1));
}

Test(timer, time_going_backwards_fires_nothing)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 3);
	cr_assert(zero(uint, eng_timers_run(&w, T0 - 100)));
	cr_assert(eq(u64, w.now_ms, T0), "an older now must not move the wheel back");
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 3), 1));
}

Test(timer, cancel_stops_it_and_is_idempotent)
{
	struct eng_timers w;
	struct probe p, q;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	probe_init(&q, &w);
	eng_timer_arm(&w, &p.t, 20);
	eng_timer_arm(&w, &q.t, 20);
	cr_assert(eq(uint, w.count, 2));
	eng_timer_cancel(&w, &p.t);
	cr_assert(not(eng_timer_armed(&p.t)));
	cr_assert(eq(uint, w.count, 1));
	eng_timer_cancel(&w, &p.t);
	cr_assert(eq(uint, w.count, 1), "cancelling twice must not unlink twice");
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 1000), 1));
	cr_assert(zero(uint, p.fired));
	cr_assert(eq(uint, q.fired, 1), "the slot neighbour of a cancelled timer still fires");
	/* cancelling a never-armed timer is harmless */
	struct probe r;
	probe_init(&r, &w);
	eng_timer_cancel(&w, &r.t);
	cr_assert(zero(uint, w.count));
}

Test(timer, rearm_moves_the_expiry_later)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 10);
	cr_assert(zero(uint, eng_timers_run(&w, T0 + 5)));
	eng_timer_arm(&w, &p.t, 20); /* now due at T0 + 25 */
	cr_assert(eq(uint, w.count, 1), "re-arming must not add a second entry");
	for (uint64_t now = T0 + 6; now < T0 + 25; now++)
		cr_assert(zero(uint, eng_timers_run(&w, now)));
	cr_assert(zero(uint, p.fired));
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 25), 1));
	cr_assert(eq(uint, p.fired, 1));
	cr_assert(zero(uint, eng_timers_run(&w, T0 + 2000)));
	cr_assert(eq(uint, p.fired, 1));
}

Test(timer, rearm_moves_the_expiry_earlier)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 400);
	eng_timer_arm(&w, &p.t, 4);
	cr_assert(zero(uint, eng_timers_run(&w, T0 + 3)));
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 4), 1));
	cr_assert(zero(uint, eng_timers_run(&w, T0 + 400)), "the old expiry must be forgotten");
	cr_assert(eq(uint, p.fired, 1));
}

Test(timer, periodic_rearm_from_its_own_callback)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	p.rearm_self = 10;
	eng_timer_arm(&w, &p.t, 10);
	for (uint64_t now = T0 + 1; now <= T0 + 100; now++) {
		unsigned before = p.fired;
		eng_timers_run(&w, now);
		bool due = (now - T0) % 10 == 0;
		cr_assert(eq(uint, p.fired, before + due), "at +%llu", (unsigned long long)(now - T0));
	}
	cr_assert(eq(uint, p.fired, 10));
	cr_assert(eng_timer_armed(&p.t));
	eng_timer_cancel(&w, &p.t);
	cr_assert(zero(uint, w.count));
}

Test(timer, rearm_from_callback_never_fires_in_the_same_run)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	p.rearm_self = 1; /* would loop forever if it counted from the old tick */
	eng_timer_arm(&w, &p.t, 1);
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 300), 1));
	cr_assert(eq(u64, p.t.expires_ms, T0 + 301));
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 301), 1));
	cr_assert(eq(uint, p.fired, 2));
	eng_timer_cancel(&w, &p.t);
}

Test(timer, callback_cancels_a_due_neighbour_in_the_same_slot)
{
	struct eng_timers w;
	struct probe a, b, c;
	eng_timers_init(&w, T0);
	probe_init(&a, &w);
	probe_init(&b, &w);
	probe_init(&c, &w);
	a.cancel_other = &b;
	eng_timer_arm(&w, &a.t, 7);
	eng_timer_arm(&w, &b.t, 7);
	eng_timer_arm(&w, &c.t, 7);
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 7), 2));
	cr_assert(eq(uint, a.fired, 1));
	cr_assert(zero(uint, b.fired), "cancelled by a callback of the same tick");
	cr_assert(eq(uint, c.fired, 1));
	cr_assert(zero(uint, w.count));
}

Test(timer, callback_cancels_a_due_timer_in_a_later_slot)
{
	struct eng_timers w;
	struct probe a, b;
	eng_timers_init(&w, T0);
	probe_init(&a, &w);
	probe_init(&b, &w);
	a.cancel_other = &b;
	eng_timer_arm(&w, &a.t, 5);
	eng_timer_arm(&w, &b.t, 8);
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 50), 1));
	cr_assert(zero(uint, b.fired));
	cr_assert(zero(uint, w.count));
}

Test(timer, callback_arms_another_timer)
{
	struct eng_timers w;
	struct probe a, b;
	eng_timers_init(&w, T0);
	probe_init(&a, &w);
	probe_init(&b, &w);
	a.arm_other = &b;
	a.arm_other_delay = 3;
	eng_timer_arm(&w, &a.t, 5);
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 20), 1));
	cr_assert(eng_timer_armed(&b.t));
	cr_assert(eq(u64, b.t.expires_ms, T0 + 23), "counted from the run's now");
	cr_assert(zero(uint, eng_timers_run(&w, T0 + 22)));
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 23), 1));
	cr_assert(eq(uint, b.fired, 1));
}

Test(timer, callback_rearms_then_cancels_itself)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	p.rearm_self = 2;
	p.cancel_self = true;
	eng_timer_arm(&w, &p.t, 2);
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 2), 1));
	cr_assert(not(eng_timer_armed(&p.t)));
	cr_assert(zero(uint, w.count));
	cr_assert(zero(uint, eng_timers_run(&w, T0 + 100)));
	cr_assert(eq(uint, p.fired, 1));
}

Test(timer, callback_rearms_a_timer_that_is_due_in_the_same_run)
{
	/* a fires first (earlier slot) and pushes b, which was also due, out */
	struct eng_timers w;
	struct probe a, b;
	eng_timers_init(&w, T0);
	probe_init(&a, &w);
	probe_init(&b, &w);
	a.arm_other = &b;
	a.arm_other_delay = 10;
	eng_timer_arm(&w, &a.t, 3);
	eng_timer_arm(&w, &b.t, 6);
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 6), 1));
	cr_assert(zero(uint, b.fired));
	cr_assert(eq(u64, b.t.expires_ms, T0 + 16));
	cr_assert(eq(uint, eng_timers_run(&w, T0 + 16), 1));
	cr_assert(eq(uint, b.fired, 1));
}

/* One tick at a time up to the expiry: no firing before it, exactly one at it. */
static void step_until_due(struct eng_timers *w, struct probe *p, uint64_t from, uint64_t step)
{
	uint64_t due = p->t.expires_ms;
	for (uint64_t now = from; now < due; now += step) {
		eng_timers_run(w, now);
		cr_assert(zero(uint, p->fired), "fired at %llu, due %llu", (unsigned long long)now,
			  (unsigned long long)due);
	}
	eng_timers_run(w, due);
	cr_assert(eq(uint, p->fired, 1));
	cr_assert(eq(u64, p->fired_at, due));
}

Test(timer, beyond_one_revolution_fires_only_when_due_tick_by_tick)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 3 * ENG_TIMER_SLOTS + 17);
	step_until_due(&w, &p, T0 + 1, 1);
}

Test(timer, exactly_one_revolution_fires_only_when_due)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	/* lands in the slot of the current tick */
	eng_timer_arm(&w, &p.t, ENG_TIMER_SLOTS);
	step_until_due(&w, &p, T0, 1);
}

Test(timer, beyond_one_revolution_fires_only_when_due_with_large_steps)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 5 * ENG_TIMER_SLOTS + 3);
	/* steps of a whole revolution and more make the run visit every slot */
	step_until_due(&w, &p, T0 + ENG_TIMER_SLOTS - 1, ENG_TIMER_SLOTS + 1);
}

Test(timer, next_is_minus_one_when_empty)
{
	struct eng_timers w;
	eng_timers_init(&w, T0);
	cr_assert(eq(i64, eng_timers_next(&w, T0), -1));
	struct probe p;
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 1);
	eng_timer_cancel(&w, &p.t);
	cr_assert(eq(i64, eng_timers_next(&w, T0), -1));
}

Test(timer, next_reports_the_nearest_delay)
{
	struct eng_timers w;
	struct probe a, b;
	eng_timers_init(&w, T0);
	probe_init(&a, &w);
	probe_init(&b, &w);
	eng_timer_arm(&w, &a.t, 37);
	cr_assert(eq(i64, eng_timers_next(&w, T0), 37));
	cr_assert(eq(i64, eng_timers_next(&w, T0 + 30), 7));
	eng_timer_arm(&w, &b.t, 5);
	cr_assert(eq(i64, eng_timers_next(&w, T0), 5));
	eng_timers_run(&w, T0 + 5);
	cr_assert(eq(i64, eng_timers_next(&w, T0 + 5), 32));
	eng_timers_run(&w, T0 + 37);
	cr_assert(eq(i64, eng_timers_next(&w, T0 + 37), -1));
}

Test(timer, next_ignores_a_slot_mate_one_revolution_later)
{
	struct eng_timers w;
	struct probe near, far;
	eng_timers_init(&w, T0);
	probe_init(&near, &w);
	probe_init(&far, &w);
	/* same slot; only the later revolution is present at first */
	eng_timer_arm(&w, &far.t, ENG_TIMER_SLOTS + 40);
	eng_timer_arm(&w, &near.t, 300);
	cr_assert(eq(i64, eng_timers_next(&w, T0), 300));
	eng_timer_cancel(&w, &near.t);
	int64_t d = eng_timers_next(&w, T0);
	cr_assert(eq(i64, d, ENG_TIMER_SLOTS), "capped at the span, got %lld", (long long)d);
	eng_timers_run(&w, T0 + 100);
	cr_assert(eq(i64, eng_timers_next(&w, T0 + 100), ENG_TIMER_SLOTS + 40 - 100));
}

Test(timer, next_is_zero_for_a_timer_already_overdue)
{
	/* the caller's clock moved on but the wheel has not been run yet */
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 10);
	cr_assert(eq(i64, eng_timers_next(&w, T0 + 10), 0));
	cr_assert(eq(i64, eng_timers_next(&w, T0 + 20), 0));
	cr_assert(eq(i64, eng_timers_next(&w, T0 + 10 * ENG_TIMER_SLOTS), 0));
}

Test(timer, next_counts_from_the_callers_now_when_the_wheel_lags)
{
	struct eng_timers w;
	struct probe p;
	eng_timers_init(&w, T0);
	probe_init(&p, &w);
	eng_timer_arm(&w, &p.t, 600);
	cr_assert(eq(i64, eng_timers_next(&w, T0 + 500), 100));
}

/* xorshift64*: deterministic pseudo-random numbers for the stress tests */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

#define MANY 10000

struct rec {
	struct eng_timer t;
	struct eng_timers *w;
	unsigned id;
	unsigned fired;
	uint64_t fired_at;
	unsigned *log;
	unsigned *nlog;
};

static void rec_fn(struct eng_timer *t, void *ctx)
{
	struct rec *r = ctx;
	(void)t;
	r->fired++;
	r->fired_at = r->w->now_ms;
	r->log[(*r->nlog)++] = r->id;
}

Test(timer, ten_thousand_random_timers_fire_once_in_expiry_order)
{
	struct eng_timers w;
	struct rec *r = calloc(MANY, sizeof(*r));
	unsigned *log = calloc(MANY, sizeof(*log));
	unsigned nlog = 0;
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	cr_assert(not(eq(ptr, r, NULL)));
	cr_assert(not(eq(ptr, log, NULL)));
	eng_timers_init(&w, T0);
	for (unsigned i = 0; i < MANY; i++) {
		r[i] = (struct rec){ .w = &w, .id = i, .log = log, .nlog = &nlog };
		eng_timer_init(&r[i].t, rec_fn, &r[i]);
		eng_timer_arm(&w, &r[i].t, rnd(&seed) % (3 * ENG_TIMER_SLOTS));
	}
	cr_assert(eq(uint, w.count, MANY));

	/* steps below one revolution, so each run visits ticks in order */
	uint64_t now = T0, total = 0;
	while (w.count) {
		uint64_t prev = now;
		now += 1 + rnd(&seed) % (ENG_TIMER_SLOTS - 1);
		unsigned before = nlog;
		total += eng_timers_run(&w, now);
		for (unsigned k = before; k < nlog; k++) {
			struct rec *x = &r[log[k]];
			cr_assert(gt(u64, x->t.expires_ms, prev), "timer %u fired late", x->id);
			cr_assert(le(u64, x->t.expires_ms, now), "timer %u fired early", x->id);
		}
		cr_assert(le(u64, now - T0, 4 * ENG_TIMER_SLOTS), "the wheel never empties");
	}
	cr_assert(eq(u64, total, MANY));
	cr_assert(eq(uint, nlog, MANY));
	for (unsigned i = 0; i < MANY; i++)
		cr_assert(eq(uint, r[i].fired, 1), "timer %u fired %u times", i, r[i].fired);
	/* by expiry; timers due on the same tick in the order they were armed */
	for (unsigned k = 1; k < MANY; k++) {
		struct rec *a = &r[log[k - 1]], *b = &r[log[k]];
		cr_assert(le(u64, a->t.expires_ms, b->t.expires_ms), "position %u out of order", k);
		if (a->t.expires_ms == b->t.expires_ms)
			cr_assert(lt(uint, a->id, b->id), "same tick, position %u not FIFO", k);
	}
	free(log);
	free(r);
}

/*
 * Random arm / re-arm / cancel / advance against a model that knows each
 * timer's expiry: every timer fires exactly when the model says it is due,
 * and eng_timers_next agrees with the model's nearest expiry.
 */
Test(timer, random_operations_match_a_model)
{
	enum { N = 512, OPS = 20000 };
	struct eng_timers w;
	struct rec *r = calloc(N, sizeof(*r));
	uint64_t *due = calloc(N, sizeof(*due)); /* 0 = not armed */
	unsigned *log = calloc(OPS + N, sizeof(*log));
	unsigned nlog = 0;
	uint64_t seed = 42, now = T0;
	cr_assert(r && due && log);
	eng_timers_init(&w, now);
	for (unsigned i = 0; i < N; i++) {
		r[i] = (struct rec){ .w = &w, .id = i, .log = log, .nlog = &nlog };
		eng_timer_init(&r[i].t, rec_fn, &r[i]);
	}
	for (unsigned op = 0; op < OPS; op++) {
		unsigned i = (unsigned)(rnd(&seed) % N);
		switch (rnd(&seed) % 4) {
		case 0:
		case 1: {
			uint64_t d = rnd(&seed) % (4 * ENG_TIMER_SLOTS);
			eng_timer_arm(&w, &r[i].t, d);
			due[i] = now + (d ? d : 1);
			break;
		}
		case 2:
			eng_timer_cancel(&w, &r[i].t);
			due[i] = 0;
			break;
		default: {
			uint64_t step = rnd(&seed) % (2 * ENG_TIMER_SLOTS);
			unsigned before = nlog;
			now += step;
			eng_timers_run(&w, now);
			for (unsigned k = before; k < nlog; k++) {
				unsigned id = log[k];
				cr_assert(ne(u64, due[id], 0), "op %u: timer %u fired but not armed", op, id);
				cr_assert(le(u64, due[id], now), "op %u: timer %u fired early", op, id);
				due[id] = 0;
			}
			for (unsigned j = 0; j < N; j++)
				if (due[j] && due[j] <= now)
					cr_fatal("op %u: timer %u due at %llu missed at %llu", op, j,
						 (unsigned long long)due[j], (unsigned long long)now);
			break;
		}
		}
		unsigned armed = 0;
		uint64_t min_due = UINT64_MAX;
		for (unsigned j = 0; j < N; j++) {
			armed += due[j] != 0;
			if (eng_timer_armed(&r[j].t) != (due[j] != 0))
				cr_fatal("op %u: timer %u armed flag disagrees with the model", op, j);
			if (due[j] && due[j] < min_due)
				min_due = due[j];
		}
		cr_assert(eq(uint, w.count, armed));
		/* asked at the wheel's time or later: the nearest expiry, capped at the span */
		uint64_t q = now + (op & 1 ? rnd(&seed) % (2 * ENG_TIMER_SLOTS) : 0);
		int64_t want = -1;
		if (armed)
			want = min_due <= q ? 0 : (int64_t)(min_due - q);
		if (want > ENG_TIMER_SLOTS)
			want = ENG_TIMER_SLOTS;
		cr_assert(eq(i64, eng_timers_next(&w, q), want), "op %u", op);
	}
	free(log);
	free(due);
	free(r);
}
