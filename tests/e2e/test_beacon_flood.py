#!/usr/bin/env python3
"""A bounded flood of bad beacons at a node on a namespace LAN.

Topology (netlab.py; removed at the end, also on failure): one LAN,
198.18.0.0/24 on bridge br0: A (target) 198.18.0.11, B 198.18.0.12, and the
flooder F 198.18.0.50, a Python process (beaconwire.py flood) in its own
namespace.

F sends, unicast to A's beacon port, shuffled and bounded (about 3100
datagrams): oversized (up to 60000 bytes), truncated, wrong magic,
correctly signed ones of another network, correctly signed ones with a
timestamp an hour old, correctly signed ones sent with TTL 64 (off-link),
and 1500 well-formed forgeries (random peer ids, random signatures). Then,
for a bounded window, F sends correctly signed queries from two identities
at 50/s each and counts the answers A multicasts.

A must:
  - stay up, stay connected to B (found by beacon before the flood) and
    exchange a message with it afterwards;
  - count every kind of bad datagram under its own reason (crust_stats
    beacon_*), none reaching a signature check but the forgeries, and most
    forgeries not even that (the per-source rate limit);
  - report none of the flood's identities as discovered;
  - answer at most once per second: answers seen by F <= window seconds + 2
    (a count over a bounded window, not a timing), and at least once.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, log, run  # noqa: E402
from netlab import Lab  # noqa: E402
import beaconwire as bw  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# discovery by the beacon alone: no peer exchange, no cache (the bootstrap, which dials what
# the beacon finds, stays on as in the CLI's default)
BEACON_ONLY = ["--no-pex", "--no-cache"]
T = 30.0
WINDOW_S = 4


def main():
    lab = Lab("bflood")
    nodes = []
    try:
        sw = lab.switch("sw")
        ha, hb, hf = lab.host("a"), lab.host("b"), lab.host("f")
        lab.plug(ha, sw, "198.18.0.11/24")
        lab.plug(hb, sw, "198.18.0.12/24")
        lab.plug(hf, sw, "198.18.0.50/24")
        a = CrustNode("A", netns=ha, bind="0.0.0.0", isolated=False, args=BEACON_ONLY)
        nodes.append(a)
        b = CrustNode("B", netns=hb, bind="0.0.0.0", isolated=False, args=BEACON_ONLY)
        nodes.append(b)
        a.wait_for("new_connection", lambda e: e["peer"] == b.peer, timeout=T)
        b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=T)
        log("ok: A and B found each other by beacon and connected")
        before = a.stats()

        env = dict(os.environ, TARGET=a.peer)
        cmd = ["ip", "netns", "exec", hf, sys.executable, os.path.join(HERE, "beaconwire.py"),
               "flood", "198.18.0.11", str(bw.PORT), "", str(WINDOW_S)]
        log("flooder: " + " ".join(cmd))
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=120)
        check(r.returncode == 0, "the flooder ran (exit %d)" % r.returncode)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        log("flooder: %s" % json.dumps(res))
        junk = res["junk"]

        check(a.alive(), "A survived the flood", a)
        s = a.stats()
        d = {k: s[k] - before[k] for k in s if k.startswith("beacon_")}
        log("A's beacon counters during the flood: %s" % json.dumps(d))
        for key, kinds in (("beacon_oversized", ["oversized"]),
                           ("beacon_malformed", ["truncated", "bad_magic"]),
                           ("beacon_other_network", ["other_network"]),
                           ("beacon_off_link", ["off_link"])):
            sent = sum(junk[k] for k in kinds)
            check(1 <= d[key] <= sent, "%s: %d of %d counted as such" % (key, d[key], sent), a)
        check(d["beacon_stale"] >= 1, "stale timestamps counted (%d)" % d["beacon_stale"], a)
        check(d["beacon_rate_limited"] >= 1,
              "the per-source limit held back forgeries (%d)" % d["beacon_rate_limited"], a)
        check(1 <= d["beacon_bad_signature"] <= junk["forged"] // 2,
              "only %d of %d forgeries cost a signature check (rate limit first)"
              % (d["beacon_bad_signature"], junk["forged"]), a)
        check(d["beacon_sig_checks"] == d["beacon_accepted"] + d["beacon_bad_signature"],
              "signature checks = accepted + bad signatures: no junk of another kind "
              "reached one", a)
        check(d["beacon_accepted"] <= res["queries"] + 50,
              "accepted only the valid queries and B's beacons (%d)" % d["beacon_accepted"], a)

        flood_ids = set(res["identities"])
        reported = [e["peer"] for e in a.events if e.get("event") == "peer_discovered"]
        check(set(reported) <= flood_ids | {b.peer},
              "A reported no identity from the junk (only B and the valid queriers)", a)

        bound = int(res["window_s"]) + 2
        check(1 <= res["answers"] <= bound,
              "A answered %d times in %.1f s of %d queries: at most once per second"
              % (res["answers"], res["window_s"], res["queries"]), a)

        check(b.peer in a.peers(), "A is still connected to B", a)
        exchange(a, b, "still here after the flood")
        exchange(b, a, "and back")
        for n in nodes:
            check(n.quit() == 0, "%s exits 0 on quit" % n.name, n)
    finally:
        for n in nodes:
            n.kill()
        lab.close()


if __name__ == "__main__":
    run(main)
