#!/usr/bin/env python3
"""Hole punching and relay through NATs of every kind that decides the
method (natlab.py via punchlab.py: six LANs behind NAT routers and a
coordinator on the public segment; everything removed at the end, daemons
stopped by PID also on failure).

Every node registers with the coordinator and learns its external TCP
endpoint (its router's WAN address: the session leaves from the listener
port) and its external UDP endpoint (STUN through the reliable-UDP
listener's socket). Then pairs punch (`punch PEER`), and both sides must
report the same method in punch_result and new_connection, and exchange
messages both ways:

    port-restricted <-> port-restricted   a punch (TCP simultaneous open or UDP)
    full cone       <-> address-restricted a punch
    full cone       <-> symmetric          udp-punch when TCP between them is
                                           filtered (the symmetric router drops it):
                                           the cone side answers the source it
                                           actually saw, not the STUN-learned one
                                           (or birthday punching, "predicted", when
                                           that takes over 300 ms)
    address-restr.  <-> symmetric          the same
    full cone       <-> symmetric          a punch (TCP too: the full cone router
                                           forwards the SYN from the new mapping)
    port-restricted <-> symmetric          predicted by birthday punching (99.97 %,
                                           test_punch_birthday.py), else the relay
    symmetric       <-> symmetric          relay
    port-restricted with RST routers       a punch despite ECONNREFUSED retries
    two hosts behind one port-restricted NAT  direct, over their LAN addresses
    port-restricted <-> symmetric predictable  predicted: the symmetric side registered
                                           its mappings toward both coordinator
                                           addresses, the other side probes the next
                                           ports in that sequence

Then the NAT binding expiry: on routers whose UDP conntrack and mapping
timeouts are 5 s, a udp-punched connection left idle for 15 s still carries
messages both ways (1 s keepalives keep the binding open).

A rendezvous for an id nobody registered fails with a clear reason, and
punching a connected peer is refused. The method matrix and the elapsed
times are printed (docs/BENCHMARKS.md), never asserted.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, log, quit_all, run  # noqa: E402
from punchlab import COORD_IP, PunchLab  # noqa: E402

T = 30.0
PUNCHED = ("tcp-punch", "udp-punch")
# a cone <-> symmetric punch not through 300 ms after the start (a loaded machine)
# also starts birthday punching, which may then win
CONE_SYM = ("udp-punch", "predicted")
KINDS = ["port", "port", "full", "addr", "sym", "sym", "port-rst", "port-rst"]
# LANs 8 and 9: UDP conntrack and mapping timeouts of 5 s on their routers; LAN 10: two hosts
SHORT = {"udp_timeout": 5, "udp_stream_timeout": 5}
KINDS += [("full", SHORT), ("sym", SHORT), ("port", {"hosts": 2}), "sympred"]
# (lan a, lan b, methods that may win, TCP between them filtered)
PAIRS = [
    (0, 1, PUNCHED, False),
    (2, 3, PUNCHED, False),
    (2, 4, CONE_SYM, True),
    (3, 5, CONE_SYM, True),
    (8, 9, CONE_SYM, True),
    (0, 4, ("predicted", "relay"), False),
    (4, 5, ("relay",), False),
    (6, 7, PUNCHED, False),
    (1, 11, ("predicted",), False),
]


def filter_tcp(lab, i, j):
    """LAN i's router drops TCP to and from LAN j's router (a UDP-only path between them)."""
    for a, b in ((i, j), (j, i)):
        r = lab.lans[a].router
        lab.lab.run(r, "nft", "insert", "rule", "ip", "natlab", "forward", "ip", "daddr",
                    lab.wan[b], "meta", "l4proto", "tcp", "drop")


def kind(i):
    return KINDS[i][0] if isinstance(KINDS[i], tuple) else KINDS[i]


def start_node(lab, i, host=None, extra=()):
    n = CrustNode("%s%d%s" % (kind(i), i, "b" if host else ""), netns=host or lab.hosts[i],
                  bind="0.0.0.0", args=["--coordinator", "%s:3478" % COORD_IP,
                                        "--punch-timeout-ms", "3000"] + list(extra))
    for transport in ("tcp", "rudp"):
        ev = n.wait_for("external_endpoint", lambda e, t=transport: e["transport"] == t,
                        timeout=T)
        check(ev["addr"].startswith(lab.wan[i] + ":"),
              "%s's external %s endpoint is its router's WAN address (%s)" %
              (n.name, transport, ev["addr"]), n)
    return n


def punch(a, b, want):
    a.send_command("punch %s" % b.peer)
    ra = a.wait_for("punch_result", lambda e: e["peer"] == b.peer, timeout=T)
    rb = b.wait_for("punch_result", lambda e: e["peer"] == a.peer, timeout=T)
    check(ra["ok"] and rb["ok"], "punch %s -> %s succeeded on both sides (%r / %r)" %
          (a.name, b.name, ra, rb), a, b)
    check(ra["via"] == rb["via"] and ra["via"] in want,
          "%s <-> %s: the method is one of %s on both sides (%s / %s)" %
          (a.name, b.name, "/".join(want), ra["via"], rb["via"]), a, b)
    ca = a.wait_for("new_connection", lambda e: e["peer"] == b.peer, timeout=T)
    cb = b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=T)
    check(ca["via"] == ra["via"] and cb["via"] == rb["via"], "new_connection says the same", a, b)
    exchange(a, b, "hello through the NATs")
    exchange(b, a, "and back")
    return ra


def main():
    nodes = []
    lab = PunchLab("punch", KINDS)
    try:
        coord, _ = lab.start_coordinator(3478)
        # the short-timeout pair keeps its idle connection alive with 1 s keepalives
        nodes = [start_node(lab, i, extra=["--keepalive-ms", "1000"] if i in (8, 9) else [])
                 for i in range(len(KINDS))]
        rows = []
        for i, j, want, no_tcp in PAIRS:
            if no_tcp:
                filter_tcp(lab, i, j)
            r = punch(nodes[i], nodes[j], want)
            rows.append((kind(i), kind(j), r["via"], r["elapsed_ms"], r["transport"]))

        # two hosts behind one NAT (no hairpinning): they meet over their LAN addresses
        twin = start_node(lab, 10, host=lab.lans[10].hosts[1])
        nodes.append(twin)
        r = punch(nodes[10], twin, ("direct",))
        rows.append(("port", "same NAT", r["via"], r["elapsed_ms"], r["transport"]))

        # NAT binding expiry: idle three times the routers' 5 s UDP timeout, the
        # udp-punched pair 8-9 still talks, kept open by keepalives
        a, b = nodes[8], nodes[9]
        time.sleep(15)
        # the binding itself is still there (without keepalives it is gone by now, and
        # only a later reliable-UDP keepalive from a new mapping would recover the path)
        ct = lab.lab.run(lab.lans[9].router, "cat", "/proc/net/nf_conntrack")
        check(any(" udp " in line and "dst=%s " % lab.wan[8] in line for line in ct.splitlines()),
              "the symmetric router still maps the punched UDP flow after 15 s idle")
        exchange(a, b, "after 15 s idle")
        exchange(b, a, "still here")
        check(not a.pending("lost_connection") and not b.pending("lost_connection"),
              "the idle udp-punched connection was never lost", a, b)
        a = nodes[0]
        a.send_command("punch %s" % ("ab" * 32))
        ev = a.wait_for("punch_result", lambda e: e["peer"] == "ab" * 32, timeout=T)
        check(not ev["ok"] and "unknown peer" in ev["reason"],
              "a rendezvous for an unregistered id fails clearly (%s)" % ev["reason"], a)
        a.send_command("punch %s" % nodes[1].peer)
        ev = a.wait_for("error", lambda e: e["command"] == "punch", timeout=T)
        check("already connected" in ev["reason"], "punching a connected peer: %s" % ev["reason"], a)
        stats = lab.coordinator_stats(coord)
        check(stats["rendezvous"] == len(PAIRS) + 1 and stats["rendezvous_unknown"] == 1 and
              stats["registered_now"] == len(KINDS) + 1 and stats["relay_pairs"] == sum(r[2] == "relay" for r in rows),
              "the coordinator counted it all (%r)" % stats)
        log("method matrix (elapsed from the punch command to the connection):")
        for a_kind, b_kind, via, ms, _ in rows:  # noqa: B007
            log("  %-9s <-> %-9s %-10s %5d ms" % (a_kind, b_kind, via, ms))
        quit_all(nodes)
        nodes = []
        check(lab.stop(coord) == 0, "the coordinator exits with status 0 on SIGTERM")
    finally:
        for n in nodes:
            n.kill()
        lab.close()


if __name__ == "__main__":
    run(main)
