/*
 * handshake.h - the authenticated key exchange that opens every session.
 *
 * Three messages, SIGMA-style (docs/PROTOCOL.md has the bytes):
 *   msg1 I->R: ephemeral X25519 key, flags, network tag (clear)
 *   msg2 R->I: ephemeral key | AEAD{ identity key, signature over the transcript, port }
 *   msg3 I->R: AEAD{ identity key, signature over the transcript, port }
 * Forward secrecy from the ephemeral X25519 exchange; each side proves its
 * Ed25519 identity by signing the transcript, which binds both ephemeral
 * keys and its role. Pure: bytes in, bytes out, no I/O, no clock.
 */
#ifndef CRUST_P2P_HANDSHAKE_H
#define CRUST_P2P_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crust.h"
#include "identity.h"

#define HS_MAGIC "CRST"
#define HS_VERSION 2
#define HS_MSG1_LEN 48
#define HS_MSG2_LEN 154
#define HS_MSG3_LEN 122
#define HS_REFUSAL_LEN 9
#define HS_MAX_LEN HS_MSG2_LEN
#define HS_FLAG_TRACER 1u
#define HS_FLAG_AES 2u

struct hs_config {
	const struct identity *id;
	uint8_t network_tag[8];
	bool tracer;
	uint16_t listen_port;
	bool has_expected;              /* dialing a known peer id */
	struct crust_peer_id expected;
};

enum hs_status { HS_CONTINUE = 0, HS_DONE = 1 };

struct handshake {
	struct hs_config cfg;
	bool initiator;
	int step;                       /* messages processed */
	bool failed;                    /* once a step failed, every later one fails too */
	uint8_t e_pk[32], e_sk[32];
	uint8_t dh[32];
	uint8_t msg1[HS_MSG1_LEN], msg2[HS_MSG2_LEN], msg3[HS_MSG3_LEN];
	/* results */
	struct crust_peer_id peer;
	uint16_t peer_port;
	bool aes;
	uint8_t tx_key[32], rx_key[32];
	uint8_t transcript[32];         /* same on both ends: names this connection */
};

/* The 8-byte network tag of a network name (NULL or "" = all zero): BLAKE2b-64. */
void hs_network_tag(const char *name, uint8_t out[8]);

/* Cheap check of a would-be msg1 before any key work (for the responder's limits). */
int hs_precheck_msg1(const uint8_t *in, size_t len, const struct hs_config *cfg, char *why,
		     size_t wlen);

/* Begin. The initiator gets msg1 in out (*outlen set); the responder gets nothing. */
int hs_start(struct handshake *hs, const struct hs_config *cfg, bool initiator, uint8_t *out,
	     size_t *outlen);

/*
 * Take the peer's next message. Returns HS_CONTINUE or HS_DONE, with a
 * reply in out when *outlen > 0, or -errno with a reason in why:
 * -EPROTO malformed/refused, -EACCES authentication failed (wrong key,
 * bad signature, not the expected peer), -ECONNREFUSED the peer refused
 * us. On an error out may hold a refusal to send before closing (the
 * responder tells a dialer of another network, version or mode why).
 */
int hs_recv(struct handshake *hs, const uint8_t *in, size_t len, uint8_t *out, size_t *outlen,
	    char *why, size_t wlen);

/* Wipe every secret (keys, ephemeral, DH). */
void hs_wipe(struct handshake *hs);

#endif
