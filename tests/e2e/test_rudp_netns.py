#!/usr/bin/env python3
"""Reliable UDP between two network namespaces (198.18.0.1 <-> .2):

1. fallback: with TCP to A dropped by an nftables rule, B's plain
   `connect ADDR:PORT` (TCP first) still connects, over rudp;
2. random loss (nftables numgen, both directions) of 1 %, 5 % and 10 %:
   300 messages of random size each way arrive exactly once, in order and
   intact, and the node counted losses and retransmissions;
3. 10 % of packets corrupted (nftables payload mangling): caught by the
   per-packet AEAD (counted as authentication failures), resent, intact.

No netem here (see docs/NATLAB.md): reordering, duplication and delay go
through the userspace impairment wire in test_rudp_wire.py."""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, log, msg_bytes, run  # noqa: E402
from netlab import Lab  # noqa: E402

N_MSGS = 300
ADDR_A, ADDR_B = "198.18.0.1", "198.18.0.2"


class Pair:
    """Two namespaces a and b joined by a veth pair, each with an nftables input chain
    (inet t in) for the rules that drop or mangle."""

    def __init__(self, lab):
        self.lab = lab
        self.a, self.b = lab.host("a"), lab.host("b")
        lab.link(self.a, "va", ADDR_A + "/24", self.b, "vb", ADDR_B + "/24")
        for ns in (self.a, self.b):
            self.nft(ns, "add table inet t")
            self.nft(ns, "add chain inet t in { type filter hook input priority 0 ; }")

    def nft(self, ns, rule):
        self.lab.run(ns, "nft", rule)

    def flush(self, ns):
        self.nft(ns, "flush chain inet t in")


def body(direction, i):
    rnd = random.Random(direction * 100000 + i)
    n = rnd.randrange(0, 3000) if i % 10 else rnd.randrange(0, 60000)
    return "%s%05d:" % ("ab"[direction], i) + "".join(rnd.choice("0123456789abcdef")
                                                   for _ in range(n))


def transfer(src, dst, direction, timeout):
    for i in range(N_MSGS):
        src.send(dst.peer, body(direction, i))
    for i in range(N_MSGS):
        ev = dst.wait_for("new_message", lambda e: e["peer"] == src.peer, timeout=timeout)
        want = body(direction, i).encode()
        got = msg_bytes(ev)
        if ev["len"] != len(want) or (not ev.get("truncated") and got != want) or \
                (ev.get("truncated") and not want.startswith(got)):
            check(False, "%s -> %s message %d arrived intact and in order (got %r...)"
                  % (src.name, dst.name, i, got[:20]), src, dst)
    extra = dst.collect("new_message", lambda e: e["peer"] == src.peer, timeout=0.3)
    check(not extra, "%s -> %s: %d messages arrived in order, intact, once (%d extra)"
          % (src.name, dst.name, N_MSGS, len(extra)), dst)


def main():
    lab = Lab("rudp")
    try:
        test(Pair(lab))
    finally:
        lab.close()


def test(ns):
    a = CrustNode("A", bind=ADDR_A, shards=2, netns=ns.a,
                  args=["--idle-timeout-ms", "60000"])
    b = CrustNode("B", bind=ADDR_B, netns=ns.b, args=["--idle-timeout-ms", "60000"])

    log("--- 1. TCP blocked: the plain endpoint falls back to rudp")
    ns.nft(ns.a, "add rule inet t in tcp dport %d drop" % a.port)
    b.send_command("connect %s:%d" % (ADDR_A, a.port))
    eb = b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=40)
    check(eb["transport"] == "rudp", "B connected over rudp (%r)" % eb["transport"], b)
    ea = a.wait_for("new_connection", lambda e: e["peer"] == b.peer, timeout=10)
    check(ea["transport"] == "rudp", "A sees the connection as rudp", a)
    ns.flush(ns.a)

    resent_total = 0
    for loss in (1, 5, 10):
        log("--- 2. %d %% loss both ways" % loss)
        for n in (ns.a, ns.b):
            ns.flush(n)
            ns.nft(n, "add rule inet t in meta l4proto udp numgen random mod 100 < %d drop"
                   % loss)
        before = a.stats()
        transfer(a, b, 0, timeout=60)
        transfer(b, a, 1, timeout=60)
        after = a.stats()
        lost = after["udp_lost_packets"] - before["udp_lost_packets"]
        resent = after["udp_retx_bytes"] - before["udp_retx_bytes"]
        log("%d %% loss: A resent %d bytes, declared %d packets lost" % (loss, resent, lost))
        resent_total += resent
    # nftables sees a GSO batch (up to 64 datagrams on the veth) as one packet, so
    # 1 % of a few dozen batches may drop none; over the three rates it cannot
    # (a dropped tail is recovered by a probe timeout, which resends without
    # declaring a loss: the resent bytes are what must show)
    check(resent_total > 0, "A resent what the loss rules dropped (%d bytes)" % resent_total, a)
    # 10 %, not 1 %: the rule sees a GSO batch as one packet and corrupts its first
    # datagram, and a transfer is a few dozen batches
    log("--- 3. 10 % of UDP packets corrupted (a byte of the payload overwritten)")
    for n in (ns.a, ns.b):
        ns.flush(n)
        # @th,160,8: the byte 20 bytes into the UDP header, i.e. inside the packet
        ns.nft(n, "add rule inet t in meta l4proto udp numgen random mod 100 < 10 "
                  "@th,160,8 set 0xff")
    before = a.stats()["udp_auth_failures"] + b.stats()["udp_auth_failures"]
    transfer(a, b, 0, timeout=60)
    transfer(b, a, 1, timeout=60)
    after = a.stats()["udp_auth_failures"] + b.stats()["udp_auth_failures"]
    check(after > before, "corrupted packets failed authentication and were dropped "
          "(%d), the messages still arrived intact" % (after - before), a, b)
    for n in (ns.a, ns.b):
        ns.flush(n)
    check(a.peers() == [b.peer], "still the one connection", a)
    check(a.quit() == 0 and b.quit() == 0, "both quit with status 0", a, b)


run(main)
