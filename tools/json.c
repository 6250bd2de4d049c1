/* json.c - JSON lines for events (the CLI contract in docs/ARCHITECTURE.md). */
#include "json.h"

#include <string.h>

#define MAX_DATA_SHOWN 65536u

void json_string(FILE *f, const void *s, size_t n)
{
	const unsigned char *p = s;
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c); /* bytes, not UTF-8: one escape per byte */
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void field_str(FILE *f, const char *key, const char *val)
{
	fprintf(f, ",\"%s\":", key);
	json_string(f, val, strlen(val));
}

void json_event(FILE *f, const struct crust_event *ev)
{
	char peer[CRUST_PEER_HEX_LEN + 1], addr[CRUST_ADDRSTRLEN];
	fprintf(f, "{\"event\":\"%s\"", crust_event_name(ev->type));
	if (ev->transport)
		field_str(f, "transport", crust_transport_name(ev->transport));
	switch (ev->type) {
	case CRUST_EV_LISTENER_STARTED:
		crust_addr_format(&ev->addr, addr, sizeof(addr));
		field_str(f, "addr", addr);
		fprintf(f, ",\"port\":%u,\"fallback\":%s", ev->port, ev->fallback ? "true" : "false");
		if (ev->reason[0])
			field_str(f, "reason", ev->reason);
		break;
	case CRUST_EV_NEW_CONNECTION:
	case CRUST_EV_LOST_CONNECTION:
	case CRUST_EV_SEND_FAILED:
		crust_peer_to_hex(&ev->peer, peer);
		crust_addr_format(&ev->addr, addr, sizeof(addr));
		field_str(f, "peer", peer);
		field_str(f, "addr", addr);
		if (ev->type == CRUST_EV_NEW_CONNECTION) {
			field_str(f, "via", crust_via_name(ev->via));
			break;
		}
		field_str(f, "reason", ev->reason);
		fprintf(f, ",\"unsent_msgs\":%llu,\"unsent_bytes\":%llu",
			(unsigned long long)ev->unsent_msgs, (unsigned long long)ev->unsent_bytes);
		break;
	case CRUST_EV_PEER_DISCOVERED:
		crust_peer_to_hex(&ev->peer, peer);
		crust_addr_format(&ev->addr, addr, sizeof(addr));
		field_str(f, "peer", peer);
		field_str(f, "addr", addr);
		fprintf(f, ",\"rudp_port\":%u", ev->port);
		/* the beacon's events say "beacon"; peer exchange names the peer that told us */
		if (!strcmp(ev->reason, "beacon")) {
			field_str(f, "via", "beacon");
		} else {
			field_str(f, "via", "peer_exchange");
			field_str(f, "reason", ev->reason);
		}
		break;
	case CRUST_EV_NEW_MESSAGE: {
		crust_peer_to_hex(&ev->peer, peer);
		field_str(f, "peer", peer);
		size_t len = crust_msg_len(ev->msg);
		fprintf(f, ",\"len\":%zu,\"data\":", len);
		json_string(f, crust_msg_data(ev->msg), len < MAX_DATA_SHOWN ? len : MAX_DATA_SHOWN);
		if (len > MAX_DATA_SHOWN)
			fputs(",\"truncated\":true", f);
		break;
	}
	case CRUST_EV_PUNCH_RESULT:
		crust_peer_to_hex(&ev->peer, peer);
		field_str(f, "peer", peer);
		fprintf(f, ",\"ok\":%s", ev->error ? "false" : "true");
		field_str(f, "via", crust_via_name(ev->via));
		fprintf(f, ",\"elapsed_ms\":%u", ev->elapsed_ms);
		if (!ev->error) {
			crust_addr_format(&ev->addr, addr, sizeof(addr));
			field_str(f, "addr", addr);
		} else {
			field_str(f, "reason", ev->reason);
			fprintf(f, ",\"error\":%d", ev->error);
		}
		break;
	case CRUST_EV_EXTERNAL_ENDPOINT:
		crust_addr_format(&ev->addr, addr, sizeof(addr));
		field_str(f, "addr", addr);
		field_str(f, "source", ev->reason);
		break;
	case CRUST_EV_PORT_MAPPING:
		fprintf(f, ",\"ok\":%s", ev->error ? "false" : "true");
		if (!ev->error) {
			crust_addr_format(&ev->addr, addr, sizeof(addr));
			field_str(f, "addr", addr);
		} else {
			fprintf(f, ",\"error\":%d", ev->error);
		}
		field_str(f, "reason", ev->reason);
		break;
	case CRUST_EV_BOOTSTRAP_ROUND:
	case CRUST_EV_BOOTSTRAP_FINISHED:
		fprintf(f, ",\"round\":%u,\"tried\":%u,\"succeeded\":%u", ev->round, ev->tried,
			ev->succeeded);
		if (ev->type == CRUST_EV_BOOTSTRAP_ROUND)
			fprintf(f, ",\"retry_ms\":%u", ev->retry_ms);
		if (ev->reason[0])
			field_str(f, "reason", ev->reason);
		break;
	default:
		crust_addr_format(&ev->addr, addr, sizeof(addr));
		field_str(f, "addr", addr);
		static const struct crust_peer_id zero;
		if (!crust_peer_eq(&ev->peer, &zero)) {
			crust_peer_to_hex(&ev->peer, peer);
			field_str(f, "peer", peer);
		}
		if (ev->reason[0])
			field_str(f, "reason", ev->reason);
		if (ev->error)
			fprintf(f, ",\"error\":%d", ev->error);
		break;
	}
	fputs("}\n", f);
}
