# Coverage (docs/QUALITY.md "Coverage"): gcc --coverage build in build-cov/, the unit
# suite and the end-to-end tests, then lcov + genhtml: build-cov/html/index.html.
#   make coverage            everything (the e2e part takes most of the time)
#   make coverage COV_E2E=0  unit tests only
# test_install.sh is skipped: a --coverage libcrust.so exports libgcov's symbols and needs
# --coverage in every program linking it, which that test rightly refuses.
# Prints line and branch coverage of engine/, transports/ and p2p/; exits non-zero
# when a test failed (the report is written all the same).

COV_BUILD := build-cov
COV_E2E   ?= 1
COV_RC    := --rc lcov_branch_coverage=1
COV_DIRS  := engine transports p2p

.PHONY: coverage coverage-build coverage-report

coverage-build:
	$(Q)tools/deps.sh quality
	$(Q)$(MAKE) --no-print-directory BUILD=$(COV_BUILD) OPT="-O0 -g" SAN="--coverage" \
		$(COV_BUILD)/libcrust.a $(COV_BUILD)/libcrust.so $(COV_BUILD)/crust $(COV_BUILD)/crust-wire $(COV_BUILD)/unit_tests

coverage: deps coverage-build
	$(Q)find $(COV_BUILD) -name '*.gcda' -delete
	$(Q)status=0; \
	  $(COV_BUILD)/unit_tests --jobs 2 || status=1; \
	  if [ "$(COV_E2E)" = 1 ]; then \
	    CRUST=$(COV_BUILD)/crust BUILD=$(COV_BUILD) E2E_SKIP=test_install.sh tests/e2e/run.sh || status=1; \
	  fi; \
	  $(MAKE) --no-print-directory coverage-report; exit $$status

coverage-report:
	$(Q)lcov $(COV_RC) --quiet --capture --directory $(COV_BUILD) --output-file $(COV_BUILD)/all.info
	$(Q)lcov $(COV_RC) --quiet --extract $(COV_BUILD)/all.info $(foreach d,$(COV_DIRS),'$(CURDIR)/$(d)/*') \
		--output-file $(COV_BUILD)/lib.info
	$(Q)genhtml $(COV_RC) --quiet --branch-coverage --title crust --output-directory $(COV_BUILD)/html \
		$(COV_BUILD)/lib.info
	$(Q)for d in $(COV_DIRS); do \
	  lcov $(COV_RC) --quiet --extract $(COV_BUILD)/lib.info "$(CURDIR)/$$d/*" --output-file $(COV_BUILD)/$$d.info; \
	  printf '%-12s ' "$$d/"; lcov $(COV_RC) --summary $(COV_BUILD)/$$d.info 2>&1 | \
	    awk '/lines|branches/ {sub(/^ */, ""); printf "%s   ", $$0} END {print ""}'; \
	done
	$(Q)printf '%-12s ' "all three"; lcov $(COV_RC) --summary $(COV_BUILD)/lib.info 2>&1 | \
	    awk '/lines|branches/ {sub(/^ */, ""); printf "%s   ", $$0} END {print ""}'
	$(Q)lcov $(COV_RC) --list $(COV_BUILD)/lib.info > $(COV_BUILD)/files.txt 2>&1
	@echo "coverage: $(COV_BUILD)/html/index.html (per file: $(COV_BUILD)/files.txt)"
