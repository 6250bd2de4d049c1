/*
 * coordinator.c - `crust coordinator`: a crust node that answers STUN
 * Binding requests on UDP at every --listen address, and rendezvous and
 * relay for nodes that open a crust session to its TCP listener (the
 * first --listen address). JSON lines on stdout (coordinator_started,
 * stats), logs on stderr. Runs until SIGTERM/SIGINT or `quit` on stdin;
 * the end of stdin does not stop it (it is a daemon).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"

#define MAX_LISTEN 4

struct coord_cli {
	struct crust_endpoint listen[MAX_LISTEN];
	const char *listen_arg[MAX_LISTEN];
	int nlisten;
	char bind_ip[CRUST_ADDRSTRLEN];
	struct crust_coordinator_config cc;
};

static void coord_usage(FILE *f)
{
	fputs("usage: crust coordinator --listen ADDR:PORT [--listen ADDR2:PORT]...\n"
	      "         [--identity F] [--network NAME] [--verbose]\n"
	      "         [--registration-ttl-ms N] [--max-registrations N] [--max-per-ip N]\n"
	      "         [--punch-lead-ms N] [--no-relay] [--relay-max-pairs N]\n"
	      "         [--relay-max-bytes N] [--relay-rate N (bytes/s)]\n"
	      "         [--hs-rate-per-s N] [--hs-burst N] [--hs-max-pending N]\n"
	      "STUN (UDP) on every --listen address; crust sessions (TCP) on the first.\n"
	      "stdin: stats | quit\n", f);
}

enum {
	OPT_LISTEN = 1000, OPT_IDENTITY, OPT_NETWORK, OPT_VERBOSE, OPT_TTL, OPT_MAXREG, OPT_PERIP,
	OPT_LEAD, OPT_NORELAY, OPT_PAIRS, OPT_BYTES, OPT_RATE, OPT_HS_RATE, OPT_HS_BURST,
	OPT_HS_PENDING, OPT_HELP,
};

static const struct option options[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "identity", required_argument, NULL, OPT_IDENTITY },
	{ "network", required_argument, NULL, OPT_NETWORK },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "registration-ttl-ms", required_argument, NULL, OPT_TTL },
	{ "max-registrations", required_argument, NULL, OPT_MAXREG },
	{ "max-per-ip", required_argument, NULL, OPT_PERIP },
	{ "punch-lead-ms", required_argument, NULL, OPT_LEAD },
	{ "no-relay", no_argument, NULL, OPT_NORELAY },
	{ "relay-max-pairs", required_argument, NULL, OPT_PAIRS },
	{ "relay-max-bytes", required_argument, NULL, OPT_BYTES },
	{ "relay-rate", required_argument, NULL, OPT_RATE },
	{ "hs-rate-per-s", required_argument, NULL, OPT_HS_RATE },
	{ "hs-burst", required_argument, NULL, OPT_HS_BURST },
	{ "hs-max-pending", required_argument, NULL, OPT_HS_PENDING },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static int add_listen(struct coord_cli *c, const char *arg)
{
	if (c->nlisten == MAX_LISTEN) {
		fprintf(stderr, "crust coordinator: --listen: at most %d\n", MAX_LISTEN);
		return EXIT_USAGE;
	}
	struct crust_endpoint *ep = &c->listen[c->nlisten];
	if (crust_endpoint_parse(arg, ep) < 0 || !strncmp(arg, "rudp://", 7)) {
		fprintf(stderr, "crust coordinator: --listen: bad endpoint '%s' (want ADDR:PORT)\n",
			arg);
		return EXIT_USAGE;
	}
	uint16_t port = ep->addr.ss_family == AF_INET
				? ntohs(((struct sockaddr_in *)&ep->addr)->sin_port)
				: ntohs(((struct sockaddr_in6 *)&ep->addr)->sin6_port);
	if (!port) {
		fprintf(stderr, "crust coordinator: --listen: '%s' needs a port\n", arg);
		return EXIT_USAGE;
	}
	c->listen_arg[c->nlisten++] = arg;
	return 0;
}

/* A number option into *field of the given width; false with a message if bad. */
static bool num(const char *opt, uint64_t min, uint64_t max, uint64_t *out)
{
	return cli_uint(opt, optarg, min, max, out);
}

