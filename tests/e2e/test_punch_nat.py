#!/usr/bin/env python3
"""Hole punching and relay through NATs (punchlab.py: two LANs behind
routers, a coordinator on the public segment; removed at the end).

  1. port-restricted cone <-> port-restricted cone: both nodes register,
     learn their external TCP endpoint (the router's WAN address with the
     node's port: the session leaves from the listener port), and `punch`
     connects them by TCP simultaneous open: punch_result and new_connection
     say "tcp-punch" on both sides; messages flow both ways.
  2. a rendezvous for a peer id nobody registered: a clear punch_result error.
  3. symmetric <-> symmetric: punching cannot work (each NAT maps the punch to
     a new port), so the nodes fall back to the coordinator's relay: "relay"
     on both sides, messages both ways, through an end-to-end crust session.
Elapsed times are printed (docs/BENCHMARKS.md), never asserted.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, log, run  # noqa: E402
from punchlab import COORD_IP, PunchLab  # noqa: E402

T = 30.0


def pair(lab, coord_port, tag):
    a = CrustNode("A" + tag, netns=lab.hosts[0], bind="0.0.0.0",
                  args=["--coordinator", "%s:%d" % (COORD_IP, coord_port)])
    b = CrustNode("B" + tag, netns=lab.hosts[1], bind="0.0.0.0",
                  args=["--coordinator", "%s:%d" % (COORD_IP, coord_port)])
    for n, wan in ((a, lab.wan[0]), (b, lab.wan[1])):
        ev = n.wait_for("external_endpoint", lambda e: e["transport"] == "tcp", timeout=T)
        check(ev["addr"].startswith(wan + ":"),
              "%s's external TCP endpoint is its router's WAN address (%s)" % (n.name, ev["addr"]),
              n)
    return a, b


def punch(a, b, want):
    a.send_command("punch %s" % b.peer)
    ra = a.wait_for("punch_result", lambda e: e["peer"] == b.peer, timeout=T)
    rb = b.wait_for("punch_result", lambda e: e["peer"] == a.peer, timeout=T)
    check(ra["ok"] and rb["ok"], "punch succeeded on both sides (%r / %r)" % (ra, rb), a, b)
    check(ra["via"] == want and rb["via"] == want,
          "the method is %s on both sides (%s / %s)" % (want, ra["via"], rb["via"]), a, b)
    ca = a.wait_for("new_connection", lambda e: e["peer"] == b.peer, timeout=T)
    cb = b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=T)
    check(ca["via"] == want and cb["via"] == want, "new_connection via %s" % want, a, b)
    exchange(a, b, "hello through the NATs")
    exchange(b, a, "and back")
    log("ok: %s in %d ms (A) / %d ms (B)" % (want, ra["elapsed_ms"], rb["elapsed_ms"]))
    return ra


def main():
    nodes = []
    lab = PunchLab("punch", ["cone", "cone"])
    try:
        coord, coord_id = lab.start_coordinator(3478)
        a, b = pair(lab, 3478, "1")
        nodes += [a, b]
        ea = a.wait_for("external_endpoint", lambda e: e["transport"] == "rudp", timeout=T)
        check(ea["addr"].startswith(lab.wan[0] + ":"),
              "STUN through the cone NAT gives the WAN address (%s)" % ea["addr"], a)
        punch(a, b, "tcp-punch")

        a.send_command("punch %s" % ("ab" * 32))
        ev = a.wait_for("punch_result", lambda e: e["peer"] == "ab" * 32, timeout=T)
        check(not ev["ok"] and "unknown peer" in ev["reason"],
              "a rendezvous for an unregistered id fails clearly (%s)" % ev["reason"], a)
        a.send_command("punch %s" % b.peer)
        ev = a.wait_for("error", lambda e: e["command"] == "punch", timeout=T)
        check("already connected" in ev["reason"], "punching a connected peer: %s" % ev["reason"], a)
        stats = lab.coordinator_stats(coord)
        check(stats["rendezvous"] >= 1 and stats["rendezvous_unknown"] >= 1 and
              stats["registered_now"] == 2, "coordinator counted it all (%r)" % stats)
        for n in nodes:
            check(n.quit() == 0, "%s quits with status 0" % n.name, n)
        nodes = []
    finally:
        for n in nodes:
            n.kill()
        lab.close()

    lab = PunchLab("relay", ["sym", "sym"])
    try:
        coord, _ = lab.start_coordinator(3478)
        a, b = pair(lab, 3478, "2")
        nodes += [a, b]
        punch(a, b, "relay")
        stats = lab.coordinator_stats(coord)
        check(stats["relay_pairs"] == 1 and stats["relay_bytes"] > 0,
              "the coordinator relayed one pair (%r)" % stats)
        for n in nodes:
            check(n.quit() == 0, "%s quits with status 0" % n.name, n)
        nodes = []
    finally:
        for n in nodes:
            n.kill()
        lab.close()


if __name__ == "__main__":
    run(main)
