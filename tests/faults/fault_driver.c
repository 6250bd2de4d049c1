/*
 * fault_driver.c - drives libcrust through many operations while the faults
 * build (engine/fault.h) makes allocations, io_uring calls and socket calls
 * fail at CRUST_FAULT_RATE. A plain main(), run under ASan + LSan by
 * `make faults` (mk/faults.mk).
 *
 * What it checks, every round:
 *  - every API call returns 0, a documented count or a negative errno
 *    (never a positive surprise), and every failure path leaves the process
 *    usable for the next round;
 *  - no crash (ASan/UBSan abort), no hang (a per-round alarm), no leak
 *    (LSan at exit) and no descriptor left open (counted with faults off
 *    after each round against the count before the first).
 * Even rounds inject from the start, odd rounds once every service listens.
 * One round: a coordinator service, two nodes registered with it, TCP and
 * reliable-UDP dials both ways, messages (copied and zero-copy), a
 * bootstrap from contacts, a punch by id, blacklist, drop, a config file
 * and an identity file loaded, then everything freed.
 * The kinds reach the dependencies too (jansson's and OpenSSL's
 * allocations) and close(), which closes and then reports EINTR or EIO.
 * Once per run, before the rounds, two targeted checks:
 *  - a close() that reports EIO after a file was written fails the save
 *    and keeps the old file (bootstrap cache) or creates none (identity);
 *  - with only OpenSSL's allocations failing on a reliable-UDP connection,
 *    every message sent still arrives once faults stop (a seal that fails
 *    must not lose stream bytes);
 * and at the end: no close() ever met a descriptor already closed (EBADF).
 *
 * usage: fault_driver ROUNDS [MS_PER_ROUND]
 */
#define _GNU_SOURCE
#include <crust.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/fault.h"

#define ROUND_ALARM_S 60
#define NODES 2

static int round_no;
static char tmpdir[64];
static unsigned long calls_failed, calls_ok, msgs_received, conns_made;

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "fault_driver: HANG: a round took longer than 60 s\n";
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(3);
}

static void die(const char *what, int ret)
{
	fprintf(stderr, "fault_driver: round %d: %s returned %d, not 0 or -errno\n", round_no, what,
		ret);
	exit(1);
}

/* 0 or -errno is fine under faults; anything else is a bug. */
static int check(const char *what, int ret)
{
	if (ret > 0 || ret < -4095)
		die(what, ret);
	if (ret < 0)
		calls_failed++;
	else
		calls_ok++;
	return ret;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n - 1; /* the DIR's own */
}

/* A TCP port nobody holds now, for the coordinator (its STUN shares the number). */
static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		perror("fault_driver: free_port");
		exit(1);
	}
	close(fd);
	return ntohs(a.sin_port);
}

static void quiet_log(void *ctx, enum crust_log_level level, const char *msg)
{
	(void)ctx;
	(void)level;
	(void)msg;
}

static bool read_file(const char *path, char *buf, size_t cap, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, cap);
	close(fd);
	*len = n > 0 ? (size_t)n : 0;
	return n >= 0 && (size_t)n < cap;
}

/* Any name in dir containing part? */
static bool dir_has(const char *dir, const char *part)
{
	DIR *d = opendir(dir);
	bool found = false;
	for (struct dirent *e; d && (e = readdir(d));)
		found |= strstr(e->d_name, part) != NULL;
	if (d)
		closedir(d);
	return found;
}

static void base_config(struct crust_config *cfg)
{
	crust_config_init(cfg);
	cfg->bind_addr = "127.0.0.1";
	cfg->no_beacon = true; /* never broadcast on the host's interfaces */
	cfg->shards = 2;
	cfg->rx_buffer_count = 16;
	cfg->rx_buffer_size = 16384;
	cfg->tx_arena_size = 256 * 1024;
	cfg->connect_timeout_ms = 1000;
	cfg->handshake_timeout_ms = 1000;
	cfg->punch_timeout_ms = 500;
	cfg->log = quiet_log;
}

