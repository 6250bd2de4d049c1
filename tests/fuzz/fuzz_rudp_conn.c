#define _GNU_SOURCE
/*
 * fuzz_rudp_conn.c - the whole input side of one reliable-UDP connection,
 * on the real engine (one shard) and the real transport, nothing mocked:
 * packets go through the transport's demultiplexer (rudp_packet_in: the
 * server's first Initial, Retry, rudp_conn_input) with the connection's
 * packet protection, ACKs into recovery and congestion control, STREAM
 * frames into reassembly and the frame decoder, CLOSE frames, the
 * long/short header switch, duplicates, key epochs; what the connection
 * sends goes out on its real UDP socket to a sink socket the harness
 * drains and opens with the peer's side of the keys.
 *
 * Once per process: the engine, the transport listening on 127.0.0.1,
 * two sink sockets (the peer's address, and a second one for a NAT
 * rebinding). Per input, every step is a mail run on the shard thread
 * (the test thread waits for each, so the shard's loop submits and reaps
 * the connection's sends in between, as in real life).
 *
 * Input: u8 setup (bit 0: the connection is a server, accepted from our
 * Initial; else a client dialed to the sink; bit 1: AES-GCM packet keys,
 * else ChaCha20) | u8 message-size seed | then ops, each one byte o:
 *   o%8 0: a protected packet from the sink, 1: from the second sink; flags
 *          f = o>>3: 1 long header, 2 the other DCID (odcid), 4 corrupt one
 *          byte after sealing (u8 position), 8 packet number from the input
 *          (u8 m: m&0x80 jump ahead by u16 << (m&31), else m+1 back),
 *          16 pad to 1200 bytes; then u8 n and n bytes of frame script:
 *          item t%8: 0 STREAM of the canonical peer stream at u16 offset,
 *          u8 length code; 1 ACK of every packet seen from the connection;
 *          2 u8 n raw frame bytes; 3 PING; 4 MAX_DATA u32; 5 CLOSE u8 code,
 *          u8 n reason; 6 u8 n PADDING; 7 STREAM continuing the stream, u8
 *          length code (length code c: c < 128 ? c : (c - 128) * 16)
 *   2: raw bytes, not protected: u8 n, n bytes (o&8: the DCID made the
 *      connection's, o&16: from the second sink)
 *   3: set the packet keys (both sides)     4: send a message of u8*16 + o>>3 bytes
 *   5: run the connection's timer callback  6: a Retry with a u8*20 token (client)
 *   7: close (o&8: shutdown) locally
 *
 * Invariants: the connection's datagrams authenticate with the peer's
 * keys and parse; delivered messages are whole, in order and equal to the
 * canonical peer stream (unless a raw frame put other bytes in it);
 * nothing is delivered or counted received from a packet that cannot
 * authenticate; after the connection is gone the shard's live sockets and
 * timers, the transport's connection ids, pending handshakes, send
 * buffers and the process's live messages are back where they were.
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <semaphore.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sodium.h>

#include "transports/rudp.h"

#define MAX_MSG 4096u
#define CANON_LEN (64u * 1024u)
#define PEER_CID 0x00ab00cd00ef0011ull
#define RETRY_PN 0xffffffffull
#define PKT_MAX 1452u
#define REAP_TRIES 200000u

struct harness {
	struct eng *e;
	struct shard *sh;
	struct transport *t;
	struct rudp_shard *rs;
	int sink[2];
	struct sockaddr_storage sink_addr[2];
	socklen_t sink_len[2];
	unsigned base_live, base_timers;
	int64_t base_msgs;
	sem_t step_done;
	struct eng_mail mail;
	bool ready;
	/* the input */
	const uint8_t *in, *end;
	/* the connection and the peer's side of it */
	struct rudp_conn *cur;
	unsigned conns_seen;
	uint64_t odcid;
	bool aes;
	struct rudp_aead init_tx, init_rx, pkt_tx, pkt_rx;
	bool have_init, have_keys;
	uint64_t next_pn;
	struct rudp_ranges seen;     /* packet numbers the connection sent us */
	uint64_t largest_seen;       /* UINT64_MAX: none */
	/* the stream we send: frames of canonical messages */
	uint8_t canon[CANON_LEN];
	uint32_t canon_delivered, stream_sent_end;
	bool tainted;                /* a raw STREAM frame put other bytes in the stream */
	bool expect_no_delivery;     /* the packet being fed cannot authenticate */
	uint64_t delivered;
	bool reaped;
};

