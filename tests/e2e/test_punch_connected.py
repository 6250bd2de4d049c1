#!/usr/bin/env python3
"""A punch whose peer gets connected another way ends at once, well, on both sides.

On loopback: a `crust coordinator` (stopped by PID, also on failure) and two
nodes registered with it, both with every punch method and the relay turned
off (--no-tcp-punch --no-udp-punch --no-relay), so a punch on its own can
only fail. A asks to punch B, and before the coordinator's answer starts the
round (its 300 ms lead) A dials B directly. The punch must end with ok and
via "direct" on A (the peer came up while it was asked) and on B (the
coordinator's punch arrives for a peer it already has), not "hole punching
failed" seconds later. Then a punch asked while already connected is
refused at once with -EISCONN (the API's answer, printed by the CLI).
"""
import json
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, crust_binary, free_port, log, run  # noqa: E402

T = 20.0
OFF = ["--no-tcp-punch", "--no-udp-punch", "--no-relay", "--punch-timeout-ms", "3000"]


def main():
    port = free_port()
    err = tempfile.NamedTemporaryFile(prefix="crust-coord-", suffix=".log", delete=False)
    coord = subprocess.Popen([crust_binary(), "coordinator", "--listen", "127.0.0.1:%d" % port],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                             text=True)
    nodes = []
    try:
        ev = json.loads(coord.stdout.readline() or "{}")
        check(ev.get("event") == "coordinator_started", "the coordinator is up (%r)" % ev)
        for name in ("A", "B"):
            n = CrustNode(name, args=["--coordinator", "127.0.0.1:%d" % port] + OFF)
            n.wait_for("external_endpoint", lambda e: e["transport"] == "tcp", timeout=T)
            nodes.append(n)
        a, b = nodes
        a.send_command("punch %s" % b.peer)
        a.connect(b.port)
        ra = a.wait_for("punch_result", lambda e: e["peer"] == b.peer, timeout=T)
        rb = b.wait_for("punch_result", lambda e: e["peer"] == a.peer, timeout=T)
        check(ra["ok"] and ra["via"] == "direct",
              "A's punch ends well once B is connected another way (%r)" % ra, a)
        check(rb["ok"] and rb["via"] == "direct",
              "B's side of the punch ends well too: it had A already (%r)" % rb, b)
        log("punch ended after %s ms on A, %s ms on B" % (ra["elapsed_ms"], rb["elapsed_ms"]))
        a.wait_for("new_connection", lambda e: e["peer"] == b.peer, timeout=T)
        check(not a.pending("lost_connection") and not b.pending("lost_connection"),
              "one connection, kept")
        a.send_command("punch %s" % b.peer)
        e = a.wait_for("error", timeout=T)
        check("connected" in json.dumps(e).lower() or "EISCONN" in json.dumps(e),
              "a punch to a connected peer is refused at once (%r)" % e, a)
        for n in nodes:
            n.quit()
    finally:
        for n in nodes:
            n.kill()
        coord.send_signal(signal.SIGTERM)
        try:
            coord.wait(timeout=10)
        except subprocess.TimeoutExpired:
            coord.kill()
            coord.wait()
        os.unlink(err.name)


if __name__ == "__main__":
    run(main)
