/*
 * hs_speed.c - the handshake ceiling on one core: crust's key exchange
 * (p2p/handshake.c) and session setup (p2p/session.c), both roles in one
 * thread, without sockets or the engine. Each role's calls are timed on
 * their own, so the figures say how many handshakes per second one core
 * could finish for one role: the ceiling of `crust bench handshakes`,
 * where the listener (responder) and the dialers (initiators) each own a
 * core.
 *
 *   cc -O2 -Iinclude -I. perf/hs_speed.c build/libcrust.a \
 *      $(pkg-config --libs liburing libsodium libcrypto) -lpthread -o build/hs_speed
 *   build/hs_speed [SECONDS]
 *
 * Per role: hs_start + hs_recv (the X25519 key pair and exchange, the
 * Ed25519 signature and verification, BLAKE2b, the sealed proofs) and
 * session_init + session_wipe (the two directions' AES-256-GCM key
 * schedules), as a connection does them. One JSON object per role on
 * stdout, then one for a whole handshake (both roles, one core).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p2p/handshake.h"
#include "p2p/identity.h"
#include "p2p/session.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what)
{
	fprintf(stderr, "hs_speed: %s\n", what);
	exit(1);
}

/* What handshake_done does with the keys (secure.c): set up the session, later wipe it. */
static void session_cycle(const struct handshake *hs)
{
	struct session s;
	if (session_init(&s, false, hs->aes, hs->tx_key, hs->rx_key) < 0)
		fail("session_init");
	session_wipe(&s);
}

static void emit(const char *role, uint64_t n, double secs)
{
	printf("{\"role\":\"%s\",\"handshakes\":%llu,\"cpu_s\":%.3f,\"us_each\":%.1f,\"per_s\":%.0f}\n",
	       role, (unsigned long long)n, secs, n ? secs / (double)n * 1e6 : 0,
	       secs > 0 ? (double)n / secs : 0);
}

int main(int argc, char **argv)
{
	double run_s = argc > 1 ? atof(argv[1]) : 2.0;
	struct identity ii, ir;
	char why[256];
	if (identity_load(NULL, &ii, why, sizeof(why)) || identity_load(NULL, &ir, why, sizeof(why)))
		fail(why);
	struct hs_config ci = { .id = &ii, .listen_port = 1 }, cr = { .id = &ir, .listen_port = 2 };
	struct handshake *i = calloc(1, sizeof(*i)), *r = calloc(1, sizeof(*r));
	if (!i || !r)
		fail("out of memory");
	uint8_t m1[HS_MAX_LEN], m2[HS_MAX_LEN], m3[HS_MAX_LEN], none[HS_MAX_LEN];
	size_t l1, l2, l3, ln;
	double ti = 0, tr = 0, t0, t1, t2, t3, t4, end = now_s() + run_s;
	uint64_t n = 0;
	do {
		t0 = now_s();
		hs_start(i, &ci, true, m1, &l1);
		t1 = now_s();
		hs_start(r, &cr, false, none, &ln);
		if (hs_recv(r, m1, l1, m2, &l2, why, sizeof(why)) != HS_CONTINUE)
			fail(why);
		t2 = now_s();
		if (hs_recv(i, m2, l2, m3, &l3, why, sizeof(why)) != HS_DONE)
			fail(why);
		session_cycle(i);
		hs_wipe(i);
		t3 = now_s();
		if (hs_recv(r, m3, l3, none, &ln, why, sizeof(why)) != HS_DONE)
			fail(why);
		if (!crust_peer_eq(&r->peer, (const struct crust_peer_id *)ii.pk))
			fail("responder learned the wrong peer");
		session_cycle(r);
		hs_wipe(r);
		t4 = now_s();
		ti += (t1 - t0) + (t3 - t2);
		tr += (t2 - t1) + (t4 - t3);
		n++;
	} while (t4 < end);
	emit("initiator", n, ti);
	emit("responder", n, tr);
	emit("both", n, ti + tr);
	identity_wipe(&ii);
	identity_wipe(&ir);
	free(i);
	free(r);
	return 0;
}
