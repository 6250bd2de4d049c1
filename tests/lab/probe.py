#!/usr/bin/env python3
"""probe.py - traffic that shows what a lab link did to it (used through wirelab exec).

  probe.py recv PORT [--idle S] [--deadline S]
      Prints "ready", then receives UDP datagrams made by `send` until none came for
      --idle seconds (after the first) or --deadline passed; prints one JSON object:
      received, intact, corrupted (digest mismatch), unique (distinct intact sequence
      numbers), duplicates, late (arrived after a higher sequence number), bytes (IP
      bytes: payload + 28), min_owd_ms (smallest one-way delay: both ends read the same
      CLOCK_MONOTONIC, namespaces do not change it), first_ns/last_ns (kernel arrival
      times, SO_TIMESTAMPNS, CLOCK_REALTIME).
  probe.py send HOST PORT [--count N] [--size B] [--pps R]
      N datagrams of B bytes, in bursts of 10 paced to R per second; prints JSON.
  probe.py echo PORT [--deadline S]      echoes datagrams back until the deadline
  probe.py rtt HOST PORT [--count N]     N sequential echo requests (1 s timeout each)
  probe.py tcp-recv PORT [--deadline S]  prints "ready", then JSON {bytes, sha256}
  probe.py tcp-send HOST PORT BYTES      sends BYTES pseudo-random bytes; JSON {sha256}

Datagram layout: sequence (8 bytes) | send time (8, CLOCK_MONOTONIC ns) | filler |
8-byte BLAKE2b of everything before it, so any flipped byte is seen.
"""
import argparse
import hashlib
import json
import random
import socket
import struct
import sys
import time

HEAD = struct.Struct("!QQ")
DIGEST = 8
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def digest(b):
    return hashlib.blake2b(b, digest_size=DIGEST).digest()


def make_datagram(seq, size, filler):
    body = HEAD.pack(seq, time.monotonic_ns()) + filler[:max(size - HEAD.size - DIGEST, 0)]
    return body + digest(body)


def udp_socket(port=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, 32 << 20)
            break
        except OSError:
            continue
    if port is not None:
        s.bind(("0.0.0.0", port))
    return s


def cmd_recv(a):
    s = udp_socket(a.port)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    print("ready", flush=True)
    st = dict(received=0, intact=0, corrupted=0, unique=0, duplicates=0, late=0, bytes=0,
              min_owd_ms=None, first_ns=None, last_ns=None)
    seen = set()
    highest = -1
    deadline = time.monotonic() + a.deadline
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(min(left, a.idle) if st["received"] else left)
        try:
            data, anc, _, _ = s.recvmsg(65536, 64)
        except socket.timeout:
            if st["received"]:
                break
            continue
        now = time.monotonic_ns()
        for level, kind, val in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", val[:16])
                t = sec * 1000000000 + nsec
                st["first_ns"] = st["first_ns"] or t
                st["last_ns"] = t
        st["received"] += 1
        st["bytes"] += len(data) + 28
        if len(data) < HEAD.size + DIGEST or digest(data[:-DIGEST]) != data[-DIGEST:]:
            st["corrupted"] += 1
            continue
        st["intact"] += 1
        seq, sent = HEAD.unpack_from(data)
        owd = (now - sent) / 1e6
        if st["min_owd_ms"] is None or owd < st["min_owd_ms"]:
            st["min_owd_ms"] = owd
        if seq in seen:
            st["duplicates"] += 1
            continue
        seen.add(seq)
        if seq < highest:
            st["late"] += 1
        highest = max(highest, seq)
    st["unique"] = len(seen)
    print(json.dumps(st), flush=True)


def cmd_send(a):
    s = udp_socket()
    filler = bytes(random.Random(1).getrandbits(8) for _ in range(65536))
    start = time.monotonic()
    for seq in range(a.count):
        s.sendto(make_datagram(seq, a.size, filler), (a.host, a.port))
        if seq % 10 == 9:
            ahead = start + (seq + 1) / a.pps - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    print(json.dumps(dict(sent=a.count, seconds=time.monotonic() - start)), flush=True)


def cmd_echo(a):
    s = udp_socket(a.port)
    print("ready", flush=True)
    deadline = time.monotonic() + a.deadline
    while time.monotonic() < deadline:
        s.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data, peer = s.recvfrom(65536)
        except socket.timeout:
            break
        s.sendto(data, peer)


def cmd_rtt(a):
    s = udp_socket()
    s.connect((a.host, a.port))
    rtts = []
    for seq in range(a.count):
        req = make_datagram(seq, 64, b"\0" * 64)
        t0 = time.monotonic()
        s.send(req)
        s.settimeout(1.0)
        try:
            while True:
                if s.recv(65536) == req:  # a late or corrupted reply is not this one
                    rtts.append((time.monotonic() - t0) * 1000)
                    break
        except socket.timeout:
            pass
    print(json.dumps(dict(sent=a.count, replies=len(rtts), min_ms=min(rtts) if rtts else None)),
          flush=True)


def tcp_stream(n):
    """n pseudo-random bytes, the same on both ends, in 64 KiB chunks."""
    rng = random.Random(7)
    while n > 0:
        k = min(n, 65536)
        yield rng.getrandbits(8 * k).to_bytes(k, "little")
        n -= k


def cmd_tcp_recv(a):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", a.port))
    ls.listen(1)
    ls.settimeout(a.deadline)
    print("ready", flush=True)
    c, _ = ls.accept()
    c.settimeout(a.deadline)
    h = hashlib.sha256()
    total = 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b)
        total += len(b)
    print(json.dumps(dict(bytes=total, sha256=h.hexdigest())), flush=True)


def cmd_tcp_send(a):
    c = socket.create_connection((a.host, a.port), timeout=30)
    h = hashlib.sha256()
    for chunk in tcp_stream(a.nbytes):
        h.update(chunk)
        c.sendall(chunk)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)  # wait for the receiver to close: every byte was delivered
    print(json.dumps(dict(bytes=a.nbytes, sha256=h.hexdigest())), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv")
    r.add_argument("port", type=int)
    r.add_argument("--idle", type=float, default=1.5)
    r.add_argument("--deadline", type=float, default=30)
    s = sub.add_parser("send")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("--count", type=int, default=1000)
    s.add_argument("--size", type=int, default=200)
    s.add_argument("--pps", type=float, default=5000)
    e = sub.add_parser("echo")
    e.add_argument("port", type=int)
    e.add_argument("--deadline", type=float, default=30)
    t = sub.add_parser("rtt")
    t.add_argument("host")
    t.add_argument("port", type=int)
    t.add_argument("--count", type=int, default=10)
    tr = sub.add_parser("tcp-recv")
    tr.add_argument("port", type=int)
    tr.add_argument("--deadline", type=float, default=30)
    ts = sub.add_parser("tcp-send")
    ts.add_argument("host")
    ts.add_argument("port", type=int)
    ts.add_argument("nbytes", type=int)
    a = p.parse_args()
    if a.cmd in ("send",) and not (HEAD.size + DIGEST <= a.size <= 65000 and a.pps > 0):
        p.error("--size must be in [%d, 65000] and --pps above 0" % (HEAD.size + DIGEST))
    {"recv": cmd_recv, "send": cmd_send, "echo": cmd_echo, "rtt": cmd_rtt,
     "tcp-recv": cmd_tcp_recv, "tcp-send": cmd_tcp_send}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
