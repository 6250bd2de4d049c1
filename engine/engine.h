/*
 * engine.h - the completion engine: shards, their rings and what runs on them.
 *
 * Ownership rules (docs/ARCHITECTURE.md has the long form):
 *  - Every object belongs to one shard; only that shard's thread touches it.
 *    Other threads talk to a shard only through eng_post().
 *  - Memory referenced by a submitted SQE belongs to the kernel until its
 *    CQE. An object with operations in flight is freed only after the last
 *    of their completions has been reaped.
 *  - Functions marked "any thread" are thread-safe; all others must run on
 *    the owning shard's thread.
 */
#ifndef CRUST_ENGINE_H
#define CRUST_ENGINE_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "bufring.h"
#include "mailbox.h"
#include "timer.h"

struct shard;
struct eng;

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/*
 * One pending operation. user_data of every SQE is a pointer to one of
 * these, embedded in the object that owns the operation; cb runs for
 * each of its completions (several for multishot operations).
 */
struct eng_op {
	void (*cb)(struct shard *sh, struct eng_op *op, const struct io_uring_cqe *cqe);
};

/* 64 KiB of payload (a full GRO batch) plus room for the recvmsg header, address, cmsgs */
#define ENG_RX_BUFFER_DEFAULT (64u * 1024u + 512u)

struct eng_config {
	unsigned shards;          /* 0 = online cores */
	bool pin;                 /* pin shard i to cpu (first_cpu + i) mod ncpu */
	unsigned first_cpu;
	unsigned sq_entries;      /* default 256; CQ is 16x */
	uint32_t rx_buffer_size;  /* default ENG_RX_BUFFER_DEFAULT */
	uint32_t rx_buffer_count; /* power of two, default 256 */
	uint32_t tx_arena_size;   /* default 4 MiB */
	uint32_t zc_min;          /* SEND_ZC from the arena for sends >= this; 0 = never */
	uint64_t rx_held_limit;   /* reassembled bytes held by the user before receives pause; default 64 MiB */
	/* where the engine's own warnings go (level: 0 error, 1 warn, 2 info); NULL = stderr */
	void (*log)(void *ctx, int level, const char *msg);
	/* runs on each shard thread once its ring is up, before the loop */
	void (*on_shard_start)(struct shard *sh, void *ctx);
	/* runs on each shard thread after the loop stopped, ring still up */
	void (*on_shard_stop)(struct shard *sh, void *ctx);
	void *ctx;
};

/* Counters a shard keeps; read by other threads without locks (approximate). */
struct eng_stats {
	_Atomic uint64_t rx_bytes, tx_bytes, rx_calls, tx_calls;
	_Atomic uint64_t rx_enobufs, rx_rearms, rx_pauses;
	_Atomic uint64_t doorbells;
	_Atomic uint64_t tx_zc_sends, tx_zc_copied;
	/* gauges the shard publishes each loop iteration (what it owns; leak checks) */
	_Atomic uint64_t live_sockets, live_timers, rx_buffers_out;
};

struct shard {
	struct eng *eng;
	unsigned id;
	pthread_t thread;
	struct io_uring ring;
	bool ring_up;
	atomic_bool stop;
	struct eng_bufring rx;    /* provided buffers for every receive */
	struct eng_arena arena;
	struct eng_timers timers;
	struct eng_mailbox mailbox;
	struct eng_op doorbell_op; /* MSG_RING and eventfd wakeups land here */
	struct eng_op msg_ring_failed_op; /* a MSG_RING to this shard failed (in the poster's ring) */
	int wake_fd;              /* eventfd: wakes the shard from non-shard threads */
	uint64_t wake_buf;
	struct eng_stats stats;
	/* streams waiting for receive buffers (multishot ended with ENOBUFS) */
	struct eng_stream *starved;
	uint64_t now_ms;          /* refreshed once per loop iteration */
	unsigned live;            /* streams, listeners, UDP sockets not yet closed */
	void *user;               /* the layer above: per-shard state */
	int start_err;
};

struct eng {
	struct eng_config cfg;
	unsigned nshards;
	struct shard *shards;
	pthread_mutex_t start_lock;
	pthread_cond_t start_cond;
	unsigned started;
	bool stopped;
};

/* Start the shards (any thread). Returns 0 once every ring is up, or -errno. */
int eng_new(const struct eng_config *cfg, struct eng **out);
/*
 * Stop the shards: each runs on_shard_stop, lets closes finish, exits its
 * ring; then join them (any thread but a shard's). Receive buffers stay
 * valid until eng_free, so views still held can be released in between.
 */
void eng_stop(struct eng *e);
/* eng_stop if needed, then free everything. */
void eng_free(struct eng *e);

/* The shard whose thread is running now, or NULL on other threads. */
struct shard *eng_current_shard(void);

/*
 * Get an SQE, submitting the queue first if it is full. Never NULL: if
 * the SQ stays full the shard reaps completions until one frees up.
 */
struct io_uring_sqe *eng_sqe(struct shard *sh, struct eng_op *op);

/* Log through the configured callback (any thread). */
void eng_log(const struct eng *e, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Milliseconds since an arbitrary start (CLOCK_MONOTONIC). */
uint64_t eng_clock_ms(void);

/*
 * Post work to a shard (any thread). fn runs on the shard's thread in
 * the order posts from one thread were made. Wakes the shard with a
 * MSG_RING doorbell from shard threads, an eventfd write otherwise.
 */
void eng_post(struct shard *sh, struct eng_mail *m);

/* Wake a shard (any thread), e.g. after returning buffers it waits for. */
void eng_wake(struct shard *sh);


#endif
