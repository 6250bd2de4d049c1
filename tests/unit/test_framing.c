/*
 * test_framing.c - length-prefixed framing (transports/framing.c), pure:
 * no sockets, no shards.
 *
 * A seeded stream of frames (sizes 0..70000) is fed to the decoder cut
 * every way we can think of - byte by byte, at every single cut point,
 * at every pair of cut points, in random chunks, all in one piece - and
 * must come out as the same messages in the same order. With a receive
 * buffer (b != NULL) each chunk lives in its own fake eng_rxbuf: a frame
 * whose payload lies inside the chunk that completed its header must be
 * a VIEW holding one reference to that buffer, anything else a HEAP
 * copy. The test keeps one reference of its own on every fake buffer so
 * the count never reaches zero (which would recycle into a kernel ring
 * that does not exist); it checks the count rises with each view and
 * falls back to one when the views are freed.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/bytes.h"
#include "transports/framing.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef CRUST_VALGRIND
#include <valgrind/valgrind.h>
#endif
#ifdef HAVE_ASAN
/* from <sanitizer/allocator_interface.h>, which gcc does not install */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define BIG_MAX 70000u

/* ---- a deterministic PRNG (splitmix64) ---- */

static uint64_t rnd_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t rnd_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rnd_next(s) % n);
}

/* ---- the stream under test ---- */

struct stream {
	uint8_t *wire;       /* every frame, back to back */
	size_t wire_len;
	size_t n;            /* frames */
	uint32_t *len;       /* payload length of frame i */
	size_t *off;         /* payload offset of frame i in wire */
};

/* Frames of the given lengths; payload bytes from seed (never all equal). */
static void stream_build(struct stream *st, const uint32_t *lens, size_t n, uint64_t seed)
{
	st->n = n;
	st->len = calloc(n ? n : 1, sizeof(*st->len));
	st->off = calloc(n ? n : 1, sizeof(*st->off));
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += FRAME_HDR_LEN + lens[i];
	st->wire = malloc(total ? total : 1);
	cr_assert(not(eq(ptr, st->len, NULL)));
	cr_assert(not(eq(ptr, st->off, NULL)));
	cr_assert(not(eq(ptr, st->wire, NULL)));
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		eng_put_be32(st->wire + at, lens[i]);
		at += FRAME_HDR_LEN;
		st->len[i] = lens[i];
		st->off[i] = at;
		for (uint32_t k = 0; k < lens[i]; k++)
			st->wire[at + k] = (uint8_t)rnd_next(&seed);
		at += lens[i];
	}
	st->wire_len = total;
}

/* n random frames of 0..max bytes, with 0 and max forced in. */
static void stream_random(struct stream *st, size_t n, uint32_t max, uint64_t seed)
{
	uint32_t *lens = malloc(n * sizeof(*lens));
	cr_assert(not(eq(ptr, lens, NULL)));
	uint64_t s = seed;
	for (size_t i = 0; i < n; i++) {
		switch (rnd_below(&s, 4)) {
		case 0: /* tiny: headers and payloads share chunks */
			lens[i] = rnd_below(&s, 9);
			break;
		default:
			lens[i] = rnd_below(&s, max + 1);
		}
	}
	lens[0] = 0;
	lens[n / 2] = max;
	lens[n - 1] = 0;
	stream_build(st, lens, n, seed ^ 0x5a5a5a5a);
	free(lens);
}

static void stream_free(struct stream *st)
{
	free(st->wire);
	free(st->len);
	free(st->off);
}

/* ---- a fake receive buffer: one per chunk fed ---- */

struct chunk {
	struct eng_rxbuf rb;
	uint8_t *mem;        /* exactly the chunk's bytes (ASan sees any overrun) */
	size_t wire_at;      /* where the chunk starts in the stream */
	uint32_t n;
	unsigned views;      /* views the decoder made into it */
};

static struct eng_bufring fake_ring; /* never recycled into: we always hold a ref */

/* ---- what the sink collected ---- */

struct got {
	struct crust_msg *m;
	struct chunk *in;    /* chunk being fed when the sink saw it */
};

struct run {
	struct got *got;
	size_t ngot, cap;
	struct chunk *cur;
	size_t stop_after;   /* sink returns stop_ret after this many (0 = never) */
	int stop_ret;
};

