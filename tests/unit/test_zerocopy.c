/*
 * test_zerocopy.c - coalesced sends from the registered TX arena with
 * SEND_ZC: data arrives intact, the send counts as zero-copy, and on
 * loopback (where the kernel copies anyway) the stream turns it off.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "crust.h"
#include "pair.h"

static struct crust_service *start(uint32_t zc_min)
{
	struct crust_config cfg;
	pair_config(&cfg);
	cfg.zerocopy_min = zc_min;
	return pair_start(&cfg);
}

Test(zerocopy, coalesced_sends_use_send_zc_and_arrive_intact, .timeout = 30)
{
	struct crust_service *a = start(0), *b = start(1);
	struct crust_event up = pair_connect(a, b);

	enum { N = 2000 };
	for (uint32_t i = 0; i < N; i++) {
		uint8_t buf[300];
		memset(buf, (int)(i & 0xff), sizeof(buf));
		memcpy(buf, &i, sizeof(i));
		cr_assert_eq(crust_send(b, &up.peer, buf, 100 + i % 200, 0), 0);
	}
	for (uint32_t i = 0; i < N; i++) {
		struct crust_event ev = pair_wait(a, CRUST_EV_NEW_MESSAGE);
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
