# valgrind memcheck of the unit suite (docs/QUALITY.md "valgrind").
#   make valgrind                      every unit test, one at a time (long: see QUALITY.md)
#   make valgrind VG_FILTER='udp/*'    a subset
#   make valgrind-short                the suites CI runs (below)
# Built in build-vg/ with -DCRUST_VALGRIND (engine/valgrind.h: shards wait at most 5 ms in
# io_uring_enter, which valgrind 3.19 runs holding its big lock). Criterion runs each test
# in a process it starts by exec, so --trace-children=yes, one log per process; it ignores
# the workers' exit codes, so the logs are judged here: any memcheck error or definitely /
# indirectly lost block fails. tests/valgrind.supp lists the suppressions and why.

VG_BUILD  := build-vg
VG_FILTER ?= *
# system tools the lab tests run (ip, nft, ...) are not ours: not traced
VG_OPTS   := --tool=memcheck --trace-children=yes --trace-children-skip='/usr/*,/bin/*,/sbin/*' \
             --leak-check=full --show-leak-kinds=definite,indirect \
             --errors-for-leak-kinds=definite,indirect --track-origins=yes --num-callers=30 \
             --suppressions=$(CURDIR)/tests/valgrind.supp --log-file=$(CURDIR)/$(VG_BUILD)/logs/vg.%p.log

.PHONY: valgrind

valgrind: deps
	$(Q)tools/deps.sh quality
	$(Q)$(MAKE) --no-print-directory BUILD=$(VG_BUILD) OPT="-O1 -g" CFLAGS="$(CFLAGS) -DCRUST_VALGRIND" \
		$(VG_BUILD)/unit_tests
	$(Q)rm -rf $(VG_BUILD)/logs && mkdir -p $(VG_BUILD)/logs
	$(Q)valgrind $(VG_OPTS) $(VG_BUILD)/unit_tests --jobs 1 --timeout 600 --filter '$(VG_FILTER)' \
		> $(VG_BUILD)/unit.log 2>&1; tail -1 $(VG_BUILD)/unit.log
	$(Q)bad=$$(grep -lE 'ERROR SUMMARY: [1-9]' $(VG_BUILD)/logs/vg.*.log); \
	  n=$$(ls $(VG_BUILD)/logs | wc -l); \
	  cut=$$(grep -L 'ERROR SUMMARY' $(VG_BUILD)/logs/vg.*.log | wc -l); \
	  if [ -n "$$bad" ]; then echo "valgrind: errors in $$(echo $$bad | wc -w) of $$n processes:"; \
	    for f in $$bad; do echo "== $$f"; grep -E '^==[0-9]+== (   (at|by)|[A-Z][a-z])' $$f | head -40; done; exit 1; fi; \
	  echo "valgrind: $$n processes, 0 errors, no definitely or indirectly lost block" \
	    "($$cut ended without a summary: killed, e.g. by a test timeout)"; \
	  grep -q 'Crashing: 0' $(VG_BUILD)/unit.log && grep -q 'Failing: 0' $(VG_BUILD)/unit.log

# CI's short run (each test is a process and memcheck takes about a second to start one, so
# the count matters): every committed fuzz corpus and regression input through its harness
# (all the wire and file parsers, and fuzz_rudp_conn's real engine and connection), the
# handshake, the session records, the stream framing, shards' mailboxes and UDP sockets.
# The whole suite is `make valgrind`.
VG_SHORT := @(fuzz_replay|handshake|session|framing|rudp_stream|mailbox|udp)/*
.PHONY: valgrind-short
valgrind-short:
	$(Q)$(MAKE) --no-print-directory valgrind VG_FILTER='$(VG_SHORT)'
