#!/usr/bin/env python3
"""A peer dies by SIGKILL: node A with peers B and C; SIGKILL B. A reports
lost_connection for B (with a reason), keeps working with C, does not
crash, and later accepts a new node in B's place. Done twice: once with B
idle, once with B killed while A is sending to it."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, connect_pair, exchange, log, run  # noqa: E402


def round_(a, c, b_name, busy):
    log("--- SIGKILL %s (%s)" % (b_name, "A sending to it" if busy else "idle"))
    b = CrustNode(b_name)
    connect_pair(a, b)           # B dials A
    exchange(a, b, "hello " + b_name)
    exchange(b, a, "hello A from " + b_name)
    check(sorted(a.peers()) == sorted([b.peer, c.peer]), "A has peers B and C", a)

    if busy:
        # queue a good amount towards B so the kill lands mid-traffic
        for i in range(200):
            a.send(b.peer, ("payload %d " % i) * 200)
        b.wait_for("new_message", lambda e: e["peer"] == a.peer)
    b_pid = b.pid
    rc = b.kill()
    check(rc == -9, "%s (pid %d) died of SIGKILL (status %s)" % (b_name, b_pid, rc))

    lost = a.wait_for("lost_connection", lambda e: e["peer"] == b.peer)
    log("A's lost_connection: %r" % lost)
    check(isinstance(lost.get("reason"), str) and lost["reason"].strip() != "",
          "A's lost_connection for %s has a reason (%r)" % (b_name, lost.get("reason")), a)
    check(lost["addr"].startswith("127.0.0.1:"), "lost_connection names B's address", a)
    check(isinstance(lost.get("unsent_msgs"), int) and isinstance(lost.get("unsent_bytes"), int),
          "lost_connection reports unsent counts (%s msgs, %s bytes)"
          % (lost.get("unsent_msgs"), lost.get("unsent_bytes")), a)
    check(a.alive(), "A is still running", a)
    check(a.peers() == [c.peer], "A's peers is just C now", a)

    # sending to the dead peer is an error event, not a crash
    a.send(b.peer, "are you there")
    ev = a.wait_for(None, lambda e: e["event"] in ("error", "send_failed")
                    and (e.get("command") == "send" or e.get("peer") == b.peer))
    check(True, "sending to the dead peer is refused (%s: %s)" % (ev["event"], ev.get("reason")))

    # A and C still talk, both ways
    for i in range(5):
        exchange(a, c, "to C after %s died #%d" % (b_name, i))
        exchange(c, a, "to A after %s died #%d" % (b_name, i))
    check(not c.pending("lost_connection"), "C lost nothing", c)
    check(a.alive() and c.alive(), "A and C are alive", a, c)


def main():
    a = CrustNode("A", shards=2)
    c = CrustNode("C")
    a.connect(c.port)            # A dials C (B will dial A)
    a.wait_for("new_connection", lambda e: e["peer"] == c.peer)
    c.wait_for("new_connection", lambda e: e["peer"] == a.peer)
    exchange(a, c, "hi C")
    exchange(c, a, "hi A")

    round_(a, c, "B1", busy=False)
    round_(a, c, "B2", busy=True)

    # a new node takes B's place
    d = CrustNode("D")
    connect_pair(a, d)
    exchange(d, a, "new here")
    exchange(a, d, "welcome")
    check(sorted(a.peers()) == sorted([c.peer, d.peer]), "A has peers C and D", a)

    check(d.quit() == 0, "D quits with status 0", d)
    check(c.quit() == 0, "C quits with status 0", c)
    rc = a.quit()
    check(rc == 0, "A quits with status 0 (no crash; got %s)" % rc, a)


if __name__ == "__main__":
    run(main)
