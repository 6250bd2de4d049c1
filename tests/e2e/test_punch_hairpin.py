#!/usr/bin/env python3
"""Two crust nodes behind the same NAT router, whose LAN path is unusable,
connect through the router's hairpin (natlab.py via punchlab.py; namespaces
removed at the end, daemons stopped by PID also on failure).

Two port-restricted LANs with two hosts each: LAN 0's router hairpins (a
LAN packet to its public address is DNATed to the host that owns that
mapping and SNATed to the public address), LAN 1's does not (such packets
are dropped and counted as no_hairpin). On every host a filter drops what
comes from the other host's private address, so the nodes cannot meet over
the LAN (as when the private candidates are useless: separate subnets or
VLANs behind one router, client isolation). They can only use the public
candidates, each other's mappings on their shared router:

  hairpin on:  a punch (tcp-punch or udp-punch), through the router: the
               peer's connection comes from the router's public address,
               and the router's hairpin counters moved;
  hairpin off: they still connect, through the coordinator's relay.

Messages go both ways in both cases.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, log, quit_all, run  # noqa: E402
from punchlab import COORD_IP, PunchLab  # noqa: E402

T = 30.0


def isolate(lab, lan):
    """Each host of lan drops packets from the other hosts' private addresses."""
    for h, ip in zip(lan.hosts, lan.host_ips):
        others = [x for x in lan.host_ips if x != ip]
        lab.lab.run(h, "nft", "add", "table", "ip", "isolate")
        lab.lab.run(h, "nft", "add", "chain", "ip", "isolate", "input",
                    "{ type filter hook input priority 0; policy accept; }")
        for o in others:
            lab.lab.run(h, "nft", "add", "rule", "ip", "isolate", "input", "ip", "saddr", o,
                        "counter", "drop")


def start(lab, lan_no, host_no):
    lan = lab.lans[lan_no]
    n = CrustNode("l%dh%d" % (lan_no, host_no), netns=lan.hosts[host_no], bind="0.0.0.0",
                  args=["--coordinator", "%s:3478" % COORD_IP, "--punch-timeout-ms", "2000"])
    for t in ("tcp", "rudp"):
        n.wait_for("external_endpoint", lambda e, t=t: e["transport"] == t, timeout=T)
    return n


def main():
    lab = PunchLab("hairpin", [("port", {"hosts": 2, "hairpin": True}), ("port", {"hosts": 2})])
    nodes = []
    try:
        lab.start_coordinator(3478)
        for i in (0, 1):
            isolate(lab, lab.lans[i])
        rows = []
        for i, want in ((0, ("tcp-punch", "udp-punch")), (1, ("relay",))):
            a, b = start(lab, i, 0), start(lab, i, 1)
            nodes += [a, b]
            a.send_command("punch %s" % b.peer)
            ra = a.wait_for("punch_result", lambda e: e["peer"] == b.peer, timeout=T)
            rb = b.wait_for("punch_result", lambda e: e["peer"] == a.peer, timeout=T)
            what = "hairpin %s" % ("on" if i == 0 else "off")
            check(ra["ok"] and rb["ok"] and ra["via"] == rb["via"] and ra["via"] in want,
                  "%s: connected by %s (%s / %s)" % (what, "/".join(want), ra.get("via"),
                                                     rb.get("via")), a, b)
            cb = b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=T)
            if i == 0:
                check(cb["addr"].startswith(lab.wan[0] + ":"),
                      "%s: the peer's connection comes from the router's public address (%s)"
                      % (what, cb["addr"]), a, b)
                ct = lab.lab.run(lab.lans[0].router, "cat", "/proc/net/nf_conntrack")
                check(any("src=%s" % lab.lans[0].host_ips[0] in line and
                          "src=%s" % lab.lans[0].host_ips[1] in line for line in ct.splitlines()),
                      "%s: the router holds a hairpinned flow between the two hosts" % what)
            exchange(a, b, "%s: hello" % what)
            exchange(b, a, "%s: back" % what)
            rows.append((what, ra["via"], ra["elapsed_ms"]))
        iso = lab.lab.run(lab.lans[0].hosts[1], "nft", "list", "table", "ip", "isolate")
        check(any(int(x) > 0 for x in re.findall(r"packets (\d+)", iso)),
              "the LAN path was tried and blocked by the hosts' filters")
        nft = lab.lab.run(lab.lans[1].router, "nft", "list", "counter", "ip", "natlab",
                          "no_hairpin")
        check("packets 0 " not in nft, "hairpin off: the router refused LAN packets to its"
              " public address (no_hairpin counter moved)")
        for what, via, ms in rows:
            log("  %-12s %-10s %5d ms" % (what, via, ms))
        quit_all(nodes)
        nodes = []
    finally:
        for n in nodes:
            n.kill()
        lab.close()


if __name__ == "__main__":
    run(main)
