/*
 * node.c - `crust node`: a node driven by lines on stdin, reporting JSON
 * lines on stdout (the contract in docs/ARCHITECTURE.md). Single thread:
 * one poll over stdin, the service's event fd and a signalfd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"

#define MAX_CONNECT 64
#define LINE_MAX_LEN (1u << 20)
#define QUIT_LINGER_MS 2000

struct node {
	struct crust_service *svc;
	const char *connect[MAX_CONNECT];
	int nconnect;
	uint64_t sends_ok;
	bool quit;
	char *line;
	size_t line_len;
	bool line_too_long;
	bool cache_set;              /* --cache or --no-cache given */
	bool no_bootstrap;
	char default_cache[4096];
};

static void node_usage(FILE *f)
{
	fputs("usage: crust node [--tcp-port N] [--rudp-port N] [--shards N] [--bind ADDR]\n"
	      "                  [--connect ADDR:PORT]... [--network NAME] [--max-msg-size N]\n"
	      "                  [--handshake-timeout-ms N] [--frame-timeout-ms N] [--verbose]\n"
	      "                  [--identity F] [--tracer] [--keepalive-ms N] [--idle-timeout-ms N]\n"
	      "                  [--provisional-ms N (0 = never)] [--max-rx-msgs-per-s N]\n"
	      "                  [--hs-rate-per-s N] [--hs-burst N] [--hs-max-pending N]\n"
	      "                  [--config F] [--cache F] [--no-cache] [--beacon-port N] [--no-beacon]\n"
	      "                  [--no-pex] [--no-bootstrap] [--coordinator ADDR:PORT] [--rudp-cc bbr|cubic]\n"
	      "                  [--punch-timeout-ms N] [--no-relay] [--no-tcp-punch] [--no-udp-punch]\n"
	      "                  [--port-mapping auto|upnp|pcp|natpmp|off] [--no-port-mapping]\n"
	      "                  [--port-mapping-lease-s N]\n"
	      "defaults: --config $XDG_CONFIG_HOME/crust/config.json (missing: built-in defaults),\n"
	      "          --cache $XDG_CACHE_HOME/crust/bootstrap.cache (~/.config, ~/.cache without XDG)\n"
	      "stdin: connect ADDR:PORT [PEER] | send PEER TEXT | drop PEER | maintain PEER |\n"
	      "       blacklist PEER|IP|IP:PORT | punch PEER | peers | endpoints | stats | quit\n", f);
}

enum {
	OPT_TCP = 1000, OPT_RUDP, OPT_SHARDS, OPT_BIND, OPT_CONNECT, OPT_NETWORK, OPT_MAXMSG,
	OPT_HS_TIMEOUT, OPT_FRAME_TIMEOUT, OPT_CONFIG, OPT_CACHE, OPT_IDENTITY, OPT_BEACON_PORT,
	OPT_NO_BEACON, OPT_COORD, OPT_TRACER, OPT_VERBOSE, OPT_HELP, OPT_KEEPALIVE, OPT_IDLE,
	OPT_PROVISIONAL, OPT_FLOOD, OPT_HS_RATE, OPT_HS_BURST, OPT_HS_PENDING, OPT_NO_CACHE,
	OPT_NO_PEX, OPT_NO_BOOTSTRAP, OPT_RUDP_CC, OPT_PUNCH_TIMEOUT, OPT_NO_RELAY,
	OPT_NO_TCP_PUNCH, OPT_NO_UDP_PUNCH, OPT_PORT_MAPPING, OPT_NO_PORT_MAPPING,
	OPT_PORT_MAPPING_LEASE,
};

