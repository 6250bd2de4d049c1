"""netns.py - two network namespaces joined by a veth pair, for e2e tests.

    with NetnsPair() as ns:          # ns.a = "crN-a" (198.18.0.1), ns.b = "crN-b" (198.18.0.2)
        ns.nft(ns.a, "add rule inet t in udp dport 5000 numgen random mod 100 < 5 drop")
        node = CrustNode("A", bind=ns.addr_a, prefix=ns.exec_prefix(ns.a))

The names carry the test's pid so runs never collide; both namespaces are
deleted on exit, also when the test fails (the context manager, and
atexit for a test killed by a signal that crustnode turns into SystemExit).
Addresses are 198.18.0.0/24 only; nothing leaves the two namespaces.
Needs root, iproute2 and nftables.
"""
import atexit
import os
import subprocess

_made = []


def _run(*argv, check=True):
    return subprocess.run(argv, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _cleanup():
    while _made:
        _run("ip", "netns", "del", _made.pop(), check=False)


atexit.register(_cleanup)


class NetnsPair:
    addr_a = "198.18.0.1"
    addr_b = "198.18.0.2"

    def __init__(self, tag="rudp"):
        base = "cr%s%d" % (tag, os.getpid())
        self.a = base + "-a"
        self.b = base + "-b"

    def __enter__(self):
        for ns in (self.a, self.b):
            _run("ip", "netns", "add", ns)
            _made.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", self.a, "link", "add", "va", "type", "veth", "peer", "name", "vb",
             "netns", self.b)
        _run("ip", "-n", self.a, "addr", "add", self.addr_a + "/24", "dev", "va")
        _run("ip", "-n", self.b, "addr", "add", self.addr_b + "/24", "dev", "vb")
        _run("ip", "-n", self.a, "link", "set", "va", "up")
        _run("ip", "-n", self.b, "link", "set", "vb", "up")
        for ns in (self.a, self.b):
            self.nft(ns, "add table inet t")
            self.nft(ns, "add chain inet t in { type filter hook input priority 0 ; }")
        return self

    def __exit__(self, *exc):
        for ns in (self.a, self.b):
            if ns in _made:
                _made.remove(ns)
            _run("ip", "netns", "del", ns, check=False)

    @staticmethod
    def exec_prefix(ns):
        return ("ip", "netns", "exec", ns)

    @staticmethod
    def nft(ns, rule):
        _run("ip", "netns", "exec", ns, "nft", rule)

    def flush(self, ns):
        self.nft(ns, "flush chain inet t in")
