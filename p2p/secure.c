/*
 * secure.c - a connection's secure session: driving the handshake over
 * the transport, installing the record sealer, and opening received
 * records into messages for the user.
 *
 * Handshake frames go out RAW (never sealed) so one queued just before
 * the keys are installed still leaves in the clear. Received records are
 * decrypted in place: a record that arrived whole in a receive buffer
 * becomes views into that buffer, one per message, without a copy.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator.h"
#include "node.h"
#include "pex.h"
#include "rendezvous.h"
#include "transports/framing.h"

static int seal_cb(void *ctx, uint8_t *rec, uint32_t body_len)
{
	return session_seal(ctx, rec, body_len);
}

static int send_raw(struct p2p_conn *pc, const uint8_t *p, size_t len)
{
	struct crust_msg *m = eng_msg_alloc(len);
	if (!m)
		return -ENOMEM;
	memcpy(m->data, p, len);
	m->flags |= ENG_MSG_RAW;
	int err = pc->tc->t->vt->send(pc->tc, m);
	if (err)
		eng_msg_free(m);
	return err;
}

static void hs_config_of(struct p2p_conn *pc, struct hs_config *cfg)
{
	struct crust_service *svc = pc->svc;
	memset(cfg, 0, sizeof(*cfg));
	cfg->id = &svc->identity;
	memcpy(cfg->network_tag, svc->network_tag, 8);
	cfg->tracer = svc->cfg.tracer;
	cfg->listen_port = svc->tcp_port;
	cfg->has_expected = pc->expect_peer;
	cfg->expected = pc->expected;
}

int secure_start(struct p2p_conn *pc)
{
	pc->hs = calloc(1, sizeof(*pc->hs));
	if (!pc->hs)
		return -ENOMEM;
	pc->state = CONN_HANDSHAKE;
	struct hs_config cfg;
	hs_config_of(pc, &cfg);
	uint8_t out[HS_MAX_LEN];
	size_t outlen;
	if (pc->relay_dial) {
		/* the coordinator pairs us with the peer by this token, then splices */
		uint8_t pre[RELAY_PREAMBLE_LEN];
		relay_preamble_encode(pc->relay_token, pre);
		int err = send_raw(pc, pre, sizeof(pre));
		if (err)
			return err;
	}
	hs_start(pc->hs, &cfg, pc->outgoing, out, &outlen);
	eng_timer_arm(&pc->tc->sh->timers, &pc->hs_timer, pc->svc->cfg.handshake_timeout_ms);
	return outlen ? send_raw(pc, out, outlen) : 0;
}

/*
 * A transport that seals every packet (reliable UDP) gets keys derived
 * from the session's (so the two never share a key); records then travel
 * clear inside those packets (session inner mode): one AEAD per packet,
 * none per record.
 */
static int set_packet_keys(struct p2p_conn *pc)
{
	struct handshake *hs = pc->hs;
	struct tp_packet_keys k = { .aes = hs->aes };
	crypto_generichash(k.tx, 32, (const uint8_t *)"crust v2 packets", 16, hs->tx_key, 32);
	crypto_generichash(k.rx, 32, (const uint8_t *)"crust v2 packets", 16, hs->rx_key, 32);
	int err = pc->tc->t->vt->set_packet_keys(pc->tc, &k);
	sodium_memzero(&k, sizeof(k));
	if (!err)
		session_set_inner(&pc->session);
	return err;
}

