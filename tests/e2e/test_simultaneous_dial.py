#!/usr/bin/env python3
"""One connection per pair (docs/PROTOCOL.md): two nodes that dial each
other at the same moment end up with exactly one connection.

ROUNDS rounds (default 100). Each round, `connect` is written to both
nodes' stdin back to back (in a random order, sometimes a fraction of a
millisecond apart, to vary the interleaving); then each side must see the
other in exactly one new_connection, no lost_connection / connect_failed /
handshake_failed / abuse / error, `peers` lists exactly the other, and
three messages sent each way right at new_connection (while the losing
connection may still be retiring) arrive exactly once. Then
one side drops the connection (both see exactly one lost_connection) and
the next round starts. Events are counted from the raw event log between
rounds, so a late duplicate from round N shows up in round N+1.

The pair is replaced every ROUNDS/4 rounds: fresh identities (so which id
is smaller changes) and different shard counts (1/1, 2/2, 1/2, 2/1: the
survivor and the loser can live on different shards). At the end, after
more than the handshake timeout, no late event may appear.

Order: crust_send promises in-order delivery per priority, but a message
sent on the losing connection can arrive after one sent later on the
survivor. That is checked only with SIMDIAL_STRICT_ORDER=1 (reported as
a bug separately); by default messages must arrive exactly once, in any
order.

Env: SIMDIAL_ROUNDS=N, SIMDIAL_STRICT_ORDER=1.
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, NodeError, check, log, run  # noqa: E402

ROUNDS = int(os.environ.get("SIMDIAL_ROUNDS", "100"))
STRICT_ORDER = os.environ.get("SIMDIAL_STRICT_ORDER") == "1"
SETTLE = 0.05  # s after the exchange, before counting events and dropping
HS_TIMEOUT_MS = 2000
OPTS = ["--handshake-timeout-ms", str(HS_TIMEOUT_MS)]
T = 15.0
NMSG = 3
SHARDS = [(1, 1), (2, 2), (1, 2), (2, 1)]
BAD = ("lost_connection", "connect_failed", "handshake_failed", "abuse", "error", "send_failed")


def raw_write(node, line):
    """One write(2) on the node's stdin, nothing buffered in between."""
    data = (line + "\n").encode()
    n = os.write(node.proc.stdin.fileno(), data)
    if n != len(data):
        raise NodeError("[%s] short write to stdin" % node.name)


def dial_both(a, b):
    first, second = (a, b) if random.random() < 0.5 else (b, a)
    gap = random.choice([0, 0, 0, 0.0002, 0.0005, 0.001])
    other1 = b if first is a else a
    other2 = b if second is a else a
    l1 = "connect 127.0.0.1:%d" % other1.port
    l2 = "connect 127.0.0.1:%d" % other2.port
    raw_write(first, l1)
    if gap:
        t = time.perf_counter() + gap
        while time.perf_counter() < t:
            pass
    raw_write(second, l2)
    return "%s first, gap %.1f ms" % (first.name, gap * 1000)


def summarize(evs):
    return [(e.get("event"), e.get("peer", "")[:8], e.get("reason", e.get("data", "")))
            for e in evs if e.get("event") not in ("peers",)]


def wait(me, pred, what, a, b):
    """me.wait_for with the round's context and both nodes in the failure
    (and what either node reported that might explain it)."""
    try:
        return me.wait_for(None, pred, timeout=T)
    except NodeError:
        pass  # reported below, outside the handler (one traceback, not two)
    why = ["%s: %s %r" % (n.name, e["event"], e.get("reason"))
           for n in (a, b) for e in n.pending(None, lambda e: e["event"] in BAD)]
    check(False, "%s: nothing within %.0fs; meanwhile %s"
          % (what, T, "; ".join(why) or "no error event on either side"), a, b)


