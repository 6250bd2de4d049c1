#!/usr/bin/env python3
"""Registered endpoints follow a listener rebind (rebind_interval_ms) behind
a NAT (natlab.py via punchlab.py: two port-restricted LANs and a
coordinator; everything removed at the end, daemons stopped by PID also on
failure).

Node A moves its listeners to new random ports every 5 s. Each move must
reach the coordinator: A asks STUN again from its new UDP socket and moves
its coordinator session to the new TCP port (the coordinator registers the
session's observed endpoint as A's public TCP endpoint), so A reports an
external TCP endpoint on the new port. Then B punches A with TCP only
(--no-udp-punch on both): a simultaneous open through two port-restricted
NATs works only toward A's current mapping, so `tcp-punch` (not the relay)
and B's connection to A's router at A's new port prove that the
coordinator handed out the fresh endpoint. Messages go both ways.
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, quit_all, run  # noqa: E402
from punchlab import COORD_IP, PunchLab  # noqa: E402

T = 30.0


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def main():
    lab = PunchLab("rebind", ["port", "port"])
    nodes = []
    cfg = tempfile.NamedTemporaryFile("w", prefix="crust-rebind-", suffix=".json", delete=False)
    json.dump({"rebind_interval_ms": 5000}, cfg)
    cfg.close()
    try:
        lab.start_coordinator(3478)
        common = ["--coordinator", "%s:3478" % COORD_IP, "--no-udp-punch",
                  "--punch-timeout-ms", "3000"]
        a = CrustNode("A", netns=lab.hosts[0], bind="0.0.0.0", args=common + ["--config", cfg.name])
        nodes.append(a)
        b = CrustNode("B", netns=lab.hosts[1], bind="0.0.0.0", args=common)
        nodes.append(b)
        first = a.wait_for("external_endpoint", lambda e: e["transport"] == "tcp", timeout=T)
        check(port_of(first["addr"]) == a.port, "A's first external TCP endpoint is on its"
              " listener's port (%s)" % first["addr"], a)
        b.wait_for("external_endpoint", lambda e: e["transport"] == "tcp", timeout=T)
        moved = a.wait_for("listener_started", lambda e: e["transport"] == "tcp" and
                           "moved" in e.get("reason", ""), timeout=T)
        new_port = moved["port"]
        check(new_port != a.port, "A's TCP listener moved (%d -> %d)" % (a.port, new_port), a)
        ext = a.wait_for("external_endpoint", lambda e: e["transport"] == "tcp" and
                         port_of(e["addr"]) == new_port, timeout=T)
        check(ext["addr"] == "%s:%d" % (lab.wan[0], new_port),
              "A re-registered: its external TCP endpoint is now %s" % ext["addr"], a)
        b.send_command("punch %s" % a.peer)
        rb = b.wait_for("punch_result", lambda e: e["peer"] == a.peer, timeout=T)
        ra = a.wait_for("punch_result", lambda e: e["peer"] == b.peer, timeout=T)
        check(rb["ok"] and ra["ok"] and rb["via"] == ra["via"] == "tcp-punch",
              "B punched A by TCP simultaneous open (%s / %s)" % (rb.get("via"), ra.get("via")),
              a, b)
        cb = b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=T)
        # A may have moved again since: its connection came from the port it had then
        check(cb["addr"].startswith(lab.wan[0] + ":") and port_of(cb["addr"]) != a.port,
              "B's connection reaches A's router at a moved port (%s), not the first (%d)" %
              (cb["addr"], a.port), a, b)
        exchange(a, b, "after the move")
        exchange(b, a, "and back")
        quit_all(nodes)
        nodes = []
    finally:
        for n in nodes:
            n.kill()
        lab.close()
        os.unlink(cfg.name)


if __name__ == "__main__":
    run(main)
