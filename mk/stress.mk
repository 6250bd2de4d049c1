# Stress and soak (issue 9 items 2-3; docs/QUALITY.md "ThreadSanitizer", "Churn soak").
#   make tsan          the library and tests/stress/*.c built with -fsanitize=thread into
#                      build-tsan/, each program run; any race report fails (halt_on_error)
#                      STRESS_SECONDS=N sets each program's traffic phase (default 6)
#   make tsan-short    the same for CI, STRESS_SECONDS=3
#   make soak          churn soak under ASan (build-asan/): SOAK_SECONDS, default 180
#   make soak-short    the same for CI, SOAK_SECONDS=40
#   make p2p-asan      tests/stress/stress_p2p.c under ASan+UBSan with leak checks
#                      (build-asan/), STRESS_SECONDS as for tsan (default 6)
STRESS_SRC  := $(wildcard tests/stress/stress_*.c)
TSAN_BUILD  := build-tsan
TSAN_SAN    := -fsanitize=thread
TSAN_OPT    := -O1 -g -fno-omit-frame-pointer
TSAN_BINS   := $(STRESS_SRC:tests/stress/%.c=$(TSAN_BUILD)/stress/%)
STRESS_SECONDS ?= 6
SOAK_SECONDS ?= 180

.PHONY: tsan tsan-short tsan-build soak soak-short soak-build

$(TSAN_BUILD)/stress/%: tests/stress/%.c tests/stress/stress.h $(TSAN_BUILD)/libcrust.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC/LD   $@")
	$(Q)$(CC) -std=gnu11 $(TSAN_OPT) $(TSAN_SAN) $(WARN) -Iinclude -I. -o $@ $< \
		$(TSAN_BUILD)/libcrust.a $(LIBS)

# the library through the main rules, another build dir and the sanitizer (the sub-make
# itself has BUILD=build-tsan and takes the main rule)
ifneq ($(BUILD),$(TSAN_BUILD))
$(TSAN_BUILD)/libcrust.a: FORCE_TSAN_LIB
	$(Q)$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) OPT="$(TSAN_OPT)" SAN="$(TSAN_SAN)" \
		$(TSAN_BUILD)/libcrust.a
.PHONY: FORCE_TSAN_LIB
FORCE_TSAN_LIB:
endif

tsan-build: $(TSAN_BINS)

tsan: deps tsan-build
	$(Q)STRESS_SECONDS=$(STRESS_SECONDS) tests/stress/run_tsan.sh $(TSAN_BINS)

tsan-short: deps tsan-build
	$(Q)STRESS_SECONDS=3 tests/stress/run_tsan.sh $(TSAN_BINS)

# --- churn soak under ASan: objects and flags shared with `make asan` (ASAN_* in Makefile)
SOAK_BIN   := $(ASAN_BUILD)/stress/soak

# one sub-make brings the library and the crust binary (the killed peers) up to date
.PHONY: soak-lib
soak-lib:
	$(Q)$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) OPT="$(ASAN_OPT)" SAN="$(ASAN_SAN)" \
		$(ASAN_BUILD)/libcrust.a $(ASAN_BUILD)/crust

$(SOAK_BIN): tests/stress/soak.c tests/stress/stress.h soak-lib
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC/LD   $@")
	$(Q)$(CC) -std=gnu11 $(ASAN_OPT) $(ASAN_SAN) $(WARN) -Iinclude -I. -o $@ $< \
		$(ASAN_BUILD)/libcrust.a $(LIBS)

soak-build: $(SOAK_BIN)

soak: deps soak-build
	$(Q)$(ASAN_ENV) SOAK_SECONDS=$(SOAK_SECONDS) CRUST=$(ASAN_BUILD)/crust $(SOAK_BIN)

soak-short: deps soak-build
	$(Q)$(ASAN_ENV) SOAK_SECONDS=40 CRUST=$(ASAN_BUILD)/crust $(SOAK_BIN)

# --- the p2p stress program under ASan: leaks and memory errors on the same paths
P2P_ASAN_BIN := $(ASAN_BUILD)/stress/stress_p2p
.PHONY: p2p-asan p2p-asan-lib
p2p-asan-lib:
	$(Q)$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) OPT="$(ASAN_OPT)" SAN="$(ASAN_SAN)" \
		$(ASAN_BUILD)/libcrust.a

$(P2P_ASAN_BIN): tests/stress/stress_p2p.c tests/stress/stress.h p2p-asan-lib
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC/LD   $@")
	$(Q)$(CC) -std=gnu11 $(ASAN_OPT) $(ASAN_SAN) $(WARN) -Iinclude -I. -o $@ $< \
		$(ASAN_BUILD)/libcrust.a $(LIBS)

p2p-asan: deps $(P2P_ASAN_BIN)
	$(Q)$(ASAN_ENV) STRESS_SECONDS=$(STRESS_SECONDS) $(P2P_ASAN_BIN)

clean: clean-stress
.PHONY: clean-stress
clean-stress:
	rm -rf $(TSAN_BUILD)
