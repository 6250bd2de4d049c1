#!/usr/bin/env python3
"""nat_pair.py - one Docker NAT topology, run and checked (docker/lab.sh run).

    nat_pair.py [--project P] [--compose FILE] [--image IMG] NAT_A NAT_B

Brings up docker/compose/nat-pair.yml with NAT_A / NAT_B (full,
addr-restricted, port-restricted, symmetric, symmetric-predictable), waits
until both peers are registered with the coordinator (which sees them at
their routers' public addresses: the NAT is in the path), has peer_a punch to
peer_b, and checks on the nodes' JSON events (`docker logs`): both sides report
the same successful method, one the NAT types allow (test_nat_matrix.py's
table, either transport), and a message crosses each way intact. The
topology is torn down at the end, also on failure (then the containers' last
log lines are printed first). Timings are printed, never asserted.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "e2e"))
from natlab import nat_name  # noqa: E402
from test_nat_matrix import expected  # noqa: E402

DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
T = 30.0
WAN_A, WAN_B = "203.0.113.101", "203.0.113.102"     # the routers' public addresses


class Failure(Exception):
    pass


def log(msg):
    print("[nat_pair] " + msg, flush=True)


class Topology:
    def __init__(self, project, compose, env):
        self.base = ["docker-compose", "-p", project, "-f", compose]
        self.env = env

    def compose(self, *args, check=True):
        p = subprocess.run(self.base + list(args), env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if check and p.returncode != 0:
            raise Failure("docker-compose %s failed:\n%s" % (" ".join(args), p.stdout))
        return p.stdout

    def container(self, service):
        cid = self.compose("ps", "-q", service).strip()
        if not cid:
            raise Failure("no container for %s" % service)
        return cid


class Peer:
    """A peer container's node: commands through crust-cmd, events from docker logs."""

    def __init__(self, name, cid):
        self.name = name
        self.cid = cid
        self.seen = 0          # events already returned by wait_for
        self.events = []
        self.peer = None

    def read(self):
        p = subprocess.run([DOCKER, "logs", self.cid], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        evs = []
        for line in p.stdout.splitlines():
            try:
                evs.append(json.loads(line))
            except ValueError:
                evs.append({"event": "_unparsable", "line": line})
        self.events = evs

    def wait_for(self, event, pred=lambda e: True, timeout=T):
        """The first event named event matching pred that no earlier wait_for returned
        (events are taken in order)."""
        deadline = time.monotonic() + timeout
        while True:
            self.read()
            for i in range(self.seen, len(self.events)):
                e = self.events[i]
                if e.get("event") == event and pred(e):
                    self.seen = i + 1
                    return e
            if time.monotonic() > deadline:
                raise Failure("%s: no %s event within %.0f s" % (self.name, event, timeout))
            time.sleep(0.2)

    def cmd(self, line):
        p = subprocess.run([DOCKER, "exec", self.cid, "crust-cmd", line], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            raise Failure("%s: crust-cmd %s: %s" % (self.name, line, p.stdout.strip()))


def check(cond, what):
    if not cond:
        raise Failure(what)
    log("ok: " + what)


def exchange(src, dst, text):
    src.cmd("send %s %s" % (dst.peer, text))
    ev = dst.wait_for("new_message", lambda e: e.get("peer") == src.peer)
    got = ev["data"].encode("latin-1")     # node.c escapes bytes >= 0x7f as \u00XX
    check(got == text.encode() and ev["len"] == len(text) and not ev.get("truncated"),
          "%s -> %s: %r arrived intact (got %r)" % (src.name, dst.name, text, got))


def run(topo, nat_a, nat_b):
    t0 = time.monotonic()
    topo.compose("up", "-d")
    log("up in %.1f s" % (time.monotonic() - t0))
    a = Peer("peer_a", topo.container("peer_a"))
    b = Peer("peer_b", topo.container("peer_b"))
    for p, wan in ((a, WAN_A), (b, WAN_B)):
        p.peer = p.wait_for("node_started")["peer"]
        ext = p.wait_for("external_endpoint", lambda e: e.get("transport") == "tcp"
                         and e.get("source") == "coordinator")
        check(ext["addr"].startswith(wan + ":"), "%s %s... registered; the coordinator sees "
              "it at its router's address %s" % (p.name, p.peer[:12], ext["addr"]))
    t1 = time.monotonic()
    a.cmd("punch %s" % b.peer)
    ra = a.wait_for("punch_result", lambda e: e.get("peer") == b.peer)
    rb = b.wait_for("punch_result", lambda e: e.get("peer") == a.peer)
    check(ra.get("ok") is True and rb.get("ok") is True and ra.get("via") == rb.get("via"),
          "%s <-> %s: connected, both sides agree (ok %s / %s, via %s / %s)"
          % (nat_a, nat_b, ra.get("ok"), rb.get("ok"), ra.get("via"), rb.get("via")))
    na, nb = nat_name(nat_a), nat_name(nat_b)
    want = set(expected("tcp", na, nb)) | set(expected("udp", na, nb))
    check(ra["via"] in want, "%s <-> %s: %s is one of %s"
          % (nat_a, nat_b, ra["via"], "/".join(sorted(want))))
    exchange(a, b, "ping from %s behind %s" % (a.name, nat_a))
    exchange(b, a, "pong from %s behind %s" % (b.name, nat_b))
    log("%s <-> %s: %s over %s in %d ms (punch to both messages: %.1f s)"
        % (nat_a, nat_b, ra["via"], ra.get("transport"), ra.get("elapsed_ms", -1),
           time.monotonic() - t1))


def on_signal(signum, frame_):
    raise SystemExit(128 + signum)     # the finally in main() tears the topology down


def main():
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", default="crustlab%d" % os.getpid())
    ap.add_argument("--compose", default=os.path.join(HERE, "compose", "nat-pair.yml"))
    ap.add_argument("--image", default="crust:lab")
    ap.add_argument("nat_a")
    ap.add_argument("nat_b")
    o = ap.parse_args()
    for n in (o.nat_a, o.nat_b):
        try:
            nat_name(n)
        except ValueError as e:
            ap.error(str(e))
    env = dict(os.environ, NAT_A=o.nat_a, NAT_B=o.nat_b, CRUST_IMAGE=o.image)
    topo = Topology(o.project, o.compose, env)
    log("topology %s: %s <-> %s" % (o.project, o.nat_a, o.nat_b))
    t0 = time.monotonic()
    ok = False
    try:
        run(topo, o.nat_a, o.nat_b)
        ok = True
    except Failure as e:
        log("FAILED: %s" % e)
        print(topo.compose("logs", "--no-color", "--tail", "25", check=False), flush=True)
    finally:
        t1 = time.monotonic()
        out = topo.compose("down", "-v", "--remove-orphans", "-t", "3", check=False)
        left = subprocess.run([DOCKER, "ps", "-aq", "--filter", "label=com.docker.compose.project=%s"
                               % o.project], stdout=subprocess.PIPE, text=True).stdout.split()
        if left:
            log("containers left after down: %s\n%s" % (" ".join(left), out))
            ok = False
        log("down in %.1f s" % (time.monotonic() - t1))
    log("%s <-> %s: %s in %.1f s" % (o.nat_a, o.nat_b, "passed" if ok else "FAILED",
                                     time.monotonic() - t0))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
