/*
 * test_backpressure.c - a receiver that does not keep up holds the
 * sender back instead of growing without bound: large (reassembled)
 * messages the user holds pause receiving past rx_held_limit, and every
 * message still arrives once the user catches up.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crust.h"
#include "pair.h"

static struct crust_service *start(uint64_t held_limit)
{
	struct crust_config cfg;
	pair_config(&cfg);
	cfg.rx_held_limit = held_limit;
	cfg.max_send_queue = 256u << 20;
	return pair_start(&cfg);
}

Test(backpressure, held_large_messages_pause_receiving_and_nothing_is_lost, .timeout = 60)
{
	enum { N = 64, SIZE = 1 << 20 };
	struct crust_service *rx = start(4u << 20), *tx = start(0);
	struct crust_event up = pair_connect(rx, tx);

	static uint8_t buf[SIZE];
	for (uint32_t i = 0; i < N; i++) {
		memset(buf, (int)i, sizeof(buf));
		cr_assert_eq(crust_send(tx, &up.peer, buf, sizeof(buf), 0), 0);
	}
	/* the user holds everything it is given and does not poll for a while */
	struct crust_msg *held[N];
	unsigned got = 0;
	for (int round = 0; round < 20 && got < N; round++) {
		usleep(50 * 1000);
		struct crust_event ev;
		while (got < N && crust_poll(rx, &ev, 1, 0) == 1)
			if (ev.type == CRUST_EV_NEW_MESSAGE)
				held[got++] = ev.msg;
	}
	struct crust_stats st;
	crust_stats(rx, &st);
	cr_assert_gt(st.rx_pauses, 0, "receiving never paused");
	cr_assert_lt(got, N, "everything arrived although the user held all of it");
	/* catch up: release, and the rest flows */
	for (unsigned i = 0; i < got; i++) {
		cr_assert_eq(crust_msg_len(held[i]), SIZE);
		cr_assert_eq(((uint8_t *)crust_msg_data(held[i]))[SIZE - 1], (uint8_t)i);
		crust_msg_release(held[i]);
	}
	for (unsigned i = got; i < N; i++) {
		struct crust_event ev = pair_wait(rx, CRUST_EV_NEW_MESSAGE);
		cr_assert_eq(crust_msg_len(ev.msg), SIZE);
		cr_assert_eq(((uint8_t *)crust_msg_data(ev.msg))[0], (uint8_t)i);
		crust_msg_release(ev.msg);
	}
	crust_service_free(tx);
	crust_service_free(rx);
}
