"""punchlab.py - the hole-punching tests' view of the NAT lab (natlab.py).

    lab = PunchLab("tag", ["port", "sym"])    # one LAN per NAT type (natlab names);
                                              # ("port", {"hosts": 2}) passes lan() options
    lab.hosts[i], lab.wan[i]                  # LAN i's host namespace, its router's WAN IP
    coord, peer = lab.start_coordinator(3478, ["--relay-max-bytes", "1000"])
    lab.coordinator_stats(coord)              # the `stats` line, parsed
    lab.stop(coord); lab.close()

The coordinator runs in natlab's public namespace on both of its addresses
(COORD_IP, COORD_IP2), started here with pipes (its `stats` command) and
stopped by PID at stop() or close(), also on failure. lab.lab is the
netlab.Lab underneath (run a command in a namespace: lab.lab.run(ns, ...)).
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import crust_binary, log  # noqa: E402
from natlab import NatLab  # noqa: E402

COORD_IP = "203.0.113.10"
COORD_IP2 = "203.0.113.11"


class PunchLab:
    """A NatLab with one LAN per entry of kinds ("full", "addr", "port", "sym",
    "sympred"; "port-rst": port-restricted whose router answers early SYNs with RST)."""

    def __init__(self, tag, kinds):
        self.nat = NatLab(tag)
        self.lab = self.nat.lab
        self.daemons = []
        try:
            assert self.nat.coord_ips == [COORD_IP, COORD_IP2], self.nat.coord_ips
            self.coord = self.nat.public
            self.lans = [self._lan(k) for k in kinds]
        except BaseException:
            self.nat.close()
            raise
        self.hosts = [lan.host for lan in self.lans]
        self.wan = [lan.wan_ip for lan in self.lans]

    def _lan(self, kind):
        """kind: a natlab NAT name, "NAME-rst", or (NAME, natlab.lan() keyword arguments)."""
        if isinstance(kind, tuple):
            return self.nat.lan(kind[0], **kind[1])
        if kind.endswith("-rst"):
            return self.nat.lan(kind[:-4], rst=True)
        return self.nat.lan(kind)

    def start_coordinator(self, port=3478, extra=()):
        """`crust coordinator` on both public addresses; returns (Popen, peer id)."""
        argv = ["ip", "netns", "exec", self.coord, crust_binary(), "coordinator",
                "--listen", "%s:%d" % (COORD_IP, port), "--listen", "%s:%d" % (COORD_IP2, port)]
        argv += list(extra)
        log("[coordinator] start: %s" % " ".join(argv))
        # logs to a file: an unread pipe would fill up and stall the daemon
        err = tempfile.NamedTemporaryFile(prefix="crust-coord-", suffix=".log", delete=False)
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=err, text=True)
        p.log_path = err.name
        self.daemons.append(p)
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("coordinator did not start: %s" % open(err.name).read())
        ev = json.loads(line)
        assert ev["event"] == "coordinator_started", ev
        return p, ev["peer"]

    def coordinator_stats(self, p):
        p.stdin.write("stats\n")
        p.stdin.flush()
        return json.loads(p.stdout.readline())

    def stop(self, p):
        """Stop a daemon by its PID (SIGTERM, then SIGKILL); its exit status (its log
        is printed when that is not 0: sanitizer reports end up there)."""
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p.returncode != 0 and not getattr(p, "reported", False):
            p.reported = True
            with open(p.log_path) as f:
                log("[coordinator] exit status %d; its log:\n%s" % (p.returncode, f.read()[-4000:]))
        return p.returncode

    def close(self):
        for p in self.daemons:
            self.stop(p)
            try:
                os.unlink(p.log_path)
            except OSError:
                pass
        self.nat.close()
