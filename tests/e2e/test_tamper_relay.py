#!/usr/bin/env python3
"""A man in the middle between two real crust nodes: B dials a Python TCP
relay, which forwards to A, frame by frame, and can tamper with the
records it forwards.

  pass:   bytes go through unchanged: the handshake completes, messages
          flow both ways, and the relay never sees a message in the clear
  flip:   one byte flipped inside the next record from B to A
          -> A: lost_connection "integrity" + an abuse event; the message
             in that record never reaches A's user; B loses the connection
  replay: the relay sends A a record it forwarded earlier (captured)
          -> the same
  dup:    the next record from B to A is forwarded twice
          -> A gets its message once, then the same
  flip A->B: one byte flipped in the next record from A to B
          -> B: lost_connection "integrity" + abuse
After each attack B dials the relay again and the pair works again.
"""
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, exchange, log, msg_bytes, run  # noqa: E402

WAIT = 15.0
# handshake frames before the records, per direction (docs/PROTOCOL.md)
HS_FRAMES = {"b2a": 2, "a2b": 1}


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Pipe:
    """One relayed connection: B's socket and the relay's socket to A."""

    def __init__(self, relay, b_sock, a_sock):
        self.relay = relay
        self.socks = {"b2a": (b_sock, a_sock), "a2b": (a_sock, b_sock)}
        self.locks = {"b2a": threading.Lock(), "a2b": threading.Lock()}
        self.frames = {"b2a": 0, "a2b": 0}
        self.records = {"b2a": [], "a2b": []}     # records forwarded, as framed bytes
        self.actions = {"b2a": None, "a2b": None}
        self.tampered = threading.Event()
        self.closed = threading.Event()
        self.a_addr = "127.0.0.1:%d" % a_sock.getsockname()[1]   # how A names B's connection
        for d in ("b2a", "a2b"):
            threading.Thread(target=self._pump, args=(d,), daemon=True).start()

    def arm(self, direction, action):
        with self.locks[direction]:
            self.actions[direction] = action

    def inject(self, direction, data):
        """Send data in direction between two frames."""
        with self.locks[direction]:
            self.socks[direction][1].sendall(data)

    def _pump(self, d):
        src, dst = self.socks[d]
        try:
            while True:
                hdr = recv_exact(src, 4)
                if hdr is None:
                    break
                body = recv_exact(src, struct.unpack(">I", hdr)[0])
                if body is None:
                    break
                data = hdr + body
                with self.locks[d]:
                    self.frames[d] += 1
                    is_record = self.frames[d] > HS_FRAMES[d]
                    action = self.actions[d] if is_record else None
                    self.actions[d] = None if action else self.actions[d]
                    self.relay.seen[d] += data
                    if action == "flip":
                        b = bytearray(data)
                        pos = 4 + random.randrange(len(body))
                        b[pos] ^= 1 << random.randrange(8)
                        log("relay %s: flipped byte %d of a %d-byte record"
                            % (d, pos - 4, len(body)))
                        data = bytes(b)
                    dst.sendall(data)
                    if action == "dup":
                        dst.sendall(data)
                        log("relay %s: forwarded a %d-byte record twice" % (d, len(body)))
                    if is_record:
                        self.records[d].append(data)
                    if action:
                        self.tampered.set()
        except OSError:
            pass
        finally:
            # one side went away: so does the other
            for s in self.socks[d]:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.closed.set()


class Relay:
    def __init__(self, target_port):
        self.target_port = target_port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.pipes = []
        self.seen = {"b2a": bytearray(), "a2b": bytearray()}
        self.new_pipe = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                b_sock, _ = self.lsock.accept()
            except OSError:
                return
            a_sock = socket.create_connection(("127.0.0.1", self.target_port))
            for s in (a_sock, b_sock):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.new_pipe:
                self.pipes.append(Pipe(self, b_sock, a_sock))
                self.new_pipe.notify_all()

    def wait_pipe(self, n):
        with self.new_pipe:
            self.new_pipe.wait_for(lambda: len(self.pipes) >= n, WAIT)
        check(len(self.pipes) >= n, "the relay accepted connection #%d" % n)
        return self.pipes[n - 1]


def connect_via_relay(A, B, relay, n):
    B.connect(relay.port)
    B.wait_for("new_connection", lambda e: e["peer"] == A.peer, WAIT)
    ev = A.wait_for("new_connection", lambda e: e["peer"] == B.peer, WAIT)
    pipe = relay.wait_pipe(n)
    check(ev["addr"] == pipe.a_addr, "A sees B at the relay's address %s" % pipe.a_addr, A)
    return pipe