static int sink(void *ctx, struct crust_msg *m)
{
	struct run *r = ctx;
	if (r->ngot == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 64;
		r->got = realloc(r->got, r->cap * sizeof(*r->got));
		cr_assert(not(eq(ptr, r->got, NULL)));
	}
	r->got[r->ngot].m = m;
	r->got[r->ngot].in = r->cur;
	r->ngot++;
	if (r->stop_after && r->ngot == r->stop_after)
		return r->stop_ret;
	return 0;
}

static void run_free(struct run *r)
{
	for (size_t i = 0; i < r->ngot; i++)
		eng_msg_free(r->got[i].m);
	free(r->got);
	memset(r, 0, sizeof(*r));
}

/* A list of cut points: chunk k is [cuts[k], cuts[k+1]). */
struct cuts {
	size_t *at;
	size_t n;            /* chunks */
};

static void cuts_from_sizes(struct cuts *c, size_t wire_len, uint64_t seed, unsigned mode)
{
	size_t cap = 16, n = 0;
	size_t *at = malloc(cap * sizeof(*at));
	at[0] = 0;
	size_t pos = 0;
	uint64_t s = seed;
	while (pos < wire_len) {
		size_t step;
		switch (mode) {
		case 0: /* anything from 1 byte to a bit more than the largest frame */
			switch (rnd_below(&s, 3)) {
			case 0: step = 1 + rnd_below(&s, 8); break;
			case 1: step = 1 + rnd_below(&s, 4096); break;
			default: step = 1 + rnd_below(&s, BIG_MAX + 100); break;
			}
			break;
		default: /* receive-buffer sized, as a real socket delivers them */
			step = 65536;
		}
		if (step > wire_len - pos)
			step = wire_len - pos;
		pos += step;
		if (n + 2 > cap) {
			cap *= 2;
			at = realloc(at, cap * sizeof(*at));
		}
		at[++n] = pos;
	}
	c->at = at;
	c->n = n;
}

static void cuts_every(struct cuts *c, size_t wire_len, size_t step)
{
	size_t n = (wire_len + step - 1) / step;
	c->at = malloc((n + 1) * sizeof(*c->at));
	for (size_t k = 0; k <= n; k++)
		c->at[k] = k * step < wire_len ? k * step : wire_len;
	c->n = n;
}

/*
 * Feed the stream cut at c, every chunk in its own buffer (with_buf) or
 * with b = NULL (each chunk's bytes are then freed right after the call).
 * Returns the chunks; the messages stay in r.
 */
static struct chunk *feed(const struct stream *st, const struct cuts *c, bool with_buf,
			  struct frame_decoder *d, struct run *r)
{
	struct chunk *ch = calloc(c->n ? c->n : 1, sizeof(*ch));
	cr_assert(not(eq(ptr, ch, NULL)));
	fake_ring.owner = pthread_self();
	for (size_t k = 0; k < c->n; k++) {
		struct chunk *x = &ch[k];
		x->wire_at = c->at[k];
		x->n = (uint32_t)(c->at[k + 1] - c->at[k]);
		x->mem = malloc(x->n ? x->n : 1);
		cr_assert(not(eq(ptr, x->mem, NULL)));
		memcpy(x->mem, st->wire + x->wire_at, x->n);
		atomic_init(&x->rb.refs, 1); /* ours, dropped never */
		x->rb.ring = &fake_ring;
		x->rb.data = x->mem;
		r->cur = x;
		int ret = frame_decode(d, with_buf ? &x->rb : NULL, x->mem, x->n, sink, r);
		cr_assert(zero(int, ret), "chunk %zu: frame_decode returned %d", k, ret);
		if (!with_buf) {
			/* everything was copied: the bytes may go at once (ASan checks) */
			free(x->mem);
			x->mem = NULL;
		}
	}
	return ch;
}

/* The chunk holding wire byte pos. */
static struct chunk *chunk_at(struct chunk *ch, size_t nch, size_t pos)
{
	size_t lo = 0, hi = nch;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (ch[mid].wire_at <= pos)
			lo = mid;
		else
			hi = mid;
	}
	return &ch[lo];
}

