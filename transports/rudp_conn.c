/*
 * rudp_conn.c - one reliable-UDP connection: packets in (open, frames,
 * stream reassembly), packets out (ACKs, stream data, probes, paced into
 * GSO batches), and its one timer (loss/PTO, delayed ACK, pacing, idle,
 * keepalive, path MTU probes, connect deadline).
 *
 * Send path: messages queue by priority (eng_txq) and move into the
 * stream (rudp_stream.c) while it holds less than a few windows; once a
 * sealer is set they are grouped into records whose header the sealer
 * writes (header-only: the packets are what is encrypted). Packets carry
 * stream ranges; a lost packet's ranges go out again in new packets.
 *
 * One flush at a time per connection keeps packets large: while a send
 * is in flight, new messages only queue; its completion flushes again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "engine/arena.h"
#include "rudp.h"

#define MAX_GSO_SEGS 64u
#define SNDBUF_MIN (4u << 20)
#define RECORD_MAX ENG_ARENA_CHUNK  /* small messages per record (what TCP's receivers accept) */
#define PACE_BURST_US 2000u
#define ACK_EVERY_BULK 8u
#define ACK_BULK_AFTER 100u

static void rec_acked(void *ctx, const struct rudp_sent_pkt *p);
static void rec_lost(void *ctx, const struct rudp_sent_pkt *p);
static const struct rudp_rec_ops rec_ops = { .acked = rec_acked, .lost = rec_lost };
static void timer_cb(struct eng_timer *t, void *ctx);
static void arm_timer(struct rudp_conn *c, uint64_t now);

static void count(_Atomic uint64_t *ctr, uint64_t n)
{
	atomic_fetch_add_explicit(ctr, n, memory_order_relaxed);
}

static uint64_t random_cid(unsigned shard)
{
	uint64_t v;
	randombytes_buf(&v, sizeof(v));
	/* the first byte names the owning shard (see rudp.h) */
	return (v & 0x00ffffffffffffffull) | (uint64_t)(shard & 0xff) << 56;
}

