/*
 * wire.c - crust-wire: a userspace link between two TUN devices that impairs the
 * packets it moves, per direction: fixed delay, jitter, random loss, reordering,
 * duplication, corruption and a rate-limited bottleneck with a drop-tail queue.
 * This kernel has neither tc netem nor NFQUEUE (shared/NATLAB.md), so the lab's
 * impaired paths are made here. Lab tool only: it is not part of libcrust.
 *
 * Each side is a TUN device (IFF_TUN | IFF_NO_PI, raw IP packets) in its own network
 * namespace. The wire enters the namespace (setns), opens the device there and comes
 * back: the fd stays bound to the device in that namespace.
 *
 * One direction's model, applied to each packet read from its ingress device, with
 * random draws always taken in the same order so that --seed makes a run repeatable
 * for the same packet sequence:
 *   1. loss           drop with probability loss%
 *   2. duplication    with probability dup% a second copy follows the original;
 *                     each copy then goes through 3-5 on its own
 *   3. corruption     with probability corrupt% XOR one byte with a random non-zero
 *                     value (see corrupt_packet() for where, and the checksum)
 *   4. bottleneck     --rate: a serialising link fed by a drop-tail queue of --queue
 *                     bytes or ms; the packet leaves when the link has sent it
 *   5. delay line     + delay + uniform jitter in [-jitter, +jitter]; jitter never
 *                     reorders (a release is never earlier than the previous one);
 *                     with probability reorder% a packet is held back a further
 *                     --reorder-gap ms, so the packets behind it overtake it.
 * The bottleneck is virtual: it only computes departure times, so every packet waits
 * in one min-heap per direction keyed by release time (µs precision is needed at
 * 200 Mbit/s, where a 1500-byte packet takes 60 µs: the engine's millisecond timer
 * wheel is too coarse). Reads are batched per wakeup.
 *
 * Counters go out as one JSON object on SIGTERM, SIGINT or SIGUSR1 (snapshot, keeps
 * running), to --stats FILE (rewritten atomically) or stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define READ_BATCH 64          /* packets read per device per wakeup */
#define MAX_MTU 65535
#define DEFAULT_LIMIT 20000    /* packets held per direction */
#define DEFAULT_QUEUE_MS 50.0  /* bottleneck queue when --rate has no --queue */
#define DEFAULT_GAP_MS 1.0     /* extra hold of a reordered packet */
#define NS_PER_MS 1000000.0

enum dir { A2B, B2A, NDIR };
static const char *const dir_name[NDIR] = { "a2b", "b2a" };

/* One direction's impairments, as given on the command line. */
struct impair {
	double delay_ms, jitter_ms, loss, reorder, gap_ms, dup, corrupt; /* percentages 0..100 */
	double rate_mbit;      /* 0: no bottleneck */
	double queue_bytes;    /* 0 with queue_ms 0: default */
	double queue_ms;
};

struct counters {
	uint64_t rx, rx_bytes, passed, tx_bytes;
	uint64_t dropped_loss, dropped_queue, dropped_limit, write_errors;
	uint64_t duplicated, reordered, corrupted;
};

/* A packet in flight; owned by the heap it sits in, or by the free list. */
struct pkt {
	uint64_t release_ns;
	uint64_t seq;          /* arrival order: ties release first-in first-out */
	uint32_t len;
	struct pkt *next_free;
	uint8_t data[];
};

struct direction {
	struct impair im;
	int in_fd, out_fd;
	uint64_t rng[4];
	struct pkt **heap;     /* min-heap on (release_ns, seq) */
	size_t n;
	uint64_t seq;
	uint64_t busy_until;   /* bottleneck: when the link finishes what it holds */
	uint64_t last_release; /* latest in-order release (jitter keeps order) */
	uint64_t tx_ns_per_byte_q16; /* bottleneck serialisation, ns per byte << 16 */
	uint64_t queue_ns;     /* bottleneck backlog limit, as time at the link rate */
	struct counters c;
};

