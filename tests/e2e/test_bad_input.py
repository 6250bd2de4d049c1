#!/usr/bin/env python3
"""Bad input from raw TCP clients (crustwire.py: a Python crust peer, careful
or hostile) against node A (--max-msg-size 65536, --frame-timeout-ms 1000,
--handshake-timeout-ms 2000), while a well-behaved node B stays connected:

  (a) random bytes                  -> closed, handshake_failed + warning
  (a') bad msg1 (magic, version 1 = the old clear hello, version 3, type,
       size, network tag, tracer flag, all-zero ephemeral key)
                                    -> closed, handshake_failed with the reason;
                                       a refusal frame for version, network and
                                       mode, nothing otherwise
  (a'') bad msg3 (garbage proof, B's id claimed, wrong transcript signed, wrong
       type, wrong size)            -> handshake_failed "authentication"/"malformed"
  (b) after a valid handshake, a frame length above the maximum
                                    -> lost_connection "...maximum..." + abuse
      a message above max-msg-size inside a valid record
                                    -> lost_connection "...maximum..." + abuse
  (c) after the handshake, half a frame / half a header, then nothing
                                    -> lost_connection about the stalled frame
      half a msg1 / msg1 and no msg3 -> handshake_failed (stalled / handshake timeout)
  (d) connect and send nothing      -> closed after the handshake timeout, A sent nothing
  (e) a record with a flipped byte, a replayed record (the same sealed bytes
      twice), reordered records, a record of the wrong kind, a record whose
      messages run past its end     -> lost_connection "integrity" / "malformed" + abuse
  plus: a valid raw client works (A's msg2 proves A's id and port, messages go
  both ways, several per record, empty records, keepalives, a record sent
  slowly in pieces, a record of exactly the maximum frame length), and 200
  more bad connections leave A's RSS and descriptor count bounded, its peer
  table holding B only.

All bad clients come from 127.0.0.1, like B: their pace stays under A's
per-source handshake limits (50/s, burst 100, 16 pending), which
test_flood.py exercises instead.

Every wait is bounded; nothing asserts on how fast anything is.
"""
import os
import random
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crustwire as w  # noqa: E402
from crustnode import (CrustNode, check, connect_pair, exchange, frame, hello_v1, log,  # noqa: E402
                       msg_bytes, read_until_closed, run)

MAX = 65536
MAX_FRAME = w.max_frame_len(MAX)
FRAME_TIMEOUT_MS = 1000
HANDSHAKE_TIMEOUT_MS = 2000
CLOSE_WAIT = 20.0      # generous bound for A to close a bad connection

A = None
B = None


STDERR_MARK = {}   # client address -> A's stderr line count when it connected
USED_PORTS = set()  # local ports used so far: each bad client's "IP:PORT" names it alone


class Pacer:
    """At most rate new connections per second (burst allowed): keeps this
    test under A's per-source handshake rate limit."""

    def __init__(self, rate=35.0, burst=60):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()
        self.lock = threading.Lock()

    def take(self):
        with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                time.sleep((1 - self.tokens) / self.rate)


PACER = Pacer()


def open_client():
    PACER.take()
    mark = len(A.stderr_lines)
    s = w.open_socket("127.0.0.1", A.port, avoid=USED_PORTS)
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


def expect_closed(s, what, silent=False, refusal=None):
    """A closes s. silent: A must not have sent a byte (nothing for non-peers);
    refusal: A must have sent exactly that refusal code (a type 4 frame with
    A's own flags), then nothing."""
    data, how = read_until_closed(s, CLOSE_WAIT)
    check(True, "%s: A closed the connection (%s after %d more bytes)" % (what, how, len(data)))
    if refusal is not None:
        want = frame(w.make_refusal(refusal, 0))
        check(data == want, "%s: A sent a refusal with reason %d and nothing else (%s)"
              % (what, refusal, data.hex()), A)
    elif silent:
        check(data == b"", "%s: A sent nothing to it (got %s)" % (what, data[:20].hex()), A)
    s.close()
    return data


