/*
 * test_bufring.c - the provided-buffer ring (engine/bufring.c) against a
 * real io_uring: a multishot receive on a UNIX stream socketpair picks
 * buffers from the ring; the test plays the shard (it is the owner thread).
 *
 * The byte stream is a counter pattern, so any lost, repeated or reordered
 * byte shows up as a mismatch at a known offset.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/bufring.h"

#define BGID 7
#define NBUF 8u
#define BUF_SIZE 4096u
#define RECV_TAG 0x5ec5

struct fix {
	struct io_uring ring;
	struct eng_bufring br;
	int sv[2];                /* sv[0]: received by the ring, sv[1]: written by the test */
	uint64_t tx_off, rx_off;  /* stream offsets, for the pattern */
	unsigned wakes;
	void *wake_ctx_seen;
};

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 8));
}

static void fix_init(struct fix *f)
{
	memset(f, 0, sizeof(*f));
	cr_assert(zero(int, io_uring_queue_init(64, &f->ring, 0)));
	cr_assert(zero(int, eng_bufring_init(&f->br, &f->ring, BGID, BUF_SIZE, NBUF)));
	cr_assert(zero(int, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->sv)));
	cr_assert(eq(u32, eng_bufring_available(&f->br), NBUF));
}

/* Every buffer must be back; the ring exits first (it owns the registration). */
static void fix_fini(struct fix *f)
{
	close(f->sv[1]);
	close(f->sv[0]);
	io_uring_queue_exit(&f->ring);
	eng_bufring_destroy(&f->br);
}

static void arm_recv(struct fix *f)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
	cr_assert(not(eq(ptr, sqe, NULL)));
	io_uring_prep_recv_multishot(sqe, f->sv[0], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, RECV_TAG);
	cr_assert(eq(int, io_uring_submit(&f->ring), 1));
}

static void send_pattern(struct fix *f, size_t n)
{
	uint8_t *buf = malloc(n);
	cr_assert(not(eq(ptr, buf, NULL)));
	for (size_t i = 0; i < n; i++)
		buf[i] = pattern(f->tx_off + i);
	size_t done = 0;
	while (done < n) {
		ssize_t w = write(f->sv[1], buf + done, n - done);
		cr_assert(gt(sz, (size_t)(w > 0 ? w : 0), 0), "write: %s", strerror(errno));
		done += (size_t)w;
	}
	f->tx_off += n;
	free(buf);
}

/* cr_assert(x) in Criterion 2.4 passes only for x == 1: give it a bool */
static bool has(uint32_t flags, uint32_t bit)
{
	return (flags & bit) != 0;
}

struct cqe_copy {
	int res;
	uint32_t flags;
};

/* The next completion (the test fails rather than hangs if none comes). */
static struct cqe_copy reap(struct fix *f)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = 2 };
	int ret = io_uring_wait_cqe_timeout(&f->ring, &cqe, &ts);
	cr_assert(zero(int, ret), "no completion: %s", strerror(-ret));
	cr_assert(eq(u64, io_uring_cqe_get_data64(cqe), RECV_TAG));
	struct cqe_copy c = { cqe->res, cqe->flags };
	io_uring_cqe_seen(&f->ring, cqe);
	return c;
}

/* A data completion: take its buffer and check the bytes against the pattern. */
static struct eng_rxbuf *take_checked(struct fix *f, struct cqe_copy c)
{
	cr_assert(gt(int, c.res, 0), "res %d", c.res);
	cr_assert(le(int, c.res, (int)BUF_SIZE));
	cr_assert(has(c.flags, IORING_CQE_F_BUFFER), "a receive must name its buffer");
	uint32_t before = eng_bufring_available(&f->br);
	struct eng_rxbuf *b = eng_bufring_take(&f->br, c.flags);
	cr_assert(eq(u16, b->bid, (uint16_t)(c.flags >> IORING_CQE_BUFFER_SHIFT)));
	cr_assert(eq(ptr, b->ring, &f->br));
	cr_assert(eq(u32, atomic_load(&b->refs), 1));
	cr_assert(eq(u32, eng_bufring_available(&f->br), before - 1));
	for (int i = 0; i < c.res; i++)
		if (b->data[i] != pattern(f->rx_off + (uint64_t)i))
			cr_fatal("stream byte %llu wrong", (unsigned long long)(f->rx_off + (uint64_t)i));
	f->rx_off += (uint64_t)c.res;
	return b;
}

