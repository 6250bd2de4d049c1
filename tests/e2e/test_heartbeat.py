#!/usr/bin/env python3
"""Liveness (docs/PROTOCOL.md, "Liveness"): keepalives, the idle timeout
and the provisional grace ("not maintained").

1. A and B with --keepalive-ms 200 --idle-timeout-ms 1500: an idle
   connection lives on for 4 s (keepalives flow: both sides' rx_bytes
   grow), messages still pass. SIGSTOP B: A reports lost_connection
   "timeout" (within a generous bound). SIGCONT B: B reports the loss too,
   and they can connect again.
2. Keepalives are what keep it alive: E sends a keepalive only every 4 s
   while F wants to hear something every 1.5 s: F drops E with "timeout".
3. Provisional grace 1000 ms: P (grace 1 s) and Q (grace never), no user
   messages, nobody maintains: P drops with "not maintained", Q hears the
   close. R and S (both grace 1 s) run `maintain` for each other: alive
   after 3.5 s, messages pass. Only one side maintaining is not enough: the
   other side's grace applies. User messages also keep a provisional
   connection alive until they stop.

Timing is only ever checked loosely: "survives" windows are several times
the timeouts, "is dropped" waits are 10 s or more.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, connect_pair, exchange, log, quit_all, run  # noqa: E402

FAST = ["--keepalive-ms", "200", "--idle-timeout-ms", "1500"]
LOSS_BOUND = 10.0   # s: generous bound for a timeout-driven lost_connection
GRACE = ["--provisional-ms", "1000"]
NEVER = ["--provisional-ms", "0"]


def no_loss(nodes, what):
    for n in nodes:
        bad = n.pending(None, lambda e: e["event"] in ("lost_connection", "connect_failed",
                                                        "abuse", "error"))
        check(not bad, "%s: %s reported no lost_connection/abuse/error (%r)"
              % (what, n.name, bad), *nodes)


def lost(node, other, timeout=LOSS_BOUND):
    t0 = time.monotonic()
    ev = node.wait_for("lost_connection", lambda e: e["peer"] == other.peer, timeout=timeout)
    log("[%s] lost_connection %s after %.2fs: %r"
        % (node.name, other.name, time.monotonic() - t0, ev["reason"]))
    return ev


def keepalive_and_timeout():
    a = CrustNode("A", args=FAST)
    b = CrustNode("B", args=FAST)
    connect_pair(a, b)
    exchange(a, b, "before the quiet")
    sa0, sb0 = a.stats(), b.stats()
    log("idle for 4 s (keepalive 200 ms, idle timeout 1500 ms)")
    time.sleep(4.0)
    no_loss((a, b), "idle 4 s with keepalives")
    check(a.peers() == [b.peer] and b.peers() == [a.peer],
          "after 4 s idle A and B still list each other", a, b)
    sa1, sb1 = a.stats(), b.stats()
    check(sa1["rx_bytes"] > sa0["rx_bytes"] and sb1["rx_bytes"] > sb0["rx_bytes"],
          "keepalives arrived while idle (rx_bytes A %d -> %d, B %d -> %d)"
          % (sa0["rx_bytes"], sa1["rx_bytes"], sb0["rx_bytes"], sb1["rx_bytes"]), a, b)
    check(sa1["rx_msgs"] == sa0["rx_msgs"] and sb1["rx_msgs"] == sb0["rx_msgs"],
          "keepalives are not delivered as messages", a, b)
    exchange(b, a, "after the quiet")
    exchange(a, b, "still here")

    log("SIGSTOP B")
    os.kill(b.pid, signal.SIGSTOP)
    try:
        ev = lost(a, b)
        check(ev["reason"] == "timeout",
              "A reports lost_connection 'timeout' for the frozen B (got %r)" % ev["reason"], a)
        check(a.peers() == [], "A lists no peer after the timeout", a)
    finally:
        os.kill(b.pid, signal.SIGCONT)
    log("SIGCONT B")
    ev = lost(b, a)
    check(ev["reason"] in ("timeout", "closed by peer"),
          "B, thawed, reports the loss of A (reason %r)" % ev["reason"], b)
    check(b.peers() == [], "B lists no peer after thawing", b)
    check(b.alive() and a.alive(), "both nodes still running", a, b)
    check(not a.pending("lost_connection") and not b.pending("lost_connection"),
          "exactly one lost_connection on each side", a, b)

    # and they can talk again
    connect_pair(a, b)
    exchange(a, b, "welcome back")
    exchange(b, a, "thanks")
    quit_all((a, b))


def keepalives_are_needed():
    # E keeps quiet for 4 s at a time; F wants to hear from it every 1.5 s
    e = CrustNode("E", args=["--keepalive-ms", "4000", "--idle-timeout-ms", "60000"])
    f = CrustNode("F", args=FAST)
    connect_pair(e, f)
    ev = lost(f, e)
    check(ev["reason"] == "timeout",
          "F drops E, whose keepalives are too rare, with 'timeout' (got %r)" % ev["reason"], f)
    ev = lost(e, f)
    check(ev["reason"] == "closed by peer",
          "E hears F's close as 'closed by peer' (got %r)" % ev["reason"], e)
    e.kill()
    f.kill()


def provisional():
    # nobody maintains, no user messages: dropped by the side with a grace
    p = CrustNode("P", args=FAST + GRACE)
    q = CrustNode("Q", args=FAST + NEVER)
    connect_pair(p, q)
    ev = lost(p, q)
    check(ev["reason"] == "not maintained",
          "P drops the unmaintained, silent connection: 'not maintained' (got %r)"
          % ev["reason"], p)
    ev = lost(q, p)
    check(ev["reason"] == "closed by peer",
          "Q (grace never) hears P's close as 'closed by peer' (got %r)" % ev["reason"], q)
    check(p.peers() == [] and q.peers() == [], "neither lists the other", p, q)

    # both sides with a grace: both end up without the connection
    connect_pair(q, p)  # P dials Q this time
    p2 = CrustNode("P2", args=FAST + GRACE)
    connect_pair(p, p2)
    ev1 = lost(p, p2)
    ev2 = lost(p2, p)
    reasons = {ev1["reason"], ev2["reason"]}
    check("not maintained" in reasons and reasons <= {"not maintained", "closed by peer"},
          "two provisional nodes: one drops 'not maintained', the other hears it (%r)"
          % sorted(reasons), p, p2)
    ev = lost(p, q)
    check(ev["reason"] == "not maintained",
          "the P->Q connection (dialed by P) is dropped too: %r" % ev["reason"], p)
    lost(q, p)
    p2.kill()

    # maintained on both sides: survives well past the grace
    r = CrustNode("R", args=FAST + GRACE)
    s = CrustNode("S", args=FAST + GRACE)
    connect_pair(r, s)
    r.send_command("maintain %s" % s.peer)
    s.send_command("maintain %s" % r.peer)
    log("R and S maintained, idle for 3.5 s (grace 1 s)")
    time.sleep(3.5)
    no_loss((r, s), "maintained connection, 3.5 s idle")
    check(r.peers() == [s.peer] and s.peers() == [r.peer],
          "the maintained connection is still up on both sides", r, s)
    exchange(r, s, "maintained")
    exchange(s, r, "indeed")

    # maintain for a peer that is not connected: an error, nothing else
    r.send_command("maintain %s" % q.peer)
    err = r.wait_for("error", timeout=10)
    check(err.get("command") == "maintain" and "not connected" in err.get("reason", ""),
          "maintain of an unconnected peer answers 'not connected' (%r)" % err, r)

    # maintained on one side only: the other side's grace still applies
    t = CrustNode("T", args=FAST + GRACE)
    connect_pair(r, t)
    r.send_command("maintain %s" % t.peer)
    ev = lost(t, r)
    check(ev["reason"] == "not maintained",
          "T, which did not maintain R, drops it: 'not maintained' (got %r)" % ev["reason"], t)
    ev = lost(r, t)
    check(ev["reason"] == "closed by peer",
          "R (which maintained T) hears T's close (got %r)" % ev["reason"], r)
    no_loss((r, s), "R-S is unaffected by R-T")

    # user messages keep a provisional connection alive; silence ends it
    connect_pair(r, t)
    r.send_command("maintain %s" % t.peer)  # only T's grace counts
    log("T sends to R every 250 ms for 3 s (grace 1 s, T does not maintain)")
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 3.0:
        t.send(r.peer, "tick %d" % i)
        i += 1
        time.sleep(0.25)
    check(not t.pending("lost_connection") and not r.pending("lost_connection"),
          "a provisional connection with user traffic is kept (%d messages)" % i, r, t)
    got = r.collect("new_message", lambda e: e["peer"] == t.peer, timeout=2.0)
    check(len(got) == i, "R got all %d ticks (got %d)" % (i, len(got)), r)
    ev = lost(t, r)
    check(ev["reason"] == "not maintained",
          "once the messages stop, T drops it: 'not maintained' (got %r)" % ev["reason"], t)
    lost(r, t)
    no_loss((r, s), "R-S is still unaffected")
    for n in (p, q, r, s, t):
        n.kill()


def main():
    keepalive_and_timeout()
    keepalives_are_needed()
    provisional()


if __name__ == "__main__":
    run(main)
