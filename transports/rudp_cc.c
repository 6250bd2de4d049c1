/* rudp_cc.c - the congestion controller table (see rudp_cc.h). */
#include "rudp_cc.h"

#include <string.h>

const struct rudp_cc_ops *rudp_cc_find(const char *name)
{
	if (!name || !strcmp(name, "bbr"))
		return &rudp_cc_bbr;
	if (!strcmp(name, "cubic"))
		return &rudp_cc_cubic;
	return NULL;
}

void rudp_cc_init(struct rudp_cc *cc, const struct rudp_cc_ops *ops, uint32_t mss,
		  uint64_t now_us)
{
	memset(cc, 0, sizeof(*cc));
	cc->ops = ops;
	cc->mss = mss;
	cc->cwnd = (uint64_t)RUDP_INITIAL_WINDOW_PKTS * mss;
	cc->srtt_hint_us = 333000; /* RFC 9002's initial RTT */
	ops->init(cc, now_us);
}
