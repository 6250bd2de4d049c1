/*
 * fuzz_rudp_recv.c - what a reliable-UDP connection does with the frames of
 * an opened packet, on the real units it uses: ACK frames into loss
 * recovery (transports/rudp_recovery.c, with packets in flight), packet
 * numbers into the received set (rudp_ranges.c), STREAM frames through
 * the out-of-order buffer (rudp_stream.c) into the frame decoder.
 * The dispatch mirrors process_frames/on_stream in rudp_conn.c, which
 * needs a shard and sockets; the packet protection is not fuzzed here
 * (an AEAD tag cannot be guessed).
 * Input: u8 packets sent | then packets, each u8 length | u32 truncated
 * packet number | that many bytes of frames.
 */
#include "fuzz.h"

#include <errno.h>
#include <string.h>

#include "transports/framing.h"
#include "transports/rudp_recovery.h"
#include "transports/rudp_stream.h"

#define MSS 1200u
#define WINDOW (256u * 1024u)

struct conn {
	struct rudp_cc cc;
	struct rudp_recovery rec;
	struct rudp_ranges rx_pns;
	struct rudp_recvbuf rb;
	struct frame_decoder dec;
	uint64_t largest_rx;      /* UINT64_MAX: none */
	uint64_t acked, lost, sent_bytes;
	bool closed;
};

static void on_acked(void *ctx, const struct rudp_sent_pkt *p)
{
	struct conn *c = ctx;
	FUZZ_CHECK(p->pn < c->rec.next_pn);
	c->acked++;
}

static void on_lost(void *ctx, const struct rudp_sent_pkt *p)
{
	struct conn *c = ctx;
	FUZZ_CHECK(p->pn < c->rec.next_pn);
	c->lost++;
}

static const struct rudp_rec_ops ops = { on_acked, on_lost };

static int sink(void *ctx, struct crust_msg *m)
{
	(void)ctx;
	eng_msg_free(m);
	return 0;
}

static void deliver(struct conn *c, uint8_t *p, uint32_t n)
{
	c->rb.next += n;
	int err = frame_decode(&c->dec, NULL, p, n, sink, c);
	FUZZ_CHECK(err == 0 || err == -EMSGSIZE);
	c->closed |= err != 0;
}

static void on_stream(struct conn *c, const struct rudp_stream_frame *f)
{
	uint64_t end = f->off + f->len;
	if (end <= c->rb.next)
		return;
	if (end > c->rb.next + WINDOW) {
		c->closed = true; /* beyond flow control */
		return;
	}
	if (f->off > c->rb.next) {
		FUZZ_CHECK(rudp_recvbuf_hold(&c->rb, f->off, f->data, f->len) == 0);
		return;
	}
	uint32_t skip = (uint32_t)(c->rb.next - f->off);
	deliver(c, (uint8_t *)f->data + skip, f->len - skip);
	struct rudp_seg *s;
	while (!c->closed && (s = rudp_recvbuf_pop(&c->rb, &skip))) {
		FUZZ_CHECK(skip < s->len);
		deliver(c, s->data + skip, s->len - skip);
		free(s);
	}
}

static void frames(struct conn *c, const uint8_t *p, const uint8_t *end, uint64_t now)
{
	while (p < end && !c->closed) {
		const uint8_t *next = NULL;
		struct rudp_ack a;
		struct rudp_stream_frame f;
		uint64_t v;
		switch (*p) {
		case RUDP_FR_ACK:
			next = rudp_parse_ack(p, end, &a);
			if (next) {
				int ret = rudp_rec_on_ack(&c->rec, &a, now);
				FUZZ_CHECK(ret == 0 || ret == -EPROTO);
				FUZZ_CHECK(ret < 0 || a.r[0].hi < c->rec.next_pn);
				c->closed |= ret < 0;
			}
			break;
		case RUDP_FR_STREAM:
			next = rudp_parse_stream(p, end, &f);
			if (next)
				on_stream(c, &f);
			break;
		default:
			next = rudp_skip_frame(p, end);
			(void)v;
		}
		if (!next)
			c->closed = true;
		p = next;
	}
}

