/* session.c - record sealing and opening (see session.h, docs/PROTOCOL.md). */
#include "session.h"
#include "transports/framing.h"
#include "engine/bytes.h"

#include <errno.h>
#include <string.h>

/* Key the direction's AES context (the key schedule is computed once per key). */
static int key_aes(struct session_dir *d, bool encrypt)
{
	if (!d->aes && !(d->aes = EVP_CIPHER_CTX_new()))
		return -ENOMEM;
	int ok = encrypt ? EVP_EncryptInit_ex(d->aes, EVP_aes_256_gcm(), NULL, d->key, NULL)
			 : EVP_DecryptInit_ex(d->aes, EVP_aes_256_gcm(), NULL, d->key, NULL);
	return ok == 1 ? 0 : -EIO;
}

static int load_key(struct session_dir *d, bool aes, bool encrypt, const uint8_t key[32])
{
	memcpy(d->key, key, 32);
	d->counter = 0;
	return aes ? key_aes(d, encrypt) : 0;
}

int session_init(struct session *s, bool tracer, bool aes, const uint8_t tx_key[32],
		 const uint8_t rx_key[32])
{
	memset(s, 0, sizeof(*s));
	s->tracer = tracer;
	s->aes = aes;
	int err = load_key(&s->tx, aes, true, tx_key);
	if (!err)
		err = load_key(&s->rx, aes, false, rx_key);
	return err;
}

void session_wipe(struct session *s)
{
	/* EVP_CIPHER_CTX_free clears the key schedule it holds */
	EVP_CIPHER_CTX_free(s->tx.aes);
	EVP_CIPHER_CTX_free(s->rx.aes);
	sodium_memzero(s, sizeof(*s));
}

void session_set_inner(struct session *s)
{
	bool aes = s->aes;
	session_wipe(s);
	s->aes = aes;
	s->inner = true;
}

uint32_t session_hdr_room(const struct session *s)
{
	return s->tracer ? 4 + 4 + 1 + 8 : 4 + 1;
}

uint32_t session_tag_room(const struct session *s)
{
	return s->tracer || s->inner ? 0 : SESSION_TAG_LEN;
}

/*
 * Every SESSION_REKEY_RECORDS records: key' = BLAKE2b_key("crust v2 rekey"), on both ends
 * alike. An AES context that cannot take the new key (OpenSSL allocates) is an error for the
 * caller to end the session with: sealing on with the old schedule would only look like
 * tampering to the peer. The record counter has not moved, so the session is not usable after.
 */
static int maybe_rekey(struct session_dir *d, bool aes, bool encrypt)
{
	if (d->counter == 0 || d->counter % SESSION_REKEY_RECORDS)
		return 0;
	uint8_t next[32];
	crypto_generichash(next, sizeof(next), (const uint8_t *)"crust v2 rekey", 14, d->key, 32);
	memcpy(d->key, next, 32);
	sodium_memzero(next, sizeof(next));
	return aes ? key_aes(d, encrypt) : 0;
}

static void nonce_of(uint64_t counter, uint8_t nonce[12])
{
	memset(nonce, 0, 4);
	eng_put_be64(nonce + 4, counter);
}

/* AES-256-GCM in place: IV, the one AD byte, the body, the tag after it (OpenSSL EVP). */
static int aes_seal(EVP_CIPHER_CTX *c, const uint8_t nonce[12], const uint8_t *ad, uint8_t *body,
		    uint32_t len)
{
	int n;
	if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &n, ad, 1) != 1 ||
	    EVP_EncryptUpdate(c, body, &n, body, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(c, body + len, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SESSION_TAG_LEN, body + len) != 1)
		return -EIO;
	return 0;
}

static int aes_open(EVP_CIPHER_CTX *c, const uint8_t nonce[12], const uint8_t *ad, uint8_t *body,
		    uint32_t len)
{
	int n;
	if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &n, ad, 1) != 1 ||
	    EVP_DecryptUpdate(c, body, &n, body, (int)len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SESSION_TAG_LEN, body + len) != 1)
		return -1;
	uint8_t none[16];
	return EVP_DecryptFinal_ex(c, none, &n) == 1 ? 0 : -1;
}