static struct harness H;

/* ---- input ---- */

static uint8_t take(void)
{
	return H.in < H.end ? *H.in++ : 0;
}

static uint32_t take_n(uint32_t n)
{
	uint32_t v = 0;
	for (uint32_t i = 0; i < n; i++)
		v = v << 8 | take();
	return v;
}

static uint32_t len_code(uint8_t c)
{
	return c < 128 ? c : (uint32_t)(c - 128) * 16;
}

/* ---- callbacks from the transport (shard thread) ---- */

static void cb_accepted(void *ctx, struct tp_conn *c)
{
	(void)ctx;
	H.cur = (struct rudp_conn *)c;
	/* a new connection's stream starts over */
	if (H.conns_seen++) {
		H.canon_delivered = 0;
		H.stream_sent_end = 0;
	}
}

static void cb_connected(void *ctx, struct tp_conn *c, int res)
{
	(void)ctx;
	if (res && H.cur == (struct rudp_conn *)c)
		H.cur = NULL; /* gone after return */
}

static void cb_received(void *ctx, struct tp_conn *c, struct crust_msg *m)
{
	(void)ctx;
	(void)c;
	FUZZ_CHECK(!H.expect_no_delivery);
	FUZZ_CHECK(m->len <= MAX_MSG);
	if (!H.tainted) {
		/* whole and in order: exactly the next message of what we sent */
		uint32_t off = H.canon_delivered;
		FUZZ_CHECK(off + FRAME_HDR_LEN + m->len <= CANON_LEN);
		FUZZ_CHECK(eng_get_be32(H.canon + off) == m->len);
		FUZZ_CHECK(memcmp(H.canon + off + FRAME_HDR_LEN, m->data, m->len) == 0);
		H.canon_delivered = off + FRAME_HDR_LEN + m->len;
	}
	H.delivered++;
	eng_msg_free(m);
}

static void cb_msg_done(void *ctx, struct tp_conn *c, struct crust_msg *m, int status)
{
	(void)ctx;
	(void)c;
	(void)status;
	eng_msg_free(m);
}

static void cb_staged_done(void *ctx, struct tp_conn *c, uint32_t nmsgs, uint64_t nbytes,
			   int status)
{
	(void)ctx;
	(void)c;
	(void)nmsgs;
	(void)nbytes;
	(void)status;
}

static void cb_closed(void *ctx, struct tp_conn *c, int err, const char *reason)
{
	(void)ctx;
	(void)err;
	FUZZ_CHECK(reason && reason[0]);
	if (H.cur == (struct rudp_conn *)c)
		H.cur = NULL;
}

static const struct tp_callbacks callbacks = {
	.accepted = cb_accepted,
	.connected = cb_connected,
	.received = cb_received,
	.msg_done = cb_msg_done,
	.staged_done = cb_staged_done,
	.closed = cb_closed,
};

/* ---- running on the shard ---- */

static void run_on_shard(eng_mail_fn fn)
{
	H.mail.fn = fn;
	eng_post(H.sh, &H.mail);
	while (sem_wait(&H.step_done) < 0 && errno == EINTR)
		;
}

/* ---- what the connection sends: every datagram opens with the peer's keys ---- */

static void check_frames(const uint8_t *p, const uint8_t *end)
{
	while (p < end) {
		p = rudp_skip_frame(p, end);
		FUZZ_CHECK(p); /* the connection writes only frames it can parse */
	}
}

