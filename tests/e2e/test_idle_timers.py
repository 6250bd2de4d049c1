#!/usr/bin/env python3
"""Timers after an idle spell: a node that has been idle for longer than
its handshake and frame timeouts must still accept and make connections,
and must not cut off a frame that arrives in two pieces a moment apart.

(Regression test: timers armed while handling completions used to count
from the time the shard went to sleep, so after an idle spell longer than
the timeout they fired at once: "handshake timeout" on a fresh connection,
"stalled frame" on a frame split across two reads.)

The raw peer is a Python crust peer (crustwire.py). The idle timeout is
raised to 60 s so that the raw peer, which only ever sends when told,
stays connected through the naps (A's keepalives to it are skipped).

The sleeps below only make the nodes idle; the checks are about what
happens, never about how fast.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crustwire as w  # noqa: E402
from crustnode import CrustNode, check, exchange, frame, log, msg_bytes, quit_all, run  # noqa: E402

TIMEOUT_MS = 2000
IDLE = TIMEOUT_MS / 1000 + 1.5
OPTS = ["--handshake-timeout-ms", str(TIMEOUT_MS), "--frame-timeout-ms", str(TIMEOUT_MS),
        "--idle-timeout-ms", "60000"]


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

    # a raw peer completes its handshake with A now, and stays quiet
    raw = w.connect("127.0.0.1", a.port)
    pid = raw.me
    a.wait_for("new_connection", lambda e: e["peer"] == pid)

    log("all idle for %.1fs (timeouts are %d ms)" % (IDLE, TIMEOUT_MS))
    time.sleep(IDLE)
    b.connect(a.port)
    expect_connected(b, a, "incoming connection after idle")
    exchange(b, a, "after a nap")
    exchange(a, b, "good morning")

    log("all idle for %.1fs again" % IDLE)
    time.sleep(IDLE)
    f = raw.sealed(b"split frame " * 100)
    raw.send_raw(f[:len(f) // 2])
    time.sleep(0.1)
    try:
        raw.send_raw(f[len(f) // 2:])
    except OSError as e:
        check(False, "A kept the raw peer's connection while its record was arriving (%s)" % e, a)
    ev = a.wait_for(None, lambda e: e.get("peer") == pid and e["event"] in ("new_message",
                                                                            "lost_connection"))
    check(ev["event"] == "new_message" and msg_bytes(ev) == b"split frame " * 100,
          "a record in two pieces after idle arrives (got %s %s)"
          % (ev["event"], ev.get("reason", "")), a)

    log("all idle for %.1fs again" % IDLE)
    time.sleep(IDLE)
    # a fresh raw handshake whose messages each arrive in two pieces
    s = w.open_socket("127.0.0.1", a.port)
    hs = w.Handshake(True)
    m1 = frame(hs.make_msg1())
    s.sendall(m1[:20])
    time.sleep(0.1)
    s.sendall(m1[20:])
    try:
        m3 = frame(hs.on_msg2(w.recv_frame(s)))
        s.sendall(m3[:50])
        time.sleep(0.1)
        s.sendall(m3[50:])
    except (OSError, EOFError, w.WireError) as e:
        check(False, "a handshake in pieces after idle goes through (%s)" % e, a)
    ev = a.wait_for(None, lambda e: e["event"] in ("new_connection", "handshake_failed"))
    check(ev["event"] == "new_connection" and ev.get("peer") == hs.identity.peer,
          "a handshake in pieces after idle completes (got %s %s)"
          % (ev["event"], ev.get("reason", "")), a)
    raw2 = w.Conn(s, hs)
    raw2.send(b"pieces")
    ev = a.wait_for("new_message", lambda e: e.get("peer") == hs.identity.peer)
    check(msg_bytes(ev) == b"pieces", "and its first record arrives", a)
    a.send(pid, "still there?")
    check(raw.recv_user() == b"still there?", "A still reaches the first raw peer", a)
    raw2.close()
    a.wait_for("lost_connection", lambda e: e.get("peer") == hs.identity.peer)

    log("all idle for %.1fs again" % IDLE)
    time.sleep(IDLE)
    a.connect(c.port)
    expect_connected(a, c, "outgoing connection after idle")
    exchange(a, c, "hello C")
    exchange(c, a, "hello A")

    raw.close()
    quit_all((c, b, a))


if __name__ == "__main__":
    run(main)