def expect_handshake_failed(addr, what, words=()):
    ev = A.wait_for("handshake_failed", lambda e: e.get("addr") == addr, CLOSE_WAIT)
    reason = ev.get("reason", "")
    log("%s: handshake_failed reason: %r" % (what, reason))
    check(reason.strip() != "", "%s: handshake_failed has a reason" % what, A)
    low = reason.lower()
    if words:
        check(any(x in low for x in words),
              "%s: the reason mentions one of %r (%r)" % (what, words, reason), A)
    return ev


def expect_lost(peer_hex, what, words):
    ev = A.wait_for("lost_connection", lambda e: e.get("peer") == peer_hex, CLOSE_WAIT)
    reason = ev.get("reason", "")
    log("%s: lost_connection reason: %r" % (what, reason))
    check(any(x in reason.lower() for x in words),
          "%s: the lost_connection reason mentions one of %r (%r)" % (what, words, reason), A)
    return ev


def expect_abuse(addr, what, words, known_dup=False):
    """One abuse event for addr (known_dup: tolerate the known double event)."""
    ev = A.wait_for("abuse", lambda e: e.get("addr") == addr, CLOSE_WAIT)
    reason = ev.get("reason", "")
    check(any(x in reason.lower() for x in words),
          "%s: A reports abuse from %s mentioning one of %r (%r)" % (what, addr, words, reason),
          A)
    extra = A.collect("abuse", lambda e: e.get("addr") == addr, 0.3)
    if extra and known_dup and TOLERATE_DOUBLE_ABUSE_FOR_BIG_MESSAGES:
        log("note: KNOWN LIBRARY BUG: a second abuse event for the same message: %r" % extra)
        extra = extra[1:]
    check(not extra, "%s: exactly one abuse event (%d more: %r)" % (what, len(extra), extra), A)
    return ev


def expect_no_abuse(addr, what):
    got = A.pending("abuse", lambda e: e.get("addr") == addr)
    check(not got, "%s: no abuse event for it (%r)" % (what, got), A)


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


def raw_peer(wait=True):
    """A raw client that completed the handshake: (Conn, addr). With wait,
    A has reported its new_connection."""
    s, addr = open_client()
    c = w.handshake_initiator(s)
    if wait:
        A.wait_for("new_connection", lambda e: e.get("peer") == c.me, CLOSE_WAIT)
    return c, addr


def new_message(c, what):
    return A.wait_for("new_message", lambda e: e.get("peer") == c.me, CLOSE_WAIT)


# --- a well-behaved raw client -------------------------------------------------------------