struct wire {
	struct direction d[NDIR];
	const char *side_spec[NDIR];
	int fd[NDIR];          /* fd[0] side a, fd[1] side b */
	uint64_t seed;
	size_t limit;
	uint32_t mtu;
	bool fix_csum;
	const char *stats_path, *pidfile;
	struct pkt *free_list;
	size_t allocated;
	uint64_t start_ns;
};

static volatile sig_atomic_t stop_flag, dump_flag;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		dump_flag = 1;
	else
		stop_flag = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- random numbers: xoshiro256** seeded by splitmix64 (Blackman & Vigna) ---- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4])
{
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform in [0, 1). */
static double rng_unit(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* True with probability pct %. Always draws, so the sequence of draws stays fixed. */
static bool rng_chance(uint64_t s[4], double pct) { return rng_unit(s) * 100.0 < pct; }

/* ---- packet pool ---- */

static struct pkt *pkt_get(struct wire *w)
{
	struct pkt *p = w->free_list;
	if (p) {
		w->free_list = p->next_free;
		return p;
	}
	if (w->allocated >= 2 * w->limit + READ_BATCH)
		return NULL;
	p = malloc(sizeof(*p) + w->mtu);
	if (p)
		w->allocated++;
	return p;
}

static void pkt_put(struct wire *w, struct pkt *p)
{
	p->next_free = w->free_list;
	w->free_list = p;
}

/* ---- release heap ---- */

static bool pkt_before(const struct pkt *x, const struct pkt *y)
{
	return x->release_ns < y->release_ns || (x->release_ns == y->release_ns && x->seq < y->seq);
}

static void heap_push(struct direction *d, struct pkt *p)
{
	size_t i = d->n++;
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (!pkt_before(p, d->heap[up]))
			break;
		d->heap[i] = d->heap[up];
		i = up;
	}
	d->heap[i] = p;
}

static struct pkt *heap_pop(struct direction *d)
{
	struct pkt *top = d->heap[0], *last = d->heap[--d->n];
	size_t i = 0;
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= d->n)
			break;
		if (child + 1 < d->n && pkt_before(d->heap[child + 1], d->heap[child]))
			child++;
		if (!pkt_before(d->heap[child], last))
			break;
		d->heap[i] = d->heap[child];
		i = child;
	}
	if (d->n)
		d->heap[i] = last;
	return top;
}

/* ---- corruption ---- */

/* One's-complement checksum fix-up after a 16-bit word changed from old to new
 * (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). */