static int parse(int argc, char **argv, struct crust_config *cfg, struct coord_cli *c)
{
	uint64_t v;
	int o;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (o) {
		case OPT_LISTEN:
			if (add_listen(c, optarg))
				return EXIT_USAGE;
			break;
		case OPT_IDENTITY: cfg->identity_file = optarg; break;
		case OPT_NETWORK: cfg->network_name = optarg; break;
		case OPT_VERBOSE: cfg->log_level = CRUST_LOG_INFO; break;
		case OPT_NORELAY: c->cc.relay_off = true; break;
		case OPT_TTL:
			if (!num("--registration-ttl-ms", 1000, 86400000, &v)) return EXIT_USAGE;
			c->cc.registration_ttl_ms = (uint32_t)v;
			break;
		case OPT_MAXREG:
			if (!num("--max-registrations", 1, 1u << 24, &v)) return EXIT_USAGE;
			c->cc.max_registrations = (uint32_t)v;
			break;
		case OPT_PERIP:
			if (!num("--max-per-ip", 1, 1u << 24, &v)) return EXIT_USAGE;
			c->cc.max_per_ip = (uint32_t)v;
			break;
		case OPT_LEAD:
			if (!num("--punch-lead-ms", 1, 60000, &v)) return EXIT_USAGE;
			c->cc.punch_lead_ms = (uint32_t)v;
			break;
		case OPT_PAIRS:
			if (!num("--relay-max-pairs", 1, 1u << 20, &v)) return EXIT_USAGE;
			c->cc.relay_max_pairs = (uint32_t)v;
			break;
		case OPT_BYTES:
			if (!num("--relay-max-bytes", 1, UINT64_MAX >> 1, &v)) return EXIT_USAGE;
			c->cc.relay_max_bytes = v;
			break;
		case OPT_RATE:
			if (!num("--relay-rate", 1024, 1u << 30, &v)) return EXIT_USAGE;
			c->cc.relay_rate = (uint32_t)v;
			break;
		case OPT_HS_RATE:
			if (!num("--hs-rate-per-s", 1, 1u << 24, &v)) return EXIT_USAGE;
			cfg->hs_rate_per_s = (uint32_t)v;
			break;
		case OPT_HS_BURST:
			if (!num("--hs-burst", 1, 1u << 24, &v)) return EXIT_USAGE;
			cfg->hs_burst = (uint32_t)v;
			break;
		case OPT_HS_PENDING:
			if (!num("--hs-max-pending", 1, 1u << 24, &v)) return EXIT_USAGE;
			cfg->hs_max_pending = (uint32_t)v;
			break;
		case OPT_HELP: coord_usage(stdout); exit(0);
		default: coord_usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "crust coordinator: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (!c->nlisten) {
		fprintf(stderr, "crust coordinator: --listen ADDR:PORT is required\n");
		return EXIT_USAGE;
	}
	return 0;
}

/* The TCP listener goes on the first --listen address, at its port exactly. */
static void session_address(struct crust_config *cfg, struct coord_cli *c)
{
	crust_addr_format(&c->listen[0].addr, c->bind_ip, sizeof(c->bind_ip));
	char *colon = strrchr(c->bind_ip, ':');
	if (colon)
		*colon = 0;
	char *ip = c->bind_ip;
	if (ip[0] == '[') { /* [v6] */
		memmove(ip, ip + 1, strlen(ip));
		ip[strlen(ip) - 1] = 0;
	}
	cfg->bind_addr = ip;
	cfg->tcp_port = c->listen[0].addr.ss_family == AF_INET
				? ntohs(((struct sockaddr_in *)&c->listen[0].addr)->sin_port)
				: ntohs(((struct sockaddr_in6 *)&c->listen[0].addr)->sin6_port);
	cfg->shards = 1;           /* the relay splices connections on one shard */
	cfg->no_beacon = true;
	cfg->no_pex = true;
	cfg->cache_file = NULL;
}

/* Wait for the listener event: false if it fell back to another port (taken). */
static bool listener_ok(struct crust_service *svc)
{
	struct crust_event ev[8];
	int got = crust_poll(svc, ev, 8, 2000);
	for (int i = 0; i < got; i++) {
		if (ev[i].type == CRUST_EV_LISTENER_STARTED && ev[i].fallback) {
			fprintf(stderr, "crust coordinator: %s\n", ev[i].reason);
			return false;
		}
		crust_msg_release(ev[i].msg);
	}
	return true;
}

