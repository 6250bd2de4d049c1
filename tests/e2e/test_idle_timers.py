#!/usr/bin/env python3
"""Timers after an idle spell: a node that has been idle for longer than
its handshake and frame timeouts must still accept and make connections,
and must not cut off a frame that arrives in two pieces a moment apart.

(Regression test: timers armed while handling completions used to count
from the time the shard went to sleep, so after an idle spell longer than
the timeout they fired at once: "no hello within the handshake timeout" on
a fresh connection, "stalled frame" on a frame split across two reads.)

The sleeps below only make the nodes idle; the checks are about what
happens, never about how fast.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import (CrustNode, check, exchange, frame, hello, log, msg_bytes,  # noqa: E402
                       recv_frame, run)

TIMEOUT_MS = 2000
IDLE = TIMEOUT_MS / 1000 + 1.5
OPTS = ["--handshake-timeout-ms", str(TIMEOUT_MS), "--frame-timeout-ms", str(TIMEOUT_MS)]


def expect_connected(dialer, listener, what):
    nodes = (dialer, listener)
    for me, other in (nodes, nodes[::-1]):
        ev = me.wait_for(None, lambda e: e["event"] in ("new_connection", "connect_failed",
                                                         "handshake_failed", "lost_connection"))
        check(ev["event"] == "new_connection" and ev.get("peer") == other.peer,
              "%s: %s sees new_connection with %s (got %s %s)"
              % (what, me.name, other.name, ev["event"], ev.get("reason", "")), dialer, listener)


def main():
    a = CrustNode("A", args=OPTS)
    b = CrustNode("B", args=OPTS)
    c = CrustNode("C", args=OPTS)

    # a raw peer completes its hello with A now, and stays quiet
    raw = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    recv_frame(raw)
    pid = os.urandom(32).hex()
    raw.sendall(frame(hello(bytes.fromhex(pid))))
    a.wait_for("new_connection", lambda e: e["peer"] == pid)

    log("all idle for %.1fs (timeouts are %d ms)" % (IDLE, TIMEOUT_MS))
    time.sleep(IDLE)
    b.connect(a.port)
    expect_connected(b, a, "incoming connection after idle")
    exchange(b, a, "after a nap")
    exchange(a, b, "good morning")

    log("all idle for %.1fs again" % IDLE)
    time.sleep(IDLE)
    f = frame(b"split frame " * 100)
    raw.sendall(f[:len(f) // 2])
    time.sleep(0.1)
    try:
        raw.sendall(f[len(f) // 2:])
    except OSError as e:
        check(False, "A kept the raw peer's connection while its frame was arriving (%s)" % e, a)
    ev = a.wait_for(None, lambda e: e.get("peer") == pid and e["event"] in ("new_message",
                                                                            "lost_connection"))
    check(ev["event"] == "new_message" and msg_bytes(ev) == b"split frame " * 100,
          "a frame in two pieces after idle arrives (got %s %s)" % (ev["event"], ev.get("reason", "")),
          a)

    log("all idle for %.1fs again" % IDLE)
    time.sleep(IDLE)
    a.connect(c.port)
    expect_connected(a, c, "outgoing connection after idle")
    exchange(a, c, "hello C")
    exchange(c, a, "hello A")

    raw.close()
    for n in (c, b, a):
        check(n.quit() == 0, "%s quits with status 0" % n.name, n)


if __name__ == "__main__":
    run(main)