static uint16_t csum_update(uint16_t hc, uint16_t old, uint16_t new)
{
	uint32_t sum = (uint16_t)~hc + (uint32_t)(uint16_t)~old + new;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Where the transport header starts and its protocol, for an unfragmented IPv4 packet or
 * an IPv6 packet without extension headers; 0 when there is none we can fix. */
static size_t l4_offset(const uint8_t *p, size_t len, uint8_t *proto)
{
	if (len >= 20 && (p[0] >> 4) == 4) {
		size_t ihl = (size_t)(p[0] & 0xf) * 4;
		bool fragment = ((p[6] & 0x3f) | p[7]) != 0; /* MF flag or an offset */
		*proto = p[9];
		return ihl >= 20 && ihl < len && !fragment ? ihl : 0;
	}
	if (len >= 40 && (p[0] >> 4) == 6) {
		*proto = p[6];
		return 40;
	}
	return 0;
}

/* Length of the TCP or UDP header at off, and where its checksum is; 0 if neither
 * protocol or the header does not fit. */
static size_t l4_header(const uint8_t *p, size_t len, size_t off, uint8_t proto, size_t *csum_at)
{
	if (proto == 17 && off + 8 <= len) {
		*csum_at = off + 6;
		return 8;
	}
	if (proto == 6 && off + 20 <= len) {
		size_t doff = (size_t)(p[off + 12] >> 4) * 4;
		*csum_at = off + 16;
		return doff >= 20 && off + doff <= len ? doff : 0;
	}
	return 0;
}

/*
 * XOR one byte with a random non-zero value. A TCP or UDP packet with payload gets the
 * byte in its payload and, with fix_csum, its checksum corrected so the corruption
 * reaches the application (that is what an application's integrity check must catch:
 * the kernel would otherwise drop the packet as a checksum error). Anything else gets a
 * byte after the IP header (or anywhere, if that cannot be found) with checksums left
 * as they were, so the receiving kernel drops it.
 */
static void corrupt_packet(uint8_t *p, size_t len, uint64_t rng[4], bool fix_csum)
{
	uint8_t proto = 0, flip = (uint8_t)(1 + rng_next(rng) % 255);
	uint64_t where = rng_next(rng);
	size_t csum_at = 0, off = l4_offset(p, len, &proto), hdr = 0;
	if (off)
		hdr = l4_header(p, len, off, proto, &csum_at);
	if (!hdr || off + hdr >= len) {
		size_t from = off < len ? off : 0;
		p[from + where % (len - from)] ^= flip;
		return;
	}
	size_t at = off + hdr + where % (len - off - hdr);
	size_t word = at - ((at - off) & 1); /* 16-bit words are aligned to the L4 header */
	uint16_t old = (uint16_t)(p[word] << 8 | (word + 1 < len ? p[word + 1] : 0));
	p[at] ^= flip;
	uint16_t new = (uint16_t)(p[word] << 8 | (word + 1 < len ? p[word + 1] : 0));
	uint16_t hc = (uint16_t)(p[csum_at] << 8 | p[csum_at + 1]);
	if (!fix_csum || (proto == 17 && hc == 0 && (p[0] >> 4) == 4))
		return; /* keep, or IPv4 UDP without a checksum */
	hc = csum_update(hc, old, new);
	if (proto == 17 && hc == 0)
		hc = 0xffff; /* RFC 768: a computed zero is sent as all ones */
	p[csum_at] = (uint8_t)(hc >> 8);
	p[csum_at + 1] = (uint8_t)hc;
}

/* ---- one direction's model: no I/O, only packets and the current time ---- */

/* Serialisation of len bytes at the bottleneck; 0 when there is none. */
static uint64_t tx_time(const struct direction *d, uint32_t len)
{
	return (d->tx_ns_per_byte_q16 * len) >> 16;
}

/* Bottleneck (step 4): the packet's departure time, or 0 when the queue is full. */
static uint64_t bottleneck(struct direction *d, uint32_t len, uint64_t now)
{
	if (!d->tx_ns_per_byte_q16)
		return now;
	uint64_t start = d->busy_until > now ? d->busy_until : now, t = tx_time(d, len);
	if (start - now + t > d->queue_ns)
		return 0;
	d->busy_until = start + t;
	return d->busy_until;
}

/* Delay line (step 5): when the packet that left the bottleneck at depart is released. */
static uint64_t delay_line(struct direction *d, uint64_t depart)
{
	double ms = d->im.delay_ms;
	if (d->im.jitter_ms > 0)
		ms += (2 * rng_unit(d->rng) - 1) * d->im.jitter_ms;
	uint64_t release = depart + (uint64_t)(fmax(ms, 0) * NS_PER_MS);
	if (release < d->last_release)
		release = d->last_release;
	if (d->im.reorder > 0 && rng_chance(d->rng, d->im.reorder)) {
		d->c.reordered++;
		return release + (uint64_t)(d->im.gap_ms * NS_PER_MS);
	}
	d->last_release = release;
	return release;
}

/* Steps 3-5 for one copy; takes p (queues or frees it). */
static void schedule(struct wire *w, struct direction *d, struct pkt *p, uint64_t now)
{
	if (d->im.corrupt > 0 && rng_chance(d->rng, d->im.corrupt)) {
		corrupt_packet(p->data, p->len, d->rng, w->fix_csum);
		d->c.corrupted++;
	}
	if (d->n >= w->limit) {
		d->c.dropped_limit++;
		pkt_put(w, p);
		return;
	}
	uint64_t depart = bottleneck(d, p->len, now);
	if (!depart) {
		d->c.dropped_queue++;
		pkt_put(w, p);
		return;
	}
	p->release_ns = delay_line(d, depart);
	p->seq = d->seq++;
	heap_push(d, p);
}

/* Steps 1-2 for a packet just read; takes p. */
static void admit(struct wire *w, struct direction *d, struct pkt *p, uint64_t now)
{
	d->c.rx++;
	d->c.rx_bytes += p->len;
	if (d->im.loss > 0 && rng_chance(d->rng, d->im.loss)) {
		d->c.dropped_loss++;
		pkt_put(w, p);
		return;
	}
	struct pkt *copy = NULL;
	if (d->im.dup > 0 && rng_chance(d->rng, d->im.dup)) {
		copy = pkt_get(w);
		if (copy) {
			copy->len = p->len;
			memcpy(copy->data, p->data, p->len);
			d->c.duplicated++;
		}
	}
	schedule(w, d, p, now);
	if (copy)
		schedule(w, d, copy, now);
}

/* ---- I/O ---- */

/* Read up to READ_BATCH packets from d's ingress device. */
static int read_batch(struct wire *w, struct direction *d)
{
	uint64_t now = now_ns();
	for (int i = 0; i < READ_BATCH; i++) {
		struct pkt *p = pkt_get(w);
		if (!p) {
			/* pool exhausted (cannot happen with the limits above): drain one */
			uint8_t sink[MAX_MTU];
			if (read(d->in_fd, sink, sizeof(sink)) > 0)
				d->c.dropped_limit++;
			return 0;
		}
		ssize_t n = read(d->in_fd, p->data, w->mtu);
		if (n <= 0) {
			pkt_put(w, p);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				fprintf(stderr, "crust-wire: read %s: %s\n", dir_name[d - w->d], strerror(errno));
				return -1;
			}
			return 0;
		}
		p->len = (uint32_t)n;
		admit(w, d, p, now);
	}
	return 0;
}

