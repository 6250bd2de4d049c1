/*
 * fuzz_identity.c - the identity key file (p2p/identity.c, identity_load).
 * Input: the file. It is written to a scratch file and loaded: either a
 * key pair whose halves match, or a refusal that says why.
 */
#include "fuzz.h"

#include <limits.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>

#include "p2p/identity.h"

void fuzz_identity(const uint8_t *data, size_t size)
{
	char path[PATH_MAX], why[512];
	FUZZ_CHECK(sodium_init() >= 0);
	snprintf(path, sizeof(path), "%s/identity", fuzz_tmpdir());
	FUZZ_CHECK(fuzz_write_file(path, data, size) == 0);
	struct identity id;
	why[0] = 0;
	int err = identity_load(path, &id, why, sizeof(why));
	FUZZ_CHECK(err <= 0);
	FUZZ_CHECK(memchr(why, 0, sizeof(why)));
	if (err == 0) {
		uint8_t pk[32];
		crypto_sign_ed25519_sk_to_pk(pk, id.sk);
		FUZZ_CHECK(!memcmp(pk, id.pk, 32));
	} else {
		FUZZ_CHECK(why[0]);
	}
	identity_wipe(&id);
}
