# crust - one non-recursive Makefile.
#   make            build/libcrust.a, build/libcrust.so (soname libcrust.so.0), build/crust
#   make run        two local nodes connect and talk, then a throughput figure
#   make test       install what is missing, build, run unit and end-to-end tests
#   make asan       the same tests built with ASan + UBSan
#   make bench      quick benchmark suite beside real baselines and limits (perf/, minutes)
#   make bench-full the longer matrix (more seconds, repeats and message sizes)
#   make lab        build/crust-wire, the impairment wire of the lab (tests/lab/)
#   make docker-lab the Docker NAT topologies, built, run and torn down (mk/docker.mk)
#   make fuzz       libFuzzer targets for every parser (mk/fuzz.mk; fuzz-smoke for CI)
#   make tsan, soak, faults, coverage, valgrind: the other hardening runs (mk/*.mk,
#                   docs/QUALITY.md); .ci/run shows which short versions CI runs
#   make install    PREFIX=/usr/local DESTDIR=
# V=1 shows the commands; CI=true turns warnings into errors.

PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
BINDIR   ?= $(PREFIX)/bin
BUILD    ?= build
SOVER    := 0
VERSION  := 0.1.0

CC       ?= cc
PKGS     := liburing libsodium libcrypto jansson miniupnpc
WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wundef -Wimplicit-fallthrough
ifeq ($(CI),true)
WARN     += -Werror
endif
OPT      ?= -O2 -g
SAN      ?=
CFLAGS_ALL = -std=gnu11 $(OPT) $(SAN) $(WARN) -fPIC -fvisibility=hidden -MMD -MP \
             -Iinclude -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LIBS     := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -luring -lsodium -lcrypto -ljansson -lminiupnpc) -lnatpmp -lpthread -lm
LDFLAGS_ALL = $(SAN) $(LDFLAGS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC   := $(wildcard engine/*.c transports/*.c p2p/*.c p2p/nat/*.c)
TOOL_SRC  := $(wildcard tools/*.c)
UNIT_SRC  := $(wildcard tests/unit/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
UNIT_OBJ  := $(UNIT_SRC:%.c=$(BUILD)/%.o)

.PHONY: all deps lab run test test-unit test-e2e asan bench bench-full install uninstall clean
all: $(BUILD)/libcrust.a $(BUILD)/libcrust.so $(BUILD)/crust

deps:
	$(Q)tools/deps.sh base

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

# Criterion's macros trip these two; tests drop them
$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -Wno-conversion -Wno-declaration-after-statement -c $< -o $@

$(BUILD)/libcrust.a: $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libcrust.so.$(VERSION): $(LIB_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,libcrust.so.$(SOVER) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/libcrust.so: $(BUILD)/libcrust.so.$(VERSION)
	$(Q)ln -sf libcrust.so.$(VERSION) $(BUILD)/libcrust.so.$(SOVER)
	$(Q)ln -sf libcrust.so.$(VERSION) $@

$(BUILD)/crust: $(TOOL_OBJ) $(BUILD)/libcrust.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(TOOL_OBJ) $(BUILD)/libcrust.a $(LIBS) -lm

# the lab's impairment wire (tests/lab/wire.c): a standalone tool, not part of libcrust
lab: $(BUILD)/crust-wire

$(BUILD)/lab/wire.o: tests/lab/wire.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/crust-wire: $(BUILD)/lab/wire.o
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lm

$(BUILD)/unit_tests: $(UNIT_OBJ) $(BUILD)/libcrust.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(UNIT_OBJ) $(BUILD)/libcrust.a $(LIBS) -lcriterion

run: deps all
	$(Q)python3 tools/demo.py $(BUILD)/crust

test: deps
	$(Q)$(MAKE) --no-print-directory test-unit test-e2e

test-unit: all $(BUILD)/unit_tests
	$(Q)$(BUILD)/unit_tests --jobs 2

# up to three end-to-end tests at once: they mostly wait on timers and peers
E2E_JOBS ?= 3
test-e2e: all lab
	$(Q)CRUST=$(BUILD)/crust BUILD=$(BUILD) E2E_JOBS=$(E2E_JOBS) tests/e2e/run.sh

# the sanitizer run leaves out the end-to-end tests that run no libcrust code
# (the lab's own tools, the dissector, packaging) and the bench harness (its
# floods run alone, a minute under ASan; make soak-short floods the library
# under ASan): `make test` covers them
ASAN_E2E_SKIP := test_natlab.py test_wire.py test_dissector_synthetic.sh test_install.sh \
                 test_router_nat.sh test_bench_smoke.sh
ASAN_BUILD := build-asan
ASAN_OPT   := -O1 -g -fno-omit-frame-pointer
ASAN_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=all
ASAN_ENV   := ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp
asan: deps
	$(Q)$(ASAN_ENV) E2E_SKIP="$(ASAN_E2E_SKIP)" $(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) \
		OPT="$(ASAN_OPT)" SAN="$(ASAN_SAN)" test-unit test-e2e

# a baseline whose package cannot be installed shows "unavailable" in the results
bench: all lab
	$(Q)tools/deps.sh bench || echo "make bench: some bench packages are missing (their rows say unavailable)" >&2
	$(Q)perf/run.sh $(BUILD)/crust

bench-full: all lab
	$(Q)tools/deps.sh bench || echo "make bench-full: some bench packages are missing (their rows say unavailable)" >&2
	$(Q)BENCH_FULL=1 perf/run.sh $(BUILD)/crust

install: all
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR)
	install -m 644 include/crust.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(BUILD)/libcrust.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libcrust.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libcrust.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcrust.so.$(SOVER)
	ln -sf libcrust.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcrust.so
	install -m 755 $(BUILD)/crust $(DESTDIR)$(BINDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' crust.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/crust.pc

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/crust.h $(DESTDIR)$(LIBDIR)/libcrust.* \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/crust.pc $(DESTDIR)$(BINDIR)/crust

clean:
	rm -rf build build-asan build-fuzz perf/out


# each topic's targets (stress, NAT, fuzzing, ...) in its own file
include $(sort $(wildcard mk/*.mk))


-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(BUILD)/lab/wire.d
