"""wirelab.py - the lab's impairment wire (tests/lab/wirelab, build/crust-wire) from
Python tests: two namespaces joined by the wire, always taken down.

    with WireLab("rw1", "--loss", "5", "--delay", "10") as lab:
        a = CrustNode("A", netns=lab.ns_a, bind=lab.addr_a)
        ...
        lab.stats()                  # the wire's counters now (JSON object)
    lab.counters                     # its final counters, read by down()

`wirelab down` stops the wire by its PID and every process left in the two
namespaces, then deletes them; __exit__ always runs it (also on failure), and so
does atexit for a test ended by a signal (crustnode turns those into SystemExit).
"""
import atexit
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from crustnode import log  # noqa: E402

WIRELAB = os.path.join(ROOT, "tests", "lab", "wirelab")
WIRE = os.path.join(os.environ.get("BUILD", os.path.join(ROOT, "build")), "crust-wire")
if not os.path.isabs(WIRE):
    WIRE = os.path.join(ROOT, WIRE)
ENV = dict(os.environ, CRUST_WIRE=WIRE)


def _lab(*args, timeout=30):
    return subprocess.run([WIRELAB] + list(args), env=ENV, capture_output=True, text=True,
                          timeout=timeout)


class WireLab:
    """wirelab up on enter, down (always) on exit; down's counters in self.counters."""

    def __init__(self, name, *wire_opts):
        self.name = "%s-%d" % (name, os.getpid())
        self.opts = list(wire_opts)
        self.counters = None
        self._up = False

    def __enter__(self):
        if not os.access(WIRE, os.X_OK):
            raise AssertionError("%s not built (make lab)" % WIRE)
        atexit.register(self.down)
        self._up = True  # a half-made lab is taken down too (wirelab down is safe on it)
        r = _lab("up", self.name, *self.opts)
        if r.returncode != 0:
            raise AssertionError("wirelab up %s failed (%d): %s" % (self.name, r.returncode,
                                                                   r.stderr))
        log("lab %s: %s" % (self.name, r.stdout.strip()))
        self.addr_a = self._ask("addr", "a")
        self.addr_b = self._ask("addr", "b")
        self.ns_a = self._ask("ns", "a")
        self.ns_b = self._ask("ns", "b")
        return self

    def _ask(self, what, side):
        r = _lab(what, self.name, side)
        if r.returncode != 0:
            raise AssertionError("wirelab %s %s %s: %s" % (what, self.name, side, r.stderr))
        return r.stdout.strip()

    def down(self):
        """Stop the wire and everything in the namespaces, delete them; the final counters."""
        if not self._up:
            return self.counters
        self._up = False
        r = _lab("down", self.name)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if lines:
            self.counters = json.loads(lines[-1])
        return self.counters

    def stats(self):
        r = _lab("stats", self.name)
        if r.returncode != 0:
            raise AssertionError("wirelab stats %s: %s" % (self.name, r.stderr))
        return json.loads(r.stdout.strip().splitlines()[-1])

    def __exit__(self, *exc):
        self.down()

    def argv(self, side, *cmd):
        """The command line that runs cmd in side a or b."""
        return [WIRELAB, "exec", self.name, side] + list(cmd)
