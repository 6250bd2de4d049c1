#!/usr/bin/env python3
"""nat_connect.py [RUNS [LABEL-SUBSTRING]] - time to connect through NAT pairs, by method.

Builds the NAT lab (tests/e2e/natlab.py via punchlab.py; namespaces removed at
the end, daemons stopped by PID), a coordinator, and one pair of nodes per row
below; each pair punches RUNS times (punch, wait for punch_result on both sides,
drop, wait until both saw the connection go) and prints p50 / p95 / max of the
punch_result's elapsed_ms (from the punch command to the connection; it
includes the coordinator's 300 ms start delay) and which methods won (for the
birthday row, "predicted N" of RUNS is its success rate; the rest fell back to
the relay).
Needs root (namespaces). Default RUNS = 10; with a LABEL-SUBSTRING only the
rows whose label contains it (e.g. "birthday"), and no relay throughput.
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from crustnode import CrustNode  # noqa: E402
from punchlab import COORD_IP, PunchLab  # noqa: E402

# (label, lan a, lan b, filter TCP between them)
KINDS = ["port", "port", "full", "sym", "sym", "sym", "port-rst", "port-rst", "full", "sym",
         "port", "sympred", "port", "sym"]
ROWS = [
    ("port-restricted <-> port-restricted", 0, 1, False),
    ("full cone <-> symmetric", 8, 9, False),
    ("full cone <-> symmetric, TCP filtered", 2, 3, True),
    ("port-restricted (RST) <-> same", 6, 7, False),
    ("port-restricted <-> symmetric predictable", 10, 11, False),
    ("port-restricted <-> symmetric (birthday)", 12, 13, False),
    ("symmetric <-> symmetric (relay)", 4, 5, False),
]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def relay_throughput(a, b, count=300, size=60000):
    """Messages of size bytes from a to b through the relay; MB/s from first send to last arrival."""
    import time
    a.send_command("punch %s" % b.peer)
    r = a.wait_for("punch_result", lambda e: e["peer"] == b.peer, timeout=30)
    b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=30)
    assert r["ok"] and r["via"] == "relay", r
    blob = "x" * size
    t0 = time.monotonic()
    for _ in range(count):
        a.send_command("send %s %s" % (b.peer, blob))
    for _ in range(count):
        b.wait_for("new_message", lambda e: e["peer"] == a.peer, timeout=60)
    dt = time.monotonic() - t0
    print("relay throughput: %d x %d B in %.2f s = %.1f MB/s (through crust node's JSON CLI)" %
          (count, size, dt, count * size / dt / 1e6), flush=True)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    only = sys.argv[2] if len(sys.argv) > 2 else None
    lab = PunchLab("natbench", KINDS)
    nodes = []
    try:
        # relay caps raised for the throughput row (defaults: 1 MiB/s, 64 MiB per pair)
        lab.start_coordinator(3478, ["--relay-rate", str(1 << 30), "--relay-max-bytes",
                                     str(1 << 40)])
        for i in range(len(KINDS)):
            n = CrustNode("n%d" % i, netns=lab.hosts[i], bind="0.0.0.0",
                          args=["--coordinator", "%s:3478" % COORD_IP])
            n.wait_for("external_endpoint", lambda e: e["transport"] == "tcp", timeout=30)
            nodes.append(n)
        print("%-40s %6s %6s %6s  %s" % ("pair", "p50", "p95", "max", "methods (runs)"))
        for label, i, j, no_tcp in ROWS:
            if only and only not in label:
                continue
            if no_tcp:
                for x, y in ((i, j), (j, i)):
                    lab.lab.run(lab.lans[x].router, "nft", "insert", "rule", "ip", "natlab",
                                "forward", "ip", "daddr", lab.wan[y], "meta", "l4proto", "tcp",
                                "drop")
            a, b = nodes[i], nodes[j]
            times, methods = [], {}
            for _ in range(runs):
                a.send_command("punch %s" % b.peer)
                r = a.wait_for("punch_result", lambda e: e["peer"] == b.peer, timeout=30)
                b.wait_for("punch_result", lambda e: e["peer"] == a.peer, timeout=30)
                if r["ok"]:
                    times.append(r["elapsed_ms"])
                methods[r["via"] if r["ok"] else "failed"] = \
                    methods.get(r["via"] if r["ok"] else "failed", 0) + 1
                if r["ok"]:
                    a.send_command("drop %s" % b.peer)
                    a.wait_for("lost_connection", lambda e: e["peer"] == b.peer, timeout=30)
                    b.wait_for("lost_connection", lambda e: e["peer"] == a.peer, timeout=30)
            m = ", ".join("%s %d" % kv for kv in sorted(methods.items()))
            if times:
                print("%-40s %6d %6d %6d  %s" % (label, statistics.median(times), pct(times, 95),
                                                 max(times), m), flush=True)
            else:
                print("%-40s %6s %6s %6s  %s" % (label, "-", "-", "-", m), flush=True)
        if not only:
            relay_throughput(nodes[4], nodes[5])
        for n in nodes:
            n.quit()
        nodes = []
    finally:
        for n in nodes:
            n.kill()
        lab.close()


if __name__ == "__main__":
    main()
