#!/usr/bin/env python3
"""beaconwire.py - the LAN beacon datagram (docs/PROTOCOL.md, "Beacon") in
Python, and a sender/flooder the beacon tests run inside a namespace.

    import beaconwire as bw
    pkt = bw.encode(identity, bw.QUERY, ts_ms=bw.now_ms(), tcp_port=0)
    bw.parse(pkt) -> dict or None

As a program (run with `ip netns exec NS`), it prints one JSON line:
    beaconwire.py send IP PORT TTL NETWORK     one signed announcement of a new
                                               identity, unicast with that TTL
    beaconwire.py flood IP PORT NETWORK WINDOW_S
        a bounded flood of bad beacons at IP:PORT, then valid queries for
        WINDOW_S seconds from two identities while counting the target's
        answers (its peer id is learnt from its first answer; pass it as
        TARGET=<hex> in the environment to filter from the start).
"""
import json
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crustwire as w  # noqa: E402

MAGIC = b"CRBN"
VERSION = 1
SIGNED_LEN = 60
LEN = SIGNED_LEN + 64
CONTEXT = b"crust beacon v1"
ANNOUNCE, QUERY, ANSWER = 1, 2, 3
PORT = 5483


def now_ms():
    return int(time.time() * 1000)


def body(peer_pk, type_, ts_ms, tcp_port=0, rudp_port=0, network=None, magic=MAGIC,
         version=VERSION):
    return (magic + bytes([version, type_]) + b"\0\0" + w.network_tag(network) + peer_pk +
            struct.pack(">QHH", ts_ms, tcp_port, rudp_port))


def encode(ident, type_, ts_ms, tcp_port=0, rudp_port=0, network=None):
    """A signed beacon of ident (crustwire.Identity)."""
    b = body(ident.pk, type_, ts_ms, tcp_port, rudp_port, network)
    return b + ident.sign(CONTEXT + b)


def parse(pkt, network=None):
    """The fields of a well-formed, correctly signed beacon, else None."""
    if len(pkt) != LEN or pkt[:4] != MAGIC or pkt[4] != VERSION:
        return None
    if pkt[8:16] != w.network_tag(network):
        return None
    if not w.verify(pkt[16:48], pkt[SIGNED_LEN:], CONTEXT + pkt[:SIGNED_LEN]):
        return None
    ts, tcp, rudp = struct.unpack(">QHH", pkt[48:60])
    return {"type": pkt[5], "peer": pkt[16:48].hex(), "ts_ms": ts, "tcp_port": tcp,
            "rudp_port": rudp}


def udp_socket(ttl, bind_port=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    if bind_port is not None:
        s.bind(("0.0.0.0", bind_port))
    return s


# --- the flood --------------------------------------------------------------------------

N_OVERSIZED = 600
N_TRUNCATED = 300
N_BAD_MAGIC = 300
N_OTHER_NETWORK = 200
N_STALE = 100
N_OFF_LINK = 100
N_FORGED = 1500
QUERY_RATE = 50          # valid queries per second and identity during the window


def junk(network):
    """(kind, datagram, ttl) of every bad beacon, shuffled."""
    me = w.Identity()
    out = []
    for _ in range(N_OVERSIZED):
        size = random.choice([LEN + 1, 200, 1000, 1472, 8000, 60000])
        out.append(("oversized", encode(me, QUERY, now_ms(), 0, 0, network) +
                    os.urandom(size - LEN), 255))
    for _ in range(N_TRUNCATED):
        out.append(("truncated", encode(me, QUERY, now_ms(), 0, 0, network)[:random.randrange(LEN)],
                    255))
    for _ in range(N_BAD_MAGIC):
        p = bytearray(encode(me, QUERY, now_ms(), 0, 0, network))
        p[:4] = random.choice([b"CRST", b"XXXX", os.urandom(4)])
        out.append(("bad_magic", bytes(p), 255))
    for _ in range(N_OTHER_NETWORK):
        out.append(("other_network", encode(w.Identity(), QUERY, now_ms(), 9, 0,
                                            "not-" + (network or "")), 255))
    for _ in range(N_STALE):
        out.append(("stale", encode(w.Identity(), QUERY, now_ms() - 3600 * 1000, 9, 0,
                                    network), 255))
    for _ in range(N_OFF_LINK):
        out.append(("off_link", encode(w.Identity(), QUERY, now_ms(), 9, 0, network), 64))
    for _ in range(N_FORGED):
        b = body(os.urandom(32), QUERY, now_ms(), 9, 0, network)
        out.append(("forged", b + os.urandom(64), 255))
    random.shuffle(out)
    return out


def send_junk(target, network):
    socks = {ttl: udp_socket(ttl) for ttl in (64, 255)}
    counts = {}
    for i, (kind, pkt, ttl) in enumerate(junk(network)):
        socks[ttl].sendto(pkt, target)
        counts[kind] = counts.get(kind, 0) + 1
        if i % 100 == 99:
            time.sleep(0.005)   # bounded pace: the target's socket buffer, not its CPU, sets it
    return counts


def query_window(target, network, window_s, target_peer):
    """Valid queries from two identities for window_s; count the target's answers."""
    listen = udp_socket(255, bind_port=target[1])
    listen.settimeout(0.01)
    idents = [w.Identity(), w.Identity()]
    answers, queries = 0, 0
    start = time.monotonic()
    end = start + window_s
    next_send = start
    while True:
        t = time.monotonic()
        if t >= end + 1.5:          # late answers to the last queries still count
            break
        if t < end and t >= next_send:
            for ident in idents:
                listen.sendto(encode(ident, QUERY, now_ms(), 0, 0, network), target)
                queries += 1
            next_send += 1.0 / QUERY_RATE
        try:
            pkt, src = listen.recvfrom(65536)
        except socket.timeout:
            continue
        m = parse(pkt, network)
        if not m or m["type"] != ANSWER or src[0] != target[0]:
            continue
        if target_peer and m["peer"] != target_peer:
            continue
        answers += 1
    return {"queries": queries, "answers": answers,
            "window_s": round(time.monotonic() - start, 3),
            "identities": [i.peer for i in idents]}


def main(argv):
    if argv[1] == "send":
        ip, port, ttl, network = argv[2], int(argv[3]), int(argv[4]), argv[5] or None
        ident = w.Identity()
        udp_socket(ttl).sendto(encode(ident, ANNOUNCE, now_ms(), 9, 0, network), (ip, port))
        print(json.dumps({"peer": ident.peer}), flush=True)
    elif argv[1] == "flood":
        ip, port, network, window = argv[2], int(argv[3]), argv[4] or None, float(argv[5])
        counts = send_junk((ip, port), network)
        result = query_window((ip, port), network, window, os.environ.get("TARGET"))
        result["junk"] = counts
        print(json.dumps(result), flush=True)
    else:
        raise SystemExit("usage: beaconwire.py send|flood ...")


if __name__ == "__main__":
    main(sys.argv)