/* Write out every packet of d due by now. */
static void release_due(struct wire *w, struct direction *d, uint64_t now)
{
	while (d->n && d->heap[0]->release_ns <= now) {
		struct pkt *p = heap_pop(d);
		if (write(d->out_fd, p->data, p->len) == (ssize_t)p->len) {
			d->c.passed++;
			d->c.tx_bytes += p->len;
		} else {
			d->c.write_errors++;
		}
		pkt_put(w, p);
	}
}

/* Enter the namespace in spec "NETNS:DEV" (NETNS a name under /run/netns, a path, or
 * empty for our own), attach to TUN device DEV there (creating it if it does not exist)
 * and come back. Returns the fd or -1 with a message. */
static int open_side(const char *spec)
{
	char ns[512], path[600];
	const char *colon = strrchr(spec, ':');
	const char *dev = colon ? colon + 1 : spec;
	size_t nslen = colon ? (size_t)(colon - spec) : 0;
	if (!*dev || strlen(dev) >= IFNAMSIZ || nslen >= sizeof(ns)) {
		fprintf(stderr, "crust-wire: '%s': expected NETNS:DEV with a device name of 1-%d characters\n",
			spec, IFNAMSIZ - 1);
		return -1;
	}
	memcpy(ns, spec, nslen);
	ns[nslen] = 0;
	int self = -1, target = -1, fd = -1;
	if (nslen) {
		snprintf(path, sizeof(path), "%s%s", strchr(ns, '/') ? "" : "/run/netns/", ns);
		self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		target = open(path, O_RDONLY | O_CLOEXEC);
		if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
			fprintf(stderr, "crust-wire: network namespace %s: %s\n", path, strerror(errno));
			goto close_ns;
		}
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	struct ifreq ifr = { .ifr_flags = IFF_TUN | IFF_NO_PI };
	strcpy(ifr.ifr_name, dev);
	if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) {
		fprintf(stderr, "crust-wire: TUN device %s%s%s: %s\n", ns, nslen ? ":" : "", dev, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	if (nslen && setns(self, CLONE_NEWNET) < 0) {
		fprintf(stderr, "crust-wire: back to our namespace: %s\n", strerror(errno));
		exit(1);
	}
close_ns:
	if (target >= 0)
		close(target);
	if (self >= 0)
		close(self);
	return fd;
}

/* ---- counters ---- */

static void write_counters(FILE *f, const struct wire *w)
{
	fprintf(f, "{\"seed\":%" PRIu64 ",\"elapsed_s\":%.3f", w->seed,
		(double)(now_ns() - w->start_ns) / 1e9);
	for (int i = 0; i < NDIR; i++) {
		const struct counters *c = &w->d[i].c;
		uint64_t dropped = c->dropped_loss + c->dropped_queue + c->dropped_limit;
		fprintf(f,
			",\"%s\":{\"rx\":%" PRIu64 ",\"passed\":%" PRIu64 ",\"dropped\":%" PRIu64
			",\"dropped_loss\":%" PRIu64 ",\"dropped_queue\":%" PRIu64 ",\"dropped_limit\":%" PRIu64
			",\"duplicated\":%" PRIu64 ",\"reordered\":%" PRIu64 ",\"corrupted\":%" PRIu64
			",\"write_errors\":%" PRIu64 ",\"in_flight\":%zu,\"rx_bytes\":%" PRIu64
			",\"tx_bytes\":%" PRIu64 "}",
			dir_name[i], c->rx, c->passed, dropped, c->dropped_loss, c->dropped_queue,
			c->dropped_limit, c->duplicated, c->reordered, c->corrupted, c->write_errors,
			w->d[i].n, c->rx_bytes, c->tx_bytes);
	}
	fputs("}\n", f);
}

/* To stdout, or to --stats FILE through a rename so a reader never sees half. */
static void dump_counters(const struct wire *w)
{
	if (!w->stats_path) {
		write_counters(stdout, w);
		fflush(stdout);
		return;
	}
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", w->stats_path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "crust-wire: %s: %s\n", tmp, strerror(errno));
		return;
	}
	write_counters(f, w);
	if (fclose(f) != 0 || rename(tmp, w->stats_path) != 0)
		fprintf(stderr, "crust-wire: %s: %s\n", w->stats_path, strerror(errno));
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fputs("usage: crust-wire --a NETNS:DEV --b NETNS:DEV [options]\n"
	      "Moves IP packets between TUN device DEV in namespace NETNS (a name under /run/netns\n"
	      "or a path; empty: ours) of side a and that of side b, impairing them.\n"
	      "Impairments (apply to both directions; prefix a2b- or b2a- for one, e.g. --a2b-loss 1):\n"
	      "  --delay MS         fixed one-way delay (default 0)\n"
	      "  --jitter MS        uniform jitter in [-MS, +MS]; never reorders\n"
	      "  --loss PCT         random loss\n"
	      "  --reorder PCT      hold PCT of packets back --reorder-gap MS (default 1) more\n"
	      "  --reorder-gap MS\n"
	      "  --dup PCT          duplicate\n"
	      "  --corrupt PCT      XOR one byte (TCP/UDP payload, checksum fixed; see --corrupt-csum)\n"
	      "  --rate MBIT        bottleneck rate in Mbit/s (IP bytes)\n"
	      "  --queue SIZE       bottleneck drop-tail queue: bytes (suffix k, m: KiB, MiB) or\n"
	      "                     time at the rate (suffix ms); default 50ms\n"
	      "Other options:\n"
	      "  --seed N           random seed (default 1)\n"
	      "  --mtu N            largest packet (default 1500; the devices' MTU)\n"
	      "  --limit N          packets held per direction (default 20000)\n"
	      "  --corrupt-csum fix|keep  fix the TCP/UDP checksum of a corrupted packet (default)\n"
	      "                     or keep it stale so the receiving kernel drops the packet\n"
	      "  --stats FILE       write the counters (JSON) there instead of stdout\n"
	      "  --pidfile FILE     written once both devices are attached\n"
	      "Counters are printed on SIGTERM/SIGINT (then exit) and SIGUSR1 (keeps running).\n",
	      f);
}