def case_good_raw_client():
    what = "raw client"
    c, addr = raw_peer()
    check(c.peer == A.peer, "A's msg2 proves A's id", A)
    check(c.peer_port == A.port, "A's msg2 carries A's listen port %d (%d)"
          % (A.port, c.peer_port), A)
    check(c.hs.peer_flags == 0, "A's msg2: secure (not tracer), ChaCha20-Poly1305 (flags %#x)"
          % c.hs.peer_flags, A)
    # A -> raw
    A.send(c.me, "to the raw client")
    check(c.recv_user() == b"to the raw client", "A's message reaches the raw client", A)
    # raw -> A: several messages in one record, an empty record, a keepalive,
    # a control message of an unknown code, separate records
    c.send(b"one", b"", b"three")
    c.send()
    c.send(w.ctrl(w.CTRL_KEEPALIVE))
    c.send(w.ctrl(99), b"four")
    c.send(b"\x00\xff binary \x80")
    for want in (b"one", b"", b"three", b"four", b"\x00\xff binary \x80"):
        ev = new_message(c, what)
        check(msg_bytes(ev) == want, "A got %r from the raw client" % want, A)
    # a record sent slowly in pieces: pauses well under the frame timeout, the
    # whole record longer than it, which must not matter while bytes keep coming
    slow = c.sealed(b"s" * 300)
    for i in range(0, len(slow), 40):
        c.send_raw(slow[i:i + 40])
        time.sleep(FRAME_TIMEOUT_MS / 1000 / 8)
    ev = new_message(c, what)
    check(msg_bytes(ev) == b"s" * 300, "a record sent slowly but steadily arrives", A)
    # a message of exactly max-msg-size, alone in its record
    big = bytes(random.randrange(256) for _ in range(MAX))
    c.send(big)
    ev = new_message(c, what)
    check(ev["len"] == MAX and msg_bytes(ev) == big,
          "a message of exactly --max-msg-size (%d) arrives intact" % MAX, A)
    # a record of exactly the maximum frame length (two messages in it)
    first = MAX // 2
    second = MAX_FRAME - 1 - w.TAG_LEN - 8 - first
    rec = c.sealed(b"a" * first, b"b" * second)
    check(len(rec) == 4 + MAX_FRAME, "the record is exactly the maximum frame (%d)" % MAX_FRAME)
    c.send_raw(rec)
    for n, ch in ((first, b"a"), (second, b"b")):
        ev = new_message(c, what)
        check(ev["len"] == n and msg_bytes(ev) == ch * n,
              "a record of exactly the maximum frame length: %d x %r arrives" % (n, ch), A)
    check(c.me in A.peers(), "the raw client is one of A's peers", A)
    check(not A.pending("abuse"), "no abuse event for the raw client", A)
    c.close()
    expect_lost(c.me, what + " leaves", ("closed", "reset", "peer"))


# --- (a) random bytes and bad handshakes ---------------------------------------------------------