static void set_reason(struct rudp_conn *c, const char *reason)
{
	if (!c->reason[0] && reason)
		snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

struct rudp_conn *rudp_conn_new(struct rudp_shard *rs, struct rudp_sock *sock, bool client,
				uint64_t odcid)
{
	struct rudp_transport *rt = rs->rt;
	struct rudp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->base.t = &rt->base;
	c->base.sh = rs->sh;
	c->rs = rs;
	c->sock = sock;
	c->is_client = client;
	c->validated = client;
	c->cid = random_cid(rs->sh->id);
	c->odcid = client ? random_cid(rs->sh->id) : odcid;
	c->largest_rx_pn = UINT64_MAX;
	c->mtu = RUDP_BASE_MTU;
	c->probe_lo = RUDP_BASE_MTU;
	c->probe_hi = RUDP_MAX_MTU;
	c->rx_window = RUDP_INITIAL_WINDOW;
	c->local_max_data = c->peer_max_data = RUDP_INITIAL_WINDOW;
	uint64_t now = rudp_now_us();
	c->last_rx_us = c->last_tx_us = c->pace_last_us = now;
	rudp_cc_init(&c->cc, rt->cc, c->mtu, now);
	rudp_ranges_init(&c->rx_pns, RUDP_MAX_ACK_RANGES);
	rudp_sendbuf_init(&c->sb);
	rudp_recvbuf_init(&c->rb);
	frame_decoder_init(&c->dec, rt->base.limits.max_msg_size);
	eng_timer_init(&c->timer, timer_cb, c);
	uint8_t c2s[32], s2c[32];
	rudp_initial_secrets(c->odcid, c2s, s2c);
	int err = rudp_rec_init(&c->rec, &c->cc, &rec_ops, c, RUDP_MAX_ACK_DELAY_US);
	if (!err)
		err = rudp_aead_init(&c->init_tx, true, true, client ? c2s : s2c);
	if (!err)
		err = rudp_aead_init(&c->init_rx, true, false, client ? s2c : c2s);
	sodium_memzero(c2s, sizeof(c2s));
	sodium_memzero(s2c, sizeof(s2c));
	if (err || rudp_cid_add(rs, c->cid, c) < 0) {
		rudp_rec_free(&c->rec);
		rudp_aead_free(&c->init_tx);
		rudp_aead_free(&c->init_rx);
		free(c);
		return NULL;
	}
	c->next = rs->conns;
	if (rs->conns)
		rs->conns->prev = c;
	rs->conns = c;
	rudp_sock_hold(sock);
	rs->sh->live++;
	return c;
}

/* ---- sending: messages into the stream ---- */

/* Seal the open record: the sealer writes its header into the reserved bytes. */
static void close_record(struct rudp_conn *c)
{
	if (!c->rec_open)
		return;
	c->rec_open = false;
	uint32_t hr = c->sealer->hdr_room;
	uint8_t hdr[64];
	uint64_t body = c->sb.end - c->rec_hdr_off - hr;
	if (c->sealer->seal(c->sealer->ctx, hdr, (uint32_t)body) < 0) {
		rudp_conn_close(c, -EOVERFLOW, "record too large", true);
		return;
	}
	rudp_sendbuf_write(&c->sb, c->rec_hdr_off, hdr, hr);
}

static int append_msg(struct rudp_conn *c, struct crust_msg *m)
{
	frame_encode(m);
	uint32_t flen = eng_msg_frame_len(m);
	if ((m->flags & ENG_MSG_RAW) || !c->sealer) {
		close_record(c);
		return rudp_sendbuf_append(&c->sb, eng_msg_frame(m), flen);
	}
	if (c->rec_open && c->sb.end - c->rec_hdr_off + flen > RECORD_MAX)
		close_record(c);
	if (!c->rec_open) {
		if (rudp_sendbuf_reserve(&c->sb, c->sealer->hdr_room, &c->rec_hdr_off) < 0)
			return -ENOMEM;
		c->rec_open = true;
	}
	return rudp_sendbuf_append(&c->sb, eng_msg_frame(m), flen);
}

static uint64_t sndbuf_limit(const struct rudp_conn *c)
{
	uint64_t w = 2 * c->cc.cwnd;
	return w > SNDBUF_MIN ? w : SNDBUF_MIN;
}

/* Move queued messages into the stream while it holds less than its limit. */
static void pull_messages(struct rudp_conn *c)
{
	struct transport *t = c->base.t;
	struct crust_msg *m;
	while (c->state != RS_CLOSED && rudp_sendbuf_held(&c->sb) < sndbuf_limit(c) &&
	       (m = eng_txq_pop(&c->txq))) {
		int err = append_msg(c, m);
		t->cb->msg_done(t->cb_ctx, &c->base, m, err);
	}
	close_record(c);
}

int rudp_conn_send_msg(struct rudp_conn *c, struct crust_msg *m)
{
	if (c->state == RS_CLOSED || c->shutdown_req)
		return -ENOTCONN;
	if (m->kind != ENG_MSG_HEAP)
		return -EINVAL;
	if (m->len > c->dec.max_len)
		return -EMSGSIZE;
	if (c->sealer && !(m->flags & ENG_MSG_RAW) && c->sealer->hdr_room > 64)
		return -EINVAL;
	int err = eng_txq_push(&c->txq, m);
	if (err)
		return err;
	if (c->state == RS_OPEN && !c->inflight_tx)
		rudp_conn_flush(c);
	return 0;
}

void rudp_conn_set_sealer(struct rudp_conn *c, const struct eng_sealer *s)
{
	if (s && !s->header_only) {
		rudp_conn_close(c, -EPROTO, "record sealing needs packet protection over rudp", true);
		return;
	}
	close_record(c);
	c->sealer = s;
}

int rudp_conn_set_keys(struct rudp_conn *c, const struct tp_packet_keys *k)
{
	if (c->have_pkt_keys)
		return -EALREADY;
	int err = rudp_aead_init(&c->pkt_tx, k->aes, true, k->tx);
	if (!err)
		err = rudp_aead_init(&c->pkt_rx, k->aes, false, k->rx);
	if (err) {
		/* the connection frees its keys only once it has them: free a half installed pair
		 * here (leaked its sending contexts; found by fault injection) */
		rudp_aead_free(&c->pkt_tx);
		return err;
	}
	c->have_pkt_keys = true;
	/* what the handshake queued so far still goes in long packets: the peer may lack keys */
	pull_messages(c);
	c->long_until = c->sb.end;
	/*
	 * A client sends long packets until it sees a short one, and long packets carry
	 * nothing queued after the keys. When the server is the side that got its keys
	 * first (a birthday punch dials from the symmetric side, whatever the handshake
	 * roles), it may have nothing more to send: a PING in a short packet, resent until
	 * acknowledged, tells the client it may switch.
	 */
	c->announce_keys = true;
	if (c->counted_pending) {
		c->rs->pending_hs--;
		c->counted_pending = false;
	}
	return 0;
}

/* ---- receiving ---- */

static int sink(void *ctx, struct crust_msg *m)
{
	struct rudp_conn *c = ctx;
	struct transport *t = c->base.t;
	bool had_keys = c->have_pkt_keys;
	c->rx_frame_off += FRAME_HDR_LEN + m->len;
	if (m->kind == ENG_MSG_HEAP)
		eng_msg_charge_rx(m, &c->base.sh->rx);
	t->cb->received(t->cb_ctx, &c->base, m);
	if (c->state == RS_CLOSED)
		return 1;
	/* keys arrived inside a long packet: nothing after this frame may come unprotected */
	if (c->cur_long && !had_keys && c->have_pkt_keys)
		return 2;
	return 0;
}

static void deliver(struct rudp_conn *c, struct eng_rxbuf *b, uint8_t *p, uint32_t n)
{
	c->rb.next += n;
	int err = frame_decode(&c->dec, b, p, n, sink, c);
	if (err == 2) {
		c->rb.next = c->rx_frame_off;
		frame_decoder_reset(&c->dec);
		rudp_recvbuf_free(&c->rb);
		return;
	}
	if (err < 0) {
		char why[CRUST_REASON_LEN];
		if (err == -EMSGSIZE)
			snprintf(why, sizeof(why), "frame length above the maximum (%u bytes)",
				 c->dec.max_len);
		else
			snprintf(why, sizeof(why), "receive failed: %s", strerror(-err));
		rudp_conn_close(c, err, why, true);
	}
}

/* Flow control: advertise more once half the window is used; grow it when used quickly. */
static void update_window(struct rudp_conn *c, uint64_t now)
{
	if (c->rb.next + c->rx_window / 2 < c->local_max_data)
		return;
	uint64_t rtt = c->rec.srtt_us;
	if (c->window_update_us && now - c->window_update_us < 4 * rtt &&
	    c->rx_window < RUDP_MAX_WINDOW)
		c->rx_window *= 2;
	c->window_update_us = now;
	c->local_max_data = c->rb.next + c->rx_window;
	c->send_max_data = true;
}

static void on_stream(struct rudp_conn *c, const struct rudp_stream_frame *f, struct eng_rxbuf *b,
		      uint64_t now)
{
	uint64_t end = f->off + f->len;
	if (end <= c->rb.next)
		return;
	if (end > c->local_max_data) {
		rudp_conn_close(c, -EPROTO, "peer sent beyond the flow control window", true);
		return;
	}
	if (f->off > c->rb.next) {
		if (rudp_recvbuf_hold(&c->rb, f->off, f->data, f->len) < 0)
			rudp_conn_close(c, -ENOMEM, "out of memory", true);
		return;
	}
	uint32_t skip = (uint32_t)(c->rb.next - f->off);
	deliver(c, b, (uint8_t *)f->data + skip, f->len - skip);
	struct rudp_seg *s;
	while (c->state != RS_CLOSED && (s = rudp_recvbuf_pop(&c->rb, &skip))) {
		deliver(c, NULL, s->data + skip, s->len - skip);
		free(s);
	}
	if (c->state != RS_CLOSED)
		update_window(c, now);
}

static void on_close_frame(struct rudp_conn *c, const struct rudp_close_frame *f)
{
	char why[CRUST_REASON_LEN];
	if (f->code == 0) {
		rudp_conn_close(c, 0, "closed by peer", false);
		return;
	}
	snprintf(why, sizeof(why), "closed by peer: %.*s", (int)f->reason_len, f->reason);
	rudp_conn_close(c, -ECONNRESET, why, false);
}

/* Walk the frames of an opened packet; false if one is malformed (the connection ends). */
static bool process_frames(struct rudp_conn *c, const uint8_t *p, const uint8_t *end,
			   struct eng_rxbuf *b, uint64_t now, bool *eliciting)
{
	while (p < end && c->state != RS_CLOSED) {
		uint8_t type = *p;
		const uint8_t *next = NULL;
		if (type == RUDP_FR_PADDING) {
			while (p < end && *p == RUDP_FR_PADDING)
				p++;
			continue;
		}
		if (type == RUDP_FR_ACK) {
			struct rudp_ack a;
			next = rudp_parse_ack(p, end, &a);
			if (next && rudp_rec_on_ack(&c->rec, &a, now) < 0) {
				rudp_conn_close(c, -EPROTO, "peer acknowledged a packet never sent", true);
				return false;
			}
		} else if (type == RUDP_FR_STREAM) {
			struct rudp_stream_frame f;
			next = rudp_parse_stream(p, end, &f);
			*eliciting = true;
			if (next)
				on_stream(c, &f, b, now);
		} else if (type == RUDP_FR_MAX_DATA) {
			uint64_t v;
			next = rudp_get_varint(p + 1, end, &v);
			*eliciting = true;
			if (next && v > c->peer_max_data)
				c->peer_max_data = v;
		} else if (type == RUDP_FR_PING) {
			next = p + 1;
			*eliciting = true;
		} else if (type == RUDP_FR_CLOSE) {
			struct rudp_close_frame f;
			next = rudp_parse_close(p, end, &f);
			if (next)
				on_close_frame(c, &f);
		}
		if (!next) {
			rudp_conn_close(c, -EPROTO, "malformed frame", true);
			return false;
		}
		p = next;
	}
	return true;
}

static struct rudp_aead *rx_keys(struct rudp_conn *c, const struct rudp_hdr *h)
{
	if (h->type == RUDP_PKT_SHORT)
		return c->have_pkt_keys ? &c->pkt_rx : NULL;
	/*
	 * Long packets are publicly keyed: once the peer is seen using the new
	 * keys they could only be forged, so they are ignored. Not before: the
	 * dialer has its keys a round trip before the acceptor, and until then
	 * the acceptor's ACKs and handshake data can only come long (ignoring
	 * them left the dialer resending acknowledged data while its last
	 * handshake message was never resent).
	 */
	return c->have_pkt_keys && c->peer_short_seen ? NULL : &c->init_rx;
}

static uint64_t ack_delay_us(const struct rudp_conn *c)
{
	uint64_t d = c->rec.have_rtt ? c->rec.srtt_us / 4 : RUDP_MAX_ACK_DELAY_US;
	return d < RUDP_MAX_ACK_DELAY_US ? d : RUDP_MAX_ACK_DELAY_US;
}

static void note_received(struct rudp_conn *c, uint64_t pn, bool eliciting, uint64_t now)
{
	bool gap = c->largest_rx_pn != UINT64_MAX && pn != c->largest_rx_pn + 1;
	rudp_ranges_add(&c->rx_pns, pn, pn);
	if (c->largest_rx_pn == UINT64_MAX || pn > c->largest_rx_pn) {
		c->largest_rx_pn = pn;
		c->largest_rx_us = now;
	}
	if (!eliciting)
		return;
	c->eliciting_unacked++;
	/*
	 * At once on a gap or in the handshake; else every second packet at
	 * first, then (a bulk flow) every ACK_EVERY_BULK: each ACK costs the
	 * sender a datagram through the stack and an AEAD open. The rest wait
	 * at most a timer tick or a quarter RTT (within max_ack_delay).
	 */
	unsigned every = pn > ACK_BULK_AFTER ? ACK_EVERY_BULK : 2;
	if (gap || c->eliciting_unacked >= every || c->cur_long)
		c->ack_now = true;
	else if (!c->ack_deadline_us)
		c->ack_deadline_us = now + ack_delay_us(c);
}

static bool is_duplicate(const struct rudp_conn *c, uint64_t pn)
{
	if (rudp_ranges_has(&c->rx_pns, pn))
		return true;
	/* older than everything still tracked: treat as a replay */
	return c->rx_pns.n == RUDP_MAX_ACK_RANGES && pn < c->rx_pns.r[0].lo;
}

static void connected(struct rudp_conn *c, const struct rudp_hdr *h)
{
	struct transport *t = c->base.t;
	c->peer_cid = h->scid;
	c->state = RS_OPEN;
	t->cb->connected(t->cb_ctx, &c->base, 0);
}

void rudp_conn_input(struct rudp_conn *c, const struct rudp_hdr *h, uint8_t *pkt, uint32_t len,
		     const struct sockaddr_storage *from, socklen_t fromlen, struct eng_rxbuf *b,
		     uint64_t now, bool opened)
{
	struct rudp_aead *keys = rx_keys(c, h);
	uint64_t pn = rudp_decode_pn(c->largest_rx_pn == UINT64_MAX ? 0 : c->largest_rx_pn,
				     h->pn_trunc);
	if (c->largest_rx_pn == UINT64_MAX)
		pn = h->pn_trunc;
	if (!keys || c->state == RS_CLOSED) {
		count(&c->rs->n.bad_packets, 1);
		return;
	}
	if (!opened && rudp_aead_open(keys, pn, pkt, h->hdr_len, len - h->hdr_len) < 0) {
		count(&c->rs->n.auth_failures, 1);
		return;
	}
	if (is_duplicate(c, pn)) {
		count(&c->rs->n.dup_packets, 1);
		return;
	}
	count(&c->rs->n.rx_packets, 1);
	/* a resend has a new number: only the path reorders packets into a lower one */
	if (c->largest_rx_pn != UINT64_MAX && pn < c->largest_rx_pn)
		count(&c->rs->n.late_packets, 1);
	c->last_rx_us = now;
	c->amp_rx += len;
	c->cur_long = h->type != RUDP_PKT_SHORT;
	if (h->type == RUDP_PKT_SHORT) {
		c->peer_short_seen = c->validated = true;
		/* NAT rebinding: the newest authenticated packet names the peer's address */
		if (c->largest_rx_pn != UINT64_MAX && pn > c->largest_rx_pn &&
		    memcmp(from, &c->base.remote, fromlen) != 0) {
			memcpy(&c->base.remote, from, fromlen);
			c->base.remote_len = fromlen;
		}
	} else if (!c->is_client && h->dcid == c->cid) {
		c->validated = true; /* the client echoed the id only our packets carried */
	}
	if (c->state == RS_CONNECTING) {
		connected(c, h);
		if (c->state == RS_CLOSED)
			return;
	}
	bool eliciting = false;
	uint8_t *payload = pkt + h->hdr_len;
	if (!process_frames(c, payload, payload + len - h->hdr_len - RUDP_TAG_LEN, b, now,
			    &eliciting))
		return;
	note_received(c, pn, eliciting, now);
}

/* ---- recovery callbacks ---- */

static void rec_acked(void *ctx, const struct rudp_sent_pkt *p)
{
	struct rudp_conn *c = ctx;
	for (unsigned i = 0; i < p->nstream; i++)
		rudp_sendbuf_on_acked(&c->sb, p->stream[i].off, p->stream[i].len);
	if ((p->flags & RUDP_PKT_MTU_PROBE) && c->probing && p->pn == c->probe_pn) {
		c->probing = false;
		c->mtu = c->probe_lo = c->probe_size;
		c->cc.mss = c->mtu;
	}
}

static void rec_lost(void *ctx, const struct rudp_sent_pkt *p)
{
	struct rudp_conn *c = ctx;
	count(&c->rs->n.lost_packets, 1);
	for (unsigned i = 0; i < p->nstream; i++)
		rudp_sendbuf_on_lost(&c->sb, p->stream[i].off, p->stream[i].len);
	if (p->max_data)
		c->send_max_data = true;
	if ((p->flags & RUDP_PKT_MTU_PROBE) && c->probing && p->pn == c->probe_pn) {
		/* a lost probe says the path is smaller, not congested (RFC 8899) */
		c->probing = false;
		c->probe_hi = c->probe_size - 1;
		c->next_probe_us = rudp_now_us() + 100000;
	}
}

/* ---- building packets ---- */

struct pkt_plan {
	bool lng;
	uint32_t size;              /* datagram size to aim at */
	bool probe;                 /* PTO probe: ignores window and pacing */
	bool mtu_probe;
};

static bool use_long(const struct rudp_conn *c)
{
	if (!c->have_pkt_keys)
		return true;
	if (c->is_client && !c->peer_short_seen)
		return true;
	return rudp_sendbuf_pending(&c->sb, c->long_until);
}

static bool ack_due(const struct rudp_conn *c, uint64_t now)
{
	return c->eliciting_unacked &&
	       (c->ack_now || (c->ack_deadline_us && now >= c->ack_deadline_us));
}

static void refill_pacer(struct rudp_conn *c, uint64_t now)
{
	uint64_t rate = c->cc.pacing_Bps ? c->cc.pacing_Bps : 1;
	uint64_t burst = rate * PACE_BURST_US / 1000000;
	uint64_t min_burst = 10ull * c->mtu;
	if (burst < min_burst)
		burst = min_burst;
	c->pace_tokens += rate * (now - c->pace_last_us) / 1000000;
	if (c->pace_tokens > burst)
		c->pace_tokens = burst;
	c->pace_last_us = now;
}

/* May a data packet of size bytes go now? (window, pacing, 3x anti-amplification) */
static bool room_for(struct rudp_conn *c, uint32_t size, bool probe, uint64_t now)
{
	if (!c->validated && c->amp_tx + size > 3 * c->amp_rx)
		return false;
	if (probe)
		return true;
	if (c->rec.bytes_in_flight + size > c->cc.cwnd)
		return false;
	if (c->pace_tokens < size) {
		uint64_t rate = c->cc.pacing_Bps ? c->cc.pacing_Bps : 1;
		c->pace_wake_us = now + (size - c->pace_tokens) * 1000000 / rate;
		return false;
	}
	return true;
}

static uint64_t stream_limit(const struct rudp_conn *c, bool lng)
{
	uint64_t lim = c->peer_max_data;
	if (lng && c->have_pkt_keys && c->long_until < lim)
		lim = c->long_until;
	if (c->rec_open && c->rec_hdr_off < lim)
		lim = c->rec_hdr_off; /* an open record's header is not written yet */
	return lim;
}

/* Write the ACK frame of what we received. */
static uint8_t *put_ack(struct rudp_conn *c, uint8_t *p, const uint8_t *end, uint64_t now)
{
	struct rudp_ack a;
	unsigned n = c->rx_pns.n;
	a.nranges = 0;
	for (unsigned i = n; i-- > 0 && a.nranges < RUDP_MAX_ACK_RANGES;) {
		a.r[a.nranges].lo = c->rx_pns.r[i].lo;
		a.r[a.nranges].hi = c->rx_pns.r[i].hi;
		a.nranges++;
	}
	a.delay_us = now - c->largest_rx_us;
	uint8_t *q = rudp_write_ack(p, end, &a);
	if (!q)
		return p;
	c->eliciting_unacked = 0;
	c->ack_now = false;
	c->ack_deadline_us = 0;
	return q;
}

/* Stream frames into the rest of the packet; records their ranges in sp. */
static uint8_t *put_stream(struct rudp_conn *c, uint8_t *p, const uint8_t *end, bool lng,
			   struct rudp_sent_pkt *sp)
{
	uint64_t limit = stream_limit(c, lng);
	while (sp->nstream < RUDP_PKT_STREAM_MAX && end - p > (long)RUDP_STREAM_HDR_MAX + 16) {
		uint32_t room = (uint32_t)(end - p) - RUDP_STREAM_HDR_MAX;
		uint64_t off;
		uint32_t len;
		bool retx;
		if (!rudp_sendbuf_next(&c->sb, room, limit, &off, &len, &retx))
			break;
		p = rudp_write_stream_hdr(p, end, off, len);
		rudp_sendbuf_copy(&c->sb, off, len, p);
		p += len;
		sp->stream[sp->nstream].off = off;
		sp->stream[sp->nstream].len = len;
		sp->nstream++;
		if (retx)
			count(&c->rs->n.retx_bytes, len);
	}
	return p;
}

/* A PTO probe repeats the oldest unacknowledged data (in a new packet), else pings. */
static void requeue_oldest(struct rudp_conn *c)
{
	const struct rudp_sent_pkt *o = rudp_rec_oldest_in_flight(&c->rec);
	if (!o) {
		c->ping_due = true;
		return;
	}
	for (unsigned i = 0; i < o->nstream; i++)
		rudp_sendbuf_on_lost(&c->sb, o->stream[i].off, o->stream[i].len);
}

static bool wants_stream(struct rudp_conn *c, bool lng)
{
	return rudp_sendbuf_pending(&c->sb, stream_limit(c, lng));
}

/* Anything worth a packet now? Decides the plan for the next one. */
static bool plan_packet(struct rudp_conn *c, uint64_t now, struct pkt_plan *pl)
{
	memset(pl, 0, sizeof(*pl));
	pl->size = c->mtu;
	if (c->probes_due) {
		/* requeue first: a probe repeating handshake data must travel in a long
		 * packet like the original (a peer without the new keys cannot open a
		 * short one, and every later probe would repeat the mistake) */
		requeue_oldest(c);
		pl->lng = use_long(c);
		pl->probe = true;
		return room_for(c, pl->size, true, now);
	}
	pl->lng = use_long(c);
	if (c->announce_keys && !pl->lng) {
		c->announce_keys = false;
		c->ping_due = true;
	}
	if (!pl->lng && !c->probing && c->peer_short_seen && c->probe_lo < c->probe_hi &&
	    now >= c->next_probe_us && c->rec.bytes_in_flight + c->probe_hi <= c->cc.cwnd) {
		pl->mtu_probe = true;
		/* most paths carry the largest size: try it first, then search below it */
		pl->size = c->probe_hi == RUDP_MAX_MTU ? c->probe_hi
						       : (c->probe_lo + c->probe_hi + 1) / 2;
		if (c->probe_hi - c->probe_lo < 16) {
			c->probe_lo = c->probe_hi; /* close enough: stop searching */
			c->next_probe_us = now + RUDP_PROBE_INTERVAL_US;
			pl->mtu_probe = false;
			pl->size = c->mtu;
		} else {
			return true;
		}
	}
	if (wants_stream(c, pl->lng) && room_for(c, pl->size, false, now))
		return true;
	return ack_due(c, now) || c->send_max_data || c->ping_due;
}

/* Build one packet at p (at most pl->size bytes); returns its length. */
static uint32_t build_packet(struct rudp_conn *c, uint8_t *p, const struct pkt_plan *pl,
			     uint64_t now)
{
	struct rudp_sent_pkt *sp = rudp_rec_next(&c->rec);
	if (!sp)
		return 0;
	struct rudp_hdr h = {
		.type = pl->lng ? RUDP_PKT_INITIAL : RUDP_PKT_SHORT,
		.dcid = c->state == RS_CONNECTING ? c->odcid : c->peer_cid,
		.scid = c->cid,
		.token = c->token_len ? c->token : NULL,
		.token_len = pl->lng && c->is_client ? c->token_len : 0,
		.pn_trunc = (uint32_t)sp->pn,
	};
	uint8_t *end = p + pl->size - RUDP_TAG_LEN;
	uint8_t *q = rudp_write_hdr(p, end, &h);
	if (!q)
		return 0;
	uint8_t *payload = q;
	/* what this packet takes from the connection, given back if it cannot be sealed */
	unsigned had_unacked = c->eliciting_unacked;
	bool had_ack_now = c->ack_now, had_ping = c->ping_due;
	uint64_t had_ack_deadline = c->ack_deadline_us;
	if (c->eliciting_unacked)
		q = put_ack(c, q, end, now);
	if (c->send_max_data) {
		uint8_t *r = rudp_write_max_data(q, end, c->local_max_data);
		if (r) {
			q = r;
			sp->max_data = c->local_max_data;
			c->send_max_data = false;
			sp->flags |= RUDP_PKT_ACK_ELICITING;
		}
	}
	if (c->ping_due || pl->mtu_probe || (pl->lng && c->is_client && c->state == RS_CONNECTING)) {
		*q++ = RUDP_FR_PING;
		sp->flags |= RUDP_PKT_ACK_ELICITING;
		c->ping_due = false;
	}
	if (!pl->mtu_probe && (pl->probe || room_for(c, pl->size, false, now)))
		q = put_stream(c, q, end, pl->lng, sp);
	if (sp->nstream)
		sp->flags |= RUDP_PKT_ACK_ELICITING;
	/*
	 * Client long packets are padded to 1200 (anti-amplification), probes
	 * to their size, and a data packet that is all but full to the full
	 * size: GSO batches need equal segments, and a few bytes of padding
	 * are cheaper than a batch cut short.
	 */
	bool nearly_full = sp->nstream && end - q <= (long)RUDP_STREAM_HDR_MAX + 16;
	uint8_t *want = pl->mtu_probe || (pl->lng && c->is_client) || nearly_full ? end : q;
	if (q < want) {
		memset(q, RUDP_FR_PADDING, (size_t)(want - q));
		q = want;
	}
	if (q == payload)
		return 0;
	uint32_t len = (uint32_t)(q - p) + RUDP_TAG_LEN;
	if (rudp_aead_seal(pl->lng ? &c->init_tx : &c->pkt_tx, sp->pn, p, h.hdr_len,
			   (uint32_t)(q - payload)) < 0) {
		/*
		 * OpenSSL allocates while sealing, so this can fail: the packet is
		 * never sent nor recorded, and its stream bytes would be neither
		 * sent nor retransmitted (the stream stalled for good; found by
		 * fault injection). Its frames go out in a later packet.
		 */
		for (unsigned i = 0; i < sp->nstream; i++)
			rudp_sendbuf_on_lost(&c->sb, sp->stream[i].off, sp->stream[i].len);
		if (sp->max_data)
			c->send_max_data = true;
		c->ping_due = had_ping;
		c->eliciting_unacked = had_unacked;
		c->ack_now = had_ack_now;
		c->ack_deadline_us = had_ack_deadline;
		return 0;
	}
	sp->size = len;
	if (sp->flags & RUDP_PKT_ACK_ELICITING)
		sp->flags |= RUDP_PKT_IN_FLIGHT;
	if (pl->mtu_probe) {
		sp->flags = (uint8_t)((sp->flags & ~RUDP_PKT_IN_FLIGHT) | RUDP_PKT_MTU_PROBE);
		c->probing = true;
		c->probe_pn = sp->pn;
		c->probe_size = pl->size;
	}
	rudp_rec_on_sent(&c->rec, sp, now);
	if (sp->flags & RUDP_PKT_IN_FLIGHT)
		c->pace_tokens = c->pace_tokens > len ? c->pace_tokens - len : 0;
	if (!c->validated)
		c->amp_tx += len;
	count(&c->rs->n.tx_packets, 1);
	return len;
}

/* Fill one send buffer with packets of one size (GSO); returns bytes and segment size. */
static uint32_t build_batch(struct rudp_conn *c, struct rudp_txbuf *t, uint64_t now,
			    uint16_t *gso)
{
	uint32_t pos = 0, seg = 0;
	unsigned n = 0;
	struct pkt_plan pl;
	while (n < MAX_GSO_SEGS && plan_packet(c, now, &pl)) {
		if (n && (pl.size != seg || pl.mtu_probe || pos + seg > RUDP_TXBUF))
			break;
		uint32_t len = build_packet(c, t->data + pos, &pl, now);
		if (pl.probe && c->probes_due)
			c->probes_due--;
		if (!len)
			break;
		pos += len;
		seg = pl.size;
		n++;
		/* a short packet ends the batch: GSO segments share one size but the last */
		if (len < seg || pl.mtu_probe)
			break;
	}
	*gso = n > 1 ? (uint16_t)seg : 0;
	return pos;
}

static void maybe_finish_shutdown(struct rudp_conn *c)
{
	if (!c->shutdown_req || !eng_txq_empty(&c->txq) || c->sb.acked < c->sb.end)
		return;
	rudp_conn_close(c, c->shutdown_err, NULL, true);
}

void rudp_conn_flush(struct rudp_conn *c)
{
	if (c->state == RS_CLOSED)
		return;
	uint64_t now = rudp_now_us();
	pull_messages(c);
	if (c->state != RS_CONNECTING)
		refill_pacer(c, now);
	c->pace_wake_us = 0;
	while (c->state != RS_CLOSED) {
		struct rudp_txbuf *t = rudp_sock_can_send(c->sock) ? rudp_txbuf_get(c->rs) : NULL;
		if (!t) {
			if (c->probes_due || c->ping_due || c->send_max_data || ack_due(c, now) ||
			    rudp_sendbuf_pending(&c->sb, c->peer_max_data))
				rudp_block(c);
			break;
		}
		uint16_t gso;
		uint32_t len = build_batch(c, t, now, &gso);
		if (!len) {
			rudp_txbuf_put(c->rs, t);
			break;
		}
		t->c = c;
		if (rudp_conn_output(c, t, len, gso) < 0) {
			rudp_txbuf_put(c->rs, t);
			break;
		}
		c->last_tx_us = now;
	}
	if (eng_txq_empty(&c->txq) && !rudp_sendbuf_pending(&c->sb, c->peer_max_data))
		rudp_rec_app_limited(&c->rec);
	maybe_finish_shutdown(c);
	if (c->state != RS_CLOSED)
		arm_timer(c, now);
}

void rudp_conn_sent(struct rudp_conn *c, int res)
{
	c->inflight_tx--;
	if (res < 0 && res != -ECANCELED && c->state != RS_CLOSED && res != -EMSGSIZE) {
		char why[CRUST_REASON_LEN];
		snprintf(why, sizeof(why), "send failed: %s", strerror(-res));
		rudp_conn_close(c, res, why, false);
	}
	if (c->finalizing || c->state == RS_CLOSED) {
		if (!eng_timer_armed(&c->timer))
			eng_timer_arm(&c->base.sh->timers, &c->timer, 0);
		return;
	}
	rudp_conn_flush(c);
}

/* ---- starting, closing ---- */

int rudp_conn_start(struct rudp_conn *c)
{
	c->state = RS_CONNECTING;
	c->connect_deadline_us = rudp_now_us() +
				 (uint64_t)c->base.t->limits.connect_timeout_ms * 1000;
	c->ping_due = true;
	rudp_conn_flush(c);
	return 0;
}

void rudp_conn_shutdown(struct rudp_conn *c, int err, const char *reason)
{
	set_reason(c, reason);
	c->shutdown_req = true;
	c->shutdown_err = err;
	rudp_conn_flush(c);
}

/* Send one CLOSE packet now, outside the windows (best effort). */
static void send_close(struct rudp_conn *c, uint64_t code, const char *reason)
{
	if (c->state == RS_CONNECTING || !rudp_sock_can_send(c->sock))
		return;
	struct rudp_txbuf *t = rudp_txbuf_get(c->rs);
	if (!t)
		return;
	struct rudp_sent_pkt *sp = rudp_rec_next(&c->rec);
	bool lng = use_long(c) || !c->have_pkt_keys;
	struct rudp_hdr h = {
		.type = lng ? RUDP_PKT_INITIAL : RUDP_PKT_SHORT,
		.dcid = c->peer_cid,
		.scid = c->cid,
		.pn_trunc = sp ? (uint32_t)sp->pn : 0,
	};
	uint32_t size = lng && c->is_client ? RUDP_MIN_INITIAL : 200;
	uint8_t *end = t->data + size - RUDP_TAG_LEN;
	uint8_t *q = sp ? rudp_write_hdr(t->data, end, &h) : NULL;
	uint8_t *payload = q;
	q = rudp_write_close(q, end, code, reason);
	if (!q) {
		rudp_txbuf_put(c->rs, t);
		return;
	}
	if (lng && c->is_client) {
		memset(q, RUDP_FR_PADDING, (size_t)(end - q));
		q = end;
	}
	uint32_t len = (uint32_t)(q - t->data) + RUDP_TAG_LEN;
	if ((!c->validated && c->amp_tx + len > 3 * c->amp_rx) ||
	    rudp_aead_seal(lng ? &c->init_tx : &c->pkt_tx, sp->pn, t->data, h.hdr_len,
			   (uint32_t)(q - payload)) < 0) {
		rudp_txbuf_put(c->rs, t);
		return;
	}
	rudp_rec_on_sent(&c->rec, sp, rudp_now_us());
	t->c = c;
	if (rudp_conn_output(c, t, len, 0) < 0)
		rudp_txbuf_put(c->rs, t);
}

static void fail_queued(struct rudp_conn *c, int err)
{
	struct transport *t = c->base.t;
	struct crust_msg *m;
	while ((m = eng_txq_pop(&c->txq)))
		t->cb->msg_done(t->cb_ctx, &c->base, m, err);
	eng_txq_release(&c->txq);
}

void rudp_conn_close(struct rudp_conn *c, int err, const char *reason, bool tell_peer)
{
	if (c->state == RS_CLOSED)
		return;
	set_reason(c, reason);
	c->close_err = err;
	if (tell_peer)
		send_close(c, err < 0 ? (uint64_t)-err : 0, c->reason);
	if (c->state == RS_CONNECTING && c->base.outgoing && err)
		c->connect_failed = true;
	c->state = RS_CLOSED;
	if (c->counted_pending) {
		c->rs->pending_hs--;
		c->counted_pending = false;
	}
	rudp_cid_del(c->rs, c->cid);
	if (!c->is_client)
		rudp_cid_del(c->rs, c->odcid);
	fail_queued(c, err ? err : -ENOTCONN);
	/* closed() runs from the timer: never inside a call of the layer above */
	eng_timer_arm(&c->base.sh->timers, &c->timer, 0);
}

static void finalize(struct rudp_conn *c)
{
	struct rudp_shard *rs = c->rs;
	struct transport *t = c->base.t;
	if (c->inflight_tx)
		return; /* on_sent re-arms the timer */
	c->finalizing = true;
	/* where a connection's transfer stood, for whoever reads info-level logs */
	eng_log(rs->sh->eng, 2,
		"rudp connection ends: cwnd %llu B, pacing %llu B/s, srtt %llu us, min rtt %llu us, "
		"mtu %u, packets sent %llu, lost %llu (spurious %llu), PTOs %llu, bytes resent %llu",
		(unsigned long long)c->cc.cwnd, (unsigned long long)c->cc.pacing_Bps,
		(unsigned long long)c->rec.srtt_us, (unsigned long long)c->rec.min_rtt_us, c->mtu,
		(unsigned long long)c->rec.sent_pkts, (unsigned long long)c->rec.lost_pkts,
		(unsigned long long)c->rec.spurious, (unsigned long long)c->rec.ptos,
		(unsigned long long)c->sb.retx_bytes);
	if (c->blocked) {
		struct rudp_conn **pp = &rs->blocked;
		while (*pp != c)
			pp = &(*pp)->next_blocked;
		*pp = c->next_blocked;
	}
	if (c->silent) {
		/* never announced to the layer above */
	} else if (c->connect_failed) {
		t->cb->connected(t->cb_ctx, &c->base, c->close_err);
	} else {
		if (!c->reason[0])
			snprintf(c->reason, sizeof(c->reason), "%s",
				 c->close_err ? strerror(-c->close_err) : "closed");
		t->cb->closed(t->cb_ctx, &c->base, c->close_err, c->reason);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		rs->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	eng_timer_cancel(&rs->sh->timers, &c->timer);
	frame_decoder_reset(&c->dec);
	rudp_rec_free(&c->rec);
	rudp_sendbuf_free(&c->sb);
	rudp_recvbuf_free(&c->rb);
	rudp_ranges_free(&c->rx_pns);
	rudp_aead_free(&c->init_tx);
	rudp_aead_free(&c->init_rx);
	if (c->have_pkt_keys) {
		rudp_aead_free(&c->pkt_tx);
		rudp_aead_free(&c->pkt_rx);
	}
	/* last: a retired socket may close and be freed with its last connection */
	rudp_sock_release(c->sock);
	rs->sh->live--;
	free(c);
}

/* ---- the timer ---- */

static uint64_t earliest(uint64_t a, uint64_t b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

static void arm_timer(struct rudp_conn *c, uint64_t now)
{
	uint64_t d = rudp_rec_deadline(&c->rec);
	if (c->eliciting_unacked)
		d = earliest(d, c->ack_now ? now : c->ack_deadline_us);
	d = earliest(d, c->pace_wake_us);
	d = earliest(d, c->last_rx_us + (uint64_t)c->base.t->limits.idle_timeout_ms * 1000);
	if (c->state == RS_OPEN)
		d = earliest(d, c->last_tx_us + (uint64_t)RUDP_KEEPALIVE_MS * 1000);
	if (c->state == RS_CONNECTING)
		d = earliest(d, c->connect_deadline_us);
	if (c->state == RS_OPEN && c->peer_short_seen && c->probe_lo < c->probe_hi && !c->probing)
		d = earliest(d, c->next_probe_us > now ? c->next_probe_us : now + 1000);
	uint64_t ms = d > now ? (d - now + 999) / 1000 : 0;
	eng_timer_arm(&c->base.sh->timers, &c->timer, ms);
}

static void timer_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct rudp_conn *c = ctx;
	if (c->state == RS_CLOSED) {
		finalize(c);
		return;
	}
	uint64_t now = rudp_now_us();
	if (c->state == RS_CONNECTING && now >= c->connect_deadline_us) {
		rudp_conn_close(c, -ETIMEDOUT, "no answer within the connect timeout", false);
		return;
	}
	uint32_t idle = c->base.t->limits.idle_timeout_ms;
	if (now - c->last_rx_us >= (uint64_t)idle * 1000) {
		char why[CRUST_REASON_LEN];
		snprintf(why, sizeof(why), "idle timeout: nothing heard for %u ms", idle);
		rudp_conn_close(c, -ETIMEDOUT, why, false);
		return;
	}
	uint64_t d = rudp_rec_deadline(&c->rec);
	if (d && d <= now)
		c->probes_due += rudp_rec_on_timeout(&c->rec, now);
	if (c->state == RS_OPEN && now - c->last_tx_us >= (uint64_t)RUDP_KEEPALIVE_MS * 1000)
		c->ping_due = true; /* keep NAT bindings (about 30 s unanswered) alive */
	rudp_conn_flush(c);
}