static const struct option options[] = {
	{ "tcp-port", required_argument, NULL, OPT_TCP },
	{ "rudp-port", required_argument, NULL, OPT_RUDP },
	{ "shards", required_argument, NULL, OPT_SHARDS },
	{ "bind", required_argument, NULL, OPT_BIND },
	{ "connect", required_argument, NULL, OPT_CONNECT },
	{ "network", required_argument, NULL, OPT_NETWORK },
	{ "max-msg-size", required_argument, NULL, OPT_MAXMSG },
	{ "handshake-timeout-ms", required_argument, NULL, OPT_HS_TIMEOUT },
	{ "frame-timeout-ms", required_argument, NULL, OPT_FRAME_TIMEOUT },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "cache", required_argument, NULL, OPT_CACHE },
	{ "identity", required_argument, NULL, OPT_IDENTITY },
	{ "beacon-port", required_argument, NULL, OPT_BEACON_PORT },
	{ "no-beacon", no_argument, NULL, OPT_NO_BEACON },
	{ "no-cache", no_argument, NULL, OPT_NO_CACHE },
	{ "no-pex", no_argument, NULL, OPT_NO_PEX },
	{ "no-bootstrap", no_argument, NULL, OPT_NO_BOOTSTRAP },
	{ "coordinator", required_argument, NULL, OPT_COORD },
	{ "punch-timeout-ms", required_argument, NULL, OPT_PUNCH_TIMEOUT },
	{ "no-relay", no_argument, NULL, OPT_NO_RELAY },
	{ "no-tcp-punch", no_argument, NULL, OPT_NO_TCP_PUNCH },
	{ "no-udp-punch", no_argument, NULL, OPT_NO_UDP_PUNCH },
	{ "port-mapping", required_argument, NULL, OPT_PORT_MAPPING },
	{ "no-port-mapping", no_argument, NULL, OPT_NO_PORT_MAPPING },
	{ "port-mapping-lease-s", required_argument, NULL, OPT_PORT_MAPPING_LEASE },
	{ "tracer", no_argument, NULL, OPT_TRACER },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "keepalive-ms", required_argument, NULL, OPT_KEEPALIVE },
	{ "idle-timeout-ms", required_argument, NULL, OPT_IDLE },
	{ "provisional-ms", required_argument, NULL, OPT_PROVISIONAL },
	{ "max-rx-msgs-per-s", required_argument, NULL, OPT_FLOOD },
	{ "hs-rate-per-s", required_argument, NULL, OPT_HS_RATE },
	{ "hs-burst", required_argument, NULL, OPT_HS_BURST },
	{ "hs-max-pending", required_argument, NULL, OPT_HS_PENDING },
	{ "rudp-cc", required_argument, NULL, OPT_RUDP_CC },
	{ NULL, 0, NULL, 0 },
};