static int bad(const char *opt, const char *val, const char *why)
{
	fprintf(stderr, "crust-wire: %s: '%s' %s (see --help)\n", opt, val, why);
	return -1;
}

/* A finite number in [lo, hi] that fills all of s except an allowed suffix. */
static int parse_num(const char *opt, const char *s, double lo, double hi, double *out, const char **rest)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || !isfinite(v) || (!rest && *end))
		return bad(opt, s, "is not a number");
	if (v < lo || v > hi) {
		char why[96];
		snprintf(why, sizeof(why), "is out of range [%g, %g]", lo, hi);
		return bad(opt, s, why);
	}
	if (rest)
		*rest = end;
	*out = v;
	return 0;
}

static int parse_queue(const char *opt, const char *s, struct impair *im)
{
	const char *suffix;
	double v;
	if (parse_num(opt, s, 0, 1e12, &v, &suffix) < 0)
		return -1;
	im->queue_ms = im->queue_bytes = 0;
	if (!strcmp(suffix, "ms"))
		im->queue_ms = v;
	else if (!*suffix || !strcmp(suffix, "b"))
		im->queue_bytes = v;
	else if (!strcmp(suffix, "k") || !strcmp(suffix, "K"))
		im->queue_bytes = v * 1024;
	else if (!strcmp(suffix, "m") || !strcmp(suffix, "M"))
		im->queue_bytes = v * 1024 * 1024;
	else
		return bad(opt, s, "has an unknown unit (bytes, k, m or ms)");
	if (v <= 0)
		return bad(opt, s, "must be more than 0");
	return 0;
}

