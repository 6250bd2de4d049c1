#!/usr/bin/env python3
"""Dialing a peer id: `connect ADDR:PORT PEER` must refuse whoever answers
at ADDR:PORT unless it proves PEER's key.

Nodes A and C; B dials A's address naming C's id: B gets connect_failed
("peer proved a different key than the one dialed"), no new_connection
anywhere, nobody lists anybody. Then B dials A's address with A's true id
(and once with no id at all, after a drop): connected, messages both ways.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, run  # noqa: E402

OUTCOME = ("new_connection", "connect_failed", "lost_connection")


def outcome(node):
    """The first new_connection/connect_failed/lost_connection B reports."""
    return node.wait_for(None, lambda e: e["event"] in OUTCOME, timeout=15)


def main():
    a = CrustNode("A")
    b = CrustNode("B")
    c = CrustNode("C")
    check(len({a.peer, b.peer, c.peer}) == 3, "three distinct peer ids", a, b, c)

    # 1. A's address, C's id: refused by B (the dialer)
    b.send_command("connect 127.0.0.1:%d %s" % (a.port, c.peer))
    ev = outcome(b)
    check(ev["event"] == "connect_failed",
          "B's dial of A's address with C's id fails (got %s %s)"
          % (ev["event"], ev.get("reason", "")), a, b, c)
    check("different key" in ev.get("reason", ""),
          "B's connect_failed reason mentions a different key (%r)" % ev.get("reason"), b)
    check(ev.get("addr") == "127.0.0.1:%d" % a.port,
          "B's connect_failed names A's address (%r)" % ev.get("addr"), b)
    check(ev.get("peer") != c.peer,
          "B's connect_failed does not claim it reached C (%r)" % ev.get("peer"), b)
    # A saw an incoming connection that died in its handshake, never a peer
    ea = a.wait_for(None, lambda e: e["event"] in ("new_connection", "handshake_failed"),
                    timeout=15)
    check(ea["event"] == "handshake_failed",
          "A reports the aborted incoming handshake as handshake_failed (got %s)" % ea["event"],
          a)
    for n in (a, b, c):
        check(n.peers() == [], "%s lists no peer after the refused dial" % n.name, n)
        bad = n.pending("new_connection")
        check(not bad, "%s reported no new_connection (%r)" % (n.name, bad), n)

    # 2. the same with a different wrong id, and an id of all zeros
    for wrong in (b.peer, "00" * 32):
        b.send_command("connect 127.0.0.1:%d %s" % (a.port, wrong))
        ev = outcome(b)
        check(ev["event"] == "connect_failed" and "different key" in ev.get("reason", ""),
              "dialing A's address with id %s... fails with 'different key' (got %s %r)"
              % (wrong[:8], ev["event"], ev.get("reason")), a, b)

    # 3. A's true id: connected, both see the right peers
    b.send_command("connect 127.0.0.1:%d %s" % (a.port, a.peer))
    ev = outcome(b)
    check(ev["event"] == "new_connection" and ev["peer"] == a.peer,
          "B's dial with A's true id connects (got %s %s)" % (ev["event"], ev.get("reason", "")),
          a, b)
    ea = a.wait_for("new_connection", lambda e: e["peer"] == b.peer, timeout=15)
    check(ea["peer"] == b.peer, "A sees new_connection from B", a)
    exchange(b, a, "hello A, it is really you")
    exchange(a, b, "it is really me")
    check(b.peers() == [a.peer] and a.peers() == [b.peer], "A and B list each other", a, b)
    check(c.peers() == [], "C was never involved", c)

    # 4. the same id written in upper case is the same id
    b.send_command("drop %s" % a.peer)
    b.wait_for("lost_connection", lambda e: e["peer"] == a.peer, timeout=15)
    a.wait_for("lost_connection", lambda e: e["peer"] == b.peer, timeout=15)
    b.send_command("connect 127.0.0.1:%d %s" % (a.port, a.peer.upper()))
    ev = outcome(b)
    check(ev["event"] == "new_connection" and ev["peer"] == a.peer,
          "an upper-case id is accepted and matches (got %s %s)"
          % (ev["event"], ev.get("reason", "")), a, b)
    a.wait_for("new_connection", lambda e: e["peer"] == b.peer, timeout=15)
    exchange(a, b, "upper case is fine")

    # 5. a malformed id is a command error, and nothing is dialed
    b.send_command("connect 127.0.0.1:%d %s" % (c.port, "xyz"))
    err = b.wait_for("error", timeout=15)
    check(err.get("command") == "connect", "a malformed peer id gives a connect error", b)
    check(not c.collect("new_connection", timeout=1.0) and c.peers() == [],
          "C got no connection from the malformed command", c)

    for n in (a, b, c):
        rc = n.quit()
        check(rc == 0, "%s quits with status 0 (got %s)" % (n.name, rc), n)


if __name__ == "__main__":
    run(main)
