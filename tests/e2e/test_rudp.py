#!/usr/bin/env python3
"""Reliable UDP through the connection manager, on loopback:
1. every node listens on UDP where it listens on TCP (same port number);
2. B dials A with rudp://: both see new_connection "transport":"rudp",
   messages both ways arrive intact (small, empty, 60 kB, a burst in
   order), `peers` lists the other, `stats` counts UDP packets;
3. drop ends the connection on both sides; maintain and a reconnect work;
4. blacklisting B's id closes the connection ("blacklisted") and a new
   rudp dial from B is refused;
5. a peer that vanishes mid-transfer (SIGKILL) is reported lost after the
   idle timeout."""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, log, quit_all, run  # noqa: E402


def dial_rudp(src, dst):
    src.send_command("connect rudp://127.0.0.1:%d" % dst.rudp_port)
    es = src.wait_for("new_connection", lambda e: e["peer"] == dst.peer)
    ed = dst.wait_for("new_connection", lambda e: e["peer"] == src.peer)
    for ev, who in ((es, src), (ed, dst)):
        check(ev["transport"] == "rudp", "%s's new_connection says rudp (%r)" % (who.name, ev),
              who)
    return es, ed


def main():
    a = CrustNode("A", shards=2, args=["--idle-timeout-ms", "3000", "--keepalive-ms", "1000"])
    b = CrustNode("B")
    for n in (a, b):
        check(n.rudp_listener["transport"] == "rudp" and n.rudp_port == n.port,
              "%s listens on UDP port %d like TCP" % (n.name, n.port), n)

    log("--- 2. hello over rudp")
    eb, ea = dial_rudp(b, a)
    check(eb["addr"] == "127.0.0.1:%d" % a.rudp_port, "B's new_connection names A's UDP port", b)
    texts = ["hello over udp", "", "x" * 60000,
             "".join(random.choice("abcdef ") for _ in range(3000))]
    for t in texts:
        exchange(b, a, t)
        exchange(a, b, t[::-1])
    for i in range(200):
        b.send(a.peer, "burst %03d" % i)
    got = [a.wait_for("new_message", lambda e: e["peer"] == b.peer)["data"] for _ in range(200)]
    check(got == ["burst %03d" % i for i in range(200)], "200 messages arrive in order", a, b)
    check(a.peers() == [b.peer] and b.peers() == [a.peer], "peers list each other", a, b)
    st = b.stats()
    check(st["udp_rx_packets"] > 0 and st["udp_tx_packets"] > 0,
          "stats count UDP packets (%d rx, %d tx)" % (st["udp_rx_packets"], st["udp_tx_packets"]),
          b)
    check(st["udp_auth_failures"] == 0, "no packet failed authentication", b)

    log("--- 3. drop, maintain, reconnect")
    a.send_command("drop %s" % b.peer)
    la = a.wait_for("lost_connection", lambda e: e["peer"] == b.peer)
    check(la["reason"] == "dropped" and la["transport"] == "rudp",
          "A's lost_connection says dropped, rudp", a)
    lb = b.wait_for("lost_connection", lambda e: e["peer"] == a.peer)
    check(bool(lb["reason"]), "B's lost_connection has a reason (%r)" % lb["reason"], b)
    check(a.peers() == [] and b.peers() == [], "no peers after drop", a, b)
    dial_rudp(b, a)
    b.send_command("maintain %s" % a.peer)
    exchange(b, a, "after reconnect")

    log("--- 4. blacklist")
    a.send_command("blacklist %s" % b.peer)
    la = a.wait_for("lost_connection", lambda e: e["peer"] == b.peer)
    check(la["reason"] == "blacklisted", "A's lost_connection says blacklisted", a)
    b.wait_for("lost_connection", lambda e: e["peer"] == a.peer)
    b.send_command("connect rudp://127.0.0.1:%d" % a.rudp_port)
    ev = b.wait_for(None, lambda e: e["event"] in ("connect_failed", "new_connection"), timeout=20)
    check(ev["event"] == "connect_failed", "a blacklisted dialer does not connect (%r)" % ev, b)

    log("--- 5. a peer that vanishes")
    c = CrustNode("C")
    dial_rudp(c, a)
    for i in range(50):
        c.send(a.peer, "data %d " % i + "y" * 5000)
    a.wait_for("new_message", lambda e: e["peer"] == c.peer)
    c.kill()
    lost = a.wait_for("lost_connection", lambda e: e["peer"] == c.peer, timeout=20)
    check("timeout" in lost["reason"] or "idle" in lost["reason"],
          "A reports C lost after the idle timeout (%r)" % lost["reason"], a)

    quit_all((a, b))


run(main)