/* One impairment option (name without "--" and without the direction prefix). */
static int set_impair(struct impair *im, const char *name, const char *opt, const char *val)
{
	if (!strcmp(name, "delay"))
		return parse_num(opt, val, 0, 60000, &im->delay_ms, NULL);
	if (!strcmp(name, "jitter"))
		return parse_num(opt, val, 0, 60000, &im->jitter_ms, NULL);
	if (!strcmp(name, "loss"))
		return parse_num(opt, val, 0, 100, &im->loss, NULL);
	if (!strcmp(name, "reorder"))
		return parse_num(opt, val, 0, 100, &im->reorder, NULL);
	if (!strcmp(name, "reorder-gap"))
		return parse_num(opt, val, 0, 60000, &im->gap_ms, NULL);
	if (!strcmp(name, "dup"))
		return parse_num(opt, val, 0, 100, &im->dup, NULL);
	if (!strcmp(name, "corrupt"))
		return parse_num(opt, val, 0, 100, &im->corrupt, NULL);
	if (!strcmp(name, "rate")) {
		if (parse_num(opt, val, 0, 1e6, &im->rate_mbit, NULL) < 0)
			return -1;
		return im->rate_mbit > 0 ? 0 : bad(opt, val, "must be more than 0");
	}
	if (!strcmp(name, "queue"))
		return parse_queue(opt, val, im);
	return 1; /* not an impairment */
}