static struct crust_service *start_coordinator(uint16_t port)
{
	struct crust_config cfg;
	base_config(&cfg);
	cfg.shards = 1;
	cfg.tcp_port = port;
	cfg.no_pex = true;
	struct crust_service *svc;
	if (check("crust_service_new(coordinator)", crust_service_new(&cfg, &svc)) < 0)
		return NULL;
	if (check("crust_start_listening(coordinator)", crust_start_listening(svc)) == 0) {
		struct crust_endpoint stun = { .transport = CRUST_TRANSPORT_RUDP };
		char ep[32];
		snprintf(ep, sizeof(ep), "127.0.0.1:%u", port);
		if (crust_endpoint_parse(ep, &stun) < 0)
			die("crust_endpoint_parse", -1);
		struct crust_coordinator_config cc = { .stun = &stun, .nstun = 1 };
		check("crust_coordinator_start", crust_coordinator_start(svc, &cc));
	}
	return svc;
}

static struct crust_service *start_node(int i, const char *coord, const struct crust_endpoint *contacts,
					size_t ncontacts)
{
	char cache[96], ident[96];
	snprintf(cache, sizeof(cache), "%s/cache%d", tmpdir, i);
	snprintf(ident, sizeof(ident), "%s/id%d", tmpdir, i);
	struct crust_config cfg;
	base_config(&cfg);
	cfg.coordinator = coord;
	cfg.cache_file = cache;
	cfg.identity_file = ident;
	cfg.contacts = contacts;
	cfg.ncontacts = ncontacts;
	cfg.rudp_cc = (round_no & 1) ? "cubic" : "bbr";
	struct crust_service *svc;
	if (check("crust_service_new(node)", crust_service_new(&cfg, &svc)) < 0)
		return NULL;
	check("crust_start_listening(node)", crust_start_listening(svc));
	return svc;
}

/* The node's own TCP endpoint (first listed), or false if it has none. */
static bool own_endpoint(struct crust_service *svc, enum crust_transport t, struct crust_endpoint *out)
{
	struct crust_endpoint eps[8];
	int n = crust_own_endpoints(svc, eps, 8);
	if (n < 0 || n > 8)
		check("crust_own_endpoints", n > 8 ? 1 : n);
	for (int i = 0; i < n && i < 8; i++)
		if (eps[i].transport == t) {
			*out = eps[i];
			return true;
		}
	return false;
}

static void send_some(struct crust_service *svc, const struct crust_peer_id *peer)
{
	static const char text[] = "fault injection says hello";
	check("crust_send", crust_send(svc, peer, text, sizeof(text), (uint8_t)(round_no % 3)));
	struct crust_msg *m = crust_msg_alloc(svc, 3000);
	if (m) {
		memset(crust_msg_data(m), 'x', 3000);
		check("crust_send_msg", crust_send_msg(svc, peer, m, 1));
	}
}

/* Handle what one service reports: answer new connections with messages, release the rest. */
static void pump(struct crust_service *svc)
{
	struct crust_event ev[32];
	int n = crust_poll(svc, ev, 32, 5);
	if (n < 0 || n > 32)
		die("crust_poll", n);
	for (int i = 0; i < n; i++) {
		switch (ev[i].type) {
		case CRUST_EV_NEW_CONNECTION:
		case CRUST_EV_NEW_BOOTSTRAP_CONNECTION:
			conns_made++;
			send_some(svc, &ev[i].peer);
			check("crust_maintain", crust_maintain(svc, &ev[i].peer));
			break;
		case CRUST_EV_NEW_MESSAGE:
			msgs_received++;
			if (crust_msg_len(ev[i].msg) == 0 && crust_msg_data(ev[i].msg) == NULL)
				die("empty message", 1);
			crust_msg_release(ev[i].msg);
			break;
		default:
			break;
		}
	}
}

