#!/usr/bin/env python3
"""The NAT matrix: every pair of the five NAT types (full cone, address-restricted,
port-restricted, symmetric, symmetric-predictable) on both sides, 25 ordered
pairs, once with TCP punching only and once with UDP punching only
(--no-udp-punch / --no-tcp-punch); every pair must end connected (punched or
relayed) and exchange messages both ways. The matrix of the methods that won
is printed; the method is asserted where the NAT behaviour makes it certain:

  TCP: cone <-> cone, and full or address-restricted <-> symmetric (their
       routers let the symmetric side's SYN from its new mapping in): tcp-punch;
       every other pair of port-restricted and symmetric kinds: relay.
  UDP: cone <-> cone: udp-punch; full/address-restricted <-> symmetric:
       udp-punch (the cone side answers the source it saw), or predicted if
       birthday punching (birthday.h) began before that path was seen;
       port-restricted <-> symmetric-predictable: predicted; port-restricted
       <-> symmetric: predicted by birthday punching, which wins 99.97 % of
       the time (the relay when it loses: test_punch_birthday.py shows the
       win); symmetric <-> symmetric: relay; pairs with a predictable side
       may also say predicted; symmetric(-predictable) pairs may be
       predicted or relayed.

Ten LANs (two per type) behind natlab.py routers, two nodes per LAN host (one
per transport), one coordinator; everything removed at the end, daemons
stopped by PID. Timings are printed, never asserted.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, log, quit_all, run  # noqa: E402
from punchlab import COORD_IP, PunchLab  # noqa: E402

T = 30.0
TYPES = ["full", "addr", "port", "sym", "sympred"]
CONES = ("full", "addr", "port")


def expected(transport, a, b):
    """Methods that may win for NAT types a (asker) and b."""
    pair = {a, b}
    if transport == "tcp":
        if a in CONES and b in CONES:
            return ("tcp-punch",)
        if pair & {"full", "addr"}:
            return ("tcp-punch",)
        return ("relay",)
    if a in CONES and b in CONES:
        return ("udp-punch",)
    if pair <= {"sym", "sympred"}:
        return ("relay", "predicted")
    if "sympred" in pair:
        other = (pair - {"sympred"}).pop() if len(pair) > 1 else "sympred"
        return ("predicted",) if other == "port" else ("udp-punch", "predicted")
    # one cone and "sym": birthday punching is probabilistic, the relay its fallback
    return ("predicted", "relay") if "port" in pair else ("udp-punch", "predicted")


def main():
    kinds = [t for t in TYPES for _ in (0, 1)]     # LAN 2k and 2k+1 are of TYPES[k]
    lab = PunchLab("matrix", kinds)
    nodes = []
    try:
        lab.start_coordinator(3478)
        tcp, udp = {}, {}
        for i, kind in enumerate(kinds):
            for table, flag in ((tcp, "--no-udp-punch"), (udp, "--no-tcp-punch")):
                n = CrustNode("%s%d%s" % (kind, i % 2, "t" if table is tcp else "u"),
                              netns=lab.hosts[i], bind="0.0.0.0",
                              args=["--coordinator", "%s:3478" % COORD_IP,
                                    "--punch-timeout-ms", "2000", flag])
                table[i] = n
                nodes.append(n)
        for n in nodes:
            n.wait_for("external_endpoint", lambda e: e["transport"] == "tcp", timeout=T)
        results = {}
        for transport, table in (("tcp", tcp), ("udp", udp)):
            for ia, ta in enumerate(TYPES):
                for ib, tb in enumerate(TYPES):
                    a, b = table[2 * ia], table[2 * ib + 1]
                    a.send_command("punch %s" % b.peer)
                    ra = a.wait_for("punch_result", lambda e, b=b: e["peer"] == b.peer, timeout=T)
                    rb = b.wait_for("punch_result", lambda e, a=a: e["peer"] == a.peer, timeout=T)
                    check(ra["ok"] and rb["ok"] and ra["via"] == rb["via"],
                          "%s %s <-> %s: connected, both sides agree (%s / %s)" %
                          (transport, ta, tb, ra.get("via"), rb.get("via")), a, b)
                    want = expected(transport, ta, tb)
                    check(ra["via"] in want, "%s %s <-> %s: %s is one of %s" %
                          (transport, ta, tb, ra["via"], "/".join(want)), a, b)
                    exchange(a, b, "ping %s %s" % (ta, tb))
                    exchange(b, a, "pong")
                    results[(transport, ta, tb)] = (ra["via"], ra["elapsed_ms"])
        for transport in ("tcp", "udp"):
            log("%s punching only: method (ms), asker down, peer across" % transport.upper())
            log("          " + "".join("%-19s" % t for t in TYPES))
            for ta in TYPES:
                log("%-10s" % ta + "".join("%-19s" % ("%s (%d)" % results[(transport, ta, tb)])
                                            for tb in TYPES))
        quit_all(nodes)
        nodes = []
    finally:
        for n in nodes:
            n.kill()
        lab.close()


if __name__ == "__main__":
    run(main)