/* Returns 0, or EXIT_USAGE with a message naming the option. */
static int parse_options(int argc, char **argv, struct crust_config *cfg, struct node *n)
{
	uint64_t v;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case OPT_TCP:
			if (!cli_uint("--tcp-port", optarg, 0, 65535, &v))
				return EXIT_USAGE;
			cfg->tcp_port = (uint16_t)v;
			break;
		case OPT_RUDP:
			if (!cli_uint("--rudp-port", optarg, 0, 65535, &v))
				return EXIT_USAGE;
			cfg->rudp_port = (uint16_t)v;
			break;
		case OPT_BEACON_PORT:
			if (!cli_uint("--beacon-port", optarg, 0, 65535, &v))
				return EXIT_USAGE;
			if (v)
				cfg->beacon_port = (uint16_t)v;
			else
				cfg->no_beacon = true; /* 0 = off, as in the config file */
			break;
		case OPT_RUDP_CC:
			if (strcmp(optarg, "bbr") && strcmp(optarg, "cubic")) {
				fprintf(stderr, "crust node: --rudp-cc: expected bbr or cubic, got \"%s\"\n",
					optarg);
				return EXIT_USAGE;
			}
			cfg->rudp_cc = optarg;
			break;
		case OPT_SHARDS:
			if (!cli_uint("--shards", optarg, 0, 1024, &v))
				return EXIT_USAGE;
			cfg->shards = (unsigned)v;
			break;
		case OPT_MAXMSG:
			if (!cli_uint("--max-msg-size", optarg, 1, 1u << 30, &v))
				return EXIT_USAGE;
			cfg->max_msg_size = (uint32_t)v;
			break;
		case OPT_HS_TIMEOUT:
			if (!cli_uint("--handshake-timeout-ms", optarg, 1, 3600000, &v))
				return EXIT_USAGE;
			cfg->handshake_timeout_ms = (uint32_t)v;
			break;
		case OPT_FRAME_TIMEOUT:
			if (!cli_uint("--frame-timeout-ms", optarg, 1, 3600000, &v))
				return EXIT_USAGE;
			cfg->frame_timeout_ms = (uint32_t)v;
			break;
		case OPT_BIND:
			cfg->bind_addr = optarg;
			break;
		case OPT_CONNECT:
			if (n->nconnect == MAX_CONNECT) {
				fprintf(stderr, "crust node: --connect: at most %d\n", MAX_CONNECT);
				return EXIT_USAGE;
			}
			n->connect[n->nconnect++] = optarg;
			break;
		case OPT_NETWORK:
			cfg->network_name = optarg;
			break;
		case OPT_VERBOSE:
			cfg->log_level = CRUST_LOG_INFO;
			break;
		case OPT_CONFIG:
			break; /* read before the other options (load_config) */
		case OPT_CACHE:
			cfg->cache_file = optarg;
			n->cache_set = true;
			break;
		case OPT_NO_CACHE:
			cfg->cache_file = NULL;
			n->cache_set = true;
			break;
		case OPT_NO_PEX:
			cfg->no_pex = true;
			break;
		case OPT_NO_BOOTSTRAP:
			n->no_bootstrap = true;
			break;
		case OPT_IDENTITY:
			cfg->identity_file = optarg;
			break;
		case OPT_KEEPALIVE:
			if (!cli_uint("--keepalive-ms", optarg, 1, 3600000, &v))
				return EXIT_USAGE;
			cfg->keepalive_ms = (uint32_t)v;
			break;
		case OPT_IDLE:
			if (!cli_uint("--idle-timeout-ms", optarg, 1, 3600000, &v))
				return EXIT_USAGE;
			cfg->idle_timeout_ms = (uint32_t)v;
			break;
		case OPT_PROVISIONAL:
			if (!cli_uint("--provisional-ms", optarg, 0, 3600000, &v))
				return EXIT_USAGE;
			cfg->provisional_grace_ms = v ? (uint32_t)v : UINT32_MAX;
			break;
		case OPT_HS_RATE:
			if (!cli_uint("--hs-rate-per-s", optarg, 1, 1u << 24, &v))
				return EXIT_USAGE;
			cfg->hs_rate_per_s = (uint32_t)v;
			break;
		case OPT_HS_BURST:
			if (!cli_uint("--hs-burst", optarg, 1, 1u << 24, &v))
				return EXIT_USAGE;
			cfg->hs_burst = (uint32_t)v;
			break;
		case OPT_HS_PENDING:
			if (!cli_uint("--hs-max-pending", optarg, 1, 1u << 24, &v))
				return EXIT_USAGE;
			cfg->hs_max_pending = (uint32_t)v;
			break;
		case OPT_FLOOD:
			if (!cli_uint("--max-rx-msgs-per-s", optarg, 0, 1u << 30, &v))
				return EXIT_USAGE;
			cfg->max_rx_msgs_per_s = (uint32_t)v;
			break;
		case OPT_NO_BEACON:
			cfg->no_beacon = true;
			break;
		case OPT_COORD: {
			struct crust_endpoint ep;
			if (crust_endpoint_parse(optarg, &ep) < 0) {
				fprintf(stderr, "crust node: --coordinator: bad endpoint '%s' (want "
					"ADDR:PORT)\n", optarg);
				return EXIT_USAGE;
			}
			cfg->coordinator = optarg;
			break;
		}
		case OPT_PUNCH_TIMEOUT:
			if (!cli_uint("--punch-timeout-ms", optarg, 100, 3600000, &v))
				return EXIT_USAGE;
			cfg->punch_timeout_ms = (uint32_t)v;
			break;
		case OPT_NO_RELAY:
			cfg->no_relay = true;
			break;
		case OPT_NO_TCP_PUNCH:
			cfg->no_tcp_punch = true;
			break;
		case OPT_NO_UDP_PUNCH:
			cfg->no_udp_punch = true;
			break;
		case OPT_PORT_MAPPING:
			if (strcmp(optarg, "auto") && strcmp(optarg, "upnp") && strcmp(optarg, "pcp") &&
			    strcmp(optarg, "natpmp") && strcmp(optarg, "off")) {
				fprintf(stderr, "crust node: --port-mapping: unknown method '%s' (auto, "
					"upnp, pcp, natpmp or off)\n", optarg);
				return EXIT_USAGE;
			}
			cfg->port_mapping = optarg;
			break;
		case OPT_NO_PORT_MAPPING:
			cfg->port_mapping = "off";
			break;
		case OPT_PORT_MAPPING_LEASE:
			if (!cli_uint("--port-mapping-lease-s", optarg, 1, 604800, &v))
				return EXIT_USAGE;
			cfg->port_mapping_lease_s = (uint32_t)v;
			break;
		case OPT_TRACER:
			cfg->tracer = true;
			break;
		case OPT_HELP:
			node_usage(stdout);
			exit(0);
		default:
			node_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "crust node: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	return 0;
}