/* Held segments: sorted, disjoint, above the in-order point, at most a window in all. */
static void check_held(const struct conn *c)
{
	uint64_t sum = 0, prev_end = c->rb.next;
	const struct rudp_seg *last = NULL;
	for (const struct rudp_seg *s = c->rb.head; s; s = s->next) {
		FUZZ_CHECK(s->len > 0 && s->off >= prev_end);
		prev_end = s->off + s->len;
		sum += s->len;
		last = s;
	}
	FUZZ_CHECK(last == c->rb.tail);
	FUZZ_CHECK(sum == c->rb.held && sum <= WINDOW);
}

static void send_some(struct conn *c, unsigned n, uint64_t now)
{
	for (unsigned i = 0; i < n; i++) {
		struct rudp_sent_pkt *p = rudp_rec_next(&c->rec);
		FUZZ_CHECK(p);
		p->size = MSS;
		p->flags = RUDP_PKT_ACK_ELICITING | RUDP_PKT_IN_FLIGHT;
		if (i % 7 == 3)
			p->flags |= RUDP_PKT_MTU_PROBE;
		rudp_rec_on_sent(&c->rec, p, now + i);
		c->sent_bytes += MSS;
	}
}

void fuzz_rudp_recv(const uint8_t *data, size_t size)
{
	static struct conn c;
	if (size < 1)
		return;
	memset(&c, 0, sizeof(c));
	uint64_t now = 1000000;
	rudp_cc_init(&c.cc, (data[0] & 0x80) ? &rudp_cc_bbr : &rudp_cc_cubic, MSS, now);
	FUZZ_CHECK(rudp_rec_init(&c.rec, &c.cc, &ops, &c, 25000) == 0);
	rudp_ranges_init(&c.rx_pns, RUDP_MAX_ACK_RANGES);
	rudp_recvbuf_init(&c.rb);
	frame_decoder_init(&c.dec, 4096);
	c.largest_rx = UINT64_MAX;
	send_some(&c, data[0] & 0x7f, now);
	const uint8_t *p = data + 1, *end = data + size;
	while (end - p >= 5 && !c.closed) {
		uint32_t n = p[0], trunc = eng_get_be32(p + 1);
		p += 5;
		if (n > (uint32_t)(end - p))
			n = (uint32_t)(end - p);
		now += 3000;
		uint64_t pn = c.largest_rx == UINT64_MAX ? trunc : rudp_decode_pn(c.largest_rx, trunc);
		/* as is_duplicate in rudp_conn.c: below every range still tracked is a replay */
		bool dup = rudp_ranges_has(&c.rx_pns, pn) ||
			   (c.rx_pns.n == RUDP_MAX_ACK_RANGES && pn < c.rx_pns.r[0].lo);
		if (!dup) {
			frames(&c, p, p + n, now);
			FUZZ_CHECK(rudp_ranges_add(&c.rx_pns, pn, pn) >= 0);
			FUZZ_CHECK(rudp_ranges_has(&c.rx_pns, pn));
			if (c.largest_rx == UINT64_MAX || pn > c.largest_rx)
				c.largest_rx = pn;
			send_some(&c, 2, now);
		}
		p += n;
		if (!c.closed)
			check_held(&c);
		FUZZ_CHECK(c.rec.bytes_in_flight <= c.sent_bytes);
		FUZZ_CHECK(c.rec.head_pn <= c.rec.next_pn);
	}
	for (int i = 0; i < 4; i++) {
		uint64_t d = rudp_rec_deadline(&c.rec);
		if (!d)
			break;
		rudp_rec_on_timeout(&c.rec, d > now ? d : now);
	}
	FUZZ_CHECK(c.acked + c.lost <= c.rec.next_pn * 2);
	rudp_ranges_free(&c.rx_pns);
	rudp_recvbuf_free(&c.rb);
	frame_decoder_reset(&c.dec);
	rudp_rec_free(&c.rec);
}
