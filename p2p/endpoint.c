/* endpoint.c - peer ids, endpoints and names as text. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crust.h"

CRUST_API void crust_peer_to_hex(const struct crust_peer_id *id, char out[CRUST_PEER_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < CRUST_PEER_ID_LEN; i++) {
		out[2 * i] = hex[id->bytes[i] >> 4];
		out[2 * i + 1] = hex[id->bytes[i] & 15];
	}
	out[CRUST_PEER_HEX_LEN] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

CRUST_API int crust_peer_from_hex(const char *hex, struct crust_peer_id *out)
{
	if (!hex || strlen(hex) != CRUST_PEER_HEX_LEN)
		return -EINVAL;
	for (int i = 0; i < CRUST_PEER_ID_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out->bytes[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

CRUST_API bool crust_peer_eq(const struct crust_peer_id *a, const struct crust_peer_id *b)
{
	return memcmp(a->bytes, b->bytes, CRUST_PEER_ID_LEN) == 0;
}

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

CRUST_API int crust_endpoint_parse(const char *s, struct crust_endpoint *out)
{
	if (!s || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->transport = CRUST_TRANSPORT_ANY;
	if (!strncmp(s, "tcp://", 6)) {
		out->transport = CRUST_TRANSPORT_TCP;
		s += 6;
	} else if (!strncmp(s, "rudp://", 7)) {
		out->transport = CRUST_TRANSPORT_RUDP;
		s += 7;
	}
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(close - s - 1));
		host[close - s - 1] = 0;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = 0;
	}
	uint16_t port;
	if (parse_port(colon + 1, &port))
		return -EINVAL;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&out->addr;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->addr;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		out->addrlen = sizeof(*v4);
	} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		out->addrlen = sizeof(*v6);
	} else {
		return -EINVAL;
	}
	return 0;
}

CRUST_API void crust_addr_format(const struct sockaddr_storage *addr, char *out, size_t n)
{
	char host[INET6_ADDRSTRLEN];
	if (addr->ss_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
		snprintf(out, n, "%s:%u", host, ntohs(v4->sin_port));
	} else if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
		snprintf(out, n, "[%s]:%u", host, ntohs(v6->sin6_port));
	} else {
		snprintf(out, n, "-");
	}
}

CRUST_API const char *crust_event_name(enum crust_event_type type)
{
	switch (type) {
	case CRUST_EV_LISTENER_STARTED: return "listener_started";
	case CRUST_EV_LISTENER_FAILED: return "listener_failed";
	case CRUST_EV_NEW_CONNECTION: return "new_connection";
	case CRUST_EV_NEW_BOOTSTRAP_CONNECTION: return "new_bootstrap_connection";
	case CRUST_EV_BOOTSTRAP_FINISHED: return "bootstrap_finished";
	case CRUST_EV_LOST_CONNECTION: return "lost_connection";
	case CRUST_EV_NEW_MESSAGE: return "new_message";
	case CRUST_EV_CONNECT_FAILED: return "connect_failed";
	case CRUST_EV_SEND_FAILED: return "send_failed";
	case CRUST_EV_HANDSHAKE_FAILED: return "handshake_failed";
	case CRUST_EV_PEER_DISCOVERED: return "peer_discovered";
	case CRUST_EV_EXTERNAL_ENDPOINT: return "external_endpoint";
	case CRUST_EV_PUNCH_RESULT: return "punch_result";
	case CRUST_EV_ABUSE: return "abuse";
	case CRUST_EV_BOOTSTRAP_ROUND: return "bootstrap_round";
	case CRUST_EV_PORT_MAPPING: return "port_mapping";
	}
	return "unknown";
}

CRUST_API const char *crust_transport_name(enum crust_transport t)
{
	return t == CRUST_TRANSPORT_RUDP ? "rudp" : t == CRUST_TRANSPORT_TCP ? "tcp" : "any";
}

CRUST_API const char *crust_via_name(enum crust_via via)
{
	switch (via) {
	case CRUST_VIA_DIRECT: return "direct";
	case CRUST_VIA_UDP_PUNCH: return "udp-punch";
	case CRUST_VIA_TCP_PUNCH: return "tcp-punch";
	case CRUST_VIA_PREDICTED: return "predicted";
	case CRUST_VIA_RELAY: return "relay";
	case CRUST_VIA_UPNP: return "upnp";
	}
	return "unknown";
}

CRUST_API const char *crust_strerror(int err)
{
	return strerror(err < 0 ? -err : err);
}
