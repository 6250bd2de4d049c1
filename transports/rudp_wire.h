/*
 * rudp_wire.h - the reliable-UDP packet and frame codec (docs/PROTOCOL.md,
 * "Reliable UDP"). Pure: bytes in, bytes out; no sockets, no clock.
 *
 * Parsers take (p, end) and return the advanced cursor, or NULL when the
 * input is malformed (truncated, a varint past the end, an ACK range
 * below zero). Writers take (p, end) and return the advanced cursor, or
 * NULL when the frame does not fit.
 *
 * Integers on the wire are QUIC varints (RFC 9000 section 16: the top
 * two bits of the first byte give the length 1/2/4/8) or fixed
 * big-endian fields where stated.
 */
#ifndef CRUST_RUDP_WIRE_H
#define CRUST_RUDP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/bytes.h"

#define RUDP_VERSION 0x43520001u   /* "CR" 0 1 */
#define RUDP_CID_LEN 8u
#define RUDP_PN_LEN 4u             /* packet numbers travel truncated to 32 bits */
#define RUDP_TAG_LEN 16u
#define RUDP_MIN_INITIAL 1200u     /* client Initial datagrams are padded to this */
#define RUDP_MAX_TOKEN 64u
#define RUDP_MAX_ACK_RANGES 32u
#define RUDP_MAX_REASON 80u
#define RUDP_VARINT_MAX ((1ull << 62) - 1)

/* First byte of a packet. Long headers (bit 7) exist only during the handshake. */
enum rudp_pkt_type {
	RUDP_PKT_SHORT = 0x40,     /* 1-RTT: packet keys from the secure session */
	RUDP_PKT_INITIAL = 0xc0,   /* handshake phase: keys derived from the first DCID */
	RUDP_PKT_RETRY = 0xc1,     /* server -> client: echo this token (stateless) */
};

enum rudp_frame_type {
	RUDP_FR_PADDING = 0x00,
	RUDP_FR_PING = 0x01,
	RUDP_FR_ACK = 0x02,
	RUDP_FR_STREAM = 0x08,
	RUDP_FR_MAX_DATA = 0x10,
	RUDP_FR_CLOSE = 0x1c,
};

struct rudp_hdr {
	uint8_t type;
	uint64_t dcid, scid;         /* scid: long headers only */
	const uint8_t *token;        /* INITIAL and RETRY */
	uint32_t token_len;
	uint32_t pn_trunc;           /* low 32 bits of the packet number (not in RETRY) */
	uint32_t hdr_len;            /* bytes before the payload: the AEAD's associated data */
};

/* Ranges of packet numbers, highest first; r[0].hi is the largest acknowledged. */
struct rudp_ack {
	uint64_t delay_us;
	unsigned nranges;
	struct { uint64_t lo, hi; } r[RUDP_MAX_ACK_RANGES];
};

struct rudp_stream_frame {
	uint64_t off;
	uint32_t len;
	const uint8_t *data;
};

struct rudp_close_frame {
	uint64_t code;               /* 0: graceful end; else an errno */
	uint32_t reason_len;
	const uint8_t *reason;
};

/* varints */
unsigned rudp_varint_len(uint64_t v);
uint8_t *rudp_put_varint(uint8_t *p, const uint8_t *end, uint64_t v);
const uint8_t *rudp_get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v);

void rudp_put_cid(uint8_t *p, uint64_t cid);
uint64_t rudp_get_cid(const uint8_t *p);

/*
 * Headers. Writers fill everything up to the payload and return its
 * start (h->hdr_len set); the parser needs the tag to fit too.
 */
uint8_t *rudp_write_hdr(uint8_t *p, const uint8_t *end, struct rudp_hdr *h);
const uint8_t *rudp_parse_hdr(const uint8_t *p, const uint8_t *end, struct rudp_hdr *h);
/* Only the DCID of any packet type (demultiplexing before anything else); false if too short. */
bool rudp_peek_dcid(const uint8_t *p, size_t len, uint64_t *dcid);

/* RFC 9000 appendix A.3: the full packet number nearest the next expected one. */
uint64_t rudp_decode_pn(uint64_t largest_rx, uint32_t trunc);

/* Frames */
uint8_t *rudp_write_ack(uint8_t *p, const uint8_t *end, const struct rudp_ack *a);
const uint8_t *rudp_parse_ack(const uint8_t *p, const uint8_t *end, struct rudp_ack *a);
/* Header of a STREAM frame whose len data bytes the caller writes after it. */
uint8_t *rudp_write_stream_hdr(uint8_t *p, const uint8_t *end, uint64_t off, uint32_t len);
const uint8_t *rudp_parse_stream(const uint8_t *p, const uint8_t *end, struct rudp_stream_frame *f);
uint8_t *rudp_write_close(uint8_t *p, const uint8_t *end, uint64_t code, const char *reason);
const uint8_t *rudp_parse_close(const uint8_t *p, const uint8_t *end, struct rudp_close_frame *f);
uint8_t *rudp_write_max_data(uint8_t *p, const uint8_t *end, uint64_t max);
/* Skip one frame of any known type, filling nothing; NULL if malformed or unknown. */
const uint8_t *rudp_skip_frame(const uint8_t *p, const uint8_t *end);
/* Worst-case bytes of a STREAM frame header. */
#define RUDP_STREAM_HDR_MAX (1u + 8u + 4u)

#endif
