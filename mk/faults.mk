# Fault injection (docs/QUALITY.md "Fault injection"; engine/fault.h).
#   make faults        the library built with FAULTS=1 under ASan + UBSan in build-faults/,
#                      tests/faults/fault_driver.c run at several rates and seeds (LSan on)
#   make faults-ci     the short version for CI
#   make faults-unit   the unit suite on the faults build: crashes and hangs fail it,
#                      assertion failures (expected when calls fail) do not
# FAULTS=1 in a build renames the library objects' calls to malloc, io_uring_submit,
# socket, close, ... to the wrappers in engine/fault.c (objcopy --redefine-syms=engine/fault.syms);
# jansson's and OpenSSL's allocations reach them through hooks fault.c installs before main.

FAULTS_BUILD := build-faults
FAULTS_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=all
FAULTS_OPT   := -O1 -g -fno-omit-frame-pointer
FAULTS_ENV   := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp UBSAN_OPTIONS=print_stacktrace=1
# rate:seed runs of make faults (rounds each), and of make faults-ci
FAULTS_RUNS    ?= 0.002:1 0.01:2 0.02:3 0.05:4 0.1:5 0.3:6
FAULTS_ROUNDS  ?= 15
FAULTS_CI_RUNS ?= 0.01:11 0.05:12 0.2:13
FAULTS_CI_ROUNDS ?= 4

.PHONY: faults faults-ci faults-unit faults-build

ifeq ($(FAULTS),1)
ifeq ($(BUILD),build)
$(error FAULTS=1 needs its own BUILD directory: use make faults (BUILD=$(FAULTS_BUILD)))
endif
# every library object but the injector itself calls the wrappers
$(filter-out $(BUILD)/engine/fault.o,$(LIB_OBJ)): %.o: %.o.plain
	$(Q)objcopy --redefine-syms=engine/fault.syms $< $@
$(BUILD)/%.o.plain: %.c engine/fault.syms
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $< (faults)")
	$(Q)$(CC) $(CFLAGS_ALL) -DCRUST_FAULTS -MF $(@:.o.plain=.d) -c $< -o $@
$(BUILD)/engine/fault.o: CFLAGS_ALL += -DCRUST_FAULTS
endif

$(BUILD)/fault_driver: $(BUILD)/tests/faults/fault_driver.o $(BUILD)/libcrust.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libcrust.a $(LIBS)

$(BUILD)/tests/faults/fault_driver.o: CFLAGS_ALL += -DCRUST_FAULTS

FAULTS_TARGETS ?= $(FAULTS_BUILD)/fault_driver $(FAULTS_BUILD)/unit_tests
faults-build:
	$(Q)$(MAKE) --no-print-directory BUILD=$(FAULTS_BUILD) FAULTS=1 OPT="$(FAULTS_OPT)" \
		SAN="$(FAULTS_SAN)" $(FAULTS_TARGETS)

# one run per rate:seed; the driver fails on a crash, a hang, a leak or a descriptor left open
define faults_run
	$(Q)for rs in $(1); do rate=$${rs%%:*}; seed=$${rs##*:}; \
	  echo "faults: rate $$rate seed $$seed, $(2) rounds"; \
	  $(FAULTS_ENV) CRUST_FAULT_RATE=$$rate CRUST_FAULT_SEED=$$seed \
	    timeout -k 5 600 $(FAULTS_BUILD)/fault_driver $(2) || { echo "faults: FAILED at rate $$rate seed $$seed" >&2; exit 1; }; \
	done
endef

faults: deps faults-build
	$(call faults_run,$(FAULTS_RUNS),$(FAULTS_ROUNDS))
	$(Q)$(MAKE) --no-print-directory faults-unit

# the driver only: no unit tests to compile
faults-ci:
	$(Q)$(MAKE) --no-print-directory faults-build FAULTS_TARGETS=$(FAULTS_BUILD)/fault_driver
	$(call faults_run,$(FAULTS_CI_RUNS),$(FAULTS_CI_ROUNDS))

# Criterion's summary line counts crashes apart from failures: any crash (a signal),
# timeout, ASan or UBSan report fails this run (Criterion files some of those as
# failures, so the log is searched too); failed assertions are what faults cause.
# The fuzz corpus replays are left out: their harness invariants (a seal succeeds, an
# allocation returns memory) abort on purpose, which is an assertion, not a crash
faults-unit: faults-build
	$(Q)$(FAULTS_ENV) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 CRUST_FAULT_RATE=$${CRUST_FAULT_RATE:-0.01} \
	  CRUST_FAULT_SEED=$${CRUST_FAULT_SEED:-7} $(FAULTS_BUILD)/unit_tests --jobs 2 --timeout 240 --filter '!(fuzz_replay/*)' \
	  > $(FAULTS_BUILD)/unit.log 2>&1; \
	  tail -1 $(FAULTS_BUILD)/unit.log; \
	  grep -E 'CRASH|Timed out|exited with status|signal|AddressSanitizer|runtime error' \
	    $(FAULTS_BUILD)/unit.log | head -20; \
	  grep -qE 'Crashing: 0' $(FAULTS_BUILD)/unit.log && \
	  ! grep -qE 'Timed out|AddressSanitizer|runtime error' $(FAULTS_BUILD)/unit.log
