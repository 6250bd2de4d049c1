"""netlab.py - network namespaces for end-to-end tests, always removed.

python3 standard library and iproute2 only. A Lab makes namespaces whose
names start with a prefix unique to the run (so runs never collide, and
nothing else on the machine is touched), joins them with veth pairs made
straight inside them (the host's namespace never sees an interface), and
deletes them all on close(): call it in a finally, and it also runs at
interpreter exit (crustnode.py turns SIGTERM/SIGINT/SIGHUP into SystemExit,
so atexit runs then too). Before deleting a namespace, close() SIGKILLs by
PID whatever still runs inside it (`ip netns pids`): only processes in the
run's own namespaces, which the test started.

    lab = Lab("beacon")
    sw = lab.switch("sw")                    # a namespace with bridge br0: one LAN
    h1 = lab.host("h1")
    lab.plug(h1, sw, "198.18.0.11/24")       # h1's eth0, a port of br0
    r = lab.router("r")                      # a host that forwards
    lab.plug(r, sw, "198.18.0.1/24")
    far = lab.host("far")
    lab.link(r, "eth1", "198.18.1.1/24", far, "eth0", "198.18.1.10/24")
    lab.route(far, "default", "198.18.1.1")
    CrustNode("h1", netns=h1, bind="0.0.0.0", beacon=True)
    lab.daemon(far, "some-server", "--flag")  # a tracked process: stopped by PID at close
    lab.close()

A lab built by hand (tests/lab/natlab up) outlives the process that built it:
detach() hands over its namespace and daemon lists, and remove(namespaces,
pids) later stops and deletes them.

Addresses must lie in 198.18.0.0/15 or the documentation ranges
203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24 (the lab rules); anything
else raises. IPv6 duplicate address detection is off in every namespace,
so link-local addresses are usable at once.
"""

import atexit
import ipaddress
import os
import random
import signal
import subprocess
import time

ALLOWED = [ipaddress.ip_network(n) for n in
           ("198.18.0.0/15", "203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")]


def _check_addr(cidr):
    iface = ipaddress.ip_interface(cidr)
    if iface.version == 4 and not any(iface.ip in n for n in ALLOWED):
        raise ValueError("%s: lab addresses must be in 198.18.0.0/15 or a TEST-NET" % cidr)
    return cidr


def sh(*cmd, check=True):
    """Run a command; raise with its output if it fails (and check)."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stdout.strip()))
    return r.stdout


class Lab:
    def __init__(self, tag="lab"):
        self.prefix = "crl%d%04x-%s-" % (os.getpid(), random.randrange(1 << 16), tag)
        self.namespaces = []
        self.daemons = []
        self._ports = 0
        self._closed = False
        atexit.register(self.close)

    # --- namespaces ---------------------------------------------------------------

    def host(self, name):
        """A new namespace with lo up; returns its full name."""
        ns = self.prefix + name
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")
        self.sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
        return ns

    def router(self, name):
        ns = self.host(name)
        self.sysctl(ns, "net.ipv4.ip_forward", "1")
        return ns

    def switch(self, name):
        """A namespace holding bridge br0 (multicast snooping off: it floods, like a hub)."""
        ns = self.host(name)
        sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", ns, "link", "set", "br0", "up")
        return ns

    def sysctl(self, ns, key, value, check=True):
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "%s=%s" % (key, value), check=check)

    def run(self, ns, *cmd, check=True):
        return sh("ip", "netns", "exec", ns, *cmd, check=check)

    def daemon(self, ns, *cmd, **popen_kw):
        """Start cmd in ns (subprocess.Popen; stdin from /dev/null unless given).
        It is stopped by its PID at close() (TERM, then KILL), also on failure."""
        popen_kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(cmd), **popen_kw)
        self.daemons.append(p)
        return p

    # --- links ----------------------------------------------------------------------

    def link(self, a, a_if, a_addr, b, b_if, b_addr):
        """A veth pair a:a_if <-> b:b_if, addressed (None = no address) and up."""
        sh("ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if,
           "netns", b)
        for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            if addr:
                sh("ip", "-n", ns, "addr", "add", _check_addr(addr), "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")

    def bridge(self, ns, name, addr=None):
        """A bridge name in ns (multicast snooping off), with addr if given, up.
        br_netfilter is off for it (per namespace): a packet a router DNATs back
        onto the bridge it came from must be routed, not bridged (hairpinning)."""
        sh("ip", "-n", ns, "link", "add", name, "type", "bridge", "mcast_snooping", "0")
        self.sysctl(ns, "net.bridge.bridge-nf-call-iptables", "0", check=False)
        if addr:
            sh("ip", "-n", ns, "addr", "add", _check_addr(addr), "dev", name)
        sh("ip", "-n", ns, "link", "set", name, "up")

    def plug(self, host, switch, addr, ifname="eth0", bridge="br0"):
        """host's ifname becomes a port of switch's bridge, with addr (a list
        for several addresses)."""
        self._ports += 1
        port = "p%d" % self._ports
        sh("ip", "link", "add", ifname, "netns", host, "type", "veth", "peer", "name", port,
           "netns", switch)
        sh("ip", "-n", switch, "link", "set", port, "master", bridge, "up")
        for a in ([addr] if isinstance(addr, str) else addr):
            sh("ip", "-n", host, "addr", "add", _check_addr(a), "dev", ifname)
        sh("ip", "-n", host, "link", "set", ifname, "up")

    def route(self, ns, dst, via):
        if dst != "default":
            _check_addr(dst)
        sh("ip", "-n", ns, "route", "add", dst, "via", _check_addr(via))

    def link_local(self, ns, ifname="eth0"):
        """The IPv6 link-local address of ns's ifname (without the scope)."""
        out = sh("ip", "-n", ns, "-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
        for word in out.split():
            if word.startswith("fe80:"):
                return word.split("/")[0]
        raise RuntimeError("%s %s has no IPv6 link-local address: %s" % (ns, ifname, out))

    # --- teardown -----------------------------------------------------------------

    def close(self):
        """Stop the daemons (by PID), kill what still runs in the lab's
        namespaces (by PID), then delete them."""
        if self._closed:
            return
        self._closed = True
        for p in self.daemons:
            if p.poll() is None:
                p.terminate()
        for p in self.daemons:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.daemons = []
        remove(self.namespaces)
        self.namespaces = []

    def detach(self):
        """Keep everything running past this process (a lab built by hand):
        returns (namespaces, daemon pids) for a later remove()."""
        self._closed = True
        atexit.unregister(self.close)
        return list(self.namespaces), [p.pid for p in self.daemons]


def _stop_pids(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(int(pid), sig)
        except (ProcessLookupError, ValueError):
            pass


def remove(namespaces, pids=()):
    """TERM pids (a detached lab's daemons, still checked to live inside one of
    namespaces, against reuse), SIGKILL whatever still runs in namespaces
    (`ip netns pids`: only processes in the lab's own namespaces), delete them."""
    mine = set()
    for ns in namespaces:
        mine.update(sh("ip", "netns", "pids", ns, check=False).split())
    termed = [p for p in pids if str(p) in mine]
    _stop_pids(termed, signal.SIGTERM)
    for _ in range(30):     # up to ~3 s for them to exit cleanly
        if not any(os.path.exists("/proc/%s" % p) for p in termed):
            break
        time.sleep(0.1)
    for ns in reversed(namespaces):
        _stop_pids(sh("ip", "netns", "pids", ns, check=False).split())
    for ns in reversed(namespaces):
        sh("ip", "netns", "del", ns, check=False)
