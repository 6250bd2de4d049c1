/*
 * shard.c - one thread per shard, each owning one io_uring.
 *
 * The ring is created on the shard's own thread with SINGLE_ISSUER |
 * DEFER_TASKRUN: completions are delivered only when this thread enters
 * the kernel to wait, so they arrive in batches and never interrupt it.
 * One loop iteration: run due timers, drain the mailbox, give returned
 * receive buffers back, then submit everything prepared and wait for at
 * least one completion (or the next timer), then dispatch the batch.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "fault.h"
#include "valgrind.h"
#include "stream.h"
#include "tsan.h"

#define CQE_BATCH 256
#define STOP_GRACE_MS 3000

static __thread struct shard *current;

/* ring memory is unmapped by one ring's exit and may be mapped again by the next (tsan.h) */
static int ring_memory_reuse;

struct shard *eng_current_shard(void)
{
	return current;
}

uint64_t eng_clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void eng_log(const struct eng *e, int level, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (e->cfg.log)
		e->cfg.log(e->cfg.ctx, level, buf);
	else
		fprintf(stderr, "crust: %s\n", buf);
}

struct io_uring_sqe *eng_sqe(struct shard *sh, struct eng_op *op)
{
	/* a fault (faults build) takes the SQ-full path below */
	struct io_uring_sqe *sqe = crust_fault_hit(CRUST_FAULT_URING) ? NULL : io_uring_get_sqe(&sh->ring);
	if (!sqe) {
		/* SQ full: hand it to the kernel (SUBMIT_ALL takes every entry) */
		io_uring_submit(&sh->ring);
		sqe = io_uring_get_sqe(&sh->ring);
	}
	if (!sqe) {
		eng_log(sh->eng, 0, "shard %u: no SQE after submit", sh->id);
		abort();
	}
	io_uring_sqe_set_data(sqe, op);
	return sqe;
}

static void arm_wake_read(struct shard *sh)
{
	struct io_uring_sqe *sqe = eng_sqe(sh, &sh->doorbell_op);
	io_uring_prep_read(sqe, sh->wake_fd, &sh->wake_buf, sizeof(sh->wake_buf), 0);
}

/*
 * Doorbells land here: MSG_RING completions from other shards (res 0,
 * the posted length) and our own eventfd read (res 8). Both only wake
 * the loop, which drains the mailbox at the top of every iteration.
 */
static void doorbell_cb(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	(void)op;
	atomic_fetch_add_explicit(&sh->stats.doorbells, 1, memory_order_relaxed);
	if (cqe->res == (int)sizeof(sh->wake_buf) || (cqe->res < 0 && cqe->res != -ECANCELED))
		arm_wake_read(sh);
}