static void check_sent(uint8_t *p, uint32_t len)
{
	struct rudp_hdr h;
	FUZZ_CHECK(rudp_parse_hdr(p, p + len, &h));
	FUZZ_CHECK(h.type == RUDP_PKT_INITIAL || h.type == RUDP_PKT_SHORT);
	/* a second connection of this input has other keys and numbers: not followed */
	if (H.conns_seen > 1 || !H.have_init)
		return;
	FUZZ_CHECK(h.type == RUDP_PKT_INITIAL || H.have_keys);
	struct rudp_aead *k = h.type == RUDP_PKT_INITIAL ? &H.init_rx : &H.pkt_rx;
	uint64_t pn = H.largest_seen == UINT64_MAX ? h.pn_trunc
						   : rudp_decode_pn(H.largest_seen, h.pn_trunc);
	FUZZ_CHECK(rudp_aead_open(k, pn, p, h.hdr_len, len - h.hdr_len) == 0);
	check_frames(p + h.hdr_len, p + len - RUDP_TAG_LEN);
	FUZZ_CHECK(rudp_ranges_add(&H.seen, pn, pn) >= 0);
	if (H.largest_seen == UINT64_MAX || pn > H.largest_seen)
		H.largest_seen = pn;
}

static void drain_sinks(void)
{
	uint8_t buf[2048];
	for (int i = 0; i < 2; i++) {
		ssize_t n;
		while ((n = recv(H.sink[i], buf, sizeof(buf), MSG_DONTWAIT)) >= 0) {
			FUZZ_CHECK(n > 0 && (size_t)n <= PKT_MAX);
			check_sent(buf, (uint32_t)n);
		}
	}
}

/* ---- building the peer's packets ---- */

static uint8_t *put_stream(uint8_t *p, const uint8_t *end, uint32_t off, uint32_t len)
{
	if (off > CANON_LEN)
		off = CANON_LEN;
	if (len > CANON_LEN - off)
		len = CANON_LEN - off;
	long room = end - p - (long)RUDP_STREAM_HDR_MAX;
	if (room <= 0)
		return p;
	if (len > (uint32_t)room)
		len = (uint32_t)room;
	uint8_t *q = rudp_write_stream_hdr(p, end, off, len);
	if (!q)
		return p;
	memcpy(q, H.canon + off, len);
	if (off + len > H.stream_sent_end)
		H.stream_sent_end = off + len;
	return q + len;
}

static uint8_t *put_ack_seen(uint8_t *p, const uint8_t *end)
{
	if (!H.seen.n)
		return p;
	struct rudp_ack a = { .delay_us = 0, .nranges = 0 };
	for (unsigned i = H.seen.n; i-- > 0 && a.nranges < RUDP_MAX_ACK_RANGES; a.nranges++) {
		a.r[a.nranges].lo = H.seen.r[i].lo;
		a.r[a.nranges].hi = H.seen.r[i].hi;
	}
	uint8_t *q = rudp_write_ack(p, end, &a);
	return q ? q : p;
}

/* The frame script of one packet into [p, end). */
static uint8_t *put_frames(uint8_t *p, const uint8_t *end, uint32_t n)
{
	const uint8_t *stop = (size_t)(H.end - H.in) < n ? H.end : H.in + n;
	const uint8_t *saved_end = H.end;
	H.end = stop;
	while (H.in < H.end && p < end) {
		uint8_t t = take();
		uint8_t *q = NULL;
		switch (t % 8) {
		case 0: {
			uint32_t off = take_n(2);
			p = put_stream(p, end, off, len_code(take()));
			break;
		}
		case 1:
			p = put_ack_seen(p, end);
			break;
		case 2: {
			uint32_t k = take();
			while (k-- && H.in < H.end && p < end)
				*p++ = take();
			break;
		}
		case 3:
			*p++ = RUDP_FR_PING;
			break;
		case 4:
			q = rudp_write_max_data(p, end, take_n(4));
			break;
		case 5: {
			uint64_t code = take();
			char reason[RUDP_MAX_REASON + 1];
			uint32_t k = take() % (RUDP_MAX_REASON + 1), i = 0;
			while (i < k && H.in < H.end)
				reason[i++] = (char)take();
			reason[i] = 0;
			q = rudp_write_close(p, end, code, reason);
			break;
		}
		case 6: {
			uint32_t k = take();
			while (k-- && p < end)
				*p++ = RUDP_FR_PADDING;
			break;
		}
		default:
			p = put_stream(p, end, H.stream_sent_end, len_code(take()));
		}
		if (q)
			p = q;
	}
	H.in = stop;
	H.end = saved_end;
	return p;
}

