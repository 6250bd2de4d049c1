/*
 * session.h - records of an established session: sealing and opening
 * (AES-256-GCM or ChaCha20-Poly1305, counter nonces, rekeying), or the
 * tracer mode's clear records. Pure: bytes in, bytes out; no I/O.
 *
 * Wire (docs/PROTOCOL.md): frame = u32 length | record.
 *   secure: u8 0x10 | AEAD(plaintext) | 16-byte tag
 *   tracer: "CRTR" | u8 0x20 | u64 counter | plaintext
 *   inner:  u8 0x30 | plaintext (only inside packets the transport seals)
 * plaintext = messages, each u32 header | bytes (header bit 31: a control
 * message, e.g. a keepalive); a record may hold none.
 * Nonces are the per-direction record counter, never sent: a replayed,
 * reordered, dropped or altered record fails to open.
 */
#ifndef CRUST_P2P_SESSION_H
#define CRUST_P2P_SESSION_H

#include <openssl/evp.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

#define REC_SECURE 0x10
#define REC_TRACER 0x20
#define REC_INNER 0x30     /* clear record inside a transport that seals every packet */
#define REC_TRACER_MAGIC "CRTR"
#define SESSION_TAG_LEN 16u
/* keys change every this many records per direction, long before 2^64 nonces */
#define SESSION_REKEY_RECORDS (1ull << 24)

/*
 * AES-256-GCM runs on OpenSSL's EVP (about 2.5x libsodium 1.0.18's speed
 * on this hardware, see docs/BENCHMARKS.md; the same standard GCM on the
 * wire); ChaCha20-Poly1305 on libsodium.
 */
struct session_dir {
	uint8_t key[32];
	uint64_t counter;
	EVP_CIPHER_CTX *aes;      /* keyed once, when AES */
};

struct session {
	bool tracer;
	bool inner;               /* records ride inside AEAD packets (reliable UDP) */
	bool aes;
	struct session_dir tx, rx;
};

/* Set up from the handshake's directional keys (wiped by the caller). 0 or -ENOMEM. */
int session_init(struct session *s, bool tracer, bool aes, const uint8_t tx_key[32],
		 const uint8_t rx_key[32]);
void session_wipe(struct session *s);
/*
 * Records in clear: the transport protects every packet with keys from
 * this session (reliable UDP), so sealing records again would pay the
 * AEAD twice. Record = u8 0x30 | plaintext. The record keys are wiped.
 */
void session_set_inner(struct session *s);

/* Bytes before / after the plaintext in a sealed frame (frame header included). */
uint32_t session_hdr_room(const struct session *s);
uint32_t session_tag_room(const struct session *s);

/*
 * Seal in place: rec has hdr_room bytes to fill, body_len plaintext
 * bytes, then tag_room bytes to fill. Returns 0 (-EOVERFLOW if the
 * record would not fit a frame; -EIO / -ENOMEM if a re-key or AES failed:
 * the session is done).
 */
int session_seal(struct session *s, uint8_t *rec, uint32_t body_len);

/*
 * Open a received record (a frame's payload) in place. On success
 * *plain and *plain_len give the plaintext inside rec. -EBADMSG: integrity
 * failure (tampered, replayed, reordered, wrong key or mode); -EIO /
 * -ENOMEM: the re-key due at this record failed here (not the peer's fault;
 * the session is done).
 */
int session_open(struct session *s, uint8_t *rec, uint32_t len, uint8_t **plain,
		 uint32_t *plain_len);

/*
 * Walk the messages of a plaintext: returns 1 with the next message
 * (*ctrl: a control message, FRAME_CTRL_BIT set in its header), 0 at the
 * end, -EBADMSG if a length runs past the end.
 */
int session_next_msg(uint8_t **cursor, const uint8_t *end, uint8_t **msg, uint32_t *len,
		     bool *ctrl);

#endif
