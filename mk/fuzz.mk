# Fuzzing (tests/fuzz/, docs/QUALITY.md "Fuzzing"): one libFuzzer binary per parser.
#   make fuzz          every target for FUZZ_SECONDS (300) each, FUZZ_JOBS (1) at a time
#   make fuzz-smoke    CI: every target for FUZZ_SMOKE_SECONDS (15) each (fuzz_smoke_<t> if
#                      set), two at a time
#   make fuzz-build    only build build-fuzz/fuzz_<target>
#   make fuzz-corpus   regenerate the seed corpora (tests/fuzz/corpus/) from the encoders
#   make fuzz-<target> one target, e.g. make fuzz-stun FUZZ_SECONDS=60
# Finds go to build-fuzz/corpus/<target>/ (kept between runs), crashes to
# build-fuzz/artifacts/<target>/; a crash fails the run. The same harnesses
# replay every committed corpus and regression input in the unit tests
# (tests/unit/test_fuzz_replay.c), compiled with gcc.

FUZZ_CC       ?= clang-14
FUZZ_BUILD    ?= build-fuzz
FUZZ_SECONDS  ?= 300
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_JOBS     ?= 1
FUZZ_RSS_MB   ?= 1024
FUZZ_NAMES    := framing handshake session rudp_wire rudp_recv beacon stun rendezvous pex \
                 cache config identity rudp_conn
FUZZ_BINS     := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS    = -std=gnu11 -O1 -g -fno-omit-frame-pointer $(WARN) -Iinclude -I. -Itests/fuzz \
                 $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_HARNESS  := tests/fuzz/fuzz_files.c tests/fuzz/libfuzzer_main.c tests/fuzz/fuzz.h

# the longest input worth trying per target: a datagram, a handshake message, a file
fuzz_max_framing    := 4096
fuzz_max_handshake  := 600
fuzz_max_session    := 4096
fuzz_max_rudp_wire  := 1500
fuzz_max_rudp_recv  := 4096
fuzz_max_rudp_conn  := 4096
fuzz_max_beacon     := 256
fuzz_max_stun       := 1600
fuzz_max_rendezvous := 512
fuzz_max_pex        := 4096
fuzz_max_cache      := 9000
fuzz_max_config     := 4096
fuzz_max_identity   := 1024

# fuzz-smoke seconds where a target differs from FUZZ_SMOKE_SECONDS: rudp_conn runs a few
# hundred inputs a second (a shard round trip per packet) and runs alone in the last slot
fuzz_smoke_rudp_conn := 6

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-lib fuzz-corpus $(FUZZ_NAMES:%=fuzz-%)

# the library with coverage instrumentation (fuzzer-no-link) and sanitizers, by the main rules
fuzz-lib:
	$(Q)$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
		OPT="-O1 -g -fno-omit-frame-pointer" \
		SAN="-fsanitize=fuzzer-no-link -fsanitize=address,undefined -fno-sanitize-recover=all" \
		$(FUZZ_BUILD)/libcrust.a

fuzz-build: deps fuzz-lib
	$(Q)$(MAKE) --no-print-directory $(FUZZ_BINS)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_HARNESS) $(FUZZ_BUILD)/libcrust.a
	@$(if $(Q),echo "  FUZZ-LD $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) -DFUZZ_FN=fuzz_$* -o $@ \
		$< tests/fuzz/fuzz_files.c tests/fuzz/libfuzzer_main.c $(FUZZ_BUILD)/libcrust.a $(LIBS)

# $(call fuzz_run,target,seconds): new finds in build-fuzz/corpus/<t>, the seeds and
# regressions read only; a crash, leak, timeout (10 s) or RSS above the limit fails
define fuzz_run
	@mkdir -p $(FUZZ_BUILD)/corpus/$(1) $(FUZZ_BUILD)/artifacts/$(1)
	@echo "  FUZZ    $(1) ($(2) s)"
	$(Q)nice $(FUZZ_BUILD)/fuzz_$(1) -max_total_time=$(2) -max_len=$(fuzz_max_$(1)) \
		-rss_limit_mb=$(FUZZ_RSS_MB) -timeout=10 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)/ \
		$(if $(wildcard tests/fuzz/$(1).dict),-dict=tests/fuzz/$(1).dict) \
		$(FUZZ_BUILD)/corpus/$(1) tests/fuzz/corpus/$(1) \
		$(wildcard tests/fuzz/regress/$(1)) > $(FUZZ_BUILD)/fuzz-$(1).log 2>&1 \
		|| { tail -n 60 $(FUZZ_BUILD)/fuzz-$(1).log; echo "fuzz $(1): FAILED (log $(FUZZ_BUILD)/fuzz-$(1).log)" >&2; exit 1; }
	@grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|^#[0-9]+.*DONE' \
		$(FUZZ_BUILD)/fuzz-$(1).log | tr '\n' ' ' | sed 's/^/          $(1): /'; echo
endef

$(FUZZ_NAMES:%=fuzz-%): fuzz-%: fuzz-build
	$(call fuzz_run,$*,$(FUZZ_SECONDS))

fuzz: fuzz-build
	$(Q)$(MAKE) --no-print-directory -j$(FUZZ_JOBS) $(FUZZ_NAMES:%=fuzz-run-%) \
		FUZZ_RUN_SECONDS=$(FUZZ_SECONDS)

# two at a time: CI's machine has two cores
fuzz-smoke:
	$(Q)$(MAKE) --no-print-directory -j2 fuzz-build
	$(Q)$(MAKE) --no-print-directory -j2 $(FUZZ_NAMES:%=fuzz-run-%) \
		FUZZ_RUN_SECONDS=$(FUZZ_SMOKE_SECONDS) FUZZ_SMOKE=1

.PHONY: $(FUZZ_NAMES:%=fuzz-run-%)
$(FUZZ_NAMES:%=fuzz-run-%): fuzz-run-%:
	$(call fuzz_run,$*,$(if $(FUZZ_SMOKE),$(or $(fuzz_smoke_$*),$(FUZZ_RUN_SECONDS)),$(FUZZ_RUN_SECONDS)))

# seed corpora: written by the library's own encoders (tests/fuzz/seeds.c)
$(BUILD)/fuzz-seeds: tests/fuzz/seeds.c $(BUILD)/libcrust.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS_ALL) -Wno-conversion -o $@ $< $(BUILD)/libcrust.a $(LIBS)

fuzz-corpus: $(BUILD)/fuzz-seeds
	$(Q)$(BUILD)/fuzz-seeds tests/fuzz/corpus

# the harnesses also go into the unit tests, which replay the corpora (gcc, no libFuzzer)
FUZZ_UNIT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(filter-out tests/fuzz/libfuzzer_main.c \
                   tests/fuzz/seeds.c,$(wildcard tests/fuzz/*.c)))
UNIT_OBJ += $(FUZZ_UNIT_OBJ)
$(BUILD)/unit_tests: $(FUZZ_UNIT_OBJ)
-include $(FUZZ_UNIT_OBJ:.o=.d)
