/*
 * handshake.c - the three-message authenticated key exchange (see
 * handshake.h and docs/PROTOCOL.md). Keys are derived with keyed
 * BLAKE2b-256 over labelled transcripts:
 *   dh      = X25519(e_own, e_peer)
 *   base    = H_dh("crust v2 hs" | msg1 | msg2[0..40])
 *   k_hs_r  = H_base("r"), k_hs_i = H_base("i")     (ChaCha20-Poly1305, nonce 0)
 *   t_r     = H("crust v2 responder" | msg1 | msg2[0..40] | s_r)   signed by R
 *   t_i     = H("crust v2 initiator" | msg1 | msg2 | s_i)          signed by I
 *   final   = H_dh("crust v2 keys" | msg1 | msg2 | msg3)
 *   k_i2r   = H_final("i2r"), k_r2i = H_final("r2i")
 *   transcript id = H("crust v2 id" | msg1 | msg2 | msg3)
 */
#include "handshake.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define HDR_LEN 8
#define SEALED_LEN (32 + 64 + 2 + 16)
#define M2_CLEAR (HDR_LEN + 32)

void hs_network_tag(const char *name, uint8_t out[8])
{
	memset(out, 0, 8);
	if (name && *name)
		crypto_generichash(out, 8, (const unsigned char *)name, strlen(name), NULL, 0);
}

static void put_hdr(uint8_t *p, uint8_t type, uint16_t flags)
{
	memcpy(p, HS_MAGIC, 4);
	p[4] = HS_VERSION;
	p[5] = type;
	p[6] = (uint8_t)(flags >> 8);
	p[7] = (uint8_t)flags;
}

static uint16_t get_flags(const uint8_t *p)
{
	return (uint16_t)(p[6] << 8 | p[7]);
}

/* Keyed (or plain, key NULL) BLAKE2b-256 over a label and up to three parts. */
static void hash(uint8_t out[32], const uint8_t *key, const char *label, const uint8_t *a,
		 size_t alen, const uint8_t *b, size_t blen, const uint8_t *c, size_t clen)
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, key, key ? 32 : 0, 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	if (alen)
		crypto_generichash_update(&st, a, alen);
	if (blen)
		crypto_generichash_update(&st, b, blen);
	if (clen)
		crypto_generichash_update(&st, c, clen);
	crypto_generichash_final(&st, out, 32);
}

static uint16_t own_flags(const struct hs_config *cfg, bool aes)
{
	return (uint16_t)((cfg->tracer ? HS_FLAG_TRACER : 0) | (aes ? HS_FLAG_AES : 0));
}

/* Why a responder refuses a msg1, as sent in a refusal (type 4). */
enum refusal { REFUSE_NETWORK = 1, REFUSE_VERSION = 2, REFUSE_TRACER = 3 };

static size_t put_refusal(const struct hs_config *cfg, enum refusal why, uint8_t *out)
{
	put_hdr(out, 4, own_flags(cfg, false));
	out[8] = (uint8_t)why;
	return HS_REFUSAL_LEN;
}

/* A refusal in place of msg2: say what the responder said. */
static int on_refusal(const uint8_t *in, size_t len, char *why, size_t wlen)
{
	if (len != HS_REFUSAL_LEN) {
		snprintf(why, wlen, "malformed handshake (refusal of %zu bytes)", len);
		return -EPROTO;
	}
	bool tracer = get_flags(in) & HS_FLAG_TRACER;
	switch (in[8]) {
	case REFUSE_NETWORK:
		snprintf(why, wlen, "refused by peer: it belongs to another network");
		break;
	case REFUSE_VERSION:
		snprintf(why, wlen, "refused by peer: unsupported protocol version");
		break;
	case REFUSE_TRACER:
		snprintf(why, wlen, "refused by peer: tracer mode mismatch (the peer is %s)",
			 tracer ? "tracer" : "secure");
		break;
	default:
		snprintf(why, wlen, "refused by peer (reason %u)", in[8]);
	}
	return -ECONNREFUSED;
}

