/*
 * test_zerocopy.c - coalesced sends from the registered TX arena with
 * SEND_ZC: data arrives intact, the send counts as zero-copy, and on
 * loopback (where the kernel copies anyway) the stream turns it off.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crust.h"

static struct crust_service *start(uint32_t zc_min)
{
	struct crust_config cfg;
	crust_config_init(&cfg);
	cfg.shards = 1;
	cfg.bind_addr = "127.0.0.1";
	cfg.zerocopy_min = zc_min;
	struct crust_service *svc;
	cr_assert_eq(crust_service_new(&cfg, &svc), 0);
	return svc;
}

static struct crust_event wait_for(struct crust_service *svc, enum crust_event_type type)
{
	for (int tries = 0; tries < 200; tries++) {
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

Test(zerocopy, coalesced_sends_use_send_zc_and_arrive_intact, .timeout = 30)
{
	struct crust_service *a = start(0), *b = start(1);
	cr_assert_eq(crust_start_listening(a), 0);
	struct crust_event ls = wait_for(a, CRUST_EV_LISTENER_STARTED);
	struct crust_endpoint ep;
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ls.port);
	cr_assert_eq(crust_endpoint_parse(addr, &ep), 0);
	cr_assert_eq(crust_connect(b, &ep), 0);
	struct crust_event up = wait_for(b, CRUST_EV_NEW_CONNECTION);
	wait_for(a, CRUST_EV_NEW_CONNECTION);

	enum { N = 2000 };
	for (uint32_t i = 0; i < N; i++) {
		uint8_t buf[300];
		memset(buf, (int)(i & 0xff), sizeof(buf));
		memcpy(buf, &i, sizeof(i));
		cr_assert_eq(crust_send(b, &up.peer, buf, 100 + i % 200, 0), 0);
	}
	for (uint32_t i = 0; i < N; i++) {
		struct crust_event ev = wait_for(a, CRUST_EV_NEW_MESSAGE);
		const uint8_t *p = crust_msg_data(ev.msg);
		uint32_t seq;
		cr_assert_eq(crust_msg_len(ev.msg), 100 + i % 200);
		memcpy(&seq, p, sizeof(seq));
		cr_assert_eq(seq, i, "message %u arrived as %u", i, seq);
		for (size_t k = sizeof(seq); k < crust_msg_len(ev.msg); k++)
			cr_assert_eq(p[k], (uint8_t)(i & 0xff));
		crust_msg_release(ev.msg);
	}
	struct crust_stats st;
	crust_stats(b, &st);
	cr_assert_gt(st.tx_zc_sends, 0, "no zero-copy send was made");
	/* loopback always copies: the kernel says so and the stream stops asking */
	cr_assert_eq(st.tx_zc_sends, st.tx_zc_copied);
	crust_service_free(b);
	crust_service_free(a);
}

Test(zerocopy, off_by_default, .timeout = 30)
{
	struct crust_service *a = start(0);
	struct crust_stats st;
	crust_stats(a, &st);
	cr_assert_eq(st.tx_zc_sends, 0);
	crust_service_free(a);
}