def one_round(r, a, b):
    start = {a: len(a.events), b: len(b.events)}
    how = dial_both(a, b)
    pairs = ((a, b), (b, a))

    # both see the other
    for me, other in pairs:
        ev = wait(me, lambda e: e.get("peer") == other.peer and
                  e["event"] in ("new_connection",) + BAD,
                  "round %d (%s): %s waits for new_connection" % (r, how, me.name), a, b)
        if ev["event"] != "new_connection":
            check(False, "round %d (%s): %s got %s before new_connection: %r"
                  % (r, how, me.name, ev["event"], ev.get("reason")), a, b)
        # right away, while a duplicate may still be retiring
        for j in range(NMSG):
            me.send(other.peer, "r%d-%s-%d" % (r, me.name, j))

    # messages arrive exactly once and in order
    for me, other in pairs:
        want = ["r%d-%s-%d" % (r, other.name, j) for j in range(NMSG)]
        got = []
        for _ in range(NMSG):
            ev = wait(me, lambda e: e.get("peer") == other.peer and
                      e["event"] in ("new_message",) + BAD,
                      "round %d (%s): %s waits for message %d of %s, got %r"
                      % (r, how, me.name, len(got), want, got), a, b)
            if ev["event"] != "new_message":
                check(False, "round %d (%s): %s got %s %r while waiting for messages (got %r)"
                      % (r, how, me.name, ev["event"], ev.get("reason"), got), a, b)
            got.append(ev["data"])
        if sorted(got) != sorted(want):
            check(False, "round %d (%s): %s got %r, want %r" % (r, how, me.name, got, want),
                  a, b)
        if got != want and STRICT_ORDER:
            check(False, "round %d (%s): %s got the messages out of order: %r"
                  % (r, how, me.name, got), a, b)

    # one connection each side
    time.sleep(SETTLE)
    for me, other in pairs:
        peers = me.peers()
        if peers != [other.peer]:
            check(False, "round %d (%s): %s lists %r, want exactly [%s]"
                  % (r, how, me.name, peers, other.name), a, b)

    # the round's events, counted from the raw log
    for me, other in pairs:
        evs = me.events[start[me]:]
        nc = [e for e in evs if e.get("event") == "new_connection"]
        bad = [e for e in evs if e.get("event") in BAD]
        msgs = [e for e in evs if e.get("event") == "new_message"]
        if len(nc) != 1 or nc[0]["peer"] != other.peer or bad or len(msgs) != NMSG:
            check(False, "round %d (%s): %s: want one new_connection from %s, %d messages, "
                  "nothing else; got %r" % (r, how, me.name, other.name, NMSG, summarize(evs)),
                  a, b)

    # drop, alternating sides; both see exactly one lost_connection
    dropper, dropped = pairs[r % 2]
    dropper.send_command("drop %s" % dropped.peer)
    for me, other in pairs:
        ev = wait(me, lambda e: e.get("peer") == other.peer and e["event"] in BAD,
                  "round %d (%s): %s waits for lost_connection after the drop"
                  % (r, how, me.name), a, b)
        if ev["event"] != "lost_connection" or \
                (me is dropper and ev["reason"] != "dropped"):
            check(False, "round %d (%s): after drop %s got %s %r"
                  % (r, how, me.name, ev["event"], ev.get("reason")), a, b)
    for me, _ in pairs:
        peers = me.peers()
        if peers:
            check(False, "round %d (%s): after drop %s still lists %r" % (r, how, me.name, peers),
                  a, b)
    for me, other in pairs:
        evs = me.events[start[me]:]
        lost = [e for e in evs if e.get("event") == "lost_connection"]
        if len(lost) != 1:
            check(False, "round %d (%s): %s: want one lost_connection after the drop, got %r"
                  % (r, how, me.name, summarize(evs)), a, b)


def settle_check(a, b, since):
    time.sleep(HS_TIMEOUT_MS / 1000.0 + 1.0)
    for me in (a, b):
        late = [e for e in me.events[since[me]:] if e.get("event") not in ("peers",)]
        check(not late, "no late events on %s after the last round (%r)"
              % (me.name, summarize(late)), a, b)
        check(me.peers() == [], "%s lists nobody at the end" % me.name, me)


def main():
    per_pair = max(1, (ROUNDS + len(SHARDS) - 1) // len(SHARDS))
    t0 = time.monotonic()
    r = 0
    gen = 0
    while r < ROUNDS:
        sa, sb = SHARDS[gen % len(SHARDS)]
        a = CrustNode("A%d" % gen, args=OPTS, shards=sa)
        b = CrustNode("B%d" % gen, args=OPTS, shards=sb)
        log("pair %d: shards %d/%d, %s id %s" % (gen, sa, sb,
                                                "A" if a.peer < b.peer else "B", "smaller"))
        n = min(per_pair, ROUNDS - r)
        for _ in range(n):
            one_round(r, a, b)
            r += 1
        log("ok: %d rounds done (%.1fs)" % (r, time.monotonic() - t0))
        if gen == 0:
            # once per test: nothing turns up late (retire/wait timers are the handshake timeout)
            settle_check(a, b, {a: len(a.events), b: len(b.events)})
        for node in (a, b):
            check(node.quit() == 0, "%s quits with status 0" % node.name, node)
        gen += 1
    check(r == ROUNDS, "%d simultaneous-dial rounds: one connection each time" % ROUNDS)


if __name__ == "__main__":
    run(main)
