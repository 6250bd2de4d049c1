#!/usr/bin/env python3
"""Reliable UDP through the impairment wire (tests/lab/wirelab, build/crust-wire):
two `crust node` processes, A in side a and B in side b, connected over rudp://, one
fresh lab per impairment (both directions):

    loss 1 %, 5 %, 10 %; reordering 2 %; duplication 5 %; corruption 1 % (the wire
    fixes the UDP checksum, so the damage reaches the AEAD); 50 ms delay each way.

In each, N_MSGS messages of random sizes (up to 60000 bytes) go each way at once;
each carries its number and a BLAKE2b digest of its body. Every message must arrive
exactly once, in order and intact (byte for byte and digest), and the impairment must
show in the wire's counters and in the nodes' own stats: packets declared lost and
resent under loss, authentication failures under corruption, duplicates dropped under
duplication, late packets under reordering. Under delay, a request/answer round trip
is at least the configured 100 ms (a lower bound, never a speed). Counts are
bounded; nothing about speed is asserted. Each lab is always taken down (the wire
stopped by its PID, the namespaces deleted), also on failure.
"""
import hashlib
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, log, msg_bytes, run  # noqa: E402
from wirelab import WireLab  # noqa: E402

N_MSGS = 150
TIMEOUT = 40  # for any one message: generous, never a figure under test
DELAY_MS = 50

# (tag, wire options, what must show in the wire's counters, in the nodes' stats)
RUNS = [
    ("loss1", ["--loss", "1"], "dropped_loss", "udp_lost_packets"),
    ("loss5", ["--loss", "5"], "dropped_loss", "udp_lost_packets"),
    ("loss10", ["--loss", "10"], "dropped_loss", "udp_lost_packets"),
    ("reorder2", ["--reorder", "2", "--reorder-gap", "2"], "reordered", "udp_late_packets"),
    ("dup5", ["--dup", "5"], "duplicated", "udp_dup_packets"),
    ("corrupt1", ["--corrupt", "1"], "corrupted", "udp_auth_failures"),
    ("delay50", ["--delay", str(DELAY_MS)], None, None),
]


def body(seed, direction, i):
    """Message i of one direction: 'a00012:DIGEST:' + random hex; sizes mostly up to
    3000 bytes, every tenth up to 60000 (many packets, so a loss inside one is likely)."""
    rnd = random.Random(seed * 1000003 + direction * 100000 + i)
    n = rnd.randrange(0, 3000) if i % 10 else rnd.randrange(3000, 60000)
    text = "".join(rnd.choice("0123456789abcdef") for _ in range(n))
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    return "%s%05d:%s:%s" % ("ab"[direction], i, digest, text)


def intact(got, direction, i):
    """got is message i of direction, whole, with a digest matching its body."""
    head = ("%s%05d:" % ("ab"[direction], i)).encode()
    if not got.startswith(head) or len(got) < len(head) + 17:
        return False
    digest, text = got[len(head):len(head) + 16], got[len(head) + 17:]
    return hashlib.blake2b(text, digest_size=8).hexdigest().encode() == digest


def receive_all(src, dst, seed, direction):
    for i in range(N_MSGS):
        ev = dst.wait_for("new_message", lambda e: e["peer"] == src.peer, timeout=TIMEOUT)
        want = body(seed, direction, i).encode()
        got = msg_bytes(ev)
        if ev.get("truncated") or got != want or not intact(got, direction, i):
            check(False, "%s -> %s message %d arrived intact and in order (len %d, want %d, "
                  "starts %r)" % (src.name, dst.name, i, ev["len"], len(want), got[:24]),
                  src, dst)
    extra = dst.collect("new_message", lambda e: e["peer"] == src.peer, timeout=0.5)
    check(not extra, "%s -> %s: %d messages arrived once each, in order, intact (%d extra)"
          % (src.name, dst.name, N_MSGS, len(extra)), dst)


def round_trip(a, b):
    """Seconds from A's request to A hearing B's answer (b answers what it gets)."""
    t0 = time.monotonic()
    a.send(b.peer, "ping")
    b.wait_for("new_message", lambda e: e["peer"] == a.peer and e["data"] == "ping",
               timeout=TIMEOUT)
    b.send(a.peer, "pong")
    a.wait_for("new_message", lambda e: e["peer"] == b.peer and e["data"] == "pong",
               timeout=TIMEOUT)
    return time.monotonic() - t0


def one_run(tag, opts, wire_counter, node_counter, seed):
    log("--- %s: wire %s" % (tag, " ".join(opts)))
    with WireLab("rw" + tag, "--seed", str(seed), *opts) as lab:
        a = CrustNode("A-" + tag, netns=lab.ns_a, bind=lab.addr_a)
        b = CrustNode("B-" + tag, netns=lab.ns_b, bind=lab.addr_b)
        try:
            a.send_command("connect rudp://%s:%d" % (lab.addr_b, b.rudp_port))
            ea = a.wait_for("new_connection", lambda e: e["peer"] == b.peer, timeout=TIMEOUT)
            b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=TIMEOUT)
            check(ea["transport"] == "rudp", "A reached B over rudp through the wire", a)
            if tag.startswith("delay"):
                rtt = round_trip(a, b)
                check(rtt >= 2 * DELAY_MS / 1000, "a request and its answer took at least "
                      "2 x %d ms (%.1f ms)" % (DELAY_MS, rtt * 1000), a, b)
            for i in range(N_MSGS):  # both ways at once
                a.send(b.peer, body(seed, 0, i))
                b.send(a.peer, body(seed, 1, i))
            receive_all(a, b, seed, 0)
            receive_all(b, a, seed, 1)
            sa, sb = a.stats(), b.stats()
            check(a.quit() == 0 and b.quit() == 0, "both nodes quit with status 0", a, b)
        finally:
            a.kill()
            b.kill()
        wire = lab.down()
    keys = ("udp_lost_packets", "udp_retx_bytes", "udp_auth_failures", "udp_dup_packets",
            "udp_late_packets", "udp_bad_packets", "udp_rcvbuf_drops")
    log("A %s\nB %s\nwire %s" % ({k: sa[k] for k in keys}, {k: sb[k] for k in keys}, wire))
    check(wire is not None, "the wire reported its counters")
    if wire_counter:
        # summed over both directions: at 1 % of ~700 packets one direction alone sees
        # none about once in a thousand runs
        on_wire = wire["a2b"][wire_counter] + wire["b2a"][wire_counter]
        check(on_wire > 0, "the wire did it: %s %d (a2b %d, b2a %d)"
              % (wire_counter, on_wire, wire["a2b"][wire_counter], wire["b2a"][wire_counter]))
        seen = sa[node_counter] + sb[node_counter]
        check(seen > 0, "the nodes saw it: %s %d (A %d, B %d)" % (node_counter, seen,
                                                                 sa[node_counter],
                                                                 sb[node_counter]))
        if node_counter == "udp_lost_packets":
            check(sa["udp_retx_bytes"] + sb["udp_retx_bytes"] > 0,
                  "lost data was sent again (A %d, B %d bytes)" % (sa["udp_retx_bytes"],
                                                                  sb["udp_retx_bytes"]))


def main():
    seed = random.randrange(1 << 20)
    log("message and wire seed %d" % seed)
    t0 = time.monotonic()
    for tag, opts, wire_counter, node_counter in RUNS:
        one_run(tag, opts, wire_counter, node_counter, seed)
    log("all runs took %.1f s" % (time.monotonic() - t0))


run(main)