/*
 * Frames the connection will act on, walked as process_frames does: a
 * STREAM frame that is not the canonical stream's bytes (written raw)
 * turns the content check off for the rest of the input.
 */
static void scan_stream(const uint8_t *p, const uint8_t *end)
{
	while (p && p < end) {
			if (*p != RUDP_FR_STREAM) {
			p = rudp_skip_frame(p, end);
			continue;
		}
		struct rudp_stream_frame f;
		p = rudp_parse_stream(p, end, &f);
		if (p && (f.off + f.len > CANON_LEN || memcmp(f.data, H.canon + f.off, f.len)))
			H.tainted = true;
	}
}

static const struct sockaddr_storage *from_addr(bool second, socklen_t *len)
{
	*len = H.sink_len[second];
	return &H.sink_addr[second];
}

/* Feed one datagram as the socket would, then flush as on_datagram does. */
static void feed(uint8_t *p, uint32_t len, bool second, bool cannot_authenticate)
{
	socklen_t fl;
	const struct sockaddr_storage *from = from_addr(second, &fl);
	struct tp_stats before = { 0 }, after = { 0 };
	uint64_t delivered = H.delivered;
	H.t->vt->stats(H.t, &before);
	H.expect_no_delivery = cannot_authenticate;
	struct rudp_conn *c = rudp_packet_in(H.rs, H.rs->lsock, from, fl, p, len);
	H.expect_no_delivery = false;
	H.t->vt->stats(H.t, &after);
	if (cannot_authenticate) {
		FUZZ_CHECK(H.delivered == delivered);
		FUZZ_CHECK(after.rx_packets == before.rx_packets);
		FUZZ_CHECK(after.bad_packets + after.auth_failures + after.unknown_cid ==
			   before.bad_packets + before.auth_failures + before.unknown_cid + 1);
	}
	if (c)
		rudp_conn_flush(c);
}

static void op_packet(uint8_t o)
{
	uint8_t f = o >> 3;
	bool second = o % 8 == 1, lng = f & 1;
	uint8_t buf[PKT_MAX] = { 0 }; /* gcc -Werror sees rudp_write_hdr read it (const end) */
	uint64_t pn = H.next_pn;
	int corrupt = -1;
	if (f & 4)
		corrupt = take();
	if (f & 8) {
		uint8_t m = take();
		if (m & 0x80)
			pn += (uint64_t)take_n(2) << (m & 31);
		else
			pn = pn > m ? pn - m - 1u : 0;
	}
	if (pn >= H.next_pn)
		H.next_pn = pn + 1;
	uint64_t dcid = H.odcid;
	if (H.cur && !(f & 2))
		dcid = H.cur->cid;
	struct rudp_hdr h = { .type = lng ? RUDP_PKT_INITIAL : RUDP_PKT_SHORT,
			      .dcid = dcid, .scid = PEER_CID, .pn_trunc = (uint32_t)pn };
	uint8_t *end = buf + sizeof(buf) - RUDP_TAG_LEN;
	uint8_t *payload = rudp_write_hdr(buf, end, &h);
	FUZZ_CHECK(payload);
	uint8_t *q = put_frames(payload, end, take());
	if (f & 16) {
		uint8_t *want = buf + RUDP_MIN_INITIAL - RUDP_TAG_LEN;
		if (q < want) {
			memset(q, RUDP_FR_PADDING, (size_t)(want - q));
			q = want;
		}
	}
	/* short packets before the keys are sealed with a key the connection lacks */
	bool keyed = lng || H.have_keys;
	struct rudp_aead *k = lng || !H.have_keys ? &H.init_tx : &H.pkt_tx;
	if (corrupt < 0 && keyed)
		scan_stream(payload, q); /* the plaintext, before sealing */
	FUZZ_CHECK(rudp_aead_seal(k, pn, buf, h.hdr_len, (uint32_t)(q - payload)) == 0);
	uint32_t len = (uint32_t)(q - buf) + RUDP_TAG_LEN;
	if (corrupt >= 0)
		buf[(uint32_t)corrupt % len] ^= (uint8_t)(1u << (corrupt % 8));
	feed(buf, len, second, corrupt >= 0 || !keyed);
}

