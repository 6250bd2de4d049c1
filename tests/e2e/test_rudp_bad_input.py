#!/usr/bin/env python3
# e2e: alone (counts every bad datagram it sends: a concurrent loopback flood drops some in the backlog)
"""Bad input on a node's UDP port: every kind is dropped, counted, never
answered with more than 3x its size, and the node keeps serving.

1. random datagrams, truncated headers, unknown connection ids, an
   Initial of the right size whose payload does not authenticate, a
   properly sealed Initial below 1200 bytes: no answer at all;
2. a spoofed-source flood: sealed Initials from 120 loopback addresses
   (127.0.0.0/8 is all ours), more than the node will hold half-open:
   each source gets back at most 3x what it sent, and past the limit the
   answers are stateless Retries;
3. a Retry's token, echoed in a new Initial, is accepted (the client's
   side of the stateless cookie);
4. afterwards a real peer connects over rudp and messages flow; the
   node's stats count what it dropped."""
import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, log, run  # noqa: E402
import rudpwire as w  # noqa: E402


def udp_from(addr="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    s.setblocking(False)
    return s


def collect(socks, seconds):
    """Bytes and datagrams each socket received within seconds."""
    got = {s: [] for s in socks}
    end = time.time() + seconds
    while time.time() < end:
        for s in socks:
            try:
                while True:
                    got[s].append(s.recv(65536))
            except BlockingIOError:
                pass
        time.sleep(0.02)
    return got


def main():
    a = CrustNode("A", shards=2)
    target = ("127.0.0.1", a.rudp_port)

    log("--- 1. garbage of every kind gets no answer")
    s = udp_from()
    sent = 0
    for _ in range(300):
        d = os.urandom(random.randrange(0, 1500))
        s.sendto(d, target)
        sent += 1
    good, odcid, scid = w.initial()
    for n in range(1, 60):
        s.sendto(good[:n], target)  # truncated headers
    for _ in range(100):
        s.sendto(w.short_header(os.urandom(8), 7) + os.urandom(100), target)  # unknown ids
    forged = bytearray(good)
    for i in range(40, 200):
        forged[i] ^= 0x5A  # a valid-looking header, a payload that does not open
    s.sendto(bytes(forged), target)
    small, _, _ = w.initial(size=400)
    s.sendto(small, target)  # sealed, but below 1200 bytes: never answered
    got = collect([s], 1.0)[s]
    check(got == [], "no answer to %d bad datagrams (got %d)" % (sent + 161, len(got)), a)
    # a starved node (a loaded machine, a sanitizer build) may still be reading
    # them: wait for the count, bounded
    deadline = time.time() + 15
    while True:
        st = a.stats()
        if (st["udp_bad_packets"] + st["udp_unknown_cid"] + st["udp_auth_failures"] >= 300
                or time.time() > deadline):
            break
        time.sleep(0.2)
    check(st["udp_bad_packets"] + st["udp_unknown_cid"] + st["udp_auth_failures"] >= 300,
          "the node counted them (bad %d, unknown id %d, auth %d)" %
          (st["udp_bad_packets"], st["udp_unknown_cid"], st["udp_auth_failures"]), a)
    check(st["udp_auth_failures"] >= 1, "the forged Initial failed authentication", a)

    log("--- 2. spoofed-source flood")
    socks = [udp_from("127.0.%d.%d" % (1 + i // 200, 2 + i % 200)) for i in range(120)]
    out = {}
    for rnd in range(2):
        for s in socks:
            pkt, _, _ = w.initial(pn=rnd)
            s.sendto(pkt, target)
            out[s] = out.get(s, 0) + len(pkt)
    got = collect(socks, 2.0)
    worst = max(sum(len(d) for d in got[s]) / out[s] for s in socks)
    answered = sum(1 for s in socks if got[s])
    retries = sum(1 for s in socks for d in got[s] if w.packet_type(d) == w.RETRY)
    check(worst <= 3.0, "no source got back more than 3x what it sent (worst %.2fx)" % worst, a)
    check(answered > 0, "sources were answered (%d of %d)" % (answered, len(socks)), a)
    st = a.stats()
    check(retries > 0 and st["udp_retries_sent"] > 0,
          "past the half-open limit the answers are stateless Retries (%d seen, %d sent)"
          % (retries, st["udp_retries_sent"]), a)

    log("--- 3. a Retry's token opens the door")
    tok = None
    for s in socks:
        for d in got[s]:
            if w.packet_type(d) == w.RETRY:
                tok = (s, w.retry_token(d), d)
                break
        if tok:
            break
    s, token, retry = tok
    # the Retry names the Initial it answers (scid = that Initial's DCID): resend on that id
    odcid = retry[13:21]
    pkt, _, _ = w.initial(odcid=odcid, pn=5, token=token)
    s.sendto(pkt, target)
    back = collect([s], 1.0)[s]
    check(any(w.packet_type(d) == w.INITIAL for d in back),
          "an Initial with the token gets a real answer (%r)" % [w.packet_type(d) for d in back], a)
    bad_tok = bytearray(token)
    bad_tok[-1] ^= 1
    pkt, _, _ = w.initial(odcid=odcid, pn=6, token=bytes(bad_tok))
    s2 = udp_from("127.0.0.1")
    s2.sendto(pkt, target)
    check(collect([s2], 0.5)[s2] == [], "a forged token gets no answer", a)

    log("--- 4. the node still serves")
    b = CrustNode("B")
    b.send_command("connect rudp://127.0.0.1:%d" % a.rudp_port)
    b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=30)
    a.wait_for("new_connection", lambda e: e["peer"] == b.peer, timeout=30)
    exchange(b, a, "still here")
    exchange(a, b, "yes")
    for x in socks + [s2]:
        x.close()
    check(a.quit() == 0, "A quits with status 0", a)
    check(b.quit() == 0, "B quits with status 0", b)


run(main)
