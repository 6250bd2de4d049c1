/* rudp_stream.c - send and receive sides of the stream (see rudp_stream.h). */
#include "rudp_stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void rudp_sendbuf_init(struct rudp_sendbuf *b)
{
	memset(b, 0, sizeof(*b));
	rudp_ranges_init(&b->acked_above, 4096);
	rudp_ranges_init(&b->retx, 0);
}

void rudp_sendbuf_free(struct rudp_sendbuf *b)
{
	for (unsigned i = 0; i < b->nchunks; i++)
		free(b->chunks[i]);
	free(b->chunks);
	rudp_ranges_free(&b->acked_above);
	rudp_ranges_free(&b->retx);
	memset(b, 0, sizeof(*b));
}

static int add_chunk(struct rudp_sendbuf *b)
{
	if (b->nchunks == b->cap) {
		unsigned nc = b->cap ? b->cap * 2 : 16;
		uint8_t **c = realloc(b->chunks, nc * sizeof(*c));
		if (!c)
			return -ENOMEM;
		b->chunks = c;
		b->cap = nc;
	}
	uint8_t *p = malloc(RUDP_CHUNK);
	if (!p)
		return -ENOMEM;
	b->chunks[b->nchunks++] = p;
	return 0;
}

/* Make room for len more bytes at end. */
static int ensure(struct rudp_sendbuf *b, uint32_t len)
{
	uint64_t need = b->end + len;
	while (b->chunk_base + (uint64_t)b->nchunks * RUDP_CHUNK < need)
		if (add_chunk(b) < 0)
			return -ENOMEM;
	return 0;
}

void rudp_sendbuf_write(struct rudp_sendbuf *b, uint64_t off, const void *src, uint32_t len)
{
	const uint8_t *p = src;
	while (len) {
		uint64_t rel = off - b->chunk_base;
		uint32_t in = (uint32_t)(rel % RUDP_CHUNK);
		uint32_t n = RUDP_CHUNK - in < len ? RUDP_CHUNK - in : len;
		memcpy(b->chunks[rel / RUDP_CHUNK] + in, p, n);
		p += n;
		off += n;
		len -= n;
	}
}

int rudp_sendbuf_append(struct rudp_sendbuf *b, const void *p, uint32_t len)
{
	if (ensure(b, len) < 0)
		return -ENOMEM;
	rudp_sendbuf_write(b, b->end, p, len);
	b->end += len;
	return 0;
}

int rudp_sendbuf_reserve(struct rudp_sendbuf *b, uint32_t len, uint64_t *off)
{
	if (ensure(b, len) < 0)
		return -ENOMEM;
	*off = b->end;
	b->end += len;
	return 0;
}

void rudp_sendbuf_copy(const struct rudp_sendbuf *b, uint64_t off, uint32_t len, uint8_t *dst)
{
	while (len) {
		uint64_t rel = off - b->chunk_base;
		uint32_t in = (uint32_t)(rel % RUDP_CHUNK);
		uint32_t n = RUDP_CHUNK - in < len ? RUDP_CHUNK - in : len;
		memcpy(dst, b->chunks[rel / RUDP_CHUNK] + in, n);
		dst += n;
		off += n;
		len -= n;
	}
}

/* Drop retransmit ranges below `acked`, and leading parts already acknowledged. */
static void trim_retx(struct rudp_sendbuf *b)
{
	rudp_ranges_drop_below(&b->retx, b->acked);
	while (!rudp_ranges_empty(&b->retx)) {
		struct rudp_range *r = &b->retx.r[0];
		if (!rudp_ranges_has(&b->acked_above, r->lo))
			return;
		/* skip the acknowledged prefix */
		uint64_t lo = r->lo;
		while (lo <= r->hi && rudp_ranges_has(&b->acked_above, lo)) {
			unsigned i = 0;
			while (i < b->acked_above.n && b->acked_above.r[i].hi < lo)
				i++;
			lo = b->acked_above.r[i].hi + 1;
		}
		if (lo > r->hi)
			rudp_ranges_drop_below(&b->retx, r->hi + 1);
		else
			r->lo = lo;
	}
}

bool rudp_sendbuf_pending(const struct rudp_sendbuf *b, uint64_t limit)
{
	if (!rudp_ranges_empty(&b->retx) && b->retx.r[0].lo < limit)
		return true;
	return b->sent < b->end && b->sent < limit;
}

bool rudp_sendbuf_next(struct rudp_sendbuf *b, uint32_t max, uint64_t limit, uint64_t *off,
		       uint32_t *len, bool *retx)
{
	trim_retx(b);
	if (!rudp_ranges_empty(&b->retx) && b->retx.r[0].lo < limit) {
		struct rudp_range *r = &b->retx.r[0];
		uint64_t n = r->hi - r->lo + 1;
		if (n > max)
			n = max;
		if (r->lo + n > limit)
			n = limit - r->lo;
		*off = r->lo;
		*len = (uint32_t)n;
		*retx = true;
		b->retx_bytes += n;
		rudp_ranges_drop_below(&b->retx, r->lo + n);
		return true;
	}
	uint64_t stop = b->end < limit ? b->end : limit;
	if (b->sent >= stop)
		return false;
	uint64_t n = stop - b->sent;
	*off = b->sent;
	*len = (uint32_t)(n < max ? n : max);
	*retx = false;
	b->sent += *len;
	return true;
}

