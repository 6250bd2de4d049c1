/*
 * pair.h - two services on loopback for the small end-to-end unit tests
 * (test_backpressure.c, test_zerocopy.c): a one-shard config, waiting for
 * an event, and connecting b to a.
 */
#ifndef CRUST_TESTS_PAIR_H
#define CRUST_TESTS_PAIR_H

#include <criterion/criterion.h>
#include <stdio.h>

#include "crust.h"

/* One shard on 127.0.0.1; change what the test needs before pair_start. */
static inline void pair_config(struct crust_config *cfg)
{
	crust_config_init(cfg);
	cfg->shards = 1;
	cfg->bind_addr = "127.0.0.1";
	cfg->no_beacon = true; /* tests stay off the host's network */
}

static inline struct crust_service *pair_start(const struct crust_config *cfg)
{
	struct crust_service *svc;
	cr_assert_eq(crust_service_new(cfg, &svc), 0);
	return svc;
}

/* The next event of that type (others are released and skipped), within 30 s. */
static inline struct crust_event pair_wait(struct crust_service *svc, enum crust_event_type type)
{
	for (int tries = 0; tries < 300; tries++) {
		struct crust_event ev;
		int n = crust_poll(svc, &ev, 1, 100);
		cr_assert_geq(n, 0);
		if (n == 1 && ev.type == type)
			return ev;
		if (n == 1)
			crust_msg_release(ev.msg);
	}
	cr_assert_fail("no %s event", crust_event_name(type));
	struct crust_event none = { 0 };
	return none;
}

/* a listens, b dials it; returns b's new_connection (whose peer is a). */
static inline struct crust_event pair_connect(struct crust_service *a, struct crust_service *b)
{
	cr_assert_eq(crust_start_listening(a), 0);
	struct crust_event ls = pair_wait(a, CRUST_EV_LISTENER_STARTED);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ls.port);
	struct crust_endpoint ep;
	cr_assert_eq(crust_endpoint_parse(addr, &ep), 0);
	cr_assert_eq(crust_connect(b, &ep), 0);
	struct crust_event up = pair_wait(b, CRUST_EV_NEW_CONNECTION);
	pair_wait(a, CRUST_EV_NEW_CONNECTION);
	return up;
}

#endif