__attribute__((format(printf, 2, 3)))
static void say_error(const char *cmd, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("{\"event\":\"error\",\"command\":");
	json_string(stdout, cmd, strlen(cmd));
	printf(",\"reason\":");
	json_string(stdout, buf, strlen(buf));
	printf("}\n");
}

static void do_connect(struct node *n, const char *arg)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", arg ? arg : "");
	char *peer_hex = strchr(buf, ' ');
	if (peer_hex)
		*peer_hex++ = 0;
	struct crust_endpoint ep;
	if (crust_endpoint_parse(buf, &ep) < 0) {
		say_error("connect", "bad endpoint '%s' (want ADDR:PORT)", buf);
		return;
	}
	struct crust_peer_id id;
	if (peer_hex && crust_peer_from_hex(peer_hex, &id) < 0) {
		say_error("connect", "bad peer id '%s' (want 64 hex characters)", peer_hex);
		return;
	}
	int err = peer_hex ? crust_connect_peer(n->svc, &ep, &id) : crust_connect(n->svc, &ep);
	if (err)
		say_error("connect", "%s", crust_strerror(err));
}

static bool peer_arg(const char *cmd, const char *arg, struct crust_peer_id *id)
{
	if (!arg || crust_peer_from_hex(arg, id) < 0) {
		say_error(cmd, "bad peer id '%s' (want 64 hex characters)", arg ? arg : "");
		return false;
	}
	return true;
}

static void do_send(struct node *n, char *arg)
{
	char *text = arg ? strchr(arg, ' ') : NULL;
	if (text)
		*text++ = 0;
	struct crust_peer_id id;
	if (!peer_arg("send", arg, &id))
		return;
	if (!text)
		text = "";
	int err = crust_send(n->svc, &id, text, strlen(text), 0);
	if (err)
		say_error("send", "%s", crust_strerror(err));
	else
		n->sends_ok++;
}

static void do_punch(struct node *n, const struct crust_peer_id *id)
{
	int err = crust_connect_id(n->svc, id);
	if (err == -ENOTCONN)
		say_error("punch", "%s", "not registered with a coordinator (--coordinator)");
	else if (err == -EALREADY)
		say_error("punch", "%s", "a punch to that peer is under way");
	else if (err == -EISCONN)
		say_error("punch", "%s", "already connected to that peer");
	else if (err)
		say_error("punch", "%s", crust_strerror(err));
}