static void print_stats(struct crust_service *svc)
{
	struct crust_coordinator_stats s;
	crust_coordinator_stats(svc, &s);
	printf("{\"event\":\"stats\",\"stun_requests\":%llu,\"stun_answers\":%llu,"
	       "\"stun_errors\":%llu,\"stun_dropped\":%llu,\"registrations\":%llu,"
	       "\"registrations_refused\":%llu,\"expired\":%llu,\"registered_now\":%llu,"
	       "\"rendezvous\":%llu,\"rendezvous_unknown\":%llu,\"relay_pairs\":%llu,"
	       "\"relay_bytes\":%llu,\"relay_refused\":%llu,\"relay_capped\":%llu}\n",
	       (unsigned long long)s.stun_requests, (unsigned long long)s.stun_answers,
	       (unsigned long long)s.stun_errors, (unsigned long long)s.stun_dropped,
	       (unsigned long long)s.registrations, (unsigned long long)s.registrations_refused,
	       (unsigned long long)s.expired, (unsigned long long)s.registered_now,
	       (unsigned long long)s.rendezvous, (unsigned long long)s.rendezvous_unknown,
	       (unsigned long long)s.relay_pairs, (unsigned long long)s.relay_bytes,
	       (unsigned long long)s.relay_refused, (unsigned long long)s.relay_capped);
	fflush(stdout);
}

static void drain(struct crust_service *svc)
{
	struct crust_event ev[64];
	int got;
	while ((got = crust_poll(svc, ev, 64, 0)) > 0)
		for (int i = 0; i < got; i++)
			crust_msg_release(ev[i].msg); /* nodes do not message the coordinator */
}

/* stdin lines; returns false on quit. End of input just stops reading. */
static bool read_commands(int *fd, struct crust_service *svc)
{
	char buf[4096];
	ssize_t got = read(*fd, buf, sizeof(buf) - 1);
	if (got <= 0) {
		if (got == 0 || (errno != EINTR && errno != EAGAIN))
			*fd = -1;
		return true;
	}
	buf[got] = 0;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strncmp(line, "quit", 4))
			return false;
		if (!strncmp(line, "stats", 5))
			print_stats(svc);
	}
	return true;
}

static int serve(struct crust_service *svc, int sigfd)
{
	int in = STDIN_FILENO;
	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = crust_event_fd(svc), .events = POLLIN },
			{ .fd = sigfd, .events = POLLIN },
			{ .fd = in, .events = POLLIN },
		};
		if (poll(pfd, 3, -1) < 0 && errno != EINTR)
			return 1;
		if (pfd[0].revents)
			drain(svc);
		if (pfd[1].revents)
			return 0;
		if (pfd[2].revents && !read_commands(&in, svc))
			return 0;
	}
}

int cmd_coordinator(int argc, char **argv)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.port_mapping = "off"; /* a coordinator must be reachable as it is: no gateway games */
	struct coord_cli c = { 0 };
	int ret = parse(argc, argv, &cfg, &c);
	if (ret)
		return ret;
	session_address(&cfg, &c);
	c.cc.stun = c.listen;
	c.cc.nstun = (size_t)c.nlisten;
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	struct crust_service *svc;
	int err = crust_service_new(&cfg, &svc);
	if (!err)
		err = crust_start_listening(svc);
	if (err) {
		fprintf(stderr, "crust coordinator: cannot start: %s\n", crust_strerror(err));
		return 1;
	}
	if (!listener_ok(svc) || (err = crust_coordinator_start(svc, &c.cc)) < 0) {
		if (err)
			fprintf(stderr, "crust coordinator: STUN: %s\n", crust_strerror(err));
		crust_service_free(svc);
		return 1;
	}
	struct crust_peer_id me;
	char hex[CRUST_PEER_HEX_LEN + 1];
	crust_own_id(svc, &me);
	crust_peer_to_hex(&me, hex);
	printf("{\"event\":\"coordinator_started\",\"peer\":\"%s\",\"tcp\":\"%s\",\"stun\":[", hex,
	       c.listen_arg[0]);
	for (int i = 0; i < c.nlisten; i++)
		printf("%s\"%s\"", i ? "," : "", c.listen_arg[i]);
	printf("]}\n");
	fflush(stdout);
	ret = serve(svc, sigfd);
	print_stats(svc);
	crust_service_free(svc);
	close(sigfd);
	return ret;
}