/* Keys are agreed: seal from now on, then decide who the peer is to us. */
static void handshake_done(struct p2p_conn *pc)
{
	struct crust_service *svc = pc->svc;
	struct handshake *hs = pc->hs;
	if (crust_peer_eq(&hs->peer, &svc->id)) {
		conn_close(pc, -EPROTO, "connected to ourselves");
		return;
	}
	if (blacklist_has_peer(&svc->blacklist, &hs->peer)) {
		conn_close(pc, -EPERM, "blacklisted");
		return;
	}
	if (session_init(&pc->session, svc->cfg.tracer, hs->aes, hs->tx_key, hs->rx_key) < 0) {
		conn_close(pc, -ENOMEM, "out of memory");
		return;
	}
	bool packets = false;
	if (pc->tc->t->vt->set_packet_keys && !svc->cfg.tracer) {
		if (set_packet_keys(pc) < 0) {
			conn_close(pc, -ENOMEM, "cannot install packet keys");
			return;
		}
		packets = true;
	}
	pc->sealer = (struct eng_sealer){
		.hdr_room = session_hdr_room(&pc->session),
		.tag_room = session_tag_room(&pc->session),
		.header_only = packets || svc->cfg.tracer,
		.seal = seal_cb,
		.ctx = &pc->session,
	};
	pc->tc->t->vt->set_sealer(pc->tc, &pc->sealer);
	if (pc->outgoing) {
		/* the responder may still refuse us (blacklist, duplicate): wait for its first record */
		pc->state = CONN_CONFIRMING;
		return;
	}
	conn_established(pc);
	/* our first record tells the initiator it was accepted */
	if (pc->state == CONN_UP)
		conn_send_ctrl(pc, CTRL_PING);
}

static void handshake_step(struct p2p_conn *pc, struct crust_msg *m)
{
	uint8_t out[HS_MAX_LEN];
	size_t outlen;
	char why[CRUST_REASON_LEN];
	int ret = hs_recv(pc->hs, m->data, m->len, out, &outlen, why, sizeof(why));
	eng_msg_free(m);
	if (ret < 0 && outlen && send_raw(pc, out, outlen) == 0) {
		/* let the refusal reach the dialer, then end (the handshake timer bounds it) */
		pc->refused = true;
		if (pc->limited) {
			limiter_release(&pc->svc->limiter, &pc->tc->remote);
			pc->limited = false;
		}
		pc->tc->t->vt->shutdown(pc->tc, ret, why);
		return;
	}
	if (ret < 0) {
		conn_close(pc, ret, why);
		return;
	}
	if (outlen && send_raw(pc, out, outlen) < 0) {
		conn_close(pc, -ENOMEM, "cannot send handshake");
		return;
	}
	if (ret == HS_DONE)
		handshake_done(pc);
}

/*
 * Token bucket on incoming records and messages, control ones included
 * (off when max_rx_msgs_per_s is 0): each costs a decryption or a parse.
 */
static bool flooding(struct p2p_conn *pc, uint64_t now)
{
	uint32_t rate = pc->svc->cfg.max_rx_msgs_per_s;
	if (!rate)
		return false;
	if (!pc->flood_ms) {
		pc->flood_ms = now;
		pc->flood_tokens = rate;
	}
	pc->flood_tokens += (double)(now - pc->flood_ms) * rate / 1000.0;
	if (pc->flood_tokens > rate)
		pc->flood_tokens = rate;
	pc->flood_ms = now;
	if (pc->flood_tokens < 1)
		return true;
	pc->flood_tokens -= 1;
	return false;
}

static void control(struct p2p_conn *pc, const uint8_t *p, uint32_t len)
{
	if (len == 1 && p[0] == CTRL_RETIRE)
		pc->peer_retired = true;
	else if (len >= 1 && (p[0] == CTRL_PEX_ASK || p[0] == CTRL_PEX_LIST))
		pex_control(pc, p, len);
	else if (len >= 1 && rdv_is_code(p[0]) && pc->svc->coord)
		coord_control(pc, p, len);
	else if (len >= 1 && rdv_is_code(p[0]))
		rdv_control(pc, p, len);
	/* CTRL_PING and unknown codes: receiving it was the point */
}

/*
 * One user message of the record *rec: a view of rec's receive buffer;
 * for a reassembled record holding just this message, the record itself
 * (then *rec becomes NULL); otherwise a copy.
 */
