/*
 * pcp.h - the Port Control Protocol's MAP opcode (RFC 6887), as bytes:
 * encode a request, parse and check an answer. No sockets, no clock
 * (the exchange is pcp_client.c), so the codec is unit-tested and fuzzed
 * on plain byte inputs. Thread-safe: no state.
 */
#ifndef CRUST_P2P_NAT_PCP_H
#define CRUST_P2P_NAT_PCP_H

#include <stddef.h>
#include <stdint.h>

#define PCP_PORT 5351u              /* the server's UDP port (shared with NAT-PMP) */
#define PCP_VERSION 2u
#define PCP_OP_MAP 1u
#define PCP_RESPONSE_BIT 0x80u
#define PCP_HEADER_LEN 24u          /* RFC 6887 7.1 / 7.2 */
#define PCP_MAP_LEN 36u             /* RFC 6887 11.1 */
#define PCP_MAP_MSG_LEN (PCP_HEADER_LEN + PCP_MAP_LEN)
#define PCP_MAX_MSG 1100u           /* RFC 6887 7: a message is at most 1100 bytes */
#define PCP_NONCE_LEN 12u

/* Result codes (RFC 6887 7.4). */
enum pcp_result {
	PCP_SUCCESS = 0,
	PCP_UNSUPP_VERSION = 1,
	PCP_NOT_AUTHORIZED = 2,
	PCP_MALFORMED_REQUEST = 3,
	PCP_UNSUPP_OPCODE = 4,
	PCP_UNSUPP_OPTION = 5,
	PCP_MALFORMED_OPTION = 6,
	PCP_NETWORK_FAILURE = 7,
	PCP_NO_RESOURCES = 8,
	PCP_UNSUPP_PROTOCOL = 9,
	PCP_USER_EX_QUOTA = 10,
	PCP_CANNOT_PROVIDE_EXTERNAL = 11,
	PCP_ADDRESS_MISMATCH = 12,
	PCP_EXCESSIVE_REMOTE_PEERS = 13,
};

/* One MAP request or answer. IPs are 16 bytes, IPv4 in IPv4-mapped form. */
struct pcp_map {
	uint8_t nonce[PCP_NONCE_LEN];
	uint8_t protocol;               /* IPPROTO_TCP / IPPROTO_UDP */
	uint16_t internal_port;
	uint16_t external_port;         /* suggested (request) / assigned (answer) */
	uint8_t external_ip[16];        /* suggested (request; zero = any) / assigned */
};

struct pcp_answer {
	uint8_t result;                 /* enum pcp_result */
	uint32_t lifetime;              /* seconds the mapping lasts (error: how long it holds) */
	uint32_t epoch;                 /* the server's epoch time */
	struct pcp_map map;
};

/*
 * Write a MAP request for m from client_ip (the address the server sees
 * us at, 16 bytes) asking for lifetime seconds (0 deletes the mapping)
 * into out. Returns the length (PCP_MAP_MSG_LEN), or 0 if cap is short.
 */
size_t pcp_encode_map(uint8_t *out, size_t cap, uint32_t lifetime, const uint8_t client_ip[16],
		      const struct pcp_map *m);

/*
 * Parse an answer (borrows p). Returns 0 with *a filled (a->result may be
 * an error code: the server refused), -EPROTONOSUPPORT when the server
 * speaks only NAT-PMP (a version-0 answer, RFC 6887 9), or -EBADMSG when
 * the bytes are not a well-formed MAP answer (short, not a multiple of 4,
 * over 1100 bytes, not a response, another opcode, a truncated or
 * overlong option). The caller checks the nonce, protocol and port.
 */
int pcp_parse_map(const uint8_t *p, size_t len, struct pcp_answer *a);

/* The result code in words ("not authorized", ...). */
const char *pcp_result_name(uint8_t result);

#endif