static void pump_all(struct crust_service **svcs, int n, int ms)
{
	for (int t = 0; t < ms; t += 5 * n)
		for (int i = 0; i < n; i++)
			if (svcs[i])
				pump(svcs[i]);
}

static void config_file_round(void)
{
	char path[96], why[128];
	snprintf(path, sizeof(path), "%s/node.json", tmpdir);
	FILE *f = fopen(path, "w");
	if (!f)
		die("fopen(config)", 1);
	fputs("{\"tcp_port\": 0, \"network_name\": \"faults\", \"shards\": 1,\n"
	      " \"hard_coded_contacts\": [\"127.0.0.1:1\", \"rudp://[::1]:2\"],\n"
	      " \"coordinator\": \"127.0.0.1:3\", \"rudp_cc\": \"cubic\"}\n", f);
	fclose(f);
	struct crust_config cfg;
	crust_config_init(&cfg);
	uint64_t json0 = crust_fault_count(CRUST_FAULT_JSON);
	int r = check("crust_config_load", crust_config_load(&cfg, path, why, sizeof(why)));
	/*
	 * The file is valid: only a failed allocation or read may refuse it.
	 * jansson reports a failed allocation of a string token as an invalid
	 * token (its lexer says so in a comment), so -EINVAL is allowed only
	 * when a jansson allocation failed during this load.
	 */
	bool json_failed = crust_fault_count(CRUST_FAULT_JSON) != json0;
	if (r < 0 && r != -ENOMEM && r != -EIO && !(r == -EINVAL && json_failed)) {
		fprintf(stderr, "fault_driver: round %d: a valid config file refused (%d): %s\n",
			round_no, r, why);
		exit(1);
	}
	crust_config_release(&cfg); /* a failed load may have applied keys before it failed */
}

static bool saw_eio_warning;

static void eio_log(void *ctx, enum crust_log_level level, const char *msg)
{
	(void)ctx;
	(void)level;
	if (strstr(msg, strerror(EIO)))
		saw_eio_warning = true;
}

static void fail_check(const char *what)
{
	fprintf(stderr, "fault_driver: %s\n", what);
	exit(1);
}

/*
 * A close() reporting EIO after the file was written (Linux frees the
 * descriptor anyway) must fail the save: the bootstrap cache rewritten for
 * a new capacity keeps its old file, a new identity file is not created.
 */
