/*
 * liveness.c - one timer per established connection: keepalives when we
 * have sent nothing for keepalive_ms, "timeout" when the peer has sent
 * nothing (not even a keepalive) for idle_timeout_ms, and "not
 * maintained" for a provisional connection (crust_maintain not called)
 * without user messages for provisional_grace_ms.
 */
#include <errno.h>

#include "node.h"

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Often enough to honour the shortest of the three deadlines within a quarter of it. */
static uint64_t tick_ms(const struct crust_config *c)
{
	uint64_t t = min_u64(c->keepalive_ms, c->idle_timeout_ms / 4);
	if (c->provisional_grace_ms)
		t = min_u64(t, c->provisional_grace_ms / 4);
	return t < 20 ? 20 : t;
}

static void tick_cb(struct eng_timer *t, void *ctx)
{
	(void)t;
	struct p2p_conn *pc = ctx;
	const struct crust_config *c = &pc->svc->cfg;
	if (pc->state != CONN_UP)
		return;
	uint64_t now = eng_clock_ms();
	if (now - pc->last_rx_ms >= c->idle_timeout_ms) {
		conn_close(pc, -ETIMEDOUT, "timeout");
		return;
	}
	if (c->provisional_grace_ms && !pc->maintained &&
	    now - pc->last_user_ms >= c->provisional_grace_ms) {
		conn_close(pc, 0, "not maintained");
		return;
	}
	if (now - pc->last_tx_ms >= c->keepalive_ms)
		conn_send_ctrl(pc, CTRL_PING);
	eng_timer_arm(&pc->tc->sh->timers, &pc->tick, tick_ms(c));
}

void liveness_start(struct p2p_conn *pc)
{
	uint64_t now = eng_clock_ms();
	pc->last_rx_ms = pc->last_tx_ms = pc->last_user_ms = now;
	eng_timer_init(&pc->tick, tick_cb, pc);
	eng_timer_arm(&pc->tc->sh->timers, &pc->tick, tick_ms(&pc->svc->cfg));
}

void liveness_stop(struct p2p_conn *pc)
{
	if (pc->tc && eng_timer_armed(&pc->tick))
		eng_timer_cancel(&pc->tc->sh->timers, &pc->tick);
}