static void free_acked_chunks(struct rudp_sendbuf *b)
{
	unsigned drop = 0;
	while (drop < b->nchunks && b->chunk_base + (uint64_t)(drop + 1) * RUDP_CHUNK <= b->acked)
		free(b->chunks[drop++]);
	if (!drop)
		return;
	memmove(b->chunks, b->chunks + drop, (b->nchunks - drop) * sizeof(*b->chunks));
	b->nchunks -= drop;
	b->chunk_base += (uint64_t)drop * RUDP_CHUNK;
}

void rudp_sendbuf_on_acked(struct rudp_sendbuf *b, uint64_t off, uint32_t len)
{
	if (!len || off + len <= b->acked)
		return;
	if (off < b->acked) {
		len -= (uint32_t)(b->acked - off);
		off = b->acked;
	}
	if (off > b->acked) {
		rudp_ranges_add(&b->acked_above, off, off + len - 1);
		return;
	}
	b->acked = off + len;
	/* absorb acknowledged ranges that now touch the prefix */
	while (!rudp_ranges_empty(&b->acked_above) && b->acked_above.r[0].lo <= b->acked) {
		if (b->acked_above.r[0].hi + 1 > b->acked)
			b->acked = b->acked_above.r[0].hi + 1;
		rudp_ranges_drop_below(&b->acked_above, b->acked_above.r[0].hi + 1);
	}
	free_acked_chunks(b);
}

void rudp_sendbuf_on_lost(struct rudp_sendbuf *b, uint64_t off, uint32_t len)
{
	if (!len || off + len <= b->acked)
		return;
	if (off < b->acked) {
		len -= (uint32_t)(b->acked - off);
		off = b->acked;
	}
	rudp_ranges_add(&b->retx, off, off + len - 1);
}

void rudp_recvbuf_init(struct rudp_recvbuf *r)
{
	memset(r, 0, sizeof(*r));
}

void rudp_recvbuf_free(struct rudp_recvbuf *r)
{
	struct rudp_seg *s = r->head;
	while (s) {
		struct rudp_seg *n = s->next;
		free(s);
		s = n;
	}
	r->head = r->tail = NULL;
	r->held = 0;
}

/* A copy of len bytes at off (from p), linked in at *pp. */
static int insert_piece(struct rudp_recvbuf *r, struct rudp_seg **pp, uint64_t off,
			const uint8_t *p, uint32_t len)
{
	struct rudp_seg *s = malloc(sizeof(*s) + len);
	if (!s)
		return -ENOMEM;
	s->off = off;
	s->len = len;
	memcpy(s->data, p, len);
	s->next = *pp;
	*pp = s;
	if (!s->next)
		r->tail = s;
	r->held += len;
	return 0;
}

/*
 * Only bytes no held segment has are stored, so segments stay disjoint and
 * what is held never exceeds the flow control window: a peer that repeats
 * data above a gap (or shifts it by a byte) in new packets cannot make us
 * hold it again and again (before this, each copy was kept: unbounded
 * memory, also from the publicly keyed Initial packets of a handshake).
 */
int rudp_recvbuf_hold(struct rudp_recvbuf *r, uint64_t off, const uint8_t *p, uint32_t len)
{
	uint64_t cur = off, end = off + len;
	struct rudp_seg **pp = &r->head;
	/* arrivals are mostly in order: past the tail is the usual place */
	if (r->tail && r->tail->off + r->tail->len <= off)
		pp = &r->tail->next;
	for (; *pp && cur < end; pp = &(*pp)->next) {
		struct rudp_seg *s = *pp;
		if (s->off + s->len <= cur)
			continue;
		if (s->off > cur) {
			uint64_t stop = s->off < end ? s->off : end;
			int err = insert_piece(r, pp, cur, p + (cur - off), (uint32_t)(stop - cur));
			if (err)
				return err;
			pp = &(*pp)->next; /* back at s */
		}
		cur = s->off + s->len;
	}
	if (cur < end)
		return insert_piece(r, pp, cur, p + (cur - off), (uint32_t)(end - cur));
	return 0;
}

struct rudp_seg *rudp_recvbuf_pop(struct rudp_recvbuf *r, uint32_t *skip)
{
	while (r->head) {
		struct rudp_seg *s = r->head;
		if (s->off > r->next)
			return NULL;
		r->head = s->next;
		if (!r->head)
			r->tail = NULL;
		r->held -= s->len;
		if (s->off + s->len <= r->next) {
			free(s); /* a duplicate of what was delivered */
			continue;
		}
		*skip = (uint32_t)(r->next - s->off);
		return s;
	}
	return NULL;
}
