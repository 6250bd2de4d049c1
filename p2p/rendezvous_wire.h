/*
 * rendezvous_wire.h - the rendezvous control messages between a node and
 * its coordinator, carried inside the crust session as control messages
 * (docs/PROTOCOL.md "Rendezvous"), and the relay preamble. Pure: bytes
 * in, bytes out; every decoder refuses trailing or missing bytes.
 *
 *   register    u8 5 | u8 n (<= RDV_MAX_EPS) | n x endpoint
 *   registered  u8 6 | u32 ttl_ms | u8 n (1..16) | n x endpoint: what the coordinator
 *               sees (the session's source), then the coordinator's STUN addresses
 *   reach       u8 7 | u32 req | peer id (32)
 *   punch       u8 8 | u32 req | u8 flags | peer id (32) | u32 start_in_ms |
 *               token (16) | u8 n | n x endpoint
 *   refused     u8 9 | u32 req | u8 code | u8 len | len bytes of reason
 *   endpoint    u8 transport (1 tcp, 2 udp) | u8 family (4, 6) | u16 port | 4 or 16 bytes
 *
 *   relay preamble (first frame of a TCP connection to the coordinator's
 *   listener, instead of the handshake): "CRLY" | u8 version 1 | u8 0 | token (16)
 *
 *   UDP punch probe (a datagram from the reliable-UDP listener's port):
 *   u8 0x3f | "crpb" | u8 version 1 | u8 flags (bit 0: an answer; bit 1: sent to a
 *   predicted port, or answering a path found by prediction) | token (16) |
 *   sender's peer id (32). The first byte's top bits are 0, so reliable UDP
 *   hands it up; bytes 2-3 are never a STUN length, so it is no STUN message.
 */
#ifndef CRUST_P2P_RENDEZVOUS_WIRE_H
#define CRUST_P2P_RENDEZVOUS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crust.h"

#define RDV_MAX_EPS 16u
#define RDV_EP_MAX 20u
#define RDV_TOKEN_LEN 16u
#define RDV_MSG_MAX (1u + 4u + 1u + 32u + 4u + RDV_TOKEN_LEN + 1u + RDV_MAX_EPS * RDV_EP_MAX)
#define RDV_REASON_MAX 80u
#define RELAY_PREAMBLE_LEN 22u
#define PUNCH_PROBE_LEN 55u
#define PUNCH_PROBE_ANSWER 1u
#define PUNCH_PROBE_PREDICTED 2u   /* sent to a predicted port, or answers a path found so */
#define PUNCH_PROBE_BIRTHDAY 4u    /* sent from an extra socket (birthday.h): it dials, never accepts */

enum rdv_code { RDV_REGISTER = 5, RDV_REGISTERED = 6, RDV_REACH = 7, RDV_PUNCH = 8,
		RDV_REFUSED = 9 };

enum rdv_punch_flags {
	RDV_PUNCH_INITIATE = 1,   /* the receiver runs the handshake as initiator */
	RDV_PUNCH_RELAY = 2,      /* the coordinator relays if punching fails (token valid) */
};

enum rdv_refusal {
	RDV_UNKNOWN_PEER = 1,     /* no live registration for that id */
	RDV_RATE_LIMITED = 2,
	RDV_NOT_REGISTERED = 3,   /* the asker must register first */
	RDV_TABLE_FULL = 4,
	RDV_BAD_REQUEST = 5,
};

/* udp endpoints travel as transport 2 (CRUST_TRANSPORT_RUDP) */
struct rdv_msg {
	enum rdv_code code;
	uint32_t req, ttl_ms, start_in_ms;
	uint8_t flags, refusal;
	struct crust_peer_id peer;
	uint8_t token[RDV_TOKEN_LEN];
	struct crust_endpoint eps[RDV_MAX_EPS];
	unsigned neps;
	char reason[RDV_REASON_MAX + 1];
};

/* Encode m into out (RDV_MSG_MAX bytes); its length. Endpoints beyond RDV_MAX_EPS are left out. */
size_t rdv_encode(const struct rdv_msg *m, uint8_t *out);
/* Decode a control message (p[0] is its code); -EBADMSG if it does not parse exactly. */
int rdv_decode(const uint8_t *p, size_t len, struct rdv_msg *m);
/* True if p[0] is a rendezvous code. */
bool rdv_is_code(uint8_t code);

void relay_preamble_encode(const uint8_t token[RDV_TOKEN_LEN], uint8_t out[RELAY_PREAMBLE_LEN]);
/* True (token filled) if p is a relay preamble. */
bool relay_preamble_decode(const uint8_t *p, size_t len, uint8_t token[RDV_TOKEN_LEN]);

struct punch_probe {
	uint8_t flags;
	uint8_t token[RDV_TOKEN_LEN];
	struct crust_peer_id from;
};

void punch_probe_encode(const struct punch_probe *pp, uint8_t out[PUNCH_PROBE_LEN]);
/* True (pp filled) if p is a probe. */
bool punch_probe_decode(const uint8_t *p, size_t len, struct punch_probe *pp);

#endif