static void op_raw(uint8_t o)
{
	uint8_t buf[PKT_MAX] = { 0 }; /* gcc -Werror sees rudp_write_hdr read it (const end) */
	uint32_t n = take() * 6u;
	if (n > sizeof(buf))
		n = sizeof(buf);
	uint32_t len = 0;
	while (len < n && H.in < H.end)
		buf[len++] = take();
	if (!len)
		return;
	if ((o & 8) && H.cur) {
		uint32_t at = (buf[0] & 0x80) ? 5 : 1;
		if (len >= at + RUDP_CID_LEN)
			rudp_put_cid(buf + at, H.cur->cid);
	}
	feed(buf, len, o & 16, true);
}

static void peer_keys(struct tp_packet_keys *k)
{
	k->aes = H.aes;
	for (unsigned i = 0; i < 32; i++) {
		k->tx[i] = (uint8_t)(0x11 + i);
		k->rx[i] = (uint8_t)(0x91 + 3 * i);
	}
}

static void op_keys(void)
{
	if (!H.cur || H.have_keys || H.cur->have_pkt_keys)
		return;
	struct tp_packet_keys k;
	peer_keys(&k);
	FUZZ_CHECK(H.t->vt->set_packet_keys(&H.cur->base, &k) == 0);
	/* the peer: its tx is the connection's rx */
	FUZZ_CHECK(rudp_aead_init(&H.pkt_tx, H.aes, true, k.rx) == 0);
	FUZZ_CHECK(rudp_aead_init(&H.pkt_rx, H.aes, false, k.tx) == 0);
	H.have_keys = true;
	rudp_conn_flush(H.cur);
}

static void op_send(uint8_t o)
{
	uint32_t len = take() * 16u + (o >> 3);
	if (!H.cur || len > MAX_MSG)
		return;
	struct crust_msg *m = eng_msg_alloc(len);
	FUZZ_CHECK(m);
	m->len = len;
	for (uint32_t i = 0; i < len; i++)
		m->data[i] = (uint8_t)(i * 7 + len);
	if (H.t->vt->send(&H.cur->base, m) < 0)
		eng_msg_free(m);
}

static void op_timer(void)
{
	/* what the engine's timer wheel runs (closed: finalizing is left to the reaper) */
	if (H.cur && H.cur->state != RS_CLOSED)
		H.cur->timer.fn(&H.cur->timer, H.cur->timer.ctx);
}

static void op_retry(uint8_t o)
{
	uint8_t tok[RUDP_TOKEN_LEN];
	for (unsigned i = 0; i < sizeof(tok); i++)
		tok[i] = take();
	if (!H.cur || !H.cur->is_client)
		return;
	uint8_t buf[256] = { 0 };
	struct rudp_hdr h = { .type = RUDP_PKT_RETRY, .dcid = H.cur->cid,
			      .scid = (o & 8) ? PEER_CID : H.odcid, .token = tok,
			      .token_len = (o & 16) ? RUDP_TOKEN_LEN - 1 : RUDP_TOKEN_LEN };
	FUZZ_CHECK(rudp_write_hdr(buf, buf + sizeof(buf) - RUDP_TAG_LEN, &h));
	FUZZ_CHECK(rudp_aead_seal(&H.init_tx, RETRY_PN, buf, h.hdr_len, 0) == 0);
	feed(buf, h.hdr_len + RUDP_TAG_LEN, false, false);
}

static void op_close(uint8_t o)
{
	if (!H.cur || H.cur->state == RS_CLOSED)
		return;
	if (o & 8)
		H.t->vt->shutdown(&H.cur->base, 0, "fuzz shutdown");
	else
		H.t->vt->close(&H.cur->base, (o & 16) ? -ECONNRESET : 0, "fuzz close");
}

