#!/usr/bin/env python3
"""The lab's impairment wire (tests/lab/wire.c through tests/lab/wirelab) does what it
is told. Two namespaces joined by the wire; tests/lab/probe.py sends numbered,
digested UDP datagrams (and a TCP stream) across, and the receiver's view is compared
with the configured impairments and with the wire's own counters. Only counts are
bounded; the one time figure checked is a lower bound (delay) and an upper bound
(bottleneck rate), never how fast anything ran.

1. a2b: loss, duplication, reordering, corruption (checksum fixed, so it reaches the
   application), 20 ms delay each way: rates close to the configured ones, exact
   agreement of the receiver with the wire's counters, one-way delay and echo RTT at
   least the configured delay.
2. a2b bottleneck of 20 Mbit/s: what arrives never beats the rate by much.
3. corruption with stale checksums: the receiving kernel drops every corrupted datagram.
4. TCP across loss, duplication and reordering both ways: the stream arrives intact.
5. Bad options: exit 2 naming the option, no namespace left behind.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from crustnode import check, log, run  # noqa: E402

from wirelab import ENV, WIRE, WIRELAB, WireLab  # noqa: E402

PROBE = os.path.join(ROOT, "tests", "lab", "probe.py")
PY = sys.executable
PORT = 4100


class Lab(WireLab):
    """A WireLab that runs tests/lab/probe.py on either side."""

    def popen(self, side, *args):
        return subprocess.Popen(self.argv(side, PY, PROBE, *args), env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def probe(self, side, *args, timeout=60):
        r = subprocess.run(self.argv(side, PY, PROBE, *args), env=ENV, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError("probe %s on %s failed: %s" % (args, side, r.stderr))
        return json.loads(r.stdout.strip().splitlines()[-1])


def start_ready(lab, side, *args):
    """A probe that says "ready" once its socket is bound."""
    p = lab.popen(side, *args)
    line = p.stdout.readline().strip()
    if line != "ready":
        p.kill()
        raise AssertionError("probe %s did not start: %r %s" % (args, line, p.stderr.read()))
    return p


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("probe failed (%d): %s" % (p.returncode, err))
    return json.loads(out.strip().splitlines()[-1])


def near(value, want, what):
    """value within [0.5, 1.5] x want: far more than the binomial spread of these counts
    (about +-20 % at 5 % of 4000), far less than a missing or doubled impairment."""
    check(0.5 * want <= value <= 1.5 * want, "%s: %.4f near the configured %.4f" % (what, value,
                                                                                    want))


def impairments():
    log("--- 1. loss, duplication, reordering, corruption, delay (a2b), delay (b2a)")
    n, pct = 4000, 5.0
    with Lab("wt1", "--seed", "42", "--delay", "20", "--a2b-loss", "5", "--a2b-dup", "5",
             "--a2b-reorder", "5", "--a2b-reorder-gap", "3", "--a2b-corrupt", "5") as lab:
        recv = start_ready(lab, "b", "recv", str(PORT), "--idle", "1.5")
        sent = lab.probe("a", "send", lab.addr_b, str(PORT), "--count", str(n), "--size", "300",
                         "--pps", "4000")
        got = finish(recv)
        a2b = lab.stats()["a2b"]  # before the echo requests add to it
        echo = start_ready(lab, "b", "echo", str(PORT + 1), "--deadline", "30")
        rtt = lab.probe("a", "rtt", lab.addr_b, str(PORT + 1), "--count", "10")
        echo.kill()
        echo.wait()
    log("sent %s\nreceived %s\nrtt %s\nwire a2b %s" % (sent, got, rtt, a2b))
    check(a2b["rx"] == n and a2b["in_flight"] == 0,
          "the wire read our %d datagrams and holds none (%d, %d)" % (n, a2b["rx"],
                                                                   a2b["in_flight"]))
    check(got["received"] == a2b["passed"],
          "the receiver got exactly what the wire passed (%d)" % got["received"])
    near(a2b["dropped_loss"] / a2b["rx"], pct / 100, "wire loss rate")
    near(a2b["duplicated"] / a2b["rx"], pct / 100 * (1 - pct / 100), "wire duplication rate")
    near(a2b["corrupted"] / a2b["passed"], pct / 100, "wire corruption rate")
    near(a2b["reordered"] / a2b["passed"], pct / 100, "wire reordering rate")
    # a corrupted datagram's number cannot be read: it counts as missing too
    missing = n - got["unique"] - got["corrupted"]
    near(missing / n, pct / 100, "receiver: share of sequence numbers never seen, less the "
         "corrupted datagrams")
    near(got["duplicates"] / n, pct / 100, "receiver: share of sequence numbers seen twice")
    near(got["corrupted"] / got["received"], pct / 100, "receiver: share failing the digest")
    check(got["late"] >= 0.25 * a2b["reordered"] and got["late"] > 0,
          "receiver: datagrams arrived after a higher sequence number (%d; wire held back %d)"
          % (got["late"], a2b["reordered"]))
    check(got["min_owd_ms"] >= 20.0, "one-way delay at least the configured 20 ms (min %.2f ms)"
          % got["min_owd_ms"])
    check(rtt["replies"] >= 5 and rtt["min_ms"] >= 40.0,
          "echo RTT at least 2 x 20 ms (min %s ms, %d replies)" % (rtt["min_ms"], rtt["replies"]))


def bottleneck():
    log("--- 2. a 20 Mbit/s bottleneck with a 30 ms drop-tail queue (a2b)")
    rate = 20.0
    with Lab("wt2", "--a2b-rate", str(rate), "--a2b-queue", "30ms") as lab:
        recv = start_ready(lab, "b", "recv", str(PORT), "--idle", "1.5")
        sent = lab.probe("a", "send", lab.addr_b, str(PORT), "--count", "8000", "--size",
                         "1200", "--pps", "5000")
        got = finish(recv)
        c = lab.down()
    a2b = c["a2b"]
    log("sent %s\nreceived %s\nwire a2b %s" % (sent, got, a2b))
    check(a2b["rx"] == 8000 and a2b["passed"] + a2b["dropped_queue"] == a2b["rx"],
          "every datagram was passed or dropped at the queue (%d + %d)"
          % (a2b["passed"], a2b["dropped_queue"]))
    check(got["received"] == a2b["passed"], "the receiver got what the wire passed (%d)"
          % got["received"])
    secs = (got["last_ns"] - got["first_ns"]) / 1e9
    mbit = (got["bytes"] - 1228) * 8 / secs / 1e6 if secs > 0 else 0.0
    log("arrivals over %.3f s: %.2f Mbit/s (offered %.1f Mbit/s)"
        % (secs, mbit, 8000 * 1228 * 8 / sent["seconds"] / 1e6))
    check(secs > 0 and mbit <= rate * 1.15,
          "what arrives does not beat the %.0f Mbit/s bottleneck by much: %.2f Mbit/s"
          % (rate, mbit))


def stale_checksums_run(tag):
    with Lab(tag, "--a2b-corrupt", "10", "--a2b-loss", "10", "--corrupt-csum", "keep",
             "--seed", "3") as lab:
        recv = start_ready(lab, "b", "recv", str(PORT), "--idle", "1.0")
        lab.probe("a", "send", lab.addr_b, str(PORT), "--count", "1000", "--pps", "4000")
        got = finish(recv)
        c = lab.down()
    log("received %s\nwire a2b %s" % (got, c["a2b"]))
    return got, c["a2b"]


def stale_checksums():
    log("--- 3. corruption with stale checksums (--corrupt-csum keep), twice with one seed")
    got, a2b = stale_checksums_run("wt3")
    near(a2b["corrupted"] / a2b["passed"], 0.10, "wire corruption rate")
    check(got["corrupted"] == 0 and got["received"] == a2b["passed"] - a2b["corrupted"],
          "the receiving kernel dropped all %d corrupted datagrams (got %d of %d)"
          % (a2b["corrupted"], got["received"], a2b["passed"]))
    again, a2b_again = stale_checksums_run("wt3b")
    check(a2b_again == a2b and again["received"] == got["received"],
          "the same seed and packets give the same fates (lost %d, corrupted %d both times)"
          % (a2b["dropped_loss"], a2b["corrupted"]))


def tcp_stream():
    log("--- 4. TCP across 2 % loss, duplication and reordering both ways, 5 ms delay")
    nbytes = 4 << 20
    with Lab("wt4", "--loss", "2", "--dup", "2", "--reorder", "2", "--delay", "5",
             "--seed", "9") as lab:
        recv = start_ready(lab, "b", "tcp-recv", str(PORT), "--deadline", "40")
        sent = lab.probe("a", "tcp-send", lab.addr_b, str(PORT), str(nbytes))
        got = finish(recv)
        c = lab.down()
    log("sent %s\nreceived %s\nwire %s" % (sent, got, c))
    check(got["bytes"] == nbytes and got["sha256"] == sent["sha256"],
          "%d bytes arrived intact over TCP" % nbytes)
    for d in ("a2b", "b2a"):
        check(c[d]["dropped_loss"] > 0 and c[d]["duplicated"] > 0 and c[d]["reordered"] > 0,
              "%s lost, duplicated and reordered packets on the way (%d, %d, %d)"
              % (d, c[d]["dropped_loss"], c[d]["duplicated"], c[d]["reordered"]))


def bad_options():
    log("--- 5. bad options")
    for opts, named in ((["--loss", "101"], "--loss"), (["--a2b-rate", "fast"], "--a2b-rate"),
                        (["--queue", "20ms"], "--rate"), (["--bogus", "1"], "--bogus"),
                        (["--a2b-jitter"], "--a2b-jitter"), (["--queue=5x", "--rate", "1"],
                                                             "--queue")):
        r = subprocess.run([WIRE, "--a", ":x", "--b", ":y"] + opts, capture_output=True,
                           text=True, timeout=10)
        check(r.returncode == 2 and named in r.stderr,
              "crust-wire %s: exit 2 naming %s (%d: %s)" % (" ".join(opts), named, r.returncode,
                                                           r.stderr.strip()))
    name = "wt5-%d" % os.getpid()
    r = subprocess.run([WIRELAB, "up", name, "--dup", "-1"], env=ENV, capture_output=True,
                       text=True, timeout=30)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    check(r.returncode == 2 and "--dup" in r.stderr and ("wl-%s-" % name) not in left
          and not os.path.exists("/run/crust-wirelab/" + name),
          "wirelab up with a bad wire option: exit 2, nothing left behind (%d: %s)"
          % (r.returncode, r.stderr.strip()))


def main():
    if not os.access(WIRE, os.X_OK):
        raise AssertionError("%s not built (make lab)" % WIRE)
    bad_options()
    impairments()
    bottleneck()
    stale_checksums()
    tcp_stream()


if __name__ == "__main__":
    run(main)
