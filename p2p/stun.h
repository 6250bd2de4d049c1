/*
 * stun.h - the STUN Binding codec (RFC 5389 / RFC 8489), pure: bytes in,
 * bytes out, no sockets, no clock. The coordinator answers Binding
 * requests with it; the node's STUN client asks with it.
 *
 * What it understands: the 20-byte header (with or without the magic
 * cookie: RFC 3489 clients have none), XOR-MAPPED-ADDRESS,
 * MAPPED-ADDRESS, ERROR-CODE, UNKNOWN-ATTRIBUTES, FINGERPRINT, and the
 * comprehension-required attributes a Binding server may meet but does
 * not act on (USERNAME, MESSAGE-INTEGRITY(-SHA256), REALM, NONCE, ICE's
 * PRIORITY and USE-CANDIDATE, USERHASH, PASSWORD-ALGORITHM). Any other
 * comprehension-required attribute (< 0x8000) is listed in
 * stun_msg.unknown so the server can answer 420.
 *
 * Bounded work: at most STUN_MAX_ATTRS attributes are walked; a message
 * with more is refused, as is one longer than STUN_MAX_LEN.
 */
#ifndef CRUST_P2P_STUN_H
#define CRUST_P2P_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define STUN_HDR_LEN 20u
#define STUN_MAGIC 0x2112A442u
#define STUN_FINGERPRINT_XOR 0x5354554Eu
#define STUN_MAX_LEN 1500u          /* one unfragmented datagram on Ethernet */
#define STUN_MAX_ATTRS 32u          /* more attributes: refused, not walked */
#define STUN_MAX_UNKNOWN 8u         /* unknown required attributes reported in a 420 */
#define STUN_TXID_LEN 12u

enum stun_type {
	STUN_BINDING_REQUEST = 0x0001,
	STUN_BINDING_INDICATION = 0x0011,
	STUN_BINDING_SUCCESS = 0x0101,
	STUN_BINDING_ERROR = 0x0111,
};

enum stun_attr {
	STUN_ATTR_MAPPED_ADDRESS = 0x0001,
	STUN_ATTR_CHANGE_REQUEST = 0x0003,   /* RFC 5780: not supported, so answered with 420 */
	STUN_ATTR_USERNAME = 0x0006,
	STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
	STUN_ATTR_ERROR_CODE = 0x0009,
	STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
	STUN_ATTR_REALM = 0x0014,
	STUN_ATTR_NONCE = 0x0015,
	STUN_ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C,
	STUN_ATTR_PASSWORD_ALGORITHM = 0x001D,
	STUN_ATTR_USERHASH = 0x001E,
	STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
	STUN_ATTR_PRIORITY = 0x0024,
	STUN_ATTR_USE_CANDIDATE = 0x0025,
	STUN_ATTR_SOFTWARE = 0x8022,
	STUN_ATTR_FINGERPRINT = 0x8028,
};

/* What stun_parse found. Addresses are zeroed (family 0) when absent. */
struct stun_msg {
	uint16_t type;
	bool has_cookie;                      /* RFC 5389+; false: an RFC 3489 client */
	uint8_t txid[16];                     /* cookie-less: 16 bytes; else the last 12 */
	struct sockaddr_storage xor_mapped;
	struct sockaddr_storage mapped;
	bool has_fingerprint;                 /* present and correct (a wrong one is refused) */
	uint16_t error_code;                  /* ERROR-CODE class*100+number, 0 = none */
	uint16_t unknown[STUN_MAX_UNKNOWN];   /* comprehension-required attributes we lack */
	unsigned nunknown;
	unsigned nattrs;
};

/*
 * Cheap test: could p be a STUN message (top two bits zero, length a
 * multiple of 4 that matches len)? Used to tell STUN apart from other
 * datagrams on a shared port before parsing.
 */
bool stun_is_message(const uint8_t *p, size_t len);

/*
 * Parse a whole datagram of len bytes. Returns 0 (out filled), or
 * -EBADMSG with why set to a static reason: truncated header or
 * attribute, length field not matching the datagram, padding, an
 * attribute after FINGERPRINT, a wrong FINGERPRINT, more than
 * STUN_MAX_ATTRS attributes, a malformed address, or len > STUN_MAX_LEN.
 * Unknown required attributes are not an error (see out->unknown).
 */
int stun_parse(const uint8_t *p, size_t len, struct stun_msg *out, const char **why);

/* CRC-32 (IEEE 802.3, as zlib) of len bytes; FINGERPRINT = this ^ STUN_FINGERPRINT_XOR. */
uint32_t stun_crc32(const uint8_t *p, size_t len);

/*
 * Encoders write into out (cap bytes) and return the message length, or
 * 0 if cap is too small. With fingerprint, FINGERPRINT is appended.
 */
/* A Binding request with the magic cookie and txid (12 bytes). */
size_t stun_encode_request(uint8_t *out, size_t cap, const uint8_t txid[STUN_TXID_LEN],
			   bool fingerprint);
/*
 * The success answer to req seen from src: XOR-MAPPED-ADDRESS for
 * clients with the cookie, MAPPED-ADDRESS for old (RFC 3489) clients
 * without it, FINGERPRINT if the request had one. At most 52 bytes
 * (IPv6 with FINGERPRINT): never above 3x a minimal 20-byte request.
 */
size_t stun_encode_success(uint8_t *out, size_t cap, const struct stun_msg *req,
			   const struct sockaddr_storage *src);
/* Error 420 listing req->unknown (UNKNOWN-ATTRIBUTES), FINGERPRINT if the request had one. */
size_t stun_encode_unknown(uint8_t *out, size_t cap, const struct stun_msg *req);

#endif