static void step_fn(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	(void)m;
	drain_sinks();
	uint8_t o = take();
	switch (o % 8) {
	case 0:
	case 1:
		op_packet(o);
		break;
	case 2:
		op_raw(o);
		break;
	case 3:
		op_keys();
		break;
	case 4:
		op_send(o);
		break;
	case 5:
		op_timer();
		break;
	case 6:
		op_retry(o);
		break;
	default:
		op_close(o);
	}
	sem_post(&H.step_done);
}

/* ---- one input: start, steps, end ---- */

static void init_keys(void)
{
	uint8_t c2s[32], s2c[32];
	rudp_initial_secrets(H.odcid, c2s, s2c);
	/* the peer of a server connection is its client, and the other way round */
	bool server = H.cur == NULL;
	FUZZ_CHECK(rudp_aead_init(&H.init_tx, true, true, server ? c2s : s2c) == 0);
	FUZZ_CHECK(rudp_aead_init(&H.init_rx, true, false, server ? s2c : c2s) == 0);
	H.have_init = true;
}

static void start_fn(struct shard *sh, struct eng_mail *m)
{
	(void)m;
	uint8_t setup = take();
	H.aes = setup & 2;
	if (setup & 1) {
		/* a server connection: our first Initial makes it */
		randombytes_buf(&H.odcid, sizeof(H.odcid));
		H.odcid &= 0x00ffffffffffffffull;
	} else {
		struct tp_conn *tc;
		socklen_t len;
		const struct sockaddr_storage *to = from_addr(false, &len);
		FUZZ_CHECK(H.t->vt->connect(H.t, sh, (const struct sockaddr *)to, len, NULL, &tc) ==
			   0);
		H.cur = (struct rudp_conn *)tc;
		H.conns_seen = 1;
		H.odcid = H.cur->odcid;
	}
	init_keys();
	sem_post(&H.step_done);
}

static void finish_fn(struct shard *sh, struct eng_mail *m)
{
	(void)sh;
	(void)m;
	drain_sinks();
	for (struct rudp_conn *c = H.rs->conns; c; c = c->next)
		if (c->state != RS_CLOSED)
			H.t->vt->close(&c->base, 0, "fuzz input ends");
	sem_post(&H.step_done);
}

/* Finalize closed connections whose sends are all back (the timer would, a tick later). */
static void reap_fn(struct shard *sh, struct eng_mail *m)
{
	(void)m;
	drain_sinks();
	for (struct rudp_conn *c = H.rs->conns, *next; c; c = next) {
		next = c->next;
		FUZZ_CHECK(c->state == RS_CLOSED);
		if (!c->inflight_tx)
			c->timer.fn(&c->timer, c->timer.ctx);
	}
	H.reaped = H.rs->conns == NULL;
	if (H.reaped) {
		struct rudp_shard *rs = H.rs;
		FUZZ_CHECK(H.cur == NULL); /* every announced connection reported its end */
		FUZZ_CHECK(sh->live == H.base_live);
		FUZZ_CHECK(sh->timers.count == H.base_timers);
		FUZZ_CHECK(rs->pending_hs == 0);
		FUZZ_CHECK(rs->blocked == NULL);
		FUZZ_CHECK(rs->lsock && rs->lsock->nconns == 0);
		unsigned free_tx = 0;
		for (struct rudp_txbuf *t = rs->free_tx; t; t = t->next)
			free_tx++;
		FUZZ_CHECK(free_tx == rs->ntx); /* every send buffer came back */
		for (unsigned b = 0; b < RUDP_CID_BUCKETS; b++)
			FUZZ_CHECK(rs->cids[b] == NULL);
	}
	sem_post(&H.step_done);
}

static void listening_fn(struct shard *sh, struct eng_mail *m)
{
	(void)m;
	H.reaped = H.rs->lsock != NULL;
	H.base_live = sh->live;
	H.base_timers = sh->timers.count;
	sem_post(&H.step_done);
}

static int open_sink(int i)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in *a = (struct sockaddr_in *)&H.sink_addr[i];
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	H.sink_len[i] = sizeof(*a);
	if (fd < 0 || bind(fd, (struct sockaddr *)a, sizeof(*a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)a, &H.sink_len[i]) < 0)
		return -1;
	H.sink[i] = fd;
	return 0;
}