static int set_global(struct wire *w, const char *name, const char *opt, const char *val)
{
	double v;
	if (!strcmp(name, "a") || !strcmp(name, "b")) {
		w->side_spec[name[0] - 'a'] = val;
		return 0;
	}
	if (!strcmp(name, "seed")) {
		char *end;
		errno = 0;
		w->seed = strtoull(val, &end, 0);
		return *val && !*end && !errno && *val != '-' ? 0 : bad(opt, val, "is not a whole number");
	}
	if (!strcmp(name, "mtu")) {
		if (parse_num(opt, val, 68, MAX_MTU, &v, NULL) < 0)
			return -1;
		w->mtu = (uint32_t)v;
		return 0;
	}
	if (!strcmp(name, "limit")) {
		if (parse_num(opt, val, 1, 1e6, &v, NULL) < 0)
			return -1;
		w->limit = (size_t)v;
		return 0;
	}
	if (!strcmp(name, "corrupt-csum")) {
		if (strcmp(val, "fix") && strcmp(val, "keep"))
			return bad(opt, val, "is neither fix nor keep");
		w->fix_csum = !strcmp(val, "fix");
		return 0;
	}
	if (!strcmp(name, "stats")) {
		w->stats_path = val;
		return 0;
	}
	if (!strcmp(name, "pidfile")) {
		w->pidfile = val;
		return 0;
	}
	fprintf(stderr, "crust-wire: unknown option %s (see --help)\n", opt);
	return -1;
}

/* One "--name value" or "--name=value". */
static int set_option(struct wire *w, const char *opt, const char *val)
{
	const char *name = opt + 2;
	int rc;
	if (!strncmp(name, "a2b-", 4) || !strncmp(name, "b2a-", 4)) {
		rc = set_impair(&w->d[name[0] == 'a' ? A2B : B2A].im, name + 4, opt, val);
		if (rc > 0)
			fprintf(stderr, "crust-wire: unknown option %s (see --help)\n", opt);
		return rc ? -1 : 0;
	}
	rc = set_impair(&w->d[A2B].im, name, opt, val);
	if (rc == 0)
		rc = set_impair(&w->d[B2A].im, name, opt, val);
	if (rc <= 0)
		return rc;
	return set_global(w, name, opt, val);
}

static int parse_args(struct wire *w, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char opt[64];
		const char *arg = argv[i], *val, *eq = strchr(arg, '=');
		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			usage(stdout);
			exit(0);
		}
		if (strncmp(arg, "--", 2) || strlen(arg) < 3) {
			fprintf(stderr, "crust-wire: unexpected argument '%s' (see --help)\n", arg);
			return -1;
		}
		size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
		if (n >= sizeof(opt)) {
			fprintf(stderr, "crust-wire: unknown option %.*s (see --help)\n", (int)n, arg);
			return -1;
		}
		memcpy(opt, arg, n);
		opt[n] = 0;
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr, "crust-wire: %s needs a value (see --help)\n", opt);
			return -1;
		}
		if (set_option(w, opt, val) < 0)
			return -1;
	}
	if (!w->side_spec[0] || !w->side_spec[1]) {
		fprintf(stderr, "crust-wire: both --a NETNS:DEV and --b NETNS:DEV are needed (see --help)\n");
		return -1;
	}
	return 0;
}

/* Derived per-direction state; checks what only makes sense together. */
static int setup_direction(struct wire *w, struct direction *d, int i)
{
	struct impair *im = &d->im;
	if ((im->queue_bytes > 0 || im->queue_ms > 0) && im->rate_mbit <= 0) {
		fprintf(stderr, "crust-wire: --%s-queue (or --queue) needs a --rate\n", dir_name[i]);
		return -1;
	}
	if (im->rate_mbit > 0) {
		double ns_per_byte = 8e3 / im->rate_mbit; /* 8 bits / (rate * 1e6 bit/s) in ns */
		d->tx_ns_per_byte_q16 = (uint64_t)(ns_per_byte * 65536.0);
		if (!d->tx_ns_per_byte_q16)
			d->tx_ns_per_byte_q16 = 1;
		if (im->queue_bytes > 0 && im->queue_bytes < w->mtu) {
			fprintf(stderr, "crust-wire: --%s-queue (or --queue): %.0f bytes cannot hold one "
				"packet of --mtu %u bytes\n", dir_name[i], im->queue_bytes, w->mtu);
			return -1;
		}
		double q_ms = im->queue_ms > 0 ? im->queue_ms
			    : im->queue_bytes > 0 ? im->queue_bytes * ns_per_byte / NS_PER_MS
			    : DEFAULT_QUEUE_MS;
		/* at least one full-size packet fits, whatever the time limit */
		d->queue_ns = (uint64_t)fmax(q_ms * NS_PER_MS, (double)tx_time(d, w->mtu));
	}
	d->heap = calloc(w->limit, sizeof(*d->heap));
	if (!d->heap) {
		fprintf(stderr, "crust-wire: out of memory\n");
		return -1;
	}
	uint64_t x = w->seed ^ (0x5851f42d4c957f2du * (uint64_t)(i + 1));
	for (int k = 0; k < 4; k++)
		d->rng[k] = splitmix64(&x);
	return 0;
}