static void wake_by_eventfd(struct shard *sh)
{
	uint64_t one = 1;
	if (write(sh->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		eng_log(sh->eng, 0, "shard %u: wake failed: %s", sh->id, strerror(errno));
}

/*
 * Runs on the poster's thread when its MSG_RING to sh failed (e.g. the
 * target's CQ overflowed): the doorbell flag is set, so without this
 * wake the target would not look at its mailbox again.
 */
static void msg_ring_failed_cb(struct shard *me, struct eng_op *op, const struct io_uring_cqe *cqe)
{
	(void)me;
	(void)cqe;
	wake_by_eventfd(container_of(op, struct shard, msg_ring_failed_op));
}

void eng_wake(struct shard *sh)
{
	struct shard *me = current;
	if (me && me != sh && me->ring_up) {
		/* shard to shard: a CQE posted straight into the target ring */
		struct io_uring_sqe *sqe = eng_sqe(me, &sh->msg_ring_failed_op);
		compat_prep_msg_ring_doorbell(sqe, sh->ring.ring_fd, (uint64_t)(uintptr_t)&sh->doorbell_op);
		/* only a failure posts a completion, in our ring */
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		return;
	}
	wake_by_eventfd(sh);
}

static void wake_from_bufring(void *ctx)
{
	eng_wake(ctx);
}

void eng_post(struct shard *sh, struct eng_mail *m)
{
	eng_mailbox_push(&sh->mailbox, m);
	/* one doorbell per batch: the shard clears the flag before draining */
	if (!atomic_exchange(&sh->mailbox.doorbell_rung, true) && current != sh)
		eng_wake(sh);
}

static void drain_mailbox(struct shard *sh)
{
	atomic_store(&sh->mailbox.doorbell_rung, false);
	struct eng_mail *m;
	while ((m = eng_mailbox_pop(&sh->mailbox)))
		m->fn(sh, m);
}

static int ring_setup(struct shard *sh)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	unsigned sq = sh->eng->cfg.sq_entries;
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
	/* multishot receives and accepts post many CQEs per SQE: keep CQ far above SQ */
	p.cq_entries = sq * 16;
	int ret = io_uring_queue_init_params(sq, &sh->ring, &p);
	if (ret < 0)
		return ret;
	eng_tsan_acquire(&ring_memory_reuse);
	sh->ring_up = true;
	io_uring_register_ring_fd(&sh->ring);
	return 0;
}

static int shard_setup(struct shard *sh)
{
	const struct eng_config *c = &sh->eng->cfg;
	int ret = ring_setup(sh);
	if (ret < 0)
		return ret;
	ret = eng_bufring_init(&sh->rx, &sh->ring, 0, c->rx_buffer_size, c->rx_buffer_count);
	if (ret < 0)
		return ret;
	sh->rx.wake = wake_from_bufring;
	sh->rx.wake_ctx = sh;
	ret = eng_arena_init(&sh->arena, &sh->ring, c->tx_arena_size);
	if (ret < 0)
		return ret;
	sh->now_ms = eng_clock_ms();
	eng_timers_init(&sh->timers, sh->now_ms);
	sh->doorbell_op.cb = doorbell_cb;
	arm_wake_read(sh);
	return 0;
}

static void shard_teardown(struct shard *sh)
{
	eng_arena_destroy(&sh->arena, &sh->ring);
	if (sh->ring_up) {
		eng_tsan_release(&ring_memory_reuse);
		io_uring_queue_exit(&sh->ring);
		sh->ring_up = false;
	}
}

static void dispatch(struct shard *sh)
{
	struct io_uring_cqe *cqes[CQE_BATCH];
	unsigned n;
	while ((n = io_uring_peek_batch_cqe(&sh->ring, cqes, CQE_BATCH)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			struct eng_op *op = io_uring_cqe_get_data(cqes[i]);
			if (op)
				op->cb(sh, op, cqes[i]);
		}
		io_uring_cq_advance(&sh->ring, n);
		if (n < CQE_BATCH)
			break;
	}
}

/* Publish what this shard holds for crust_stats (its own fields are not atomic). */
static void publish_gauges(struct shard *sh)
{
	atomic_store_explicit(&sh->stats.live_sockets, sh->live, memory_order_relaxed);
	atomic_store_explicit(&sh->stats.live_timers, sh->timers.count, memory_order_relaxed);
	atomic_store_explicit(&sh->stats.rx_buffers_out,
			      sh->rx.count - eng_bufring_available(&sh->rx), memory_order_relaxed);
}

static void loop_once(struct shard *sh, int64_t max_wait_ms)
{
	sh->now_ms = eng_clock_ms();
	eng_timers_run(&sh->timers, sh->now_ms);
	drain_mailbox(sh);
	eng_bufring_reclaim(&sh->rx);
	eng_streams_rearm_starved(sh);
	int64_t wait = eng_timers_next(&sh->timers, sh->now_ms);
	if (wait < 0 || (max_wait_ms >= 0 && wait > max_wait_ms))
		wait = max_wait_ms;
	publish_gauges(sh); /* before a wait that may be long */
	wait = eng_vg_wait_ms(&sh->ring, wait); /* engine/valgrind.h: only make valgrind changes it */
	struct __kernel_timespec ts = { .tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000 };
	struct io_uring_cqe *cqe;
	int ret = io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, wait >= 0 ? &ts : NULL, NULL);
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY)
		eng_log(sh->eng, 1, "shard %u: wait: %s", sh->id, strerror(-ret));
	/* the wait may have been long: timers armed by these completions count from now */
	sh->now_ms = eng_clock_ms();
	eng_timers_run(&sh->timers, sh->now_ms);
	dispatch(sh);
	eng_bufring_flush(&sh->rx);
	publish_gauges(sh);
}

