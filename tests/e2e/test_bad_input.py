#!/usr/bin/env python3
"""Bad input from raw TCP clients against node A (--max-msg-size 65536,
--frame-timeout-ms 1000, --handshake-timeout-ms 2000), while a
well-behaved node B stays connected to A:

  (a) random bytes                  -> closed, handshake_failed + warning
  (a') bad hellos (magic, version, type, size, network, A's own id, B's id)
                                    -> closed, handshake_failed; B unaffected
  (b) hello, then a length above the maximum -> lost_connection "...maximum..."
  (c) hello, then half a frame / half a header, then nothing
                                    -> lost_connection about the stalled frame
  (d) connect and send nothing      -> closed after the handshake timeout
  plus: a valid raw client works (its hello parses, frames go both ways,
  a frame sent slowly in pieces is fine), and 200 more bad connections
  leave A's RSS and descriptor count bounded, its peer table holding B only.

Every wait is bounded; nothing asserts on how fast anything is.
"""
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import (CrustNode, check, connect_pair, exchange, frame, hello, log,  # noqa: E402
                       msg_bytes, parse_hello, read_until_closed, recv_frame, run)

MAX = 65536
FRAME_TIMEOUT_MS = 1000
HANDSHAKE_TIMEOUT_MS = 2000
CLOSE_WAIT = 20.0      # generous bound for A to close a bad connection

A = None
B = None


STDERR_MARK = {}   # client address -> A's stderr line count when it connected