/* The engine's info lines (one per connection's end) would bury libFuzzer's; errors still show. */
static void engine_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level == 0)
		fprintf(stderr, "engine: %s\n", msg);
}

static void init_once(void)
{
	FUZZ_CHECK(sodium_init() >= 0);
	FUZZ_CHECK(sem_init(&H.step_done, 0, 0) == 0);
	FUZZ_CHECK(open_sink(0) == 0 && open_sink(1) == 0);
	struct eng_config ec = { .shards = 1, .sq_entries = 64, .rx_buffer_size = 4096,
				 .rx_buffer_count = 16, .tx_arena_size = 64 * 1024, .log = engine_log };
	FUZZ_CHECK(eng_new(&ec, &H.e) == 0);
	H.sh = &H.e->shards[0];
	/* timeouts far beyond one input: only the timer op and the reaper run timers */
	struct tp_limits lim = { .max_msg_size = MAX_MSG, .frame_timeout_ms = 60000,
				 .connect_timeout_ms = 60000, .idle_timeout_ms = 60000 };
	FUZZ_CHECK(rudp_transport_new(H.e, &callbacks, NULL, &lim, NULL, &H.t) == 0);
	H.rs = &((struct rudp_transport *)H.t)->shards[0];
	struct sockaddr_in la = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	uint16_t port;
	bool fallback;
	FUZZ_CHECK(H.t->vt->listen(H.t, (struct sockaddr *)&la, sizeof(la), &port, &fallback) == 0);
	for (unsigned i = 0; i < REAP_TRIES && !H.reaped; i++)
		run_on_shard(listening_fn);
	FUZZ_CHECK(H.reaped);
	rudp_ranges_init(&H.seen, RUDP_MAX_ACK_RANGES);
	H.ready = true;
}

/* The canonical peer stream: frames of messages sized by seed, each byte telling its place. */
static void make_canon(uint8_t seed)
{
	static const uint16_t sizes[] = { 0, 1, 7, 33, 100, 500, 1199, 1500, 3000, 4000 };
	for (uint32_t off = 0, i = 0; off < CANON_LEN; i++) {
		uint32_t rem = CANON_LEN - off; /* never below a frame header */
		uint32_t len = sizes[(seed + i * (seed | 1u)) % 10];
		if (FRAME_HDR_LEN + len > rem || rem - FRAME_HDR_LEN - len < FRAME_HDR_LEN)
			len = rem - FRAME_HDR_LEN; /* the last message takes the rest */
		eng_put_be32(H.canon + off, len);
		for (uint32_t j = 0; j < len; j++)
			H.canon[off + FRAME_HDR_LEN + j] = (uint8_t)(i + j * 31);
		off += FRAME_HDR_LEN + len;
	}
}

static void reset_input(const uint8_t *data, size_t size)
{
	H.in = data;
	H.end = data + size;
	H.cur = NULL;
	H.conns_seen = 0;
	H.have_init = H.have_keys = false;
	H.next_pn = 0;
	H.largest_seen = UINT64_MAX;
	H.canon_delivered = H.stream_sent_end = 0;
	H.tainted = H.expect_no_delivery = false;
	H.delivered = 0;
	H.reaped = false;
	H.seen.n = 0;
	H.base_msgs = eng_msgs_live();
}

void fuzz_rudp_conn(const uint8_t *data, size_t size)
{
	if (size < 2)
		return;
	if (!H.ready)
		init_once();
	reset_input(data, size);
	make_canon(data[1]);
	run_on_shard(start_fn);
	take(); /* the message-size seed */
	while (H.in < H.end)
		run_on_shard(step_fn);
	run_on_shard(finish_fn);
	for (unsigned i = 0; i < REAP_TRIES && !H.reaped; i++)
		run_on_shard(reap_fn);
	FUZZ_CHECK(H.reaped); /* every connection ended and was freed */
	FUZZ_CHECK(eng_msgs_live() == H.base_msgs);
	rudp_aead_free(&H.init_tx);
	rudp_aead_free(&H.init_rx);
	if (H.have_keys) {
		rudp_aead_free(&H.pkt_tx);
		rudp_aead_free(&H.pkt_rx);
	}
}
