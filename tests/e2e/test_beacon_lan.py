#!/usr/bin/env python3
"""LAN beacon discovery between real `crust node` processes in namespaces.

Topology (netlab.py; removed at the end, also on failure):
    h1..h5  198.18.0.11-15/24 on one LAN (bridge br0 in namespace sw)
    r       198.18.0.1 on the LAN, 198.18.1.1 on a second subnet
    far     198.18.1.10/24 behind r (routed, no NAT)

Checks:
  - five nodes (h1..h5, beacon on, nothing else to go on: no --connect)
    each report peer_discovered for the four others, at the other's IP and
    TCP port, and every node ends up connected to every other;
  - the node in far, running its beacon all along, is discovered by nobody
    and discovers nobody, although it can reach the LAN (it connects to h1
    when told to: routing works, only the beacon stops at the router);
  - a correctly signed announcement sent by unicast from far (TTL 255 when
    it leaves, 254 after the router) is dropped as off-link by h1, and its
    identity is never reported;
  - IPv6: two more nodes on h1 and h2 bound to "::" find each other by
    link-local multicast (peer_discovered at an fe80:: address) and connect.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, log, run  # noqa: E402
from netlab import Lab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# discovery by the beacon alone: no peer exchange, no cache (the bootstrap, which dials what
# the beacon finds, stays on as in the CLI's default)
BEACON_ONLY = ["--no-pex", "--no-cache"]
N = 5
T = 30.0   # generous: the machine is shared and noisy; no timing is asserted


def build(lab):
    sw = lab.switch("sw")
    hosts = []
    for i in range(N):
        h = lab.host("h%d" % (i + 1))
        lab.plug(h, sw, "198.18.0.%d/24" % (11 + i))
        lab.route(h, "198.18.1.0/24", "198.18.0.1")
        hosts.append(h)
    r = lab.router("r")
    lab.plug(r, sw, "198.18.0.1/24")
    far = lab.host("far")
    lab.link(r, "eth1", "198.18.1.1/24", far, "eth0", "198.18.1.10/24")
    lab.route(far, "default", "198.18.1.1")
    return hosts, far


def discovered(node, peer):
    return [e for e in node.events if e.get("event") == "peer_discovered" and e["peer"] == peer]


def check_mesh(nodes):
    for a in nodes:
        for b in nodes:
            if a is b:
                continue
            a.wait_for("new_connection", lambda ev, b=b: ev["peer"] == b.peer, timeout=T)
    log("every node reported new_connection for every other")
    for a in nodes:
        for b in nodes:
            if a is b:
                continue
            # the connection may come first (the other side dialed on hearing us)
            ev = a.wait_for("peer_discovered", lambda e, b=b: e["peer"] == b.peer, timeout=T)
            want = "%s:%d" % (b.ip, b.port)
            check(ev["addr"] == want and ev["transport"] == "tcp" and ev["via"] == "beacon",
                  "%s discovered %s by beacon at %s (%s)" % (a.name, b.name, want, ev["addr"]),
                  a)
        got = set(a.peers())
        check(got == {b.peer for b in nodes if b is not a},
              "%s is connected to the %d others" % (a.name, len(nodes) - 1), a)


def check_far(lab, far_ns, far, nodes):
    # far's own burst is over (3 queries + 1 announcement) before we judge silence
    deadline = time.monotonic() + T
    while far.stats()["beacon_sent"] < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    check(far.stats()["beacon_sent"] >= 4, "far has been announcing", far)
    for n in nodes:
        check(not discovered(n, far.peer), "%s did not discover the routed node" % n.name, n)
    fs = far.stats()
    check(not far.pending("peer_discovered") and fs["beacon_accepted"] == 0,
          "the routed node discovered nobody (accepted %d)" % fs["beacon_accepted"], far)

    # routing works: only the beacon stops at the router
    far.send_command("connect 198.18.0.11:%d" % nodes[0].port)
    far.wait_for("new_connection", lambda ev: ev["peer"] == nodes[0].peer, timeout=T)
    log("ok: far reaches h1 through the router when told to")

    # a valid announcement sent across the router arrives with TTL 254: off-link
    h1 = nodes[0]
    before = h1.stats()["beacon_off_link"]
    out = lab.run(far_ns, sys.executable, os.path.join(HERE, "beaconwire.py"), "send",
                  "198.18.0.11", "5483", "255", "")
    forged = json.loads(out.strip().splitlines()[-1])["peer"]
    deadline = time.monotonic() + T
    while h1.stats()["beacon_off_link"] == before and time.monotonic() < deadline:
        time.sleep(0.2)
    check(h1.stats()["beacon_off_link"] > before,
          "h1 dropped the routed announcement as off-link (TTL 254)", h1)
    time.sleep(0.5)
    check(not discovered(h1, forged), "the off-link sender was not reported", h1)


def check_ipv6(hosts):
    a = CrustNode("h1v6", netns=hosts[0], bind="::", isolated=False, args=BEACON_ONLY)
    b = CrustNode("h2v6", netns=hosts[1], bind="::", isolated=False, args=BEACON_ONLY)
    for x, y in ((a, b), (b, a)):
        ev = x.wait_for("peer_discovered", lambda e, y=y: e["peer"] == y.peer, timeout=T)
        check(ev["addr"].startswith("[fe80:") and ev["addr"].endswith("]:%d" % y.port),
              "%s discovered %s over IPv6 link-local (%s)" % (x.name, y.name, ev["addr"]), x)
        x.wait_for("new_connection", lambda e, y=y: e["peer"] == y.peer, timeout=T)
    log("ok: the IPv6 nodes connected")
    return [a, b]


def main():
    lab = Lab("beacon")
    nodes = []
    try:
        hosts, far_ns = build(lab)
        for i, h in enumerate(hosts):
            n = CrustNode("h%d" % (i + 1), netns=h, bind="0.0.0.0", isolated=False, args=BEACON_ONLY)
            n.ip = "198.18.0.%d" % (11 + i)
            nodes.append(n)
        far = CrustNode("far", netns=far_ns, bind="0.0.0.0", isolated=False, args=BEACON_ONLY)
        nodes_all = nodes + [far]
        check_mesh(nodes)
        check_far(lab, far_ns, far, nodes)
        nodes_all += check_ipv6(hosts)
        for n in nodes_all:
            check(n.alive(), "%s still running" % n.name, n)
        for n in nodes_all:
            check(n.quit() == 0, "%s exits 0 on quit" % n.name, n)
    finally:
        for n in list(nodes):
            n.kill()
        lab.close()


if __name__ == "__main__":
    run(main)