static void do_peers(struct node *n)
{
	struct crust_peer_id ids[1024];
	int count = crust_peers(n->svc, ids, 1024);
	printf("{\"event\":\"peers\",\"count\":%d,\"peers\":[", count);
	for (int i = 0; i < count && i < 1024; i++) {
		char hex[CRUST_PEER_HEX_LEN + 1];
		crust_peer_to_hex(&ids[i], hex);
		printf("%s\"%s\"", i ? "," : "", hex);
	}
	printf("]}\n");
}

/* crust_own_endpoints: listeners, coordinator-learned and gateway-mapped endpoints. */
static void do_endpoints(struct node *n)
{
	struct crust_endpoint eps[64];
	int count = crust_own_endpoints(n->svc, eps, 64);
	if (count < 0) {
		say_error("endpoints", "%s", crust_strerror(count));
		return;
	}
	printf("{\"event\":\"endpoints\",\"endpoints\":[");
	for (int i = 0; i < count; i++) {
		char a[CRUST_ADDRSTRLEN];
		crust_addr_format(&eps[i].addr, a, sizeof(a));
		printf("%s{\"transport\":\"%s\",\"addr\":\"%s\"}", i ? "," : "",
		       crust_transport_name(eps[i].transport), a);
	}
	printf("]}\n");
}

static void do_stats(struct node *n)
{
	struct crust_stats s;
	crust_stats(n->svc, &s);
	printf("{\"event\":\"stats\",\"connections\":%llu,\"rx_bytes\":%llu,\"tx_bytes\":%llu,"
	       "\"rx_msgs\":%llu,\"tx_msgs\":%llu,\"rx_enobufs\":%llu,"
	       "\"udp_rx_packets\":%llu,\"udp_tx_packets\":%llu,\"udp_bad_packets\":%llu,"
	       "\"udp_auth_failures\":%llu,\"udp_unknown_cid\":%llu,\"udp_lost_packets\":%llu,"
	       "\"udp_retx_bytes\":%llu,\"udp_retries_sent\":%llu,\"udp_rcvbuf_drops\":%llu,"
	       "\"udp_dup_packets\":%llu,\"udp_late_packets\":%llu",
	       (unsigned long long)s.connections, (unsigned long long)s.rx_bytes,
	       (unsigned long long)s.tx_bytes, (unsigned long long)s.rx_msgs,
	       (unsigned long long)s.tx_msgs, (unsigned long long)s.rx_enobufs,
	       (unsigned long long)s.udp_rx_packets, (unsigned long long)s.udp_tx_packets,
	       (unsigned long long)s.udp_bad_packets, (unsigned long long)s.udp_auth_failures,
	       (unsigned long long)s.udp_unknown_cid, (unsigned long long)s.udp_lost_packets,
	       (unsigned long long)s.udp_retx_bytes, (unsigned long long)s.udp_retries_sent,
	       (unsigned long long)s.udp_rcvbuf_drops, (unsigned long long)s.udp_dup_packets,
	       (unsigned long long)s.udp_late_packets);
	printf(",\"beacon_port\":%u", crust_beacon_port(n->svc));
	const struct { const char *name; uint64_t v; } beacon[] = {
		{ "rx", s.beacon_rx }, { "accepted", s.beacon_accepted }, { "own", s.beacon_own },
		{ "malformed", s.beacon_malformed }, { "oversized", s.beacon_oversized },
		{ "other_network", s.beacon_other_network }, { "off_link", s.beacon_off_link },
		{ "stale", s.beacon_stale }, { "rate_limited", s.beacon_rate_limited },
		{ "bad_signature", s.beacon_bad_signature }, { "sig_checks", s.beacon_sig_checks },
		{ "sent", s.beacon_sent }, { "answers", s.beacon_answers },
	};
	for (size_t i = 0; i < sizeof(beacon) / sizeof(beacon[0]); i++)
		printf(",\"beacon_%s\":%llu", beacon[i].name, (unsigned long long)beacon[i].v);
	printf("}\n");
}