def case_random_bytes():
    for i, (data, abuse) in enumerate([
            (b"\xff" + bytes(random.randrange(256) for _ in range(255)), True),   # huge length
            (frame(bytes(random.randrange(256) for _ in range(48))), False),      # not a msg1
            (b"\xf0" + bytes(random.randrange(256) for _ in range(65536 + 7)), True),
            (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", True),                # a web client
    ]):
        what = "(a) random bytes #%d (%d bytes)" % (i, len(data))
        s, addr = open_client()
        send_quietly(s, data)
        expect_closed(s, what, silent=True)
        expect_handshake_failed(addr, what)
        expect_warning(addr, what)
        if abuse:
            expect_abuse(addr, what, ("maximum",))


def case_bad_msg1():
    good = w.Handshake(True).make_msg1()
    e = good[16:]
    # name, msg1, words in the reason, the refusal A sends (None: nothing at all)
    cases = [
        ("bad magic", w.header(1, magic=b"XRST") + bytes(8) + e, ("not a crust peer (bad magic)",),
         None),
        ("version 1 (the old clear hello)", hello_v1(),
         ("unsupported protocol version 1 (we speak 2)",), w.REFUSE_VERSION),
        ("version 1 header on a msg1", w.header(1, version=1) + bytes(8) + e,
         ("unsupported protocol version 1",), w.REFUSE_VERSION),
        ("version 3", w.header(1, version=3) + bytes(8) + e, ("unsupported protocol version 3",),
         w.REFUSE_VERSION),
        ("type 3 first", w.header(3) + bytes(8) + e, ("malformed handshake",), None),
        ("type 7", w.header(7) + bytes(8) + e, ("malformed handshake",), None),
        ("47-byte msg1", good[:47], ("malformed handshake",), None),
        ("49-byte msg1", good + b"\0", ("malformed handshake",), None),
        ("empty frame first", b"", ("bad magic",), None),
        ("other network", w.header(1) + w.network_tag("elsewhere") + e,
         ("another network",), w.REFUSE_NETWORK),
        ("tracer flag (A is secure)", w.header(1, w.FLAG_TRACER) + bytes(8) + e,
         ("tracer mode mismatch: we are secure, the peer is tracer",), w.REFUSE_TRACER),
        ("all-zero ephemeral key", w.header(1) + bytes(8) + bytes(32),
         ("malformed handshake (bad ephemeral key)",), None),
    ]
    for name, msg1, words, refusal in cases:
        what = "(a') " + name
        s, addr = open_client()
        send_quietly(s, frame(msg1))
        expect_closed(s, what, silent=True, refusal=refusal)
        expect_handshake_failed(addr, what, words)
        expect_warning(addr, what)
        expect_no_abuse(addr, what)
    b_still_fine("bad msg1")


def bad_msg3(how):
    """msg1, A's msg2, then a bad msg3 of kind how."""
    s, addr = open_client()
    hs = w.Handshake(True)
    s.sendall(frame(hs.make_msg1()))
    msg2 = w.recv_frame(s, CLOSE_WAIT)
    if how == "garbage proof":
        msg3 = w.header(3) + os.urandom(w.MSG3_LEN - 8)
    elif how == "B's id claimed":
        msg3 = hs.on_msg2(msg2, claim_pk=bytes.fromhex(B.peer))
    elif how == "A's own id claimed":
        msg3 = hs.on_msg2(msg2, claim_pk=bytes.fromhex(A.peer))
    elif how == "responder's transcript signed":
        msg3 = hs.on_msg2(msg2, sign_label="crust v2 responder")
    elif how == "msg1 again":
        msg3 = hs.make_msg1()
    elif how == "121-byte msg3":
        msg3 = hs.on_msg2(msg2)[:-1]
    else:
        raise ValueError(how)
    send_quietly(s, frame(msg3))
    return s, addr


def case_bad_msg3():
    for how, words in [
            ("garbage proof", ("handshake authentication failed (cannot open the proof)",)),
            ("B's id claimed", ("handshake authentication failed (bad signature)",)),
            ("A's own id claimed", ("handshake authentication failed (bad signature)",)),
            ("responder's transcript signed", ("handshake authentication failed (bad signature)",)),
            ("msg1 again", ("malformed handshake",)),
            ("121-byte msg3", ("malformed handshake",))]:
        what = "(a'') " + how
        s, addr = bad_msg3(how)
        expect_closed(s, what)
        expect_handshake_failed(addr, what, words)
        expect_warning(addr, what)
    b_still_fine("bad msg3")


def case_dial_self():
    what = "(a'') A dials itself"
    A.connect(A.port)
    ev = A.wait_for("connect_failed", None, CLOSE_WAIT)
    check("ourselves" in ev.get("reason", ""),
          "%s: connect_failed 'connected to ourselves' (%r)" % (what, ev.get("reason")), A)
    # the accepting side ends too (its reason depends on which end noticed first)
    ev = A.wait_for("handshake_failed", None, CLOSE_WAIT)
    log("%s: the accepting side: %r" % (what, ev.get("reason")))
    check(A.peers() == [B.peer], "%s: A's only peer is still B" % what, A)


# --- (b) oversized frames and messages --------------------------------------------------------


def case_oversize():
    for length in (MAX_FRAME + 1, 0xFFFFFFFF):
        what = "(b) frame length %d above the maximum %d" % (length, MAX_FRAME)
        c, addr = raw_peer()
        send_quietly(c.sock, struct.pack(">I", length) + b"x" * 100)
        expect_closed(c.sock, what)
        expect_lost(c.me, what, ("maximum",))
        expect_abuse(addr, what, ("maximum",))
        expect_warning(addr, what)
    what = "(b) a message of max-msg-size + 1 in a valid record"
    c, addr = raw_peer()
    c.send(b"fine first")
    ev = new_message(c, what)
    check(msg_bytes(ev) == b"fine first", what + ": the message before it arrives", A)
    rec = c.sealed(b"m" * (MAX + 1))
    check(len(rec) - 4 <= MAX_FRAME, what + ": its record fits a frame (%d)" % (len(rec) - 4))
    send_quietly(c.sock, rec)
    expect_closed(c.sock, what)
    ev = expect_lost(c.me, what, ("maximum",))
    check(str(MAX) in ev["reason"], what + ": the reason names the maximum %d" % MAX, A)
    expect_abuse(addr, what, ("maximum",), known_dup=True)
    expect_warning(addr, what)
    b_still_fine("oversized frames")


# --- (e) integrity -----------------------------------------------------------------------------


def flip(rec, pos):
    """rec (a framed record) with byte pos of its record (after the length) flipped."""
    b = bytearray(rec)
    b[4 + pos] ^= 0x01 << random.randrange(8)
    return bytes(b)


def case_integrity():
    cases = []
    for where in ("type byte", "ciphertext", "tag"):
        cases.append(("flipped byte in the " + where, where))
    cases += [("replayed record", "replay"), ("reordered records", "reorder"),
              ("record of 16 bytes", "short"), ("a tracer record", "tracer"),
              ("a record sealed with the wrong key", "wrongkey")]
    for name, how in cases:
        what = "(e) " + name
        c, addr = raw_peer()
        first = c.sealed(b"first")
        c.send_raw(first)
        ev = new_message(c, what)
        check(msg_bytes(ev) == b"first", what + ": a good record first", A)
        if how == "type byte":
            bad = flip(c.sealed(b"x" * 40), 0)
        elif how == "ciphertext":
            bad = flip(c.sealed(b"x" * 40), 1 + random.randrange(44))
        elif how == "tag":
            bad = flip(c.sealed(b"x" * 40), 45 + random.randrange(16))
        elif how == "replay":
            bad = first                        # the same sealed bytes again
        elif how == "reorder":
            r1, r2 = c.sealed(b"r1"), c.sealed(b"r2")
            bad = r2 + r1
        elif how == "short":
            bad = frame(b"\x10" + os.urandom(15))
        elif how == "tracer":
            bad = frame(w.TRACER_MAGIC + bytes([w.REC_TRACER]) + struct.pack(">Q", 1)
                        + w.pack(b"clear"))
        elif how == "wrongkey":
            bad = w.Session(os.urandom(32), os.urandom(32)).seal_frame(w.pack(b"x"))
        send_quietly(c.sock, bad)
        expect_closed(c.sock, what)
        expect_lost(c.me, what, ("integrity",))
        expect_abuse(addr, what, ("integrity",))
        expect_warning(addr, what)
        late = A.pending("new_message", lambda e: e.get("peer") == c.me)
        check(not late, what + ": nothing of the bad record reached the user (%r)" % late, A)
    for name, plain in [("a message running past the record's end",
                         struct.pack(">I", 100) + b"short"),
                        ("3 stray bytes after a message", w.pack(b"ok") + b"\0\0\0")]:
        what = "(e) " + name
        c, addr = raw_peer()
        send_quietly(c.sock, c.session.seal_frame(plain))
        expect_closed(c.sock, what)
        expect_lost(c.me, what, ("malformed",))
        expect_abuse(addr, what, ("malformed",))
    b_still_fine("integrity failures")


# --- (c) stalled frames, (d) silence --------------------------------------------------------------


def case_stalled():
    for name, data in [
            ("half a frame", struct.pack(">I", 1000) + b"y" * 500),
            ("half a header", b"\0\0"),
            ("a max-size frame header and a little", struct.pack(">I", MAX_FRAME) + b"z" * 10),
    ]:
        what = "(c) " + name + ", then nothing"
        c, addr = raw_peer()
        c.send_raw(data)
        expect_closed(c.sock, what)
        expect_lost(c.me, what, ("stall",))
        expect_warning(addr, what)
    # a stalled msg1 is cut off (by the frame or the handshake timeout)
    what = "(c) half a msg1, then nothing"
    s, addr = open_client()
    s.sendall(frame(w.Handshake(True).make_msg1())[:30])
    expect_closed(s, what, silent=True)
    expect_handshake_failed(addr, what, ("stall", "handshake", "timeout"))
    # a half handshake: msg1, A's msg2, and never a msg3
    what = "(c) msg1 only, then nothing"
    s, addr = open_client()
    hs = w.Handshake(True)
    t0 = time.monotonic()
    s.sendall(frame(hs.make_msg1()))
    msg2 = w.recv_frame(s, CLOSE_WAIT)
    hs.on_msg2(msg2)   # A's proof checks out (its msg3 is never sent)
    check(hs.peer.hex() == A.peer, what + ": A's msg2 proves A's id", A)
    expect_closed(s, what)
    took = time.monotonic() - t0
    expect_handshake_failed(addr, what, ("handshake timeout",))
    check(took >= HANDSHAKE_TIMEOUT_MS / 1000 * 0.9,
          what + ": not closed before the handshake timeout (%.2fs)" % took, A)
    expect_warning(addr, what)
    b_still_fine("stalled frames")


def case_silent():
    what = "(d) connect and send nothing"
    s, addr = open_client()
    t0 = time.monotonic()
    expect_closed(s, what, silent=True)
    took = time.monotonic() - t0
    expect_handshake_failed(addr, what, ("handshake", "timeout"))
    check(took >= HANDSHAKE_TIMEOUT_MS / 1000 * 0.9,
          what + ": not closed before the handshake timeout (%.2fs)" % took, A)
    expect_warning(addr, what)
    b_still_fine("silent client")


# --- many bad connections: memory and descriptors stay bounded --------------------------------

# kind -> (the event A reports, whether an abuse event comes with it)
KINDS = {
    "random": ("handshake_failed", True),
    "badmagic": ("handshake_failed", False),
    "oldhello": ("handshake_failed", False),
    "silent": ("handshake_failed", False),
    "half_hs": ("handshake_failed", False),
    "impersonate": ("handshake_failed", False),
    "oversize": ("lost_connection", True),
    "stall": ("lost_connection", False),
    "hs_then_close": ("lost_connection", False),
    "garbage_after_hs": ("lost_connection", True),
    "flipped": ("lost_connection", True),
    "replay": ("lost_connection", True),
    "bigmsg": ("lost_connection", True),
}
KIND_NAMES = sorted(KINDS)

# Library bug (reported): a message above max-msg-size inside a record gets
# two abuse events, one from conn_abuse() in p2p/secure.c and one from
# on_closed() in p2p/conn.c, which reports abuse for every -EMSGSIZE close
# (meant for oversized frames, which the transport closes by itself). Set to
# False once fixed: exactly one abuse event is what PROTOCOL.md promises.
TOLERATE_DOUBLE_ABUSE_FOR_BIG_MESSAGES = False


def start_bad(kind):
    """Open one bad connection of kind; returns (its socket or None if closed already, addr)."""
    if kind in ("random", "badmagic", "oldhello", "silent", "half_hs"):
        s, addr = open_client()
        if kind == "random":
            data = bytes(random.randrange(256) for _ in range(random.randrange(3, 2000)))
            # a whole header with a huge length: not a stalled frame, not a chance msg1
            send_quietly(s, b"\xff" + data)
        elif kind == "badmagic":
            send_quietly(s, frame(b"NOPE" + os.urandom(44)))
        elif kind == "oldhello":
            send_quietly(s, frame(hello_v1()))
        elif kind == "half_hs":
            send_quietly(s, frame(w.Handshake(True).make_msg1()))
        return s, addr
    if kind == "impersonate":
        return bad_msg3("B's id claimed")
    c, addr = raw_peer(wait=False)
    if kind == "oversize":
        send_quietly(c.sock, struct.pack(">I", MAX_FRAME + 1 + random.randrange(1 << 20)))
    elif kind == "stall":
        send_quietly(c.sock, struct.pack(">I", MAX_FRAME) + b"q" * random.randrange(0, 40000))
    elif kind == "hs_then_close":
        send_quietly(c.sock, c.sealed(b"bye"))
        c.close()
        return None, addr
    elif kind == "garbage_after_hs":
        send_quietly(c.sock, c.sealed(b"ok") + struct.pack(">I", 0x7FFFFFFF))
    elif kind == "flipped":
        send_quietly(c.sock, flip(c.sealed(b"ok", b"flip me"), 1 + random.randrange(30)))
    elif kind == "replay":
        rec = c.sealed(b"twice")
        send_quietly(c.sock, rec + rec)
    elif kind == "bigmsg":
        send_quietly(c.sock, c.sealed(b"b" * (MAX + 1 + random.randrange(MAX_FRAME - MAX - 30))))
    return c.sock, addr


def bad_batch(n, offset):
    """n bad connections, closed by A; returns {addr: kind}."""
    socks = []
    kinds = {}
    for i in range(n):
        kind = KIND_NAMES[(offset + i) % len(KIND_NAMES)]
        s, addr = start_bad(kind)
        kinds[addr] = kind
        if s is not None:
            socks.append(s)
    for s in socks:
        read_until_closed(s, CLOSE_WAIT)
        s.close()
    return kinds


def not_b(e):
    return e.get("peer") != B.peer


def count_bad_events(kinds):
    """Wait until A has reported every bad connection; then each must have
    exactly one closing event of the right kind and the right abuse events."""
    seen = {addr: [] for addr in kinds}
    stray = []
    deadline = time.monotonic() + CLOSE_WAIT

    def done():
        return all(any(e["event"] != "abuse" for e in evs) for evs in seen.values())

    while not done() and time.monotonic() < deadline:
        for ev in A.collect(None, lambda e: e["event"] in ("handshake_failed", "lost_connection",
                                                           "abuse") and not_b(e), 0.2):
            (seen[ev["addr"]] if ev.get("addr") in seen else stray).append(ev)
    for ev in A.collect(None, lambda e: e["event"] in ("handshake_failed", "lost_connection",
                                                       "abuse") and not_b(e), 0.5):
        (seen[ev["addr"]] if ev.get("addr") in seen else stray).append(ev)
    bad = []
    dup_abuse = 0
    for addr, evs in seen.items():
        kind = kinds[addr]
        want_ev, want_abuse = KINDS[kind]
        closing = [e["event"] for e in evs if e["event"] != "abuse"]
        abuse = [e for e in evs if e["event"] == "abuse"]
        n_abuse_ok = (1,) if want_abuse else (0,)
        if kind == "bigmsg" and TOLERATE_DOUBLE_ABUSE_FOR_BIG_MESSAGES:
            n_abuse_ok = (1, 2)
            dup_abuse += len(abuse) == 2
        if closing != [want_ev] or len(abuse) not in n_abuse_ok:
            bad.append((addr, kind, [(e["event"], e.get("reason")) for e in evs]))
    check(not bad and not stray,
          "A reported each of %d bad connections once, with its abuse events (%d wrong: %r; "
          "%d stray: %r)" % (len(kinds), len(bad), bad[:4], len(stray), stray[:3]), A)
    if dup_abuse:
        log("note: KNOWN LIBRARY BUG: %d oversized messages got two abuse events each"
            % dup_abuse)
    # the raw peers' messages and connections are not needed any more
    A.collect("new_message", not_b, 0.2)
    A.collect("new_connection", not_b, 0.2)


def case_many(total=200, batch=26):
    log("--- warm-up: %d bad connections" % len(KIND_NAMES))
    count_bad_events(bad_batch(len(KIND_NAMES), 0))
    b_still_fine("warm-up")
    rss0, fds0 = A.rss_kib(), A.fd_count()
    log("A before: VmRSS %d KiB, %d descriptors" % (rss0, fds0))
    kinds = {}
    for i in range(0, total, batch):
        kinds.update(bad_batch(min(batch, total - i), i))
    count_bad_events(kinds)
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
    case_bad_msg1()
    case_bad_msg3()
    case_oversize()
    case_integrity()
    case_stalled()
    case_silent()
    case_dial_self()
    case_many()

    check(B.quit() == 0, "B quits with status 0", B)
    check(A.quit() == 0, "A quits with status 0", A)


if __name__ == "__main__":
    run(main)
