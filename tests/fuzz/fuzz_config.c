/*
 * fuzz_config.c - the JSON config file (p2p/config.c, crust_config_load).
 * Input: the file. It is written to a scratch file and loaded; a refusal
 * must say why, naming the file.
 */
#include "fuzz.h"

#include <limits.h>
#include <string.h>

#include "crust.h"

void fuzz_config(const uint8_t *data, size_t size)
{
	char path[PATH_MAX], why[512];
	snprintf(path, sizeof(path), "%s/crust.json", fuzz_tmpdir());
	FUZZ_CHECK(fuzz_write_file(path, data, size) == 0);
	struct crust_config cfg;
	crust_config_init(&cfg);
	why[0] = 0;
	int err = crust_config_load(&cfg, path, why, sizeof(why));
	FUZZ_CHECK(err <= 0);
	FUZZ_CHECK(err == 0 || strstr(why, "config file"));
	FUZZ_CHECK(memchr(why, 0, sizeof(why)));
	crust_config_release(&cfg);
	FUZZ_CHECK(cfg.loaded == NULL);
}