static void run_command(struct node *n, char *line)
{
	char *arg = strchr(line, ' ');
	if (arg)
		*arg++ = 0;
	struct crust_peer_id id;
	if (!strcmp(line, "connect"))
		do_connect(n, arg);
	else if (!strcmp(line, "send"))
		do_send(n, arg);
	else if (!strcmp(line, "drop")) {
		if (peer_arg("drop", arg, &id) && crust_drop(n->svc, &id) < 0)
			say_error("drop", "%s", "not connected");
	} else if (!strcmp(line, "maintain")) {
		if (peer_arg("maintain", arg, &id) && crust_maintain(n->svc, &id) < 0)
			say_error("maintain", "%s", "not connected");
	} else if (!strcmp(line, "blacklist")) {
		int err = crust_blacklist(n->svc, arg ? arg : "");
		if (err)
			say_error("blacklist", "%s",
				  err == -EINVAL ? "bad argument (want PEER, IP or IP:PORT)"
						 : crust_strerror(err));
	} else if (!strcmp(line, "punch")) {
		if (peer_arg("punch", arg, &id))
			do_punch(n, &id);
	}
	else if (!strcmp(line, "peers"))
		do_peers(n);
	else if (!strcmp(line, "endpoints"))
		do_endpoints(n);
	else if (!strcmp(line, "stats"))
		do_stats(n);
	else if (!strcmp(line, "quit"))
		n->quit = true;
	else if (line[0])
		say_error(line, "%s", "unknown command");
}

/* Take whole lines out of what stdin gave; returns false at end of input. */
static bool read_stdin(struct node *n)
{
	char buf[65536];
	ssize_t got = read(STDIN_FILENO, buf, sizeof(buf));
	if (got < 0)
		return errno == EINTR || errno == EAGAIN;
	if (got == 0)
		return false;
	for (ssize_t i = 0; i < got; i++) {
		if (buf[i] == '\n') {
			n->line[n->line_len] = 0;
			if (n->line_len && n->line[n->line_len - 1] == '\r')
				n->line[n->line_len - 1] = 0;
			if (n->line_too_long)
				say_error("input", "line longer than %u bytes: ignored", LINE_MAX_LEN - 1);
			else
				run_command(n, n->line);
			n->line_len = 0;
			n->line_too_long = false;
			if (n->quit)
				return true;
		} else if (n->line_len < LINE_MAX_LEN - 1) {
			n->line[n->line_len++] = buf[i];
		} else {
			n->line_too_long = true;
		}
	}
	return true;
}

static void drain_events(struct node *n)
{
	struct crust_event evs[64];
	int got;
	while ((got = crust_poll(n->svc, evs, 64, 0)) > 0) {
		for (int i = 0; i < got; i++) {
			json_event(stdout, &evs[i]);
			crust_msg_release(evs[i].msg);
		}
	}
	fflush(stdout);
}

/* Give queued messages a moment to leave before the connections close. */
static void linger(struct node *n)
{
	for (int waited = 0; waited < QUIT_LINGER_MS; waited += 10) {
		struct crust_stats s;
		crust_stats(n->svc, &s);
		if (s.tx_msgs >= n->sends_ok)
			return;
		drain_events(n);
		usleep(10000);
	}
}

static int loop(struct node *n, int sigfd)
{
	struct pollfd pfd[3] = {
		{ .fd = STDIN_FILENO, .events = POLLIN },
		{ .fd = crust_event_fd(n->svc), .events = POLLIN },
		{ .fd = sigfd, .events = POLLIN },
	};
	while (!n->quit) {
		if (poll(pfd, 3, -1) < 0 && errno != EINTR)
			return 1;
		if (pfd[1].revents)
			drain_events(n);
		if (pfd[2].revents)
			n->quit = true;
		if (pfd[0].revents && !read_stdin(n))
			n->quit = true; /* end of stdin */
		fflush(stdout);
	}
	linger(n);
	drain_events(n);
	return 0;
}