/* Receive until the stream offset reaches tx_off, recycling as we go. */
static unsigned drain_recycling(struct fix *f)
{
	unsigned completions = 0;
	while (f->rx_off < f->tx_off) {
		struct cqe_copy c = reap(f);
		cr_assert(has(c.flags, IORING_CQE_F_MORE), "multishot ended early: res %d", c.res);
		eng_rxbuf_put(take_checked(f, c));
		eng_bufring_flush(&f->br);
		completions++;
	}
	return completions;
}

Test(bufring, init_rejects_bad_counts)
{
	struct io_uring ring;
	struct eng_bufring br;
	cr_assert(zero(int, io_uring_queue_init(8, &ring, 0)));
	cr_assert(eq(int, eng_bufring_init(&br, &ring, 1, 4096, 0), -EINVAL));
	cr_assert(eq(int, eng_bufring_init(&br, &ring, 1, 4096, 12), -EINVAL));
	cr_assert(eq(int, eng_bufring_init(&br, &ring, 1, 4096, 65536), -EINVAL));
	io_uring_queue_exit(&ring);
}

Test(bufring, receive_lands_in_a_provided_buffer, .timeout = 10)
{
	struct fix f;
	fix_init(&f);
	arm_recv(&f);
	send_pattern(&f, 1000);
	struct cqe_copy c = reap(&f);
	cr_assert(eq(int, c.res, 1000));
	cr_assert(has(c.flags, IORING_CQE_F_MORE), "the multishot receive stays armed");
	struct eng_rxbuf *b = take_checked(&f, c);
	cr_assert(eq(ptr, b->data, f.br.mem + (size_t)b->bid * BUF_SIZE));
	cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF - 1));
	eng_rxbuf_put(b);
	cr_assert(zero(u32, atomic_load(&b->refs)));
	cr_assert(eq(u32, f.br.pending_adds, 1), "recycled but not yet published");
	cr_assert(eq(u32, f.br.in_kernel, NBUF - 1));
	eng_bufring_flush(&f.br);
	cr_assert(zero(u32, f.br.pending_adds));
	cr_assert(eq(u32, f.br.in_kernel, NBUF));
	fix_fini(&f);
}

Test(bufring, extra_references_delay_the_recycle, .timeout = 10)
{
	struct fix f;
	fix_init(&f);
	arm_recv(&f);
	send_pattern(&f, 10);
	struct eng_rxbuf *b = take_checked(&f, reap(&f));
	eng_rxbuf_get(b);
	eng_rxbuf_get(b);
	eng_rxbuf_put(b);
	eng_rxbuf_put(b);
	eng_bufring_flush(&f.br);
	cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF - 1), "still referenced");
	eng_rxbuf_put(b);
	eng_bufring_flush(&f.br);
	cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF));
	fix_fini(&f);
}

Test(bufring, recycled_buffers_carry_many_times_the_ring, .timeout = 10)
{
	struct fix f;
	fix_init(&f);
	arm_recv(&f);
	unsigned used[NBUF] = { 0 };
	/* one full buffer per round: 8 buffers can only carry 64 rounds if recycled */
	for (unsigned round = 0; round < 8 * NBUF; round++) {
		send_pattern(&f, BUF_SIZE);
		while (f.rx_off < f.tx_off) {
			struct cqe_copy c = reap(&f);
			cr_assert(has(c.flags, IORING_CQE_F_MORE), "round %u: res %d", round, c.res);
			struct eng_rxbuf *b = take_checked(&f, c);
			used[b->bid]++;
			eng_rxbuf_put(b);
			eng_bufring_flush(&f.br);
		}
		cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF));
	}
	for (unsigned i = 0; i < NBUF; i++)
		cr_assert(gt(uint, used[i], 1), "buffer %u used %u times", i, used[i]);
	fix_fini(&f);
}