static void check_file_close_eio(void)
{
	char dir[96], cache[128], ident[128], ident2[128];
	snprintf(dir, sizeof(dir), "%s/close", tmpdir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	snprintf(ident, sizeof(ident), "%s/id", dir);
	snprintf(ident2, sizeof(ident2), "%s/id-new", dir);
	if (mkdir(dir, 0700) < 0)
		die("mkdir", -errno);
	struct crust_config cfg;
	struct crust_service *svc;
	base_config(&cfg);
	cfg.cache_file = cache;
	cfg.identity_file = ident;
	if (crust_service_new(&cfg, &svc) < 0)
		fail_check("close check: a node without faults did not start");
	crust_service_free(svc);
	static char before[1 << 20], after[1 << 20];
	size_t blen, alen;
	if (!read_file(cache, before, sizeof(before), &blen) || blen == 0)
		fail_check("close check: no bootstrap cache written");

	/* another capacity: the cache file is rewritten whole (temp, rename) */
	cfg.cache_max_entries = 32;
	cfg.log = eio_log;
	uint64_t failed0 = crust_fault_file_closes_failed();
	crust_fault_fail_file_closes(true);
	int r = crust_service_new(&cfg, &svc);
	crust_fault_fail_file_closes(false);
	if (r < 0)
		fail_check("close check: the node did not start (the cache is optional)");
	crust_service_free(svc);
	if (crust_fault_file_closes_failed() == failed0)
		fail_check("close check: the cache rewrite closed no written file");
	if (!read_file(cache, after, sizeof(after), &alen) || alen != blen ||
	    memcmp(before, after, blen) != 0)
		fail_check("close check: a failed close replaced the bootstrap cache");
	if (!saw_eio_warning)
		fail_check("close check: the cache's failed close was not reported");

	/* a new identity: the save fails, so does the node, and no file appears */
	cfg.cache_file = NULL;
	cfg.identity_file = ident2;
	crust_fault_fail_file_closes(true);
	r = crust_service_new(&cfg, &svc);
	crust_fault_fail_file_closes(false);
	if (r == 0) {
		crust_service_free(svc);
		fail_check("close check: an identity whose close failed was used");
	}
	if (access(ident2, F_OK) == 0 || dir_has(dir, ".tmp-"))
		fail_check("close check: a failed identity save left a file");
	fprintf(stderr, "fault_driver: close check: %llu written-file closes failed with EIO, "
		"cache kept, identity refused (%d)\n",
		(unsigned long long)(crust_fault_file_closes_failed() - failed0), r);
}

static char ssl_why[CRUST_REASON_LEN + 16];

/* Count received messages and connections made; -1 if a connection was lost or failed. */
static int ssl_pump(struct crust_service *svc, int *got, int *up)
{
	struct crust_event ev[32];
	int n = crust_poll(svc, ev, 32, 5);
	if (n < 0 || n > 32)
		die("crust_poll", n);
	int ret = 0;
	for (int i = 0; i < n; i++) {
		switch (ev[i].type) {
		case CRUST_EV_NEW_MESSAGE:
			(*got)++;
			crust_msg_release(ev[i].msg);
			break;
		case CRUST_EV_NEW_CONNECTION:
			(*up)++;
			break;
		case CRUST_EV_LOST_CONNECTION:
		case CRUST_EV_CONNECT_FAILED:
		case CRUST_EV_HANDSHAKE_FAILED:
			snprintf(ssl_why, sizeof(ssl_why), "%d: %s", ev[i].error, ev[i].reason);
			ret = ev[i].error == -ETIMEDOUT ? -2 : -1;
			break;
		default:
			break;
		}
	}
	return ret;
}

static int ssl_send(struct crust_service *from, struct crust_service *to, int n)
{
	static char text[1400];
	struct crust_peer_id id;
	crust_own_id(to, &id);
	memset(text, 'q', sizeof(text));
	int sent = 0;
	for (int i = 0; i < n; i++)
		sent += crust_send(from, &id, text, sizeof(text), 0) == 0;
	return sent;
}

/*
 * Only OpenSSL's allocations fail (reliable UDP keys its packet
 * protection with it, the session its AES) while two fresh nodes dial
 * over reliable UDP and exchange messages: a dial may fail, but on a
 * connection that came up every message sent must arrive once faults
 * stop, and a dial that fails fails with its error, never by stalling
 * into its timeout. Key setup (the allocations) happens on the first
 * packets, so a failed seal there must delay stream bytes, never lose them.
 */
#define SSL_ATTEMPTS 4
#define SSL_MSGS 50
#define SSL_RATE 0.05
#define SSL_DIAL_MS 6000
static void check_ssl_delivery(void)
{
	unsigned kinds = crust_fault_set_kinds(1u << CRUST_FAULT_SSL);
	double rate = crust_fault_set_rate(SSL_RATE); /* the run's lowest would fail nothing */
	uint64_t ssl0 = crust_fault_count(CRUST_FAULT_SSL);
	int connected = 0, failed = 0, delivered = 0;
	for (int attempt = 0; attempt < SSL_ATTEMPTS; attempt++) {
		struct crust_config cfg;
		struct crust_service *a, *b;
		base_config(&cfg);
		/* loopback loses nothing: a dial that takes this long has stalled */
		cfg.connect_timeout_ms = cfg.handshake_timeout_ms = SSL_DIAL_MS;
		if (crust_service_new(&cfg, &a) < 0 || crust_start_listening(a) < 0 ||
		    crust_service_new(&cfg, &b) < 0)
			fail_check("ssl check: nodes did not start");
		struct crust_endpoint ep;
		if (!own_endpoint(a, CRUST_TRANSPORT_RUDP, &ep))
			fail_check("ssl check: no reliable-UDP endpoint");
		crust_fault_enable(true);
		int got_a = 0, got_b = 0, up = 0, bad = crust_connect(b, &ep) < 0 ? -1 : 0;
		for (int t = 0; t < SSL_DIAL_MS + 2000 && up < 2 && !bad; t += 10) {
			int ra = ssl_pump(a, &got_a, &up), rb = ssl_pump(b, &got_b, &up);
			bad = ra < rb ? ra : rb; /* -2 (a timeout) before -1 */
		}
		if (bad == -2 || (!bad && up < 2)) {
			/* a failed allocation fails a dial at once, with its error */
			fprintf(stderr, "fault_driver: ssl check: a dial stalled under OpenSSL faults: %s\n",
				bad ? ssl_why : "no result");
			exit(1);
		}
		int sent_ba = 0, sent_ab = 0;
		if (up == 2 && !bad) {
			sent_ba = ssl_send(b, a, SSL_MSGS);
			sent_ab = ssl_send(a, b, SSL_MSGS);
			for (int t = 0; t < 300; t += 10)
				if (ssl_pump(a, &got_a, &up) < 0 || ssl_pump(b, &got_b, &up) < 0)
					fail_check("ssl check: a connection was lost while faults were on");
		}
		crust_fault_enable(false);
		if (up == 2 && !bad) {
			for (int t = 0; t < 20000 && (got_a < sent_ba || got_b < sent_ab); t += 10)
				if (ssl_pump(a, &got_a, &up) < 0 || ssl_pump(b, &got_b, &up) < 0)
					fail_check("ssl check: a connection was lost after faults stopped");
			if (got_a != sent_ba || got_b != sent_ab) {
				fprintf(stderr, "fault_driver: ssl check: %d of %d and %d of %d messages "
					"arrived in 20 s after faults stopped\n",
					got_a, sent_ba, got_b, sent_ab);
				exit(1);
			}
			connected++;
			delivered += got_a + got_b;
		} else {
			failed++;
			if (getenv("FAULT_DRIVER_VERBOSE"))
				fprintf(stderr, "fault_driver: ssl check: dial failed: %s\n",
					bad ? ssl_why : "no connection in 3 s");
		}
		crust_service_free(b);
		crust_service_free(a);
	}
	crust_fault_set_kinds(kinds);
	crust_fault_set_rate(rate);
	uint64_t injected = crust_fault_count(CRUST_FAULT_SSL) - ssl0;
	if (injected == 0)
		fail_check("ssl check: no OpenSSL allocation failed (hooks not reached?)");
	fprintf(stderr, "fault_driver: ssl check: %llu OpenSSL allocation faults; %d dials connected "
		"and delivered all %d messages, %d failed\n", (unsigned long long)injected,
		connected, delivered, failed);
}

/*
 * Odd rounds start the services with faults off and turn them on once all
 * listen, so high rates reach the data paths instead of only the setup.
 */
static void one_round(int ms, bool faults)
{
	bool late = faults && (round_no & 1);
	crust_fault_enable(faults && !late);
	config_file_round();
	uint16_t port = free_port();
	char coord[32];
	snprintf(coord, sizeof(coord), "127.0.0.1:%u", port);
	struct crust_service *svcs[NODES + 1] = { start_coordinator(port) };
	struct crust_endpoint contacts[1];
	size_t ncontacts = 0;
	for (int i = 0; i < NODES; i++) {
		svcs[1 + i] = start_node(i, coord, contacts, ncontacts);
		if (svcs[1 + i] && own_endpoint(svcs[1 + i], CRUST_TRANSPORT_TCP, &contacts[0]))
			ncontacts = 1;
	}
	if (late)
		crust_fault_enable(true);
	pump_all(svcs, NODES + 1, ms / 4);
	struct crust_service *a = svcs[1], *b = svcs[2];
	struct crust_endpoint ep;
	if (a && b) {
		if (own_endpoint(a, CRUST_TRANSPORT_TCP, &ep))
			check("crust_connect(tcp)", crust_connect(b, &ep));
		if (own_endpoint(a, CRUST_TRANSPORT_RUDP, &ep))
			check("crust_connect(rudp)", crust_connect(b, &ep));
		check("crust_bootstrap", crust_bootstrap(b));
		struct crust_peer_id ida;
		crust_own_id(a, &ida);
		int r = crust_connect_id(b, &ida);
		if (r != -ENOTCONN && r != -EALREADY)
			check("crust_connect_id", r);
	}
	pump_all(svcs, NODES + 1, ms / 2);
	if (a && b) {
		struct crust_peer_id peers[8];
		int n = crust_peers(b, peers, 8);
		if (n < 0 || n > 8)
			die("crust_peers", n);
		for (int i = 0; i < n; i++)
			send_some(b, &peers[i]);
		pump_all(svcs, NODES + 1, ms / 8);
		for (int i = 0; i < n; i++)
			check("crust_drop", crust_drop(b, &peers[i]));
		check("crust_blacklist", crust_blacklist(a, "198.51.100.7"));
	}
	pump_all(svcs, NODES + 1, ms / 8);
	struct crust_stats st;
	for (int i = 0; i <= NODES; i++)
		if (svcs[i]) {
			crust_stats(svcs[i], &st);
			crust_service_free(svcs[i]);
		}
	crust_fault_enable(false);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 20;
	int ms = argc > 2 ? atoi(argv[2]) : 800;
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/crust-faults.XXXXXX");
	if (!mkdtemp(tmpdir))
		die("mkdtemp", 1);
	/* a first round without faults: libraries' one-time descriptors (urandom, ...) open here */
	alarm(ROUND_ALARM_S);
	one_round(ms, false);
	if (conns_made == 0 || msgs_received == 0) {
		fprintf(stderr, "fault_driver: the round without faults made no connection\n");
		return 1;
	}
	check_file_close_eio();
	check_ssl_delivery();
	int fds_start = count_fds();
	for (round_no = 1; round_no <= rounds; round_no++) {
		alarm(ROUND_ALARM_S);
		one_round(ms, true);
		alarm(0);
		int fds = count_fds();
		if (fds != fds_start) {
			fprintf(stderr, "fault_driver: round %d: %d descriptors open, %d before\n",
				round_no, fds, fds_start);
			char cmd[64];
			snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", getpid());
			(void)!system(cmd);
			return 1;
		}
	}
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	(void)!system(cmd);
	if (crust_fault_bad_closes()) {
		fprintf(stderr, "fault_driver: %llu close() calls found no descriptor (double close)\n",
			(unsigned long long)crust_fault_bad_closes());
		return 1;
	}
	fprintf(stderr,
		"fault_driver: %d rounds: calls ok=%lu failed=%lu, connections=%lu, messages=%lu, "
		"injected alloc=%llu uring=%llu sock=%llu json=%llu ssl=%llu close=%llu\n",
		rounds, calls_ok, calls_failed, conns_made, msgs_received,
		(unsigned long long)crust_fault_count(CRUST_FAULT_ALLOC),
		(unsigned long long)crust_fault_count(CRUST_FAULT_URING),
		(unsigned long long)crust_fault_count(CRUST_FAULT_SOCK),
		(unsigned long long)crust_fault_count(CRUST_FAULT_JSON),
		(unsigned long long)crust_fault_count(CRUST_FAULT_SSL),
		(unsigned long long)crust_fault_count(CRUST_FAULT_CLOSE));
	return 0;
}
