#!/usr/bin/env python3
"""rdvprobe.py HOST PORT SESSIONS | HOST PORT expiry SECONDS - poke a crust coordinator's rendezvous with
crust sessions made by crustwire.py, and print one JSON object of results.

Run inside a test's network namespace. Bounded: SESSIONS sessions, a fixed
number of messages, every read with a timeout.
  - SESSIONS sessions each register once: how many got "registered" and how
    many "refused" (the registration caps);
  - on the first session: a reach for an unknown id (refused, code 1), then
    a flood of 50 registers in one record (most refused: rate limited);
  - a relay preamble with a token nobody was given: the connection closes;
  - a malformed rendezvous message: the coordinator closes the session.
"expiry": a registration not refreshed within the TTL is never handed out.
"""
import json
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crustwire as cw  # noqa: E402

REGISTER, REGISTERED, REACH, PUNCH, REFUSED = 5, 6, 7, 8, 9


def ctrl_msgs(c, timeout=2.0):
    """Rendezvous answers (code, body) until the coordinator is quiet for timeout."""
    got = []
    while True:
        try:
            msgs = c.recv_msgs(timeout)
        except (socket.timeout, cw.WireError, OSError):
            return got
        got += [(m[0], m) for is_ctrl, m in msgs if is_ctrl and m and m[0] >= 5]


def closed(sock, timeout=3.0):
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def expiry(host, port, wait_s):
    """A registers and stays silent past the TTL; B, fresh, asks for A: refused."""
    import time
    a, b = cw.connect(host, port), cw.connect(host, port)
    out = {}
    for name, c in (("a", a), ("b", b)):
        c.send(cw.ctrl(bytes([REGISTER, 0])))
        out[name + "_registered"] = [code for code, _ in ctrl_msgs(c, 0.3)].count(REGISTERED)
    b.send(cw.ctrl(bytes([REACH]) + struct.pack(">I", 1) + bytes.fromhex(a.me)))
    out["before"] = [m[0] for _, m in ctrl_msgs(b, 0.3)]
    time.sleep(wait_s)
    b.send(cw.ctrl(bytes([REGISTER, 0])))
    ctrl_msgs(b, 0.3)
    b.send(cw.ctrl(bytes([REACH]) + struct.pack(">I", 2) + bytes.fromhex(a.me)))
    out["after"] = [(m[0], m[7:].decode()) for _, m in ctrl_msgs(b, 1.0)]
    print(json.dumps(out))


def main():
    if sys.argv[3] == "expiry":
        expiry(sys.argv[1], int(sys.argv[2]), float(sys.argv[4]))
        return
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    out = {"registered": 0, "refused": 0}
    sessions = []
    for _ in range(n):
        c = cw.connect(host, port)
        sessions.append(c)
        c.send(cw.ctrl(bytes([REGISTER, 0])))
        codes = [code for code, _ in ctrl_msgs(c, 1.0)]
        out["registered"] += codes.count(REGISTERED)
        out["refused"] += codes.count(REFUSED)
    first = sessions[0]
    first.send(cw.ctrl(bytes([REACH]) + struct.pack(">I", 77) + b"\xab" * 32))
    ans = ctrl_msgs(first, 1.0)
    out["reach_unknown"] = [(m[0], m[5], m[7:].decode()) for _, m in ans if m[0] == REFUSED]
    first.send(*[cw.ctrl(bytes([REGISTER, 0])) for _ in range(50)])
    codes = [code for code, _ in ctrl_msgs(first, 1.5)]
    out["flood_registered"] = codes.count(REGISTERED)
    out["flood_refused"] = codes.count(REFUSED)
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(cw.frame(b"CRLY\x01\x00" + os.urandom(16)))
    out["bad_token_closed"] = closed(s)
    s.close()
    last = sessions[-1]
    last.send(cw.ctrl(bytes([REACH, 1, 2, 3])))
    out["malformed_closed"] = closed(last.sock)
    for c in sessions:
        c.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