/* Everything came out, in order, intact, with the right kind and references. */
static void check_run(const struct stream *st, const struct cuts *c, struct chunk *ch,
		      bool with_buf, struct run *r, const struct frame_decoder *d)
{
	cr_assert(eq(sz, r->ngot, st->n), "messages out");
	cr_assert(not(frame_decoder_mid_frame(d)), "decoder idle at the end of the stream");
	for (size_t i = 0; i < st->n; i++) {
		struct crust_msg *m = r->got[i].m;
		cr_assert(eq(u32, m->len, st->len[i]), "message %zu length", i);
		cr_assert(zero(int, memcmp(m->data, st->wire + st->off[i], m->len)),
			  "message %zu bytes", i);
		/* the header's last byte decides where the frame starts */
		struct chunk *h = chunk_at(ch, c->n, st->off[i] - 1);
		bool fits = st->off[i] + st->len[i] <= h->wire_at + h->n;
		if (with_buf && fits) {
			cr_assert(eq(u8, m->kind, ENG_MSG_VIEW), "message %zu is a view", i);
			cr_assert(eq(ptr, m->rxbuf, (void *)&h->rb), "message %zu views its chunk", i);
			cr_assert(eq(ptr, m->data, h->mem + (st->off[i] - h->wire_at)),
				  "message %zu points at its bytes", i);
			cr_assert(eq(ptr, r->got[i].in, (void *)h), "message %zu out with its chunk", i);
			h->views++;
		} else {
			cr_assert(eq(u8, m->kind, ENG_MSG_HEAP), "message %zu is a copy", i);
			cr_assert(eq(ptr, m->rxbuf, NULL));
			/* a whole message comes out with the chunk holding its last byte */
			const struct chunk *t = chunk_at(ch, c->n, st->off[i] + st->len[i] - 1);
			cr_assert(eq(ptr, r->got[i].in, (void *)t), "message %zu out on time", i);
		}
	}
	for (size_t k = 0; k < c->n; k++)
		cr_assert(eq(u32, atomic_load(&ch[k].rb.refs), 1 + ch[k].views),
			  "chunk %zu: one reference per view", k);
	run_free(r);
	for (size_t k = 0; k < c->n; k++) {
		cr_assert(eq(u32, atomic_load(&ch[k].rb.refs), 1), "chunk %zu: views gave theirs back",
			  k);
		free(ch[k].mem);
	}
	free(ch);
}

static void run_cuts(const struct stream *st, const struct cuts *c, bool with_buf)
{
	struct frame_decoder d;
	struct run r = { 0 };
	frame_decoder_init(&d, BIG_MAX);
	struct chunk *ch = feed(st, c, with_buf, &d, &r);
	check_run(st, c, ch, with_buf, &r, &d);
	frame_decoder_reset(&d);
}

/* ---- tests ---- */

Test(framing, encode_writes_a_big_endian_length_in_the_headroom)
{
	struct crust_msg *m = eng_msg_alloc(0x01020304u); /* every header byte differs */
	cr_assert(not(eq(ptr, m, NULL)));
	frame_encode(m);
	cr_assert(eq(u8, m->hdr_len, FRAME_HDR_LEN));
	uint8_t *h = eng_msg_frame(m);
	cr_assert(eq(ptr, h, m->data - FRAME_HDR_LEN));
	cr_assert(eq(u8, h[0], 0x01));
	cr_assert(eq(u8, h[1], 0x02));
	cr_assert(eq(u8, h[2], 0x03));
	cr_assert(eq(u8, h[3], 0x04));
	cr_assert(eq(u32, eng_msg_frame_len(m), 0x01020304u + FRAME_HDR_LEN));
	eng_msg_free(m);
}

Test(framing, encode_then_decode_round_trips)
{
	static const uint32_t sizes[] = { 0, 1, 3, 4, 5, 255, 256, 4096, 65535, 65536, 70000 };
	uint64_t s = 42;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct crust_msg *m = eng_msg_alloc(sizes[i]);
		cr_assert(not(eq(ptr, m, NULL)));
		for (uint32_t k = 0; k < m->len; k++)
			m->data[k] = (uint8_t)rnd_next(&s);
		frame_encode(m);
		struct frame_decoder d;
		struct run r = { 0 };
		frame_decoder_init(&d, BIG_MAX);
		cr_assert(zero(int, frame_decode(&d, NULL, eng_msg_frame(m), eng_msg_frame_len(m),
						 sink, &r)));
		cr_assert(eq(sz, r.ngot, 1), "size %u", sizes[i]);
		cr_assert(eq(u32, r.got[0].m->len, sizes[i]));
		cr_assert(eq(u8, r.got[0].m->kind, ENG_MSG_HEAP));
		cr_assert(zero(int, memcmp(r.got[0].m->data, m->data, sizes[i])));
		cr_assert(not(frame_decoder_mid_frame(&d)));
		run_free(&r);
		eng_msg_free(m);
	}
}