static struct crust_msg *take_message(struct crust_msg **rec, uint8_t *p, uint32_t len,
				      const uint8_t *plain, const uint8_t *end)
{
	struct crust_msg *r = *rec;
	if (r->kind == ENG_MSG_VIEW)
		return eng_msg_view(r->rxbuf, p, len);
	if (p == plain + FRAME_HDR_LEN && p + len == end) {
		/* large messages travel alone in their record: hand the record over */
		if (r->rx_acct)
			eng_bufring_heap_release(r->rx_acct, r->len - len);
		r->data = p;
		r->len = len;
		*rec = NULL;
		return r;
	}
	struct crust_msg *m = eng_msg_alloc(len);
	if (m) {
		memcpy(m->data, p, len);
		if (r->rx_acct)
			eng_msg_charge_rx(m, r->rx_acct);
	}
	return m;
}

static void deliver(struct p2p_conn *pc, struct crust_msg *m)
{
	struct crust_service *svc = pc->svc;
	atomic_fetch_add_explicit(&svc->shards[pc->tc->sh->id].rx_msgs, 1, memory_order_relaxed);
	struct crust_event ev;
	event_init(&ev, CRUST_EV_NEW_MESSAGE);
	event_fill_conn(&ev, pc);
	ev.msg = m;
	event_emit(svc, &ev);
}

/* Open a record and hand its messages out; anything wrong ends the connection. */
static void record_received(struct p2p_conn *pc, struct crust_msg *rec)
{
	uint8_t *plain, *msg;
	uint32_t plain_len, len;
	bool ctrl;
	int err = session_open(&pc->session, rec->data, rec->len, &plain, &plain_len);
	if (err == -EBADMSG) {
		eng_msg_free(rec);
		conn_abuse(pc, -EBADMSG, "integrity");
		return;
	}
	if (err) {
		/* ours, not the peer's: the session could not take its next key */
		eng_msg_free(rec);
		conn_close(pc, err, "cannot re-key the session");
		return;
	}
	uint64_t now = pc->tc->sh->now_ms;
	if (pc->state == CONN_CONFIRMING) {
		conn_established(pc);
		if (pc->state == CONN_CLOSING) {
			eng_msg_free(rec);
			return;
		}
	}
	pc->last_rx_ms = now;
	if (flooding(pc, now)) {
		eng_msg_free(rec);
		conn_abuse(pc, -EAGAIN, "message flood above the configured rate");
		return;
	}
	uint8_t *cursor = plain;
	const uint8_t *end = plain + plain_len;
	int ret;
	bool first = true;
	while ((ret = session_next_msg(&cursor, end, &msg, &len, &ctrl)) == 1) {
		/* the record itself paid for its first message */
		if (!first && flooding(pc, now)) {
			eng_msg_free(rec);
			conn_abuse(pc, -EAGAIN, "message flood above the configured rate");
			return;
		}
		first = false;
		if (ctrl) {
			control(pc, msg, len);
			continue;
		}
		if (len > pc->svc->cfg.max_msg_size) {
			char why[CRUST_REASON_LEN];
			snprintf(why, sizeof(why), "message of %u bytes above the maximum (%u bytes)",
				 len, pc->svc->cfg.max_msg_size);
			eng_msg_free(rec);
			conn_abuse(pc, -EMSGSIZE, why);
			return;
		}
		pc->last_user_ms = now;
		struct crust_msg *m = take_message(&rec, msg, len, plain, end);
		if (!m) {
			ret = -ENOMEM;
			break;
		}
		deliver(pc, m);
		if (!rec)
			return; /* the record became the message */
	}
	eng_msg_free(rec);
	if (ret < 0)
		conn_abuse(pc, ret, ret == -ENOMEM ? "out of memory" : "malformed record");
}

void secure_received(struct p2p_conn *pc, struct crust_msg *m)
{
	if (pc->refused) {
		eng_msg_free(m); /* nothing a refused peer says is read */
		return;
	}
	if (pc->state == CONN_HANDSHAKE && !pc->tc->outgoing && pc->hs->step == 0 &&
	    relay_first_frame(pc, m->data, m->len)) {
		eng_msg_free(m); /* coordinator: this connection is a relay leg from now on */
		return;
	}
	if (pc->state == CONN_HANDSHAKE)
		handshake_step(pc, m);
	else
		record_received(pc, m);
}