static int check_hdr(const uint8_t *in, size_t len, uint8_t type, size_t want, char *why,
		     size_t wlen)
{
	if (len < 6 || memcmp(in, HS_MAGIC, 4) != 0) {
		snprintf(why, wlen, "not a crust peer (bad magic)");
		return -EPROTO;
	}
	if (in[4] != HS_VERSION) {
		snprintf(why, wlen, "unsupported protocol version %u (we speak %u)", in[4], HS_VERSION);
		return -EPROTO;
	}
	if (in[5] != type || len != want) {
		snprintf(why, wlen, "malformed handshake (type %u, %zu bytes; expected type %u)", in[5],
			 len, type);
		return -EPROTO;
	}
	return 0;
}

static int check_tracer(const struct hs_config *cfg, uint16_t flags, char *why, size_t wlen)
{
	bool theirs = flags & HS_FLAG_TRACER;
	if (theirs != cfg->tracer) {
		snprintf(why, wlen, "tracer mode mismatch: we are %s, the peer is %s",
			 cfg->tracer ? "tracer" : "secure", theirs ? "tracer" : "secure");
		return -EPROTO;
	}
	return 0;
}

int hs_precheck_msg1(const uint8_t *in, size_t len, const struct hs_config *cfg, char *why,
		     size_t wlen)
{
	int err = check_hdr(in, len, 1, HS_MSG1_LEN, why, wlen);
	if (err)
		return err;
	if (memcmp(in + HDR_LEN, cfg->network_tag, 8) != 0) {
		snprintf(why, wlen, "peer belongs to another network");
		return -EPROTO;
	}
	return check_tracer(cfg, get_flags(in), why, wlen);
}

int hs_start(struct handshake *hs, const struct hs_config *cfg, bool initiator, uint8_t *out,
	     size_t *outlen)
{
	memset(hs, 0, sizeof(*hs));
	hs->cfg = *cfg;
	hs->initiator = initiator;
	*outlen = 0;
	if (!initiator)
		return HS_CONTINUE; /* no key work until a msg1 passed the cheap checks */
	crypto_box_keypair(hs->e_pk, hs->e_sk);
	put_hdr(hs->msg1, 1, own_flags(cfg, crypto_aead_aes256gcm_is_available()));
	memcpy(hs->msg1 + HDR_LEN, cfg->network_tag, 8);
	memcpy(hs->msg1 + 16, hs->e_pk, 32);
	memcpy(out, hs->msg1, HS_MSG1_LEN);
	*outlen = HS_MSG1_LEN;
	return HS_CONTINUE;
}

/* dh and the handshake keys from the two ephemerals; -EPROTO for a bad point. */
static int derive_hs_keys(struct handshake *hs, const uint8_t peer_e[32], uint8_t k_r[32],
			  uint8_t k_i[32])
{
	if (crypto_scalarmult(hs->dh, hs->e_sk, peer_e) != 0)
		return -EPROTO;
	uint8_t base[32];
	hash(base, hs->dh, "crust v2 hs", hs->msg1, HS_MSG1_LEN, hs->msg2, M2_CLEAR, NULL, 0);
	hash(k_r, base, "r", NULL, 0, NULL, 0, NULL, 0);
	hash(k_i, base, "i", NULL, 0, NULL, 0, NULL, 0);
	sodium_memzero(base, sizeof(base));
	return 0;
}

/* The identity proof: our public key, a signature of t, our listening port, sealed with k. */
static void seal_proof(const struct handshake *hs, const uint8_t t[32], const uint8_t k[32],
		       const uint8_t *ad, size_t adlen, uint8_t out[SEALED_LEN])
{
	uint8_t plain[32 + 64 + 2];
	memcpy(plain, hs->cfg.id->pk, 32);
	crypto_sign_detached(plain + 32, NULL, t, 32, hs->cfg.id->sk);
	plain[96] = (uint8_t)(hs->cfg.listen_port >> 8);
	plain[97] = (uint8_t)hs->cfg.listen_port;
	static const uint8_t nonce[12];
	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, plain, sizeof(plain), ad, adlen, NULL,
						  nonce, k);
	sodium_memzero(plain, sizeof(plain));
}

/*
 * Open the peer's proof; t_of computes what it must have signed from its
 * public key. -EACCES if it does not verify or is not the expected peer.
 */
