#!/usr/bin/env python3
"""`blacklist PEER|IP|IP:PORT` (crust_blacklist): matching connections close
at once with lost_connection "blacklisted", new ones are refused.

1. B and C connect to A. A blacklists B's peer id: A reports
   lost_connection "blacklisted" for B, B loses A too, C is unaffected
   (no event, messages pass, A lists only C).
2. B's new attempts to reach A fail: B reports connect_failed (never
   new_connection), A never lists B. A's own attempts to reach B fail too.
3. A fresh node D with B and C connected to it: `blacklist 127.0.0.1`
   drops both ("blacklisted"); a new incoming connection from loopback
   (E) is refused (E: connect_failed), D dialing loopback is refused.
4. `blacklist 127.0.0.1:PORT` on F drops only F's connection to that
   address (F dialed B's and C's listeners; only B's port is listed).
5. A malformed argument is a command error.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, connect_pair, exchange, log, quit_all, run  # noqa: E402

T = 15.0
OUTCOME = ("new_connection", "connect_failed", "error")


def quiet(nodes, what, events=("lost_connection", "connect_failed", "abuse", "error")):
    for n in nodes:
        bad = n.pending(None, lambda e: e["event"] in events)
        check(not bad, "%s: %s reported no %s (%r)" % (what, n.name, "/".join(events), bad),
              *nodes)


def blacklist(node, what):
    node.send_command("blacklist %s" % what)


def lost_after_blacklist(node, pred, what):
    """The lost_connection matching pred; fails at once if the blacklist
    command itself was refused (an error event)."""
    ev = node.wait_for(None, lambda e: (e["event"] == "lost_connection" and pred(e)) or
                       (e["event"] == "error" and e.get("command") == "blacklist"), timeout=T)
    if ev["event"] == "error":
        check(False, "%s: the blacklist command was refused: %r" % (what, ev.get("reason")),
              node)
    return ev


def dial_refused(dialer, target, cmd, what):
    """dialer runs cmd; it must end in connect_failed or a command error,
    never new_connection (and a lost_connection must not follow one)."""
    dialer.send_command(cmd)
    ev = dialer.wait_for(None, lambda e: e["event"] in OUTCOME, timeout=T)
    if ev["event"] == "new_connection":
        later = dialer.collect(None, lambda e: e.get("peer") == target.peer, timeout=1.0)
        check(False, "%s: refused, but %s reported new_connection with %s (then %r)"
              % (what, dialer.name, target.name,
                 [(e["event"], e.get("reason")) for e in later]), dialer, target)
    check(True, "%s: %s %s (%r)" % (what, dialer.name, ev["event"], ev.get("reason")))
    return ev


def main():
    a = CrustNode("A")
    b = CrustNode("B")
    c = CrustNode("C")
    connect_pair(a, b)
    connect_pair(a, c)
    exchange(b, a, "hello from B")
    exchange(c, a, "hello from C")

    # --- 1. blacklist a peer id: its connection goes, the others stay ----------
    blacklist(a, b.peer)
    ev = lost_after_blacklist(a, lambda e: e["peer"] == b.peer, "A blacklists B's id")
    check(ev["reason"] == "blacklisted",
          "A reports lost_connection 'blacklisted' for B (got %r)" % ev["reason"], a)
    ev = b.wait_for("lost_connection", lambda e: e["peer"] == a.peer, timeout=T)
    check(bool(ev["reason"]), "B loses A (reason %r)" % ev["reason"], b)
    check(a.peers() == [c.peer], "A lists only C", a)
    check(b.peers() == [], "B lists nobody", b)
    exchange(a, c, "C is still welcome")
    exchange(c, a, "thanks")
    quiet((a, c), "after blacklisting B")

    # --- 2. B cannot come back; A cannot reach B ---------------------------------
    for i in range(3):
        ev = dial_refused(b, a, "connect 127.0.0.1:%d" % a.port,
                          "B redials A (attempt %d)" % (i + 1))
        check(ev["event"] == "connect_failed",
              "B's redial of the blacklisting A ends in connect_failed (got %s)" % ev["event"],
              a, b)
    ev = dial_refused(b, a, "connect 127.0.0.1:%d %s" % (a.port, a.peer),
                      "B redials A naming A's id")
    check(ev["event"] == "connect_failed", "B's redial with A's id: connect_failed", a, b)
    check(not a.pending("new_connection", lambda e: e["peer"] == b.peer),
          "A never reported a new_connection from B", a)
    check(a.peers() == [c.peer], "A still lists only C", a)
    check(b.peers() == [], "B lists nobody after its refused attempts", b)

    # A dialing B: by id, refused before dialing; by address, refused once B proves its key
    ev = dial_refused(a, b, "connect 127.0.0.1:%d %s" % (b.port, b.peer),
                      "A dials the blacklisted B by id")
    ev = dial_refused(a, b, "connect 127.0.0.1:%d" % b.port,
                      "A dials the blacklisted B's address")
    check(ev["event"] == "connect_failed" and "blacklisted" in ev.get("reason", ""),
          "A's dial of B's address fails with 'blacklisted' (got %s %r)"
          % (ev["event"], ev.get("reason")), a, b)
    check(a.peers() == [c.peer] and b.peers() == [], "still no A-B connection", a, b)
    quiet((c,), "C throughout")
    exchange(a, c, "C is still connected")

    # --- 3. blacklist an IP: every loopback connection goes ---------------------
    d = CrustNode("D")
    connect_pair(d, b)
    connect_pair(d, c)
    check(sorted(d.peers()) == sorted([b.peer, c.peer]), "D has B and C", d)
    blacklist(d, "127.0.0.1")
    gone = {}
    for _ in range(2):
        ev = lost_after_blacklist(d, lambda e: True, "D blacklists 127.0.0.1")
        gone[ev["peer"]] = ev["reason"]
    check(gone == {b.peer: "blacklisted", c.peer: "blacklisted"},
          "D reports lost_connection 'blacklisted' for B and C (got %r)" % gone, d)
    for n in (b, c):
        n.wait_for("lost_connection", lambda e: e["peer"] == d.peer, timeout=T)
    check(d.peers() == [], "D lists nobody", d)
    check(c.peers() == [a.peer], "C still has A (A did not blacklist loopback)", c)

    e = CrustNode("E")
    ev = dial_refused(e, d, "connect 127.0.0.1:%d" % d.port, "E dials D from loopback")
    check(ev["event"] == "connect_failed", "E's dial of D fails: connect_failed", d, e)
    check(not d.collect("new_connection", timeout=1.0) and d.peers() == [],
          "D accepted nobody from loopback", d)
    ev = dial_refused(d, e, "connect 127.0.0.1:%d" % e.port, "D dials loopback")
    check(e.peers() == [] and d.peers() == [], "no D-E connection either way", d, e)

    # --- 4. IP:PORT: only that endpoint -------------------------------------------
    f = CrustNode("F")
    connect_pair(b, f)  # F dials B's listener
    connect_pair(c, f)  # F dials C's listener
    blacklist(f, "127.0.0.1:%d" % b.port)
    ev = lost_after_blacklist(f, lambda e: True, "F blacklists B's endpoint")
    check(ev["peer"] == b.peer and ev["reason"] == "blacklisted",
          "F drops only B's endpoint: 'blacklisted' (got %s %r)" % (ev["peer"][:8], ev["reason"]),
          f)
    check(f.peers() == [c.peer], "F keeps C", f)
    exchange(f, c, "C's port is not listed")
    dial_refused(f, b, "connect 127.0.0.1:%d" % b.port, "F redials B's listed endpoint")
    check(f.peers() == [c.peer], "F still has only C", f)

    # --- 5. malformed ------------------------------------------------------------------
    for bad in ("", "not-an-address", "12345", "127.0.0.1:99999", "ab" * 31):
        f.send_command(("blacklist %s" % bad).rstrip())
        err = f.wait_for(None, lambda e: e["event"] in ("error", "lost_connection"), timeout=T)
        check(err["event"] == "error" and err.get("command") == "blacklist",
              "'blacklist %s' is a command error (%r)" % (bad, err.get("reason")), f)
    check(f.peers() == [c.peer], "malformed blacklist commands changed nothing", f)

    log("quitting")
    quit_all((a, b, c, d, e, f))


if __name__ == "__main__":
    run(main)
