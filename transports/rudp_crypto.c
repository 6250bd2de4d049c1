/* rudp_crypto.c - packet protection and retry tokens (see rudp_crypto.h). */
#include "rudp_crypto.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "engine/addr.h"
#include "rudp_wire.h"

static void kdf(uint8_t *out, size_t outlen, const uint8_t key[32], const char *label,
		const uint8_t *extra, size_t extra_len)
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, key, 32, outlen);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	if (extra_len)
		crypto_generichash_update(&st, extra, extra_len);
	crypto_generichash_final(&st, out, outlen);
}

int rudp_aead_init(struct rudp_aead *a, bool aes, bool encrypt, const uint8_t secret[32])
{
	memset(a, 0, sizeof(*a));
	a->aes = aes;
	a->encrypt = encrypt;
	kdf(a->base, 32, secret, "crust rudp key", NULL, 0);
	kdf(a->iv, 12, secret, "crust rudp iv", NULL, 0);
	for (int i = 0; i < 2; i++) {
		a->slot[i].epoch = UINT64_MAX;
		a->slot[i].ctx = EVP_CIPHER_CTX_new();
		if (!a->slot[i].ctx) {
			rudp_aead_free(a);
			return -ENOMEM;
		}
	}
	return 0;
}

void rudp_aead_free(struct rudp_aead *a)
{
	for (int i = 0; i < 2; i++) {
		EVP_CIPHER_CTX_free(a->slot[i].ctx); /* clears the key schedule */
		a->slot[i].ctx = NULL;
	}
	sodium_memzero(a->base, sizeof(a->base));
}

void rudp_initial_secrets(uint64_t odcid, uint8_t c2s[32], uint8_t s2c[32])
{
	static const uint8_t salt[32] = "crust rudp initial salt v1.....";
	uint8_t cid[RUDP_CID_LEN];
	rudp_put_cid(cid, odcid);
	kdf(c2s, 32, salt, "client", cid, sizeof(cid));
	kdf(s2c, 32, salt, "server", cid, sizeof(cid));
}

static EVP_CIPHER_CTX *keyed(struct rudp_aead *a, uint64_t pn)
{
	uint64_t e = pn >> RUDP_EPOCH_SHIFT;
	struct rudp_aead_slot *s = &a->slot[e & 1];
	if (s->epoch == e)
		return s->ctx;
	uint8_t key[32], eb[8];
	for (int i = 7; i >= 0; i--)
		eb[i] = (uint8_t)(e >> (8 * (7 - i)));
	kdf(key, 32, a->base, "epoch", eb, sizeof(eb));
	const EVP_CIPHER *cipher = a->aes ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
	int ok = a->encrypt ? EVP_EncryptInit_ex(s->ctx, cipher, NULL, key, NULL)
			    : EVP_DecryptInit_ex(s->ctx, cipher, NULL, key, NULL);
	sodium_memzero(key, sizeof(key));
	if (ok != 1)
		return NULL;
	s->epoch = e;
	return s->ctx;
}

static void nonce_of(const struct rudp_aead *a, uint64_t pn, uint8_t nonce[12])
{
	memcpy(nonce, a->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[11 - i] ^= (uint8_t)(pn >> (8 * i));
}

int rudp_aead_seal(struct rudp_aead *a, uint64_t pn, uint8_t *hdr, uint32_t hdr_len,
		   uint32_t len)
{
	EVP_CIPHER_CTX *c = keyed(a, pn);
	uint8_t nonce[12], *body = hdr + hdr_len;
	int n;
	if (!c)
		return -EIO;
	nonce_of(a, pn, nonce);
	if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &n, hdr, (int)hdr_len) != 1 ||
	    EVP_EncryptUpdate(c, body, &n, body, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(c, body + len, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, RUDP_TAG_LEN, body + len) != 1)
		return -EIO;
	return 0;
}

int rudp_aead_open(struct rudp_aead *a, uint64_t pn, uint8_t *hdr, uint32_t hdr_len,
		   uint32_t len)
{
	if (len < RUDP_TAG_LEN)
		return -EBADMSG;
	EVP_CIPHER_CTX *c = keyed(a, pn);
	uint8_t nonce[12], none[16], *body = hdr + hdr_len;
	uint32_t plen = len - RUDP_TAG_LEN;
	int n;
	if (!c)
		return -EIO;
	nonce_of(a, pn, nonce);
	if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &n, hdr, (int)hdr_len) != 1 ||
	    EVP_DecryptUpdate(c, body, &n, body, (int)plen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, RUDP_TAG_LEN, body + plen) != 1 ||
	    EVP_DecryptFinal_ex(c, none, &n) != 1)
		return -EBADMSG;
	return 0;
}

static void token_mac(const uint8_t secret[32], const struct sockaddr_storage *from,
		      uint64_t odcid, uint32_t now_s, uint8_t mac[16])
{
	uint8_t msg[16 + 2 + 4 + 8];
	eng_addr_ip_key(from, msg);
	uint16_t port = eng_addr_port(from);
	msg[16] = (uint8_t)(port >> 8);
	msg[17] = (uint8_t)port;
	eng_put_be32(msg + 18, now_s);
	rudp_put_cid(msg + 22, odcid);
	crypto_generichash(mac, 16, msg, sizeof(msg), secret, 32);
}

void rudp_token_make(const uint8_t secret[32], const struct sockaddr_storage *from,
		     uint64_t odcid, uint32_t now_s, uint8_t out[RUDP_TOKEN_LEN])
{
	eng_put_be32(out, now_s);
	token_mac(secret, from, odcid, now_s, out + 4);
}

bool rudp_token_check(const uint8_t secret[32], const struct sockaddr_storage *from,
		      uint64_t odcid, uint32_t now_s, const uint8_t *tok, uint32_t len)
{
	if (len != RUDP_TOKEN_LEN)
		return false;
	uint32_t t = eng_get_be32(tok);
	if (t > now_s || now_s - t > RUDP_TOKEN_LIFETIME_S)
		return false;
	uint8_t mac[16];
	token_mac(secret, from, odcid, t, mac);
	return sodium_memcmp(mac, tok + 4, 16) == 0;
}