static int open_proof(struct handshake *hs, const uint8_t *sealed, const uint8_t k[32],
		      const uint8_t *ad, size_t adlen, const char *label, const uint8_t *m2,
		      size_t m2len, char *why, size_t wlen)
{
	uint8_t plain[32 + 64 + 2];
	static const uint8_t nonce[12];
	if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, NULL, NULL, sealed, SEALED_LEN, ad,
						      adlen, nonce, k) != 0) {
		snprintf(why, wlen, "handshake authentication failed (cannot open the proof)");
		return -EACCES;
	}
	uint8_t t[32];
	hash(t, NULL, label, hs->msg1, HS_MSG1_LEN, m2, m2len, plain, 32);
	if (crypto_sign_verify_detached(plain + 32, t, 32, plain) != 0) {
		snprintf(why, wlen, "handshake authentication failed (bad signature)");
		return -EACCES;
	}
	memcpy(hs->peer.bytes, plain, 32);
	hs->peer_port = (uint16_t)(plain[96] << 8 | plain[97]);
	if (hs->cfg.has_expected && !crust_peer_eq(&hs->peer, &hs->cfg.expected)) {
		snprintf(why, wlen, "peer proved a different key than the one dialed");
		return -EACCES;
	}
	return 0;
}

static void derive_traffic_keys(struct handshake *hs)
{
	uint8_t final[32], k_i2r[32], k_r2i[32];
	hash(final, hs->dh, "crust v2 keys", hs->msg1, HS_MSG1_LEN, hs->msg2, HS_MSG2_LEN, hs->msg3,
	     HS_MSG3_LEN);
	hash(k_i2r, final, "i2r", NULL, 0, NULL, 0, NULL, 0);
	hash(k_r2i, final, "r2i", NULL, 0, NULL, 0, NULL, 0);
	hash(hs->transcript, NULL, "crust v2 id", hs->msg1, HS_MSG1_LEN, hs->msg2, HS_MSG2_LEN,
	     hs->msg3, HS_MSG3_LEN);
	memcpy(hs->tx_key, hs->initiator ? k_i2r : k_r2i, 32);
	memcpy(hs->rx_key, hs->initiator ? k_r2i : k_i2r, 32);
	sodium_memzero(final, sizeof(final));
	sodium_memzero(k_i2r, sizeof(k_i2r));
	sodium_memzero(k_r2i, sizeof(k_r2i));
	sodium_memzero(hs->e_sk, sizeof(hs->e_sk));
	sodium_memzero(hs->dh, sizeof(hs->dh));
}

/* Tell a dialer whose msg1 we refuse why, when the reason is not a secret. */
static void refusal_for(const struct hs_config *cfg, const uint8_t *in, size_t len, uint8_t *out,
			size_t *outlen)
{
	if (len < 6 || memcmp(in, HS_MAGIC, 4) != 0)
		return; /* not a crust peer: say nothing */
	if (in[4] != HS_VERSION)
		*outlen = put_refusal(cfg, REFUSE_VERSION, out);
	else if (len == HS_MSG1_LEN && in[5] == 1 && memcmp(in + HDR_LEN, cfg->network_tag, 8))
		*outlen = put_refusal(cfg, REFUSE_NETWORK, out);
	else if (len == HS_MSG1_LEN && in[5] == 1)
		*outlen = put_refusal(cfg, REFUSE_TRACER, out);
}

/* Responder: msg1 in, msg2 out. */
static int on_msg1(struct handshake *hs, const uint8_t *in, size_t len, uint8_t *out,
		   size_t *outlen, char *why, size_t wlen)
{
	int err = hs_precheck_msg1(in, len, &hs->cfg, why, wlen);
	if (err) {
		refusal_for(&hs->cfg, in, len, out, outlen);
		return err;
	}
	memcpy(hs->msg1, in, HS_MSG1_LEN);
	crypto_box_keypair(hs->e_pk, hs->e_sk);
	hs->aes = (get_flags(in) & HS_FLAG_AES) && crypto_aead_aes256gcm_is_available();
	put_hdr(hs->msg2, 2, own_flags(&hs->cfg, hs->aes));
	memcpy(hs->msg2 + HDR_LEN, hs->e_pk, 32);
	uint8_t k_r[32], k_i[32], t[32];
	if (derive_hs_keys(hs, in + 16, k_r, k_i)) {
		snprintf(why, wlen, "malformed handshake (bad ephemeral key)");
		return -EPROTO;
	}
	hash(t, NULL, "crust v2 responder", hs->msg1, HS_MSG1_LEN, hs->msg2, M2_CLEAR,
	     hs->cfg.id->pk, 32);
	seal_proof(hs, t, k_r, hs->msg2, M2_CLEAR, hs->msg2 + M2_CLEAR);
	sodium_memzero(k_r, sizeof(k_r));
	sodium_memzero(k_i, sizeof(k_i));
	memcpy(out, hs->msg2, HS_MSG2_LEN);
	*outlen = HS_MSG2_LEN;
	return HS_CONTINUE;
}

