#!/usr/bin/env python3
"""Peer exchange across two LANs: a node learns of nodes its beacon cannot
reach from the peers it is connected to, and connects to them.

Topology (netlab.py; removed at the end, also on failure):
    LAN 1 (bridge sw1): A 198.18.2.11, B 198.18.2.1
    LAN 2 (bridge sw2): B 198.18.3.1,  C 198.18.3.13
    B forwards between the LANs (a router that is also a crust node), so A
    can reach C, but the beacon (link-local, TTL 255) never crosses B.

Every node runs as the CLI does by default (beacon, bootstrap, peer
exchange), no contacts, no cache. Checks:
  - A and B, and B and C, find each other by beacon and connect;
  - A and C never discover each other by beacon; they learn of each other
    from B (peer_discovered "via":"peer_exchange", with the real endpoint;
    whichever dials first, the other may never report its find) and connect
    directly: each sees the other's own address (B only routes packets).
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, log, quit_all, run  # noqa: E402
from netlab import Lab  # noqa: E402

T = 40.0   # generous bound for each wait; nothing is timed


def main():
    lab = Lab("pex")
    nodes = []
    tmp = tempfile.mkdtemp(prefix="crust-pex-")
    try:
        sw1, sw2 = lab.switch("sw1"), lab.switch("sw2")
        a_ns, b_ns, c_ns = lab.host("a"), lab.router("b"), lab.host("c")
        lab.plug(a_ns, sw1, "198.18.2.11/24")
        lab.plug(b_ns, sw1, "198.18.2.1/24", ifname="eth0")
        lab.plug(b_ns, sw2, "198.18.3.1/24", ifname="eth1")
        lab.plug(c_ns, sw2, "198.18.3.13/24")
        lab.route(a_ns, "default", "198.18.2.1")
        lab.route(c_ns, "default", "198.18.3.1")

        # A asks a random peer every 1.5 s, so it hears of C soon after B
        # does, whichever of A and B dialed first (the default is a minute)
        cfg = os.path.join(tmp, "a.json")
        with open(cfg, "w") as f:
            json.dump({"pex_interval_ms": 1500}, f)
        opts = ["--no-cache"]
        a = CrustNode("A", netns=a_ns, bind="0.0.0.0", isolated=False,
                      args=opts + ["--config", cfg])
        b = CrustNode("B", netns=b_ns, bind="0.0.0.0", isolated=False, args=opts)
        c = CrustNode("C", netns=c_ns, bind="0.0.0.0", isolated=False, args=opts)
        nodes = [a, b, c]

        for x, y in ((a, b), (b, a), (b, c), (c, b)):
            x.wait_for("new_connection", lambda e, y=y: e["peer"] == y.peer, timeout=T)
        log("ok: A-B and B-C connected by beacon")

        # A and C each learn of the other from B; whichever dials first wins
        # (the other then has its connection and may never report the find)
        a.wait_for("new_connection", lambda e: e["peer"] == c.peer, timeout=T)
        c.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=T)
        log("ok: A and C connected")

        def found(x, y):
            return [e for e in x.events if e.get("event") == "peer_discovered"
                    and e["peer"] == y.peer and e.get("via") == "peer_exchange"]
        by_pex = found(a, c) + found(c, a)
        check(by_pex, "A or C learned the other from B by peer exchange", a, c)
        want = {a.peer: "198.18.2.11:%d" % a.port, c.peer: "198.18.3.13:%d" % c.port}
        check(all(e["addr"] == want[e["peer"]] for e in by_pex),
              "the endpoints B handed out are the real ones (%r)"
              % [(e["peer"][:8], e["addr"]) for e in by_pex], a, c)
        ea = [e for e in a.events if e.get("event") == "new_connection" and e["peer"] == c.peer]
        ec = [e for e in c.events if e.get("event") == "new_connection" and e["peer"] == a.peer]
        check(ea[0]["addr"].startswith("198.18.3.13:") and ec[0]["addr"].startswith("198.18.2.11:"),
              "A and C see each other's own addresses, routed by B, not relayed (%s, %s)"
              % (ea[0]["addr"], ec[0]["addr"]), a, c)
        by_beacon = [e for e in a.events if e.get("event") == "peer_discovered"
                     and e["peer"] == c.peer and e.get("via") == "beacon"]
        by_beacon += [e for e in c.events if e.get("event") == "peer_discovered"
                      and e["peer"] == a.peer and e.get("via") == "beacon"]
        check(not by_beacon, "A and C never discovered each other by beacon (%r)" % by_beacon, a)
        check(set(a.peers()) == {b.peer, c.peer}, "A's peers are B and C", a)

        quit_all(nodes)
        nodes = []
    finally:
        for n in nodes:
            n.kill()
        lab.close()


if __name__ == "__main__":
    run(main)
