/*
 * libfuzzer_main.c - the libFuzzer entry point of one target; mk/fuzz.mk
 * compiles it once per target with -DFUZZ_FN=fuzz_<target>.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FUZZ_FN(data, size);
	return 0;
}