Test(framing, random_stream_byte_by_byte)
{
	struct stream st;
	stream_random(&st, 40, BIG_MAX, 1);
	struct cuts c;
	cuts_every(&c, st.wire_len, 1);
	run_cuts(&st, &c, false);
	free(c.at);
	stream_free(&st);
}

Test(framing, random_stream_byte_by_byte_in_buffers)
{
	/* smaller: each byte is its own fake buffer */
	struct stream st;
	stream_random(&st, 40, 3000, 2);
	struct cuts c;
	cuts_every(&c, st.wire_len, 1);
	run_cuts(&st, &c, true);
	free(c.at);
	stream_free(&st);
}

Test(framing, random_stream_in_random_chunks)
{
	for (uint64_t seed = 1; seed <= 24; seed++) {
		struct stream st;
		stream_random(&st, 150, BIG_MAX, 100 + seed);
		struct cuts c;
		cuts_from_sizes(&c, st.wire_len, seed, 0);
		run_cuts(&st, &c, seed & 1);
		free(c.at);
		stream_free(&st);
	}
}

Test(framing, random_stream_in_receive_buffer_sized_chunks)
{
	for (int with_buf = 0; with_buf < 2; with_buf++) {
		struct stream st;
		stream_random(&st, 300, BIG_MAX, 7);
		struct cuts c;
		cuts_from_sizes(&c, st.wire_len, 0, 1);
		run_cuts(&st, &c, with_buf);
		free(c.at);
		stream_free(&st);
	}
}

Test(framing, random_stream_coalesced_in_one_buffer)
{
	for (int with_buf = 0; with_buf < 2; with_buf++) {
		struct stream st;
		stream_random(&st, 300, BIG_MAX, 9);
		struct cuts c = { .at = (size_t[]){ 0, st.wire_len }, .n = 1 };
		run_cuts(&st, &c, with_buf);
		stream_free(&st);
	}
}

/* Small frames of every awkward size: every single cut point, every pair. */
static const uint32_t small_lens[] = { 0, 1, 0, 2, 3, 4, 0, 5, 9, 0 };

Test(framing, every_single_cut_point)
{
	struct stream st;
	stream_build(&st, small_lens, sizeof(small_lens) / sizeof(small_lens[0]), 11);
	for (int with_buf = 0; with_buf < 2; with_buf++) {
		for (size_t i = 0; i <= st.wire_len; i++) {
			/* a cut at 0 or at the end makes an empty chunk: fed as such */
			struct cuts c = { .at = (size_t[]){ 0, i, st.wire_len }, .n = 2 };
			run_cuts(&st, &c, with_buf);
		}
	}
	stream_free(&st);
}

Test(framing, every_pair_of_cut_points)
{
	struct stream st;
	stream_build(&st, small_lens, sizeof(small_lens) / sizeof(small_lens[0]), 12);
	for (int with_buf = 0; with_buf < 2; with_buf++)
		for (size_t i = 1; i < st.wire_len; i++)
			for (size_t j = i + 1; j < st.wire_len; j++) {
				struct cuts c = { .at = (size_t[]){ 0, i, j, st.wire_len }, .n = 3 };
				run_cuts(&st, &c, with_buf);
			}
	stream_free(&st);
}

Test(framing, every_split_pattern_of_a_short_stream)
{
	/* 3 frames, 19 wire bytes: all 2^18 ways to cut between bytes */
	static const uint32_t lens[] = { 2, 0, 5 };
	struct stream st;
	stream_build(&st, lens, 3, 13);
	cr_assert(eq(sz, st.wire_len, 19));
	size_t gaps = st.wire_len - 1;
	size_t at[20];
	for (uint32_t pat = 0; pat < (1u << gaps); pat++) {
		size_t n = 0;
		at[0] = 0;
		for (size_t g = 0; g < gaps; g++)
			if (pat & (1u << g))
				at[++n] = g + 1;
		at[++n] = st.wire_len;
		struct cuts c = { .at = at, .n = n };
		run_cuts(&st, &c, pat & 1);
	}
	stream_free(&st);
}

