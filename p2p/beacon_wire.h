/*
 * beacon_wire.h - the LAN beacon's datagram: encode, cheap checks, signature.
 *
 * One fixed-size datagram (docs/PROTOCOL.md, "Beacon"), all integers
 * big-endian:
 *
 *   0  "CRBN" | u8 version (1) | u8 type | u16 flags (0; ignored)
 *   8  network tag (8)
 *  16  peer id: the sender's Ed25519 public key (32)
 *  48  u64 timestamp, Unix milliseconds, strictly increasing per sender
 *  56  u16 TCP port | u16 reliable-UDP port (0 = none)
 *  60  Ed25519 signature over "crust beacon v1" | bytes 0..59 (64)
 * 124  end
 *
 * Pure: bytes in, bytes out; no sockets, no clock. beacon_parse does only
 * the cheap checks, so a receiver can apply its rate limits before paying
 * for beacon_verify. Thread safety: every function is reentrant.
 */
#ifndef CRUST_P2P_BEACON_WIRE_H
#define CRUST_P2P_BEACON_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crust.h"
#include "identity.h"

#define BEACON_MAGIC "CRBN"
#define BEACON_VERSION 1
#define BEACON_SIGNED_LEN 60
#define BEACON_LEN (BEACON_SIGNED_LEN + 64)
#define BEACON_SIG_CONTEXT "crust beacon v1"

enum beacon_type {
	BEACON_ANNOUNCE = 1,   /* periodic: "I am here" */
	BEACON_QUERY = 2,      /* start-up: "I am here, who else is?" (asks for answers) */
	BEACON_ANSWER = 3,     /* an announcement sent because of a query */
};

struct beacon_msg {
	enum beacon_type type;
	uint8_t network_tag[8];
	struct crust_peer_id peer;
	uint64_t ts_ms;
	uint16_t tcp_port;
	uint16_t rudp_port;
};

/* Why a datagram was dropped; BEACON_OK when it was not. */
enum beacon_verdict {
	BEACON_OK = 0,
	BEACON_TRUNCATED,      /* shorter than BEACON_LEN */
	BEACON_OVERSIZED,      /* longer than BEACON_LEN */
	BEACON_BAD_MAGIC,
	BEACON_BAD_VERSION,
	BEACON_BAD_TYPE,
	BEACON_OTHER_NETWORK,
	BEACON_BAD_SIGNATURE,
};

/* A verdict in words, for logs ("oversized", "bad signature", ...). */
const char *beacon_verdict_name(enum beacon_verdict v);

/*
 * Write m (its peer field is ignored: the id's public key is used) into
 * out, signed with id's secret key. Always BEACON_LEN bytes.
 */
void beacon_encode(const struct beacon_msg *m, const struct identity *id,
		   uint8_t out[BEACON_LEN]);

/*
 * The cheap checks, in order: length, magic, version, type, network tag.
 * Fills *m on BEACON_OK (the signature is not checked yet). p is borrowed.
 */
enum beacon_verdict beacon_parse(const uint8_t *p, size_t len, const uint8_t network_tag[8],
				 struct beacon_msg *m);

/*
 * The expensive check: the signature of a datagram beacon_parse accepted,
 * against the peer id inside it. BEACON_OK or BEACON_BAD_SIGNATURE.
 */
enum beacon_verdict beacon_verify(const uint8_t p[BEACON_LEN]);

#endif
