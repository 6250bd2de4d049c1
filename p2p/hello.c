/* hello.c - encode and parse the clear hello (see hello.h, docs/PROTOCOL.md). */
#include "hello.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

void hello_network_tag(const char *name, uint8_t out[8])
{
	memset(out, 0, 8);
	if (name && *name)
		crypto_generichash(out, 8, (const unsigned char *)name, strlen(name), NULL, 0);
}

void hello_encode(const struct hello *h, uint8_t out[HELLO_LEN])
{
	memcpy(out, HELLO_MAGIC, 4);
	out[4] = HELLO_VERSION;
	out[5] = HELLO_TYPE;
	out[6] = out[7] = 0; /* flags */
	memcpy(out + 8, h->network, 8);
	memcpy(out + 16, h->id.bytes, CRUST_PEER_ID_LEN);
	out[48] = (uint8_t)(h->listen_port >> 8);
	out[49] = (uint8_t)h->listen_port;
	out[50] = out[51] = 0;
}

int hello_decode(const uint8_t *p, size_t len, struct hello *h, char *reason, size_t rlen)
{
	if (len < 6 || memcmp(p, HELLO_MAGIC, 4) != 0) {
		snprintf(reason, rlen, "not a crust peer (bad magic)");
		return -EPROTO;
	}
	if (p[4] != HELLO_VERSION) {
		snprintf(reason, rlen, "unsupported protocol version %u (we speak %u)", p[4],
			 HELLO_VERSION);
		return -EPROTO;
	}
	if (p[5] != HELLO_TYPE || len != HELLO_LEN) {
		snprintf(reason, rlen, "malformed hello (type %u, %zu bytes)", p[5], len);
		return -EPROTO;
	}
	h->version = p[4];
	memcpy(h->network, p + 8, 8);
	memcpy(h->id.bytes, p + 16, CRUST_PEER_ID_LEN);
	h->listen_port = (uint16_t)(p[48] << 8 | p[49]);
	return 0;
}