/* Hold every buffer: the multishot must end with -ENOBUFS. Returns the held buffers. */
static void exhaust(struct fix *f, struct eng_rxbuf *held[NBUF])
{
	unsigned n = 0;
	for (;;) {
		struct cqe_copy c = reap(f);
		if (!(c.flags & IORING_CQE_F_MORE)) {
			cr_assert(eq(int, c.res, -ENOBUFS), "the multishot ended with %d", c.res);
			cr_assert(not(has(c.flags, IORING_CQE_F_BUFFER)));
			break;
		}
		cr_assert(lt(uint, n, NBUF), "more buffers filled than exist");
		held[n++] = take_checked(f, c);
	}
	cr_assert(eq(uint, n, NBUF));
	cr_assert(zero(u32, eng_bufring_available(&f->br)));
	cr_assert(eq(u64, f->rx_off, (uint64_t)NBUF * BUF_SIZE), "each buffer filled to the brim");
}

Test(bufring, exhaustion_ends_the_multishot_and_rearm_loses_nothing, .timeout = 10)
{
	struct fix f;
	struct eng_rxbuf *held[NBUF];
	fix_init(&f);
	/* more than every buffer can hold, queued before the receive starts */
	send_pattern(&f, (size_t)NBUF * BUF_SIZE + 5000);
	arm_recv(&f);
	exhaust(&f, held);

	for (unsigned i = 0; i < NBUF / 2; i++)
		eng_rxbuf_put(held[i]);
	cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF / 2));
	eng_bufring_flush(&f.br);
	cr_assert(eq(u32, f.br.in_kernel, NBUF / 2));
	arm_recv(&f);
	drain_recycling(&f);
	cr_assert(eq(u64, f.rx_off, f.tx_off), "the bytes left in the socket all arrived");

	/* and the stream keeps flowing after the rest come back */
	for (unsigned i = NBUF / 2; i < NBUF; i++)
		eng_rxbuf_put(held[i]);
	eng_bufring_flush(&f.br);
	cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF));
	send_pattern(&f, 3 * BUF_SIZE + 123);
	drain_recycling(&f);
	cr_assert(eq(u64, f.rx_off, f.tx_off));
	fix_fini(&f);
}

static void *put_on_other_thread(void *arg)
{
	eng_rxbuf_put(arg);
	return NULL;
}

static void put_from_thread(struct eng_rxbuf *b)
{
	pthread_t t;
	cr_assert(zero(int, pthread_create(&t, NULL, put_on_other_thread, b)));
	pthread_join(t, NULL);
}

static void count_wake(void *ctx)
{
	struct fix *f = ctx;
	f->wakes++;
	f->wake_ctx_seen = ctx;
}

static unsigned returned_len(struct eng_bufring *r)
{
	unsigned n = 0;
	for (struct eng_rxbuf *b = atomic_load(&r->returned); b; b = b->next_free)
		n++;
	return n;
}

Test(bufring, off_thread_put_goes_to_the_return_stack, .timeout = 10)
{
	struct fix f;
	fix_init(&f);
	f.br.wake = count_wake;
	f.br.wake_ctx = &f;
	arm_recv(&f);
	send_pattern(&f, 100);
	struct eng_rxbuf *b = take_checked(&f, reap(&f));

	put_from_thread(b);
	cr_assert(zero(u32, atomic_load(&b->refs)));
	cr_assert(eq(ptr, atomic_load(&f.br.returned), b));
	cr_assert(zero(u32, f.br.pending_adds), "only the owner may touch the kernel ring");
	cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF - 1));
	cr_assert(zero(uint, f.wakes), "nobody is starved: no wake");

	eng_bufring_reclaim(&f.br);
	cr_assert(eq(ptr, atomic_load(&f.br.returned), NULL));
	cr_assert(eq(u32, f.br.in_kernel, NBUF), "reclaim publishes what it took back");

	/* the reclaimed buffer is used again */
	send_pattern(&f, 100);
	eng_rxbuf_put(take_checked(&f, reap(&f)));
	eng_bufring_flush(&f.br);
	fix_fini(&f);
}