static void install_signals(sigset_t *run_mask)
{
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* blocked except inside ppoll(), so a signal always ends the wait it arrives in */
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, run_mask);
	sigdelset(run_mask, SIGTERM);
	sigdelset(run_mask, SIGINT);
	sigdelset(run_mask, SIGUSR1);
}

static int write_pidfile(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
		fprintf(stderr, "crust-wire: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Until a stop signal: release what is due, wait for packets or the next release. */
static int run(struct wire *w, const sigset_t *run_mask)
{
	struct pollfd pfd[NDIR] = { { .fd = w->fd[0], .events = POLLIN }, { .fd = w->fd[1], .events = POLLIN } };
	while (!stop_flag) {
		uint64_t now = now_ns(), next = UINT64_MAX;
		for (int i = 0; i < NDIR; i++) {
			release_due(w, &w->d[i], now);
			if (w->d[i].n && w->d[i].heap[0]->release_ns < next)
				next = w->d[i].heap[0]->release_ns;
		}
		if (dump_flag) {
			dump_flag = 0;
			dump_counters(w);
		}
		struct timespec ts, *tsp = NULL;
		if (next != UINT64_MAX) {
			uint64_t wait = next > now ? next - now : 0;
			ts = (struct timespec){ .tv_sec = (time_t)(wait / 1000000000u), .tv_nsec = (long)(wait % 1000000000u) };
			tsp = &ts;
		}
		int n = ppoll(pfd, NDIR, tsp, run_mask);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "crust-wire: ppoll: %s\n", strerror(errno));
			return -1;
		}
		for (int i = 0; n > 0 && i < NDIR; i++) {
			if (pfd[i].revents & (POLLERR | POLLNVAL)) {
				fprintf(stderr, "crust-wire: side %c: device error\n", 'a' + i);
				return -1;
			}
			/* side a's packets go a2b, side b's b2a */
			if ((pfd[i].revents & POLLIN) && read_batch(w, &w->d[i]) < 0)
				return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct wire w = { .seed = 1, .limit = DEFAULT_LIMIT, .mtu = 1500, .fix_csum = true };
	for (int i = 0; i < NDIR; i++)
		w.d[i].im.gap_ms = DEFAULT_GAP_MS;
	if (parse_args(&w, argc, argv) < 0)
		return 2;
	for (int i = 0; i < NDIR; i++)
		if (setup_direction(&w, &w.d[i], i) < 0)
			return 2;
	sigset_t run_mask;
	install_signals(&run_mask);
	for (int i = 0; i < NDIR; i++) {
		w.fd[i] = open_side(w.side_spec[i]);
		if (w.fd[i] < 0)
			return 1;
	}
	w.d[A2B].in_fd = w.d[B2A].out_fd = w.fd[0];
	w.d[B2A].in_fd = w.d[A2B].out_fd = w.fd[1];
	prctl(PR_SET_TIMERSLACK, 1000UL); /* 1 µs: releases are timed in µs */
	if (w.pidfile && write_pidfile(w.pidfile) < 0)
		return 1;
	w.start_ns = now_ns();
	int rc = run(&w, &run_mask);
	dump_counters(&w);
	return rc < 0 ? 1 : 0;
}