def expect_integrity(victim, attacker, pipe, what, addr=None):
    ev = victim.wait_for("lost_connection", lambda e: e["peer"] == attacker.peer, WAIT)
    check(ev["reason"] == "integrity",
          "%s: %s reports lost_connection reason 'integrity' (%r)"
          % (what, victim.name, ev["reason"]), victim)
    ab = victim.wait_for("abuse", lambda e: e.get("peer") == attacker.peer, WAIT)
    check(ab["reason"] == "integrity" and (addr is None or ab["addr"] == addr),
          "%s: %s reports an abuse event: %r from %s" % (what, victim.name, ab["reason"],
                                                         ab["addr"]), victim)
    ev = attacker.wait_for("lost_connection", lambda e: e["peer"] == victim.peer, WAIT)
    log("%s: %s's side: lost_connection %r" % (what, attacker.name, ev["reason"]))
    check(pipe.closed.wait(WAIT), "%s: the relayed connection is gone" % what)
    time.sleep(0.3)
    check(victim.peers() == [] and attacker.peers() == [],
          "%s: neither node keeps the other as a peer" % what, victim, attacker)
    extra = victim.pending("abuse")
    check(not extra, "%s: one abuse event (%r)" % (what, extra), victim)


def no_message(node, src, text, what):
    got = node.pending("new_message", lambda e: e["peer"] == src.peer and
                       msg_bytes(e) == text.encode())
    check(not got, "%s: the tampered message never reached %s's user" % (what, node.name), node)


def main():
    A = CrustNode("A")
    B = CrustNode("B")
    relay = Relay(A.port)

    what = "pass"
    pipe = connect_via_relay(A, B, relay, 1)
    secret = "the relay must not read this %08x" % random.randrange(1 << 32)
    for i in range(3):
        exchange(B, A, "%s #%d" % (secret, i))
        exchange(A, B, "%s back #%d" % (secret, i))
    exchange(B, A, "z" * 50000)
    check(len(pipe.records["b2a"]) >= 4 and len(pipe.records["a2b"]) >= 3,
          "%s: the relay forwarded records both ways (%d B->A, %d A->B)"
          % (what, len(pipe.records["b2a"]), len(pipe.records["a2b"])))
    seen = bytes(relay.seen["b2a"]) + bytes(relay.seen["a2b"])
    check(secret.encode() not in seen and b"the relay" not in seen,
          "%s: no message text in the %d bytes the relay saw" % (what, len(seen)))

    what = "flip B->A"
    pipe.arm("b2a", "flip")
    B.send(A.peer, "tampered with")
    check(pipe.tampered.wait(WAIT), "%s: the relay flipped a byte" % what)
    expect_integrity(A, B, pipe, what, pipe.a_addr)
    no_message(A, B, "tampered with", what)

    what = "replay B->A"
    pipe = connect_via_relay(A, B, relay, 2)
    exchange(B, A, "captured by the relay")
    exchange(B, A, "and another")
    exchange(A, B, "fine so far")
    old = pipe.records["b2a"][0]
    log("%s: injecting a %d-byte record B sent earlier" % (what, len(old)))
    pipe.inject("b2a", old)
    expect_integrity(A, B, pipe, what, pipe.a_addr)

    what = "dup B->A"
    pipe = connect_via_relay(A, B, relay, 3)
    exchange(B, A, "before the dup")
    pipe.arm("b2a", "dup")
    B.send(A.peer, "sent once, arrives twice")
    check(pipe.tampered.wait(WAIT), "%s: the relay sent a record twice" % what)
    ev = A.wait_for(None, lambda e: e.get("peer") == B.peer and e["event"] in
                    ("new_message", "lost_connection"), WAIT)
    check(ev["event"] == "new_message" and msg_bytes(ev) == b"sent once, arrives twice",
          "%s: the first copy arrives" % what, A)
    expect_integrity(A, B, pipe, what, pipe.a_addr)
    check(not A.pending("new_message"), "%s: the second copy never reached A's user" % what, A)

    what = "flip A->B"
    pipe = connect_via_relay(A, B, relay, 4)
    exchange(A, B, "before the flip")
    pipe.arm("a2b", "flip")
    A.send(B.peer, "tampered on the way to B")
    check(pipe.tampered.wait(WAIT), "%s: the relay flipped a byte" % what)
    expect_integrity(B, A, pipe, what)
    no_message(B, A, "tampered on the way to B", what)

    what = "after the attacks"
    connect_via_relay(A, B, relay, 5)
    exchange(B, A, "still friends")
    exchange(A, B, "yes")
    check(B.quit() == 0, "B quits with status 0", B)
    check(A.quit() == 0, "A quits with status 0", A)


if __name__ == "__main__":
    run(main)
