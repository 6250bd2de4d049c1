/*
 * fuzz_stun.c - STUN messages (p2p/stun.c), as the coordinator's STUN
 * server and the node's client meet them. Input: one datagram. What
 * parses is answered as the server would (success and 420), and the
 * answers must parse back with the request's transaction id.
 */
#include "fuzz.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "p2p/stun.h"

static void answer(const struct stun_msg *req)
{
	uint8_t out[STUN_MAX_LEN];
	struct stun_msg back;
	const char *why;
	struct sockaddr_storage src;
	memset(&src, 0, sizeof(src));
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&src;
	a6->sin6_family = AF_INET6;
	a6->sin6_port = htons(3478);
	a6->sin6_addr.s6_addr[0] = 0x20;
	a6->sin6_addr.s6_addr[15] = 1;
	size_t n = stun_encode_success(out, sizeof(out), req, &src);
	FUZZ_CHECK(n >= STUN_HDR_LEN && n <= 52);
	FUZZ_CHECK(stun_parse(out, n, &back, &why) == 0);
	FUZZ_CHECK(!memcmp(back.txid, req->txid, sizeof(back.txid)));
	FUZZ_CHECK(back.has_fingerprint == req->has_fingerprint);
	if (req->nunknown) {
		n = stun_encode_unknown(out, sizeof(out), req);
		FUZZ_CHECK(n >= STUN_HDR_LEN);
		FUZZ_CHECK(stun_parse(out, n, &back, &why) == 0);
		FUZZ_CHECK(back.error_code == 420 && back.type == STUN_BINDING_ERROR);
	}
}

void fuzz_stun(const uint8_t *data, size_t size)
{
	struct stun_msg m;
	const char *why = NULL;
	bool maybe = stun_is_message(data, size);
	int ret = stun_parse(data, size, &m, &why);
	FUZZ_CHECK(ret == 0 || (ret == -EBADMSG && why));
	if (ret)
		return;
	FUZZ_CHECK(maybe || !m.has_cookie);
	FUZZ_CHECK(m.nunknown <= STUN_MAX_UNKNOWN && m.nattrs <= STUN_MAX_ATTRS);
	FUZZ_CHECK(m.xor_mapped.ss_family == 0 || m.xor_mapped.ss_family == AF_INET ||
		   m.xor_mapped.ss_family == AF_INET6);
	if (m.type == STUN_BINDING_REQUEST)
		answer(&m);
}