int session_seal(struct session *s, uint8_t *rec, uint32_t body_len)
{
	uint32_t hdr = session_hdr_room(s), tag = session_tag_room(s);
	uint64_t frame = (uint64_t)hdr - 4 + body_len + tag;
	if (frame > UINT32_MAX)
		return -EOVERFLOW;
	eng_put_be32(rec, (uint32_t)frame);
	uint8_t *body = rec + hdr;
	if (s->inner) {
		rec[4] = REC_INNER;
		return 0;
	}
	if (s->tracer) {
		memcpy(rec + 4, REC_TRACER_MAGIC, 4);
		rec[8] = REC_TRACER;
		eng_put_be64(rec + 9, s->tx.counter++);
		return 0;
	}
	rec[4] = REC_SECURE;
	int err = maybe_rekey(&s->tx, s->aes, true);
	if (err)
		return err;
	uint8_t nonce[12];
	nonce_of(s->tx.counter++, nonce);
	unsigned long long maclen;
	if (s->aes)
		return aes_seal(s->tx.aes, nonce, rec + 4, body, body_len);
	else
		crypto_aead_chacha20poly1305_ietf_encrypt_detached(body, body + body_len, &maclen,
								   body, body_len, rec + 4, 1, NULL,
								   nonce, s->tx.key);
	return 0;
}

static int open_tracer(struct session *s, uint8_t *rec, uint32_t len, uint8_t **plain,
		       uint32_t *plain_len)
{
	if (len < 13 || memcmp(rec, REC_TRACER_MAGIC, 4) != 0 || rec[4] != REC_TRACER ||
	    eng_get_be64(rec + 5) != s->rx.counter)
		return -EBADMSG;
	s->rx.counter++;
	*plain = rec + 13;
	*plain_len = len - 13;
	return 0;
}

int session_open(struct session *s, uint8_t *rec, uint32_t len, uint8_t **plain,
		 uint32_t *plain_len)
{
	if (s->tracer)
		return open_tracer(s, rec, len, plain, plain_len);
	if (s->inner) {
		if (len < 1 || rec[0] != REC_INNER)
			return -EBADMSG;
		*plain = rec + 1;
		*plain_len = len - 1;
		return 0;
	}
	if (len < 1 + SESSION_TAG_LEN || rec[0] != REC_SECURE)
		return -EBADMSG;
	int err = maybe_rekey(&s->rx, s->aes, false);
	if (err)
		return err;
	uint8_t nonce[12];
	nonce_of(s->rx.counter, nonce);
	uint8_t *body = rec + 1;
	uint32_t body_len = len - 1 - SESSION_TAG_LEN;
	int ret;
	if (s->aes)
		ret = aes_open(s->rx.aes, nonce, rec, body, body_len);
	else
		ret = crypto_aead_chacha20poly1305_ietf_decrypt_detached(body, NULL, body, body_len,
									 body + body_len, rec, 1,
									 nonce, s->rx.key);
	if (ret != 0)
		return -EBADMSG;
	s->rx.counter++;
	*plain = body;
	*plain_len = body_len;
	return 0;
}

int session_next_msg(uint8_t **cursor, const uint8_t *end, uint8_t **msg, uint32_t *len,
		     bool *ctrl)
{
	uint8_t *p = *cursor;
	if (p == end)
		return 0;
	if (end - p < 4)
		return -EBADMSG;
	uint32_t n = eng_get_be32(p);
	*ctrl = n & FRAME_CTRL_BIT;
	n &= ~FRAME_CTRL_BIT;
	if (n > (uint64_t)(end - p - 4))
		return -EBADMSG;
	*msg = p + 4;
	*len = n;
	*cursor = p + 4 + n;
	return 1;
}