static void pin_to_cpu(unsigned id)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu <= 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(id % (unsigned)ncpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void announce_started(struct shard *sh, int err)
{
	struct eng *e = sh->eng;
	pthread_mutex_lock(&e->start_lock);
	sh->start_err = err;
	e->started++;
	pthread_cond_broadcast(&e->start_cond);
	pthread_mutex_unlock(&e->start_lock);
}

static void *shard_main(void *arg)
{
	struct shard *sh = arg;
	struct eng *e = sh->eng;
	current = sh;
	if (e->cfg.pin)
		pin_to_cpu(e->cfg.first_cpu + sh->id);
	int err = shard_setup(sh);
	announce_started(sh, err);
	if (err) {
		shard_teardown(sh);
		return NULL;
	}
	if (e->cfg.on_shard_start)
		e->cfg.on_shard_start(sh, e->cfg.ctx);
	while (!atomic_load(&sh->stop))
		loop_once(sh, -1);
	/* what was posted before the stop (a listener to start, say) runs first */
	drain_mailbox(sh);
	if (e->cfg.on_shard_stop)
		e->cfg.on_shard_stop(sh, e->cfg.ctx);
	/* let closes and cancels complete so owners free what they hold */
	uint64_t deadline = eng_clock_ms() + STOP_GRACE_MS;
	while (sh->live > 0 && eng_clock_ms() < deadline)
		loop_once(sh, 50);
	drain_mailbox(sh);
	if (sh->live > 0)
		eng_log(sh->eng, 1, "shard %u: %u sockets still busy at stop", sh->id, sh->live);
	shard_teardown(sh);
	return NULL;
}

static void config_defaults(struct eng_config *c)
{
	if (!c->sq_entries)
		c->sq_entries = 256;
	if (!c->rx_buffer_size)
		c->rx_buffer_size = ENG_RX_BUFFER_DEFAULT;
	if (!c->rx_buffer_count)
		c->rx_buffer_count = 256;
	if (!c->rx_held_limit)
		c->rx_held_limit = 64u << 20;
	if (!c->tx_arena_size)
		c->tx_arena_size = 4u << 20;
	if (!c->shards) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->shards = n > 0 ? (unsigned)n : 1;
	}
}

static int start_shards(struct eng *e)
{
	for (unsigned i = 0; i < e->nshards; i++) {
		struct shard *sh = &e->shards[i];
		int ret = pthread_create(&sh->thread, NULL, shard_main, sh);
		if (ret) {
			e->nshards = i;
			return -ret;
		}
	}
	int err = 0;
	pthread_mutex_lock(&e->start_lock);
	while (e->started < e->nshards)
		pthread_cond_wait(&e->start_cond, &e->start_lock);
	pthread_mutex_unlock(&e->start_lock);
	for (unsigned i = 0; i < e->nshards; i++)
		if (e->shards[i].start_err)
			err = e->shards[i].start_err;
	return err;
}

int eng_new(const struct eng_config *cfg, struct eng **out)
{
	struct eng *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	config_defaults(&e->cfg);
	e->nshards = e->cfg.shards;
	pthread_mutex_init(&e->start_lock, NULL);
	pthread_cond_init(&e->start_cond, NULL);
	e->shards = calloc(e->nshards, sizeof(*e->shards));
	if (!e->shards) {
		free(e);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < e->nshards; i++) {
		struct shard *sh = &e->shards[i];
		sh->eng = e;
		sh->id = i;
		sh->msg_ring_failed_op.cb = msg_ring_failed_cb;
		eng_mailbox_init(&sh->mailbox);
		sh->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (sh->wake_fd < 0) {
			int err = -errno;
			e->nshards = i;
			eng_free(e);
			return err;
		}
	}
	int err = start_shards(e);
	if (err) {
		eng_free(e);
		return err;
	}
	*out = e;
	return 0;
}

void eng_stop(struct eng *e)
{
	if (!e || e->stopped)
		return;
	e->stopped = true;
	for (unsigned i = 0; i < e->nshards; i++) {
		atomic_store(&e->shards[i].stop, true);
		eng_wake(&e->shards[i]);
	}
	for (unsigned i = 0; i < e->nshards; i++)
		if (e->shards[i].thread)
			pthread_join(e->shards[i].thread, NULL);
}

void eng_free(struct eng *e)
{
	if (!e)
		return;
	eng_stop(e);
	for (unsigned i = 0; i < e->nshards; i++) {
		/* rings have exited: the kernel holds no receive buffer any more */
		eng_bufring_destroy(&e->shards[i].rx);
		close(e->shards[i].wake_fd);
	}
	free(e->shards);
	pthread_mutex_destroy(&e->start_lock);
	pthread_cond_destroy(&e->start_cond);
	free(e);
}
