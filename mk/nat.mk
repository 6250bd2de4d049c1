# mk/nat.mk - NAT traversal targets (included by the Makefile).
#
#   make test-nat    the NAT-traversal e2e tests on the lab (root): punching, the
#                    25-pair matrix, birthday punching, rebind re-registration,
#                    hairpinning (~1.5 min on 2 cores)
#   make bench-nat   time to connect through NAT pairs (perf/nat_connect.py, 10 runs a row)

.PHONY: test-nat bench-nat

test-nat: all
	$(Q)E2E_FILTER=punch tests/e2e/run.sh
	$(Q)E2E_FILTER=nat_matrix tests/e2e/run.sh

bench-nat: all
	$(Q)CRUST=$(abspath $(BUILD))/crust /usr/bin/python3 perf/nat_connect.py 10