/* Initiator: msg2 in, msg3 out, done. */
static int on_msg2(struct handshake *hs, const uint8_t *in, size_t len, uint8_t *out,
		   size_t *outlen, char *why, size_t wlen)
{
	if (len >= 6 && !memcmp(in, HS_MAGIC, 4) && in[4] == HS_VERSION && in[5] == 4)
		return on_refusal(in, len, why, wlen);
	int err = check_hdr(in, len, 2, HS_MSG2_LEN, why, wlen);
	if (!err)
		err = check_tracer(&hs->cfg, get_flags(in), why, wlen);
	if (err)
		return err;
	memcpy(hs->msg2, in, HS_MSG2_LEN);
	hs->aes = get_flags(in) & HS_FLAG_AES;
	if (hs->aes && !crypto_aead_aes256gcm_is_available()) {
		snprintf(why, wlen, "peer chose AES-256-GCM, which we did not offer");
		return -EPROTO;
	}
	uint8_t k_r[32], k_i[32], t[32];
	if (derive_hs_keys(hs, in + HDR_LEN, k_r, k_i)) {
		snprintf(why, wlen, "malformed handshake (bad ephemeral key)");
		return -EPROTO;
	}
	err = open_proof(hs, in + M2_CLEAR, k_r, in, M2_CLEAR, "crust v2 responder", in, M2_CLEAR,
			 why, wlen);
	if (!err) {
		put_hdr(hs->msg3, 3, own_flags(&hs->cfg, hs->aes));
		hash(t, NULL, "crust v2 initiator", hs->msg1, HS_MSG1_LEN, hs->msg2, HS_MSG2_LEN,
		     hs->cfg.id->pk, 32);
		seal_proof(hs, t, k_i, hs->msg3, HDR_LEN, hs->msg3 + HDR_LEN);
		memcpy(out, hs->msg3, HS_MSG3_LEN);
		*outlen = HS_MSG3_LEN;
		derive_traffic_keys(hs);
	}
	sodium_memzero(k_r, sizeof(k_r));
	sodium_memzero(k_i, sizeof(k_i));
	return err ? err : HS_DONE;
}

/* Responder: msg3 in, done. */
static int on_msg3(struct handshake *hs, const uint8_t *in, size_t len, char *why, size_t wlen)
{
	int err = check_hdr(in, len, 3, HS_MSG3_LEN, why, wlen);
	if (err)
		return err;
	memcpy(hs->msg3, in, HS_MSG3_LEN);
	uint8_t base[32], k_i[32];
	hash(base, hs->dh, "crust v2 hs", hs->msg1, HS_MSG1_LEN, hs->msg2, M2_CLEAR, NULL, 0);
	hash(k_i, base, "i", NULL, 0, NULL, 0, NULL, 0);
	err = open_proof(hs, in + HDR_LEN, k_i, in, HDR_LEN, "crust v2 initiator", hs->msg2,
			 HS_MSG2_LEN, why, wlen);
	sodium_memzero(base, sizeof(base));
	sodium_memzero(k_i, sizeof(k_i));
	if (err)
		return err;
	derive_traffic_keys(hs);
	return HS_DONE;
}

int hs_recv(struct handshake *hs, const uint8_t *in, size_t len, uint8_t *out, size_t *outlen,
	    char *why, size_t wlen)
{
	*outlen = 0;
	if (hs->failed) {
		/* never build on a failed step: its state (keys, transcript) is not there */
		snprintf(why, wlen, "handshake already failed");
		return -EPROTO;
	}
	int step = hs->step++;
	int ret = -EPROTO;
	if (!hs->initiator && step == 0)
		ret = on_msg1(hs, in, len, out, outlen, why, wlen);
	else if (hs->initiator && step == 0)
		ret = on_msg2(hs, in, len, out, outlen, why, wlen);
	else if (!hs->initiator && step == 1)
		ret = on_msg3(hs, in, len, why, wlen);
	else
		snprintf(why, wlen, "unexpected handshake message");
	if (ret < 0)
		hs->failed = true;
	return ret;
}

void hs_wipe(struct handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
}
