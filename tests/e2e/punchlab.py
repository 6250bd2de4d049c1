"""punchlab.py - a minimal NAT topology for the hole-punching tests, on netlab.py.

    public segment 203.0.113.0/24 (bridge "pub"):
        coordinator namespace: 203.0.113.10 and 203.0.113.11 on eth0
        router i: wan 203.0.113.i
    LAN i 198.18.i.0/24: router i lan 198.18.i.1 <-> host i 198.18.i.10

Each router runs one NAT type with nftables (recipes from shared/NATLAB.md):
    "cone"  port-restricted cone (Linux masquerade: endpoint-independent
            mapping, ports preserved unless they clash)
    "sym"   symmetric (masquerade fully-random: a new port per destination)
    "cone-rst" port-restricted cone whose router answers unsolicited SYNs
            with RST (Linux's own stack does, without a drop rule): punching
            then needs retries after ECONNREFUSED
    "none"  plain routing, no NAT (the host is reachable from outside)
Unsolicited inbound TCP/UDP, forwarded or addressed to the router itself, is
dropped (accept established/related only), as a RFC 5382-minded home router
does, so a SYN that arrives before our own opened the mapping is silently
lost (not answered with RST) - except for "cone-rst".

Everything lives in the Lab's namespaces and is removed by lab.close().
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import crust_binary, log  # noqa: E402
from netlab import Lab, sh  # noqa: E402

COORD_IP = "203.0.113.10"
COORD_IP2 = "203.0.113.11"

NAT_RULES = {
    "cone": 'oifname "wan" masquerade',
    "cone-rst": 'oifname "wan" masquerade',
    "sym": 'oifname "wan" masquerade fully-random',
}


def nft(lab, ns, rules):
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("nft in %s: %s\n%s" % (ns, r.stdout, rules))


def nat(lab, router, kind, wan_ip):
    """Make router a NAT of the given kind ("cone", "sym", "none")."""
    if kind == "none":
        return
    rules = """
table ip nat {
  chain post { type nat hook postrouting priority 100; %s; }
}
""" % NAT_RULES[kind]
    if kind != "cone-rst":
        rules += """
table inet filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "wan" ct state established,related accept;
    iifname "wan" meta l4proto { tcp, udp } drop;
  }
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "wan" ct state established,related accept;
    iifname "wan" meta l4proto { tcp, udp } drop;
  }
}
"""
    nft(lab, router, rules)


class PunchLab:
    """The topology above with len(kinds) NATed LANs: kinds[i] for LAN i+1."""

    def __init__(self, tag, kinds):
        self.lab = Lab(tag)
        lab = self.lab
        self.pub = lab.switch("pub")
        self.coord = lab.host("coord")
        lab.plug(self.coord, self.pub, COORD_IP + "/24")
        sh("ip", "-n", self.coord, "addr", "add", COORD_IP2 + "/24", "dev", "eth0")
        self.routers, self.hosts, self.wan, self.lan_ip = [], [], [], []
        for i, kind in enumerate(kinds, start=1):
            r = lab.router("r%d" % i)
            h = lab.host("h%d" % i)
            wan = "203.0.113.%d" % i
            lab.plug(r, self.pub, wan + "/24", ifname="wan")
            lab.link(r, "lan", "198.18.%d.1/24" % i, h, "eth0", "198.18.%d.10/24" % i)
            lab.route(h, "default", "198.18.%d.1" % i)
            nat(lab, r, kind, wan)
            self.routers.append(r)
            self.hosts.append(h)
            self.wan.append(wan)
            self.lan_ip.append("198.18.%d.10" % i)
        self.daemons = []

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
        """Stop a daemon by its PID (SIGTERM, then SIGKILL)."""
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self):
        for p in self.daemons:
            self.stop(p)
            try:
                os.unlink(p.log_path)
            except OSError:
                pass
        self.lab.close()