Test(bufring, off_thread_put_wakes_only_while_starved, .timeout = 10)
{
	struct fix f;
	fix_init(&f);
	f.br.wake = count_wake;
	f.br.wake_ctx = &f;
	arm_recv(&f);
	send_pattern(&f, 100);
	struct eng_rxbuf *b = take_checked(&f, reap(&f));
	eng_rxbuf_get(b);
	atomic_store(&f.br.starved, true);
	put_from_thread(b);
	cr_assert(zero(uint, f.wakes), "not the last reference: nothing came back");
	put_from_thread(b);
	cr_assert(eq(uint, f.wakes, 1));
	cr_assert(eq(ptr, f.wake_ctx_seen, &f), "wake gets wake_ctx");
	eng_bufring_reclaim(&f.br);
	atomic_store(&f.br.starved, false);

	send_pattern(&f, 100);
	b = take_checked(&f, reap(&f));
	put_from_thread(b);
	cr_assert(eq(uint, f.wakes, 1), "not starved: no wake");
	eng_bufring_reclaim(&f.br);
	cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF));
	fix_fini(&f);
}

Test(bufring, off_thread_put_of_a_shared_buffer_returns_it_once, .timeout = 10)
{
	struct fix f;
	fix_init(&f);
	arm_recv(&f);
	send_pattern(&f, 100);
	struct eng_rxbuf *b = take_checked(&f, reap(&f));
	eng_rxbuf_get(b);
	put_from_thread(b);
	cr_assert(eq(ptr, atomic_load(&f.br.returned), NULL), "a reference is still held");
	put_from_thread(b);
	cr_assert(eq(uint, returned_len(&f.br), 1));
	eng_bufring_reclaim(&f.br);
	cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF));
	fix_fini(&f);
}

struct racer {
	struct eng_rxbuf *b;
	pthread_barrier_t *go;
};

static void *race_put(void *arg)
{
	struct racer *r = arg;
	pthread_barrier_wait(r->go);
	eng_rxbuf_put(r->b);
	return NULL;
}

Test(bufring, starved_ring_wakes_the_owner_and_data_flows_after_reclaim, .timeout = 10)
{
	struct fix f;
	struct eng_rxbuf *held[NBUF];
	fix_init(&f);
	f.br.wake = count_wake;
	f.br.wake_ctx = &f;
	send_pattern(&f, (size_t)NBUF * BUF_SIZE + 7000);
	arm_recv(&f);
	exhaust(&f, held);
	/* what a stream does on -ENOBUFS: flag the ring so returns wake us */
	atomic_store(&f.br.starved, true);

	/* every buffer handed back from its own thread, all at once */
	pthread_barrier_t go;
	pthread_t t[NBUF];
	struct racer r[NBUF];
	pthread_barrier_init(&go, NULL, NBUF);
	for (unsigned i = 0; i < NBUF; i++) {
		r[i] = (struct racer){ held[i], &go };
		cr_assert(zero(int, pthread_create(&t[i], NULL, race_put, &r[i])));
	}
	for (unsigned i = 0; i < NBUF; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&go);

	cr_assert(ge(uint, f.wakes, 1), "a return while starved wakes the owner");
	cr_assert(le(uint, f.wakes, NBUF));
	cr_assert(eq(ptr, f.wake_ctx_seen, &f));
	cr_assert(eq(uint, returned_len(&f.br), NBUF), "no return lost in the race");
	cr_assert(zero(u32, eng_bufring_available(&f.br)), "nothing back before reclaim");

	eng_bufring_reclaim(&f.br);
	atomic_store(&f.br.starved, false);
	cr_assert(eq(u32, eng_bufring_available(&f.br), NBUF));
	arm_recv(&f);
	drain_recycling(&f);
	cr_assert(eq(u64, f.rx_off, f.tx_off), "the bytes left in the socket all arrived");
	fix_fini(&f);
}