Test(framing, zero_length_frames_become_empty_messages)
{
	uint8_t wire[10 * FRAME_HDR_LEN] = { 0 };
	for (int with_buf = 0; with_buf < 2; with_buf++) {
		struct frame_decoder d;
		struct run r = { 0 };
		struct chunk ch = { .mem = wire, .n = sizeof(wire) };
		atomic_init(&ch.rb.refs, 1);
		ch.rb.ring = &fake_ring;
		ch.rb.data = wire;
		fake_ring.owner = pthread_self();
		frame_decoder_init(&d, 100);
		r.cur = &ch;
		cr_assert(zero(int, frame_decode(&d, with_buf ? &ch.rb : NULL, wire, sizeof(wire),
						 sink, &r)));
		cr_assert(eq(sz, r.ngot, 10));
		for (size_t i = 0; i < r.ngot; i++)
			cr_assert(zero(u32, r.got[i].m->len));
		cr_assert(eq(u32, atomic_load(&ch.rb.refs), with_buf ? 11 : 1));
		cr_assert(not(frame_decoder_mid_frame(&d)));
		run_free(&r);
		cr_assert(eq(u32, atomic_load(&ch.rb.refs), 1));
	}
}

Test(framing, length_above_max_is_emsgsize)
{
	uint8_t wire[2 * FRAME_HDR_LEN + 1000 + 8];
	memset(wire, 0xab, sizeof(wire));
	/* one good frame of exactly max_len, then a header of max_len + 1 */
	eng_put_be32(wire, 1000);
	eng_put_be32(wire + FRAME_HDR_LEN + 1000, 1001);
	struct frame_decoder d;
	struct run r = { 0 };
	frame_decoder_init(&d, 1000);
	int ret = frame_decode(&d, NULL, wire, sizeof(wire), sink, &r);
	cr_assert(eq(int, ret, -EMSGSIZE));
	cr_assert(eq(sz, r.ngot, 1), "the frame before the bad header was delivered");
	cr_assert(eq(u32, r.got[0].m->len, 1000));
	run_free(&r);
	frame_decoder_reset(&d);

	/* the bad header split over calls: the call that completes it fails */
	frame_decoder_init(&d, 1000);
	uint8_t hdr[FRAME_HDR_LEN];
	eng_put_be32(hdr, 0xffffffffu);
	cr_assert(zero(int, frame_decode(&d, NULL, hdr, 3, sink, &r)));
	cr_assert(eq(int, frame_decode(&d, NULL, hdr + 3, 1, sink, &r), -EMSGSIZE));
	cr_assert(zero(sz, r.ngot));
	frame_decoder_reset(&d);
}

Test(framing, mid_frame_is_true_exactly_inside_a_frame)
{
	struct frame_decoder d;
	struct run r = { 0 };
	frame_decoder_init(&d, 100);
	cr_assert(not(frame_decoder_mid_frame(&d)), "fresh");
	uint8_t wire[FRAME_HDR_LEN + 10 + FRAME_HDR_LEN];
	eng_put_be32(wire, 10);
	for (int i = 0; i < 10; i++)
		wire[FRAME_HDR_LEN + i] = (uint8_t)i;
	eng_put_be32(wire + FRAME_HDR_LEN + 10, 0);
	/* header byte by byte, payload byte by byte */
	for (size_t i = 0; i < FRAME_HDR_LEN + 10; i++) {
		cr_assert(zero(int, frame_decode(&d, NULL, wire + i, 1, sink, &r)));
		bool last = i == FRAME_HDR_LEN + 10 - 1;
		cr_assert(eq(int, frame_decoder_mid_frame(&d), !last), "after byte %zu", i);
		cr_assert(eq(sz, r.ngot, last ? 1 : 0));
	}
	/* an empty frame: inside while its header is incomplete, done when it is */
	for (size_t i = 0; i < FRAME_HDR_LEN; i++) {
		cr_assert(zero(int, frame_decode(&d, NULL, wire + FRAME_HDR_LEN + 10 + i, 1, sink,
						 &r)));
		cr_assert(eq(int, frame_decoder_mid_frame(&d), i < FRAME_HDR_LEN - 1));
	}
	cr_assert(eq(sz, r.ngot, 2));
	cr_assert(zero(int, memcmp(r.got[0].m->data, wire + FRAME_HDR_LEN, 10)));
	/* a whole frame in one call leaves nothing in progress */
	cr_assert(zero(int, frame_decode(&d, NULL, wire, FRAME_HDR_LEN + 10, sink, &r)));
	cr_assert(not(frame_decoder_mid_frame(&d)));
	/* ... and a frame and a half leaves one */
	cr_assert(zero(int, frame_decode(&d, NULL, wire, FRAME_HDR_LEN + 10 + 2, sink, &r)));
	cr_assert(frame_decoder_mid_frame(&d));
	cr_assert(eq(sz, r.ngot, 4));
	frame_decoder_reset(&d);
	cr_assert(not(frame_decoder_mid_frame(&d)));
	run_free(&r);
}

