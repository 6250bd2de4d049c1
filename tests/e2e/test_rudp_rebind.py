#!/usr/bin/env python3
"""NAT rebinding: B reaches A (two shards) through a userspace UDP relay
standing in for a NAT. Mid-transfer the relay moves to a new source port,
as a NAT does when its mapping expires: A sees B's packets come from a new
address (whose 4-tuple the kernel may hand to A's other shard). Because
they authenticate, the connection goes on: every message arrives once, in
order, with no lost_connection or second new_connection on either side."""
import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, log, run  # noqa: E402

N = 400


class Relay:
    """B <-> relay port <-> (current outside socket) <-> A."""

    def __init__(self, target):
        self.target = target
        self.inside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.inside.bind(("127.0.0.1", 0))
        self.port = self.inside.getsockname()[1]
        self.outside = self._new_outside()
        self.client = None
        self.stop = False
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    @staticmethod
    def _new_outside():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        return s

    def rebind(self):
        new = self._new_outside()
        with self.lock:
            old, self.outside = self.outside, new
        old.close()
        return new.getsockname()[1]

    def _run(self):
        end = time.time() + 100  # bounded, whatever happens
        while not self.stop and time.time() < end:
            with self.lock:
                out = self.outside
            try:
                r, _, _ = select.select([self.inside, out], [], [], 0.05)
            except (OSError, ValueError):
                continue
            for s in r:
                try:
                    data, addr = s.recvfrom(65536)
                except OSError:
                    continue
                if s is self.inside:
                    self.client = addr
                    with self.lock:
                        self.outside.sendto(data, self.target)
                elif self.client:
                    self.inside.sendto(data, self.client)

    def close(self):
        self.stop = True
        self.t.join(2)
        self.inside.close()
        self.outside.close()


def main():
    a = CrustNode("A", shards=2)
    b = CrustNode("B")
    relay = Relay(("127.0.0.1", a.rudp_port))
    try:
        b.send_command("connect rudp://127.0.0.1:%d" % relay.port)
        b.wait_for("new_connection", lambda e: e["peer"] == a.peer)
        ea = a.wait_for("new_connection", lambda e: e["peer"] == b.peer)
        first = ea["addr"]
        for i in range(N):
            b.send(a.peer, "m%04d" % i + "z" * 2000)
            if i == N // 2:
                port = relay.rebind()
                log("relay now sends from port %d (was %s)" % (port, first))
        got = [a.wait_for("new_message", lambda e: e["peer"] == b.peer, timeout=30)["data"][:5]
               for _ in range(N)]
        check(got == ["m%04d" % i for i in range(N)],
              "%d messages arrived in order across the rebinding" % N, a, b)
        a.send(b.peer, "reply to the new address")
        ev = b.wait_for("new_message", lambda e: e["peer"] == a.peer, timeout=20)
        check(ev["data"] == "reply to the new address", "A answers B at its new address", a, b)
        for n in (a, b):
            bad = n.pending(None, lambda e: e["event"] in ("lost_connection", "new_connection"))
            check(not bad, "%s saw no lost or second connection (%r)" % (n.name, bad), n)
        check(a.peers() == [b.peer], "A still has B", a)
    finally:
        relay.close()
    check(a.quit() == 0 and b.quit() == 0, "both quit with status 0", a, b)


run(main)
