/*
 * hello.h - the first message on every connection, before anything else.
 *
 * A clear, unauthenticated hello: magic, protocol version, network name
 * hash, node id, listening port. The secure-session work replaces it
 * with an authenticated handshake behind the same two functions.
 * Pure functions: bytes in, bytes out.
 */
#ifndef CRUST_P2P_HELLO_H
#define CRUST_P2P_HELLO_H

#include <stddef.h>
#include <stdint.h>

#include "crust.h"

#define HELLO_MAGIC "CRST"
#define HELLO_VERSION 1
#define HELLO_TYPE 1
#define HELLO_LEN 52

struct hello {
	uint8_t version;
	uint8_t network[8];           /* BLAKE2b-64 of the network name, zero if none */
	struct crust_peer_id id;
	uint16_t listen_port;
};

/* The 8-byte network tag of name (NULL or "" = all zero). */
void hello_network_tag(const char *name, uint8_t out[8]);
void hello_encode(const struct hello *h, uint8_t out[HELLO_LEN]);
/*
 * Parse; on failure returns -EPROTO and writes why into reason
 * (bad magic, unsupported version, wrong length).
 */
int hello_decode(const uint8_t *p, size_t len, struct hello *h, char *reason, size_t rlen);

#endif