def open_client():
    mark = len(A.stderr_lines)
    s = socket.create_connection(("127.0.0.1", A.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    addr = "127.0.0.1:%d" % s.getsockname()[1]
    STDERR_MARK[addr] = mark
    return s, addr


def send_quietly(s, data):
    """sendall, ignoring a reset by A (it may close before reading it all)."""
    try:
        s.sendall(data)
        return True
    except (ConnectionResetError, BrokenPipeError):
        return False


def check_a_hello(s):
    """A speaks first: its hello must be well formed and name A."""
    try:
        h = parse_hello(recv_frame(s))
    except (EOFError, ValueError, OSError) as e:
        check(False, "A sends its hello to a new connection first (%s)" % e, A)
    check(h["version"] == 1 and h["type"] == 1 and h["flags"] == b"\0\0"
          and h["network"] == b"\0" * 8 and h["pad"] == b"\0\0",
          "A's hello: version 1, type 1, zero flags, zero network tag", A)
    check(h["peer"] == A.peer, "A's hello carries A's peer id", A)
    check(h["listen_port"] == A.port, "A's hello carries A's listen port %d" % A.port, A)


def expect_closed(s, what):
    data, how = read_until_closed(s, CLOSE_WAIT)
    check(True, "%s: A closed the connection (%s after %d more bytes)" % (what, how, len(data)))
    s.close()


def expect_handshake_failed(addr, what, words=()):
    ev = A.wait_for("handshake_failed", lambda e: e.get("addr") == addr, CLOSE_WAIT)
    reason = ev.get("reason", "")
    log("%s: handshake_failed reason: %r" % (what, reason))
    check(reason.strip() != "", "%s: handshake_failed has a reason" % what, A)
    low = reason.lower()
    if words:
        check(any(w in low for w in words),
              "%s: the reason mentions one of %r (%r)" % (what, words, reason), A)
    return ev


def expect_lost(peer_hex, what, words):
    ev = A.wait_for("lost_connection", lambda e: e.get("peer") == peer_hex, CLOSE_WAIT)
    reason = ev.get("reason", "")
    log("%s: lost_connection reason: %r" % (what, reason))
    check(any(w in reason.lower() for w in words),
          "%s: the lost_connection reason mentions one of %r (%r)" % (what, words, reason), A)
    return ev


def expect_warning(addr, what):
    line = A.wait_stderr(lambda l: addr + " " in l and "warn" in l.lower(), 10,
                         STDERR_MARK.get(addr, 0))
    check(True, "%s: A warned on stderr: %r" % (what, line))


def b_still_fine(tag):
    check(A.alive(), "%s: A is alive" % tag, A)
    check(B.peer in A.peers(), "%s: B is still A's peer" % tag, A, B)
    exchange(A, B, "A to B after " + tag)
    exchange(B, A, "B to A after " + tag)
    check(not B.pending("lost_connection"), "%s: B lost no connection" % tag, B)


# --- (a) random bytes and bad hellos ----------------------------------------------


def case_random_bytes():
    for i, data in enumerate([
            bytes(random.randrange(256) for _ in range(256)),            # usually a huge length
            frame(bytes(random.randrange(256) for _ in range(52))),      # a frame, not a hello
            bytes(random.randrange(256) for _ in range(65536 + 7)),      # lots of it
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",                # a lost web client
    ]):
        what = "(a) random bytes #%d (%d bytes)" % (i, len(data))
        s, addr = open_client()
        check_a_hello(s)
        send_quietly(s, data)
        expect_closed(s, what)
        expect_handshake_failed(addr, what)
        expect_warning(addr, what)


def case_bad_hellos():
    good = hello(os.urandom(32))
    cases = [
        ("bad magic", frame(hello(magic=b"XRST")), ("magic", "not a crust")),
        ("version 2", frame(hello(version=2)), ("version",)),
        ("type 7", frame(hello(type_=7)), ("hello", "type")),
        ("51-byte hello", frame(good[:51]), ("hello", "malformed", "bytes")),
        ("53-byte hello", frame(good + b"\0"), ("hello", "malformed", "bytes")),
        ("empty frame first", frame(b""), ()),
        ("other network", frame(hello(network=b"\x01" * 8)), ("network",)),
        ("A's own id", frame(hello(bytes.fromhex(A.peer))), ("ourselves", "own", "self")),
        ("B's id (impersonation)", frame(hello(bytes.fromhex(B.peer))), ("already", "connected")),
    ]
    for name, data, words in cases:
        what = "(a') " + name
        s, addr = open_client()
        check_a_hello(s)
        send_quietly(s, data)
        expect_closed(s, what)
        expect_handshake_failed(addr, what, words)
    b_still_fine("bad hellos")


# --- (b) oversized frames ------------------------------------------------------------


def raw_peer():
    """A raw client that completed the hello: (sock, addr, peer hex)."""
    pid = os.urandom(32)
    s, addr = open_client()
    check_a_hello(s)
    s.sendall(frame(hello(pid)))
    A.wait_for("new_connection", lambda e: e.get("peer") == pid.hex(), CLOSE_WAIT)
    return s, addr, pid.hex()


def case_oversize():
    for length in (MAX + 1, 0xFFFFFFFF):
        what = "(b) length %d above the maximum %d" % (length, MAX)
        s, addr, peer = raw_peer()
        send_quietly(s, struct.pack(">I", length) + b"x" * 100)
        expect_closed(s, what)
        expect_lost(peer, what, ("maximum",))
        expect_warning(addr, what)
    # exactly the maximum is fine
    what = "(b) a frame of exactly the maximum"
    s, addr, peer = raw_peer()
    payload = bytes(random.randrange(256) for _ in range(MAX))
    s.sendall(frame(payload))
    ev = A.wait_for("new_message", lambda e: e.get("peer") == peer, CLOSE_WAIT)
    check(ev["len"] == MAX and msg_bytes(ev) == payload, what + " arrives intact", A)
    s.close()
    expect_lost(peer, what + ", then the client leaves", ("closed", "reset", "peer"))
    b_still_fine("oversized frames")


# --- (c) stalled frames --------------------------------------------------------------


def case_stalled():
    for name, data in [
            ("half a frame", struct.pack(">I", 1000) + b"y" * 500),
            ("half a header", b"\0\0"),
            ("a max-size frame header and a little", struct.pack(">I", MAX) + b"z" * 10),
    ]:
        what = "(c) " + name + ", then nothing"
        s, addr, peer = raw_peer()
        s.sendall(data)
        expect_closed(s, what)
        expect_lost(peer, what, ("stall",))
        expect_warning(addr, what)
    # a stalled hello is also cut off (by the frame or the handshake timeout)
    what = "(c) half a hello, then nothing"
    s, addr = open_client()
    check_a_hello(s)
    s.sendall(frame(hello())[:30])
    expect_closed(s, what)
    expect_handshake_failed(addr, what, ("stall", "hello", "handshake", "timeout"))
    b_still_fine("stalled frames")


# --- (d) silence ------------------------------------------------------------------------


def case_silent():
    what = "(d) connect and send nothing"
    s, addr = open_client()
    check_a_hello(s)
    expect_closed(s, what)
    expect_handshake_failed(addr, what, ("hello", "handshake", "timeout"))
    expect_warning(addr, what)
    b_still_fine("silent client")


# --- a well-behaved raw client -------------------------------------------------------------


def case_good_raw_client():
    what = "raw client"
    s, addr, peer = raw_peer()
    # A -> raw: a frame with exactly the text
    A.send(peer, "to the raw client")
    check(recv_frame(s) == b"to the raw client", "A's message reaches the raw client framed", A)
    # raw -> A: several frames in one write, then one frame in slow pieces
    s.sendall(frame(b"one") + frame(b"") + frame(b"three"))
    for want in (b"one", b"", b"three"):
        ev = A.wait_for("new_message", lambda e: e.get("peer") == peer, CLOSE_WAIT)
        check(msg_bytes(ev) == want, "A got %r from the raw client" % want, A)
    slow = frame(b"s" * 300)
    # pieces with pauses well under the frame timeout; the whole frame takes
    # longer than the timeout, which must not matter while bytes keep coming
    for i in range(0, len(slow), 30):
        s.sendall(slow[i:i + 30])
        time.sleep(FRAME_TIMEOUT_MS / 1000 / 8)
    ev = A.wait_for("new_message", lambda e: e.get("peer") == peer, CLOSE_WAIT)
    check(msg_bytes(ev) == b"s" * 300, "a frame sent slowly but steadily arrives", A)
    check(peer in A.peers(), "the raw client is one of A's peers", A)
    s.close()
    expect_lost(peer, what + " leaves", ("closed", "reset", "peer"))


# --- many bad connections: memory and descriptors stay bounded --------------------------------


KINDS = ["random", "oversize", "stall", "silent", "badmagic", "impersonate", "hello_then_close",
         "garbage_after_hello"]


def start_bad(kind):
    """Open one bad connection of kind; returns (sock or None, expected event kind)."""
    s, addr = open_client()
    if kind == "random":
        data = bytes(random.randrange(256) for _ in range(random.randrange(1, 2000)))
        # keep it from being a stalled frame or a chance hello: a huge length first
        send_quietly(s, b"\xff" + data)
        return s, "handshake_failed"
    if kind == "badmagic":
        send_quietly(s, frame(hello(magic=b"NOPE")))
        return s, "handshake_failed"
    if kind == "silent":
        return s, "handshake_failed"
    if kind == "impersonate":
        send_quietly(s, frame(hello(bytes.fromhex(B.peer))))
        return s, "handshake_failed"
    pid = os.urandom(32)
    h = frame(hello(pid))
    if kind == "oversize":
        send_quietly(s, h + struct.pack(">I", MAX + 1 + random.randrange(1 << 20)))
    elif kind == "stall":
        send_quietly(s, h + struct.pack(">I", MAX) + b"q" * random.randrange(0, 40000))
    elif kind == "hello_then_close":
        send_quietly(s, h + frame(b"bye"))
        s.close()
        return None, "lost_connection"
    elif kind == "garbage_after_hello":
        send_quietly(s, h + frame(b"ok") + struct.pack(">I", 0x7FFFFFFF))
    return s, "lost_connection"


def bad_batch(n):
    socks = []
    want = {"handshake_failed": 0, "lost_connection": 0}
    for i in range(n):
        s, ev = start_bad(KINDS[i % len(KINDS)])
        want[ev] += 1
        if s is not None:
            socks.append(s)
    for s in socks:
        read_until_closed(s, CLOSE_WAIT)
        s.close()
    return want


def count_bad_events(want):
    """Wait until A has reported every bad connection, exactly once."""
    got = {"handshake_failed": 0, "lost_connection": 0}
    deadline = time.monotonic() + CLOSE_WAIT
    while got != want and time.monotonic() < deadline:
        for kind in got:
            got[kind] += len(A.collect(kind, lambda e: e.get("peer") != B.peer, 0.2))
    extra = A.collect(None, lambda e: e["event"] in got and e.get("peer") != B.peer, 0.5)
    check(got == want and not extra,
          "A reported each bad connection once: want %r, got %r (+%d extra)"
          % (want, got, len(extra)), A)
    # the raw peers' messages ("bye", "ok") are not needed any more
    A.collect("new_message", lambda e: e.get("peer") != B.peer, 0.2)
    A.collect("new_connection", lambda e: e.get("peer") != B.peer, 0.2)


def add(w, v):
    for k in w:
        w[k] += v[k]


def case_many(total=200, batch=25):
    log("--- warm-up: %d bad connections" % (2 * len(KINDS)))
    count_bad_events(bad_batch(2 * len(KINDS)))
    b_still_fine("warm-up")
    rss0, fds0 = A.rss_kib(), A.fd_count()
    log("A before: VmRSS %d KiB, %d descriptors" % (rss0, fds0))
    want = {"handshake_failed": 0, "lost_connection": 0}
    for i in range(0, total, batch):
        add(want, bad_batch(min(batch, total - i)))
    count_bad_events(want)
    # descriptors of closed connections go away (bounded wait for the closes)
    deadline = time.monotonic() + CLOSE_WAIT
    while A.fd_count() > fds0 and time.monotonic() < deadline:
        time.sleep(0.1)
    rss1, fds1 = A.rss_kib(), A.fd_count()
    log("A after %d bad connections: VmRSS %d KiB (%+d KiB), %d descriptors"
        % (total, rss1, rss1 - rss0, fds1))
    check(rss1 - rss0 < 64 * 1024,
          "A's RSS grew by less than 64 MiB over %d bad connections (%+d KiB)"
          % (total, rss1 - rss0), A)
    check(fds1 <= fds0, "A's descriptor count is back to %d (now %d)" % (fds0, fds1), A)
    check(A.peers() == [B.peer], "A's only peer is B", A)
    st = A.stats()
    check(st["connections"] == 1, "A's stats count one connection (%r)" % st, A)
    b_still_fine("%d bad connections" % total)


def main():
    global A, B
    A = CrustNode("A", shards=2, args=["--max-msg-size", str(MAX),
                                       "--frame-timeout-ms", str(FRAME_TIMEOUT_MS),
                                       "--handshake-timeout-ms", str(HANDSHAKE_TIMEOUT_MS)])
    B = CrustNode("B")
    connect_pair(A, B)
    b_still_fine("start")

    case_good_raw_client()
    case_random_bytes()
    case_bad_hellos()
    case_oversize()
    case_stalled()
    case_silent()
    case_many()

    check(B.quit() == 0, "B quits with status 0", B)
    check(A.quit() == 0, "A quits with status 0", A)


if __name__ == "__main__":
    run(main)