/* $XDG_<kind>_HOME/crust/name, or ~/.<fallback>/crust/name; false if neither is set. */
static bool default_path(const char *xdg, const char *fallback, const char *name, char *out,
			 size_t n)
{
	const char *base = getenv(xdg);
	const char *home = getenv("HOME");
	int len;
	if (base && base[0] == '/')
		len = snprintf(out, n, "%s/crust/%s", base, name);
	else if (home && home[0])
		len = snprintf(out, n, "%s/%s/crust/%s", home, fallback, name);
	else
		return false;
	return len > 0 && (size_t)len < n;
}

/* mkdir -p of path's directory (for the default cache only). */
static void make_parent_dirs(char *path)
{
	for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = 0;
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			fprintf(stderr, "crust node: cannot create %s: %s\n", path, strerror(errno));
		*p = '/';
	}
}

/*
 * The config file: --config F, else the default path. Read before the
 * other options, which override what it says. Returns 0 or EXIT_USAGE.
 */
static int load_config(int argc, char **argv, struct crust_config *cfg)
{
	const char *path = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			path = argv[++i];
		else if (!strncmp(argv[i], "--config=", 9))
			path = argv[i] + 9;
	}
	char def[4096];
	bool explicit = path != NULL;
	if (!path && default_path("XDG_CONFIG_HOME", ".config", "config.json", def, sizeof(def)))
		path = def;
	if (!path)
		return 0;
	char why[1024];
	int err = crust_config_load(cfg, path, why, sizeof(why));
	if (err == -ENOENT) {
		if (explicit)
			fprintf(stderr, "crust node: note: %s\n", why);
		return 0;
	}
	if (err) {
		fprintf(stderr, "crust node: %s\n", why);
		return EXIT_USAGE;
	}
	return 0;
}

/* No --cache and no cache_file in the config: the default cache, its directory made. */
static void default_cache(struct crust_config *cfg, struct node *n)
{
	if (n->cache_set || cfg->cache_file)
		return;
	if (!default_path("XDG_CACHE_HOME", ".cache", "bootstrap.cache", n->default_cache,
			  sizeof(n->default_cache)))
		return;
	make_parent_dirs(n->default_cache);
	cfg->cache_file = n->default_cache;
}

int cmd_node(int argc, char **argv)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	struct node n = { 0 };
	int ret = load_config(argc, argv, &cfg);
	if (!ret)
		ret = parse_options(argc, argv, &cfg, &n);
	if (ret) {
		crust_config_release(&cfg);
		return ret;
	}
	default_cache(&cfg, &n);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	n.line = malloc(LINE_MAX_LEN);
	int err = n.line ? crust_service_new(&cfg, &n.svc) : -ENOMEM;
	if (err) {
		fprintf(stderr, "crust node: cannot start: %s\n", crust_strerror(err));
		free(n.line);
		crust_config_release(&cfg);
		return 1;
	}
	struct crust_peer_id me;
	char hex[CRUST_PEER_HEX_LEN + 1];
	crust_own_id(n.svc, &me);
	crust_peer_to_hex(&me, hex);
	printf("{\"event\":\"node_started\",\"peer\":\"%s\"}\n", hex);
	err = crust_start_listening(n.svc);
	if (err)
		fprintf(stderr, "crust node: listen: %s\n", crust_strerror(err));
	drain_events(&n);
	for (int i = 0; i < n.nconnect; i++)
		do_connect(&n, n.connect[i]);
	if (!n.no_bootstrap && (err = crust_bootstrap(n.svc)) < 0)
		fprintf(stderr, "crust node: bootstrap: %s\n", crust_strerror(err));
	fflush(stdout);
	ret = loop(&n, sigfd);
	crust_service_free(n.svc);
	crust_config_release(&cfg);
	fflush(stdout);
	free(n.line);
	close(sigfd);
	return ret;
}
