# mk/upnp.mk - port mapping (p2p/nat/): its unit and end-to-end tests alone.
#   make test-upnp      the PCP codec and config unit tests, then tests/e2e/test_upnp.py
#                       (a real miniupnpd in a NAT lab router; about 45 s on 2 cores)
.PHONY: test-upnp
test-upnp: deps all $(BUILD)/unit_tests
	$(Q)$(BUILD)/unit_tests --filter 'pcp/*'
	$(Q)$(BUILD)/unit_tests --filter 'config/*port_mapping*'
	$(Q)CRUST=$(BUILD)/crust BUILD=$(BUILD) E2E_FILTER=test_upnp tests/e2e/run.sh
