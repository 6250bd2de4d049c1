/*
 * fuzz_rendezvous.c - rendezvous control messages, the relay preamble and
 * UDP punch probes (p2p/rendezvous_wire.c). Input: one message. What
 * decodes is encoded again and must decode to the same message.
 */
#include "fuzz.h"

#include <errno.h>
#include <string.h>

#include "p2p/rendezvous_wire.h"

static bool same_eps(const struct rdv_msg *a, const struct rdv_msg *b)
{
	if (a->neps != b->neps)
		return false;
	for (unsigned i = 0; i < a->neps; i++)
		if (a->eps[i].transport != b->eps[i].transport ||
		    a->eps[i].addrlen != b->eps[i].addrlen ||
		    memcmp(&a->eps[i].addr, &b->eps[i].addr, a->eps[i].addrlen))
			return false;
	return true;
}

void fuzz_rendezvous(const uint8_t *data, size_t size)
{
	struct rdv_msg m, back;
	uint8_t out[RDV_MSG_MAX];
	if (size && rdv_is_code(data[0])) {
		memset(&m, 0, sizeof(m));
		int ret = rdv_decode(data, size, &m);
		FUZZ_CHECK(ret == 0 || ret == -EBADMSG);
		if (ret == 0) {
			FUZZ_CHECK(m.neps <= RDV_MAX_EPS && strlen(m.reason) <= RDV_REASON_MAX);
			size_t n = rdv_encode(&m, out);
			FUZZ_CHECK(n == size && n <= RDV_MSG_MAX);
			memset(&back, 0, sizeof(back));
			FUZZ_CHECK(rdv_decode(out, n, &back) == 0);
			FUZZ_CHECK(back.code == m.code && back.req == m.req && back.flags == m.flags &&
				   back.refusal == m.refusal && back.ttl_ms == m.ttl_ms &&
				   back.start_in_ms == m.start_in_ms && same_eps(&m, &back) &&
				   !strcmp(back.reason, m.reason) &&
				   !memcmp(back.token, m.token, sizeof(m.token)) &&
				   !memcmp(back.peer.bytes, m.peer.bytes, 32));
		}
	}
	uint8_t token[RDV_TOKEN_LEN], pre[RELAY_PREAMBLE_LEN];
	if (relay_preamble_decode(data, size, token)) {
		relay_preamble_encode(token, pre);
		/* byte 5 is reserved (sent 0, not checked) */
		FUZZ_CHECK(size == RELAY_PREAMBLE_LEN && !memcmp(pre, data, 5) &&
			   !memcmp(pre + 6, data + 6, size - 6));
	}
	struct punch_probe pp, pb;
	uint8_t probe[PUNCH_PROBE_LEN];
	if (punch_probe_decode(data, size, &pp)) {
		punch_probe_encode(&pp, probe);
		FUZZ_CHECK(punch_probe_decode(probe, sizeof(probe), &pb));
		FUZZ_CHECK(pb.flags == pp.flags && !memcmp(pb.token, pp.token, RDV_TOKEN_LEN) &&
			   !memcmp(pb.from.bytes, pp.from.bytes, 32));
	}
}
