/*
 * rudp_crypto.h - packet protection for reliable UDP: AEAD per packet
 * with nonce = IV xor packet number and the header as associated data
 * (as in QUIC), the public "initial" keys of the handshake phase, and
 * the stateless retry token.
 *
 * Initial keys are derived from the client's first destination
 * connection id: anyone can compute them, so they only catch corruption
 * and blind injection (like QUIC Initial packets). 1-RTT keys come from
 * the secure session once its handshake is done. Every 2^23 packets a
 * direction moves to the next key epoch: key_e = H_base("epoch" | e),
 * computed by both ends from the packet number, so no key-phase bit is
 * needed (AES-GCM's per-key packet limit, RFC 9001 6.6).
 */
#ifndef CRUST_RUDP_CRYPTO_H
#define CRUST_RUDP_CRYPTO_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define RUDP_EPOCH_SHIFT 23
#define RUDP_TOKEN_LEN 20u
#define RUDP_TOKEN_LIFETIME_S 10u

struct rudp_aead_slot {
	EVP_CIPHER_CTX *ctx;
	uint64_t epoch;              /* UINT64_MAX: not keyed yet */
};

struct rudp_aead {
	bool aes;                    /* else ChaCha20-Poly1305 */
	bool encrypt;
	uint8_t base[32], iv[12];
	struct rudp_aead_slot slot[2]; /* epochs e and e +- 1 (reordering across a change) */
};

/* Key one direction from a 32-byte secret (wiped by the caller). 0 or -ENOMEM. */
int rudp_aead_init(struct rudp_aead *a, bool aes, bool encrypt, const uint8_t secret[32]);
void rudp_aead_free(struct rudp_aead *a);
/* Initial secrets of both directions, from the client's first DCID. */
void rudp_initial_secrets(uint64_t odcid, uint8_t c2s[32], uint8_t s2c[32]);
/*
 * Seal in place: hdr (hdr_len bytes, authenticated), then len payload
 * bytes right after it, then RUDP_TAG_LEN bytes for the tag.
 */
int rudp_aead_seal(struct rudp_aead *a, uint64_t pn, uint8_t *hdr, uint32_t hdr_len,
		   uint32_t len);
/* Open in place; len counts payload + tag. -EBADMSG if it does not authenticate. */
int rudp_aead_open(struct rudp_aead *a, uint64_t pn, uint8_t *hdr, uint32_t hdr_len,
		   uint32_t len);

/* Retry token: u32 seconds | MAC(secret, address, seconds, odcid) truncated to 16 bytes. */
void rudp_token_make(const uint8_t secret[32], const struct sockaddr_storage *from,
		     uint64_t odcid, uint32_t now_s, uint8_t out[RUDP_TOKEN_LEN]);
bool rudp_token_check(const uint8_t secret[32], const struct sockaddr_storage *from,
		      uint64_t odcid, uint32_t now_s, const uint8_t *tok, uint32_t len);

#endif
