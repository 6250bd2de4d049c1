/*
 * fuzz_pex.c - the peer-exchange list message (p2p/pex.c). Input: one
 * control message. A list that decodes is encoded again and must decode
 * to the same entries.
 */
#include "fuzz.h"

#include <errno.h>
#include <string.h>

#include "p2p/pex.h"

void fuzz_pex(const uint8_t *data, size_t size)
{
	static struct pex_entry e[PEX_MAX_ENDPOINTS], back[PEX_MAX_ENDPOINTS];
	static uint8_t out[PEX_LIST_MAX];
	size_t n = 0, m = 0;
	memset(e, 0, sizeof(e));
	int ret = pex_decode(data, size, e, &n);
	FUZZ_CHECK(ret == 0 || ret == -EBADMSG);
	if (ret)
		return;
	FUZZ_CHECK(n <= PEX_MAX_ENDPOINTS);
	size_t len = pex_encode(out, e, n);
	FUZZ_CHECK(len <= PEX_LIST_MAX);
	memset(back, 0, sizeof(back));
	FUZZ_CHECK(pex_decode(out, len, back, &m) == 0 && m == n);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(back[i].ep.transport == e[i].ep.transport &&
			   back[i].ep.addrlen == e[i].ep.addrlen &&
			   !memcmp(&back[i].ep.addr, &e[i].ep.addr, e[i].ep.addrlen) &&
			   !memcmp(back[i].id.bytes, e[i].id.bytes, 32));
}