/* Bytes the allocator holds for the program now. */
static size_t heap_in_use(void)
{
#ifdef HAVE_ASAN
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
#endif
}

Test(framing, reset_frees_a_partial_and_starts_clean)
{
	enum { LEN = 1 << 20 };
#ifdef CRUST_VALGRIND
	/* valgrind replaces malloc: mallinfo2 sees none of it (make test and make asan check this) */
	if (RUNNING_ON_VALGRIND)
		cr_skip_test("heap accounting does not work under valgrind");
#endif
	uint8_t *wire = calloc(1, FRAME_HDR_LEN + LEN);
	cr_assert(not(eq(ptr, wire, NULL)));
	eng_put_be32(wire, LEN);
	struct frame_decoder d;
	struct run r = { 0 };
	frame_decoder_init(&d, LEN);

	size_t before = heap_in_use();
	int ret = frame_decode(&d, NULL, wire, FRAME_HDR_LEN + LEN / 2, sink, &r);
	size_t during = heap_in_use();
	bool mid = frame_decoder_mid_frame(&d);
	frame_decoder_reset(&d);
	size_t after = heap_in_use();

	cr_assert(zero(int, ret));
	cr_assert(mid, "half a frame is in progress");
	cr_assert(zero(sz, r.ngot));
	/* the reassembly grows with what arrived (half the frame), not with the header's claim */
	cr_assert(ge(sz, during, before + LEN / 2), "the partial was allocated");
	cr_assert(le(sz, after + LEN / 2, during), "reset gave the partial back");
	cr_assert(not(frame_decoder_mid_frame(&d)));
	cr_assert(eq(ptr, d.partial, NULL));

	/* reset in the middle of a header too: the next frame decodes from scratch */
	uint8_t small[FRAME_HDR_LEN + 3] = { 0, 0, 0, 3, 'a', 'b', 'c' };
	cr_assert(zero(int, frame_decode(&d, NULL, small, 2, sink, &r)));
	cr_assert(frame_decoder_mid_frame(&d));
	frame_decoder_reset(&d);
	cr_assert(zero(int, frame_decode(&d, NULL, small, sizeof(small), sink, &r)));
	cr_assert(eq(sz, r.ngot, 1));
	cr_assert(eq(u32, r.got[0].m->len, 3));
	cr_assert(zero(int, memcmp(r.got[0].m->data, "abc", 3)));
	run_free(&r);
	frame_decoder_reset(&d); /* nothing in progress: harmless */
	free(wire);
}

Test(framing, a_huge_announced_frame_costs_only_what_arrived)
{
	enum { CLAIM = 16 << 20 };
	uint8_t wire[FRAME_HDR_LEN + 10] = { 0 };
	eng_put_be32(wire, CLAIM);
	struct frame_decoder d;
	struct run r = { 0 };
	frame_decoder_init(&d, CLAIM);
	size_t before = heap_in_use();
	cr_assert(zero(int, frame_decode(&d, NULL, wire, sizeof(wire), sink, &r)));
	size_t during = heap_in_use();
	cr_assert(frame_decoder_mid_frame(&d));
	cr_assert(lt(sz, during, before + (1 << 20)), "a stalled 16 MiB claim must not cost 16 MiB");
	frame_decoder_reset(&d);
}

Test(framing, sink_can_stop_decoding)
{
	uint8_t wire[3 * (FRAME_HDR_LEN + 2)];
	for (int i = 0; i < 3; i++) {
		eng_put_be32(wire + i * (FRAME_HDR_LEN + 2), 2);
		wire[i * (FRAME_HDR_LEN + 2) + FRAME_HDR_LEN] = (uint8_t)i;
		wire[i * (FRAME_HDR_LEN + 2) + FRAME_HDR_LEN + 1] = (uint8_t)i;
	}
	struct frame_decoder d;
	struct run r = { .stop_after = 2, .stop_ret = 7 };
	frame_decoder_init(&d, 100);
	cr_assert(eq(int, frame_decode(&d, NULL, wire, sizeof(wire), sink, &r), 7));
	cr_assert(eq(sz, r.ngot, 2), "nothing after the stop");
	cr_assert(eq(u8, r.got[1].m->data[0], 1));
	run_free(&r);
	frame_decoder_reset(&d);
}
