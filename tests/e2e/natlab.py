"""natlab.py - the NAT lab: private LANs behind NAT routers on a public segment.

Built on netlab.py (namespaces named uniquely per run, always removed). The API
for tests:

    from natlab import NatLab
    lab = NatLab()                    # the public segment; also NatLab(public2=True)
    a = lab.lan("full")               # a LAN behind a full-cone router
    b = lab.lan("sym")                # another behind a symmetric one
    a.host, b.host                    # the LAN hosts' namespaces (run nodes there)
    a.host_ip, a.wan_ip, a.router     # 198.18.N.10, the router's 203.0.113.x, its ns
    lab.public, lab.coord_ips         # the coordinator's namespace and its two
                                      # addresses ["203.0.113.10", "203.0.113.11"]
    lab.close()                       # stop everything, delete every namespace

    lab.lan(nat, hairpin=False, rst=False, hosts=1, udp_timeout=None,
            udp_stream_timeout=None)  # -> Lan
      nat: "full" (full cone), "addr" (address-restricted cone), "port"
           (port-restricted cone, Linux's default masquerade), "sym" (symmetric,
           random ports), "sympred" (symmetric, predictable: each new flow gets
           the previous port + 256, see NAT_DELTA_SYMPRED); long names too
           ("full-cone", "address-restricted" or "addr-restricted",
           "port-restricted", "symmetric", "symmetric-predictable").
      hairpin: hosts behind this router reach each other's public mappings
           (cone types only: a symmetric mapping depends on the destination).
      rst: the router answers an unsolicited inbound TCP SYN with RST (default:
           drops it, as RFC 5382 asks). Unsolicited UDP is always dropped.
      hosts: LAN hosts (a.hosts, a.host_ips; a.host is a.hosts[0]). Behind one
           cone router give them distinct source ports: the router's mapping
           table is keyed by the LAN port (see tests/lab/router-nat.sh).
      udp_timeout / udp_stream_timeout: the router's UDP conntrack timeouts in
           seconds (unreplied / replied; kernel defaults 30 / 120); the cone
           routers' mapping tables expire after udp_stream_timeout too.

    Lan: .nat .index .router .wan_ip .net ("198.18.N.0/24") .gw_ip (198.18.N.1)
         .host .hosts .host_ip .host_ips .hairpin .rst
         .counters() -> {"unsolicited": packets dropped at the WAN,
                         "rst_sent": SYNs answered with RST,
                         "no_hairpin": LAN packets to the WAN address refused}
         .ruleset() (the router's nft rules, text) .conntrack_timeouts()
    lab.public2, lab.public2_ip       # a second public host (203.0.113.20), if asked
    lab.run(ns, *cmd)                 # run a command in ns; output, raises on failure
    lab.daemon(ns, *cmd)              # a process in ns, stopped by PID at close()
    lab.probe(ns)                     # a socket agent in ns (tests/lab/natprobe.py)
    lab.stun_server()                 # coturn STUN-only on both coord_ips, port 3478
    lab.stun_mapped(ns, server)       # (ip, port) turnutils_stunclient in ns is told
    lab.node(name)                    # namespace of "pub", "pub2", "r1", "h1", "h1b"...
    lab.miniupnpd(lan, deny=False)    # miniupnpd (UPnP IGD + NAT-PMP/PCP on 5351) on lan's
                                      # router, secure_mode on, with coturn on the public
                                      # side for its STUN check; -> MiniUpnpd (.proc,
                                      # .mappings()); deny=True: every mapping refused
                                      # (UPnP error 606; NAT-PMP/PCP off then)
    lab.fake_gateway(lan, mode)       # tests/lab/fakegw.py on lan's router: "garbage"
                                      # answers to SSDP, HTTP and UDP 5351
    lab.lan(..., upnp=True)           # the same as lab.miniupnpd(the new lan)

Topology (N = 1, 2, ... in the order lan() is called):

    lab.public  203.0.113.10 + .11      lab.public2  203.0.113.20 (optional)
         |                                    |
    ============ bridge "inet" (its own namespace): 203.0.113.0/24 ============
         |  wan 203.0.113.(100+N)
    router rN  (nft table "natlab": the NAT type; ip_forward on)
         |  lan 198.18.N.1/24 (a bridge in rN)
    hosts hN, hNb, hNc ...  198.18.N.10, .11, ...  (default route via .1)

The public hosts have no route to 198.18.0.0/15: only what a router translates
reaches them. Addresses stay inside 203.0.113.0/24 and 198.18.0.0/15; nothing
leaves the lab's namespaces. close() runs in a finally and at interpreter
exit (also on SIGTERM/SIGINT/SIGHUP when crustnode.py is imported).

Run as a program it is the engine of tests/lab/natlab (up, down, exec, status).
"""

import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from netlab import Lab, remove, sh  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
PROBE = os.path.join(ROOT, "tests", "lab", "natprobe.py")
FAKEGW = os.path.join(ROOT, "tests", "lab", "fakegw.py")
UPNP_HTTP_PORT = 5000

# miniupnpd's own tables (NATLAB.md: Debian's helper does not make them on
# bookworm): a forward filter chain and nat chains jumping to its chains
MINIUPNPD_TABLES = """table inet miniupnpd {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
"""
ROUTER_NAT = os.path.join(ROOT, "tests", "lab", "router-nat.sh")

NAT_TYPES = ("full", "addr", "port", "sym", "sympred")
ALIASES = {"full-cone": "full", "address-restricted": "addr", "addr-restricted": "addr",
           "port-restricted": "port", "symmetric": "sym", "symmetric-predictable": "sympred"}
# nft 1.0.6 hands numgen's counter to snat byte-swapped: consecutive flows get
# ports 256 apart (NATLAB.md, verified), except where the low byte wraps (257)
NAT_DELTA_SYMPRED = 256
COORD_IPS = ["203.0.113.10", "203.0.113.11"]
PUBLIC2_IP = "203.0.113.20"
STUN_PORT = 3478
MAX_LANS = 150


def nat_name(nat):
    n = ALIASES.get(nat, nat)
    if n not in NAT_TYPES:
        raise ValueError("unknown NAT type %r (one of %s, or %s)"
                         % (nat, ", ".join(NAT_TYPES), ", ".join(ALIASES)))
    return n


def router_nat_args(nat, wan_ip, lan_net, hairpin=False, rst=False, map_timeout=120):
    """tests/lab/router-nat.sh's arguments after TYPE WAN_IF LAN_IF."""
    args = ["--wan-ip", wan_ip, "--lan-net", lan_net, "--map-timeout", str(map_timeout)]
    return args + ["--hairpin"] * bool(hairpin) + ["--rst"] * bool(rst)


def ruleset(nat, wan_ip, lan_net, hairpin=False, rst=False, map_timeout=120):
    """The router's nft table for one NAT type (`wan` public side, `lan` private).

    The recipes live in tests/lab/router-nat.sh, shared with the Docker router
    containers (docker/router.sh); this is its --print output."""
    nat = nat_name(nat)
    if hairpin and nat in ("sym", "sympred"):
        raise ValueError("hairpin needs an endpoint-independent mapping (a cone type), not %s"
                         % nat)
    p = subprocess.run([ROUTER_NAT, nat, "wan", "lan", "--print"]
                       + router_nat_args(nat, wan_ip, lan_net, hairpin, rst, map_timeout),
                       text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise ValueError(p.stderr.strip())
    return p.stdout


class Lan:
    """One private LAN behind its NAT router (see the module's head)."""

    def __init__(self, lab, index, nat, hairpin, rst, router, hosts):
        self.lab = lab
        self.index = index
        self.nat = nat
        self.hairpin = hairpin
        self.rst = rst
        self.router = router
        self.wan_ip = "203.0.113.%d" % (100 + index)
        self.net = "198.18.%d.0/24" % index
        self.gw_ip = "198.18.%d.1" % index
        self.hosts = hosts
        self.host_ips = ["198.18.%d.%d" % (index, 10 + i) for i in range(len(hosts))]
        self.host = hosts[0]
        self.host_ip = self.host_ips[0]

    def counters(self):
        """The router's counters: packets, by name (see the module's head)."""
        out = json.loads(sh("ip", "netns", "exec", self.router, "nft", "-j", "list",
                            "counters", "table", "ip", "natlab"))
        got = {}
        for item in out.get("nftables", []):
            c = item.get("counter")
            if c:
                got[c["name"]] = c["packets"]
        return got

    def ruleset(self):
        return sh("ip", "netns", "exec", self.router, "nft", "list", "table", "ip", "natlab")

    def conntrack_timeouts(self):
        keys = ("net.netfilter.nf_conntrack_udp_timeout",
                "net.netfilter.nf_conntrack_udp_timeout_stream")
        return tuple(int(sh("ip", "netns", "exec", self.router, "sysctl", "-n", k))
                     for k in keys)

    def describe(self):
        return {"index": self.index, "nat": self.nat, "hairpin": self.hairpin,
                "rst": self.rst, "upnp": getattr(self, "upnp", False), "router": self.router,
                "wan_ip": self.wan_ip, "net": self.net, "hosts": self.hosts, "host_ips": self.host_ips}


class NatLab:
    """The public segment with the coordinator host; lan() adds NATed LANs."""

    def __init__(self, tag="nat", public2=False):
        self.lab = Lab(tag)
        self.lans = []
        self.nodes = {}           # short name -> namespace
        self.probes = []
        self.coord_ips = list(COORD_IPS)
        self.public2 = None
        self.public2_ip = None
        try:
            self.inet = self.lab.host("inet")
            self.lab.bridge(self.inet, "inet")
            self.nodes["inet"] = self.inet
            self.public = self.lab.host("pub")
            self.lab.plug(self.public, self.inet, [ip + "/24" for ip in self.coord_ips],
                          bridge="inet")
            self.nodes["pub"] = self.public
            if public2:
                self.public2 = self.lab.host("pub2")
                self.public2_ip = PUBLIC2_IP
                self.lab.plug(self.public2, self.inet, PUBLIC2_IP + "/24", bridge="inet")
                self.nodes["pub2"] = self.public2
        except BaseException:
            self.close()
            raise

    def lan(self, nat, hairpin=False, rst=False, hosts=1, udp_timeout=None,
            udp_stream_timeout=None, upnp=False):
        nat = nat_name(nat)
        if not 1 <= hosts <= 26:
            raise ValueError("hosts=%r: 1 to 26 hosts per LAN" % hosts)
        n = len(self.lans) + 1
        if n > MAX_LANS:
            raise ValueError("at most %d LANs" % MAX_LANS)
        for name, v in (("udp_timeout", udp_timeout), ("udp_stream_timeout", udp_stream_timeout)):
            if v is not None and not (isinstance(v, int) and v >= 1):
                raise ValueError("%s=%r: a whole number of seconds >= 1" % (name, v))
        map_timeout = udp_stream_timeout or 120
        if hairpin and nat in ("sym", "sympred"):
            raise ValueError("hairpin needs an endpoint-independent mapping (a cone type), "
                             "not %s" % nat)
        lab = self.lab
        r = lab.router("r%d" % n)
        self.nodes["r%d" % n] = r
        lab.plug(r, self.inet, "203.0.113.%d/24" % (100 + n), ifname="wan", bridge="inet")
        lab.bridge(r, "lan", "198.18.%d.1/24" % n)
        names = []
        for i in range(hosts):
            short = "h%d%s" % (n, "" if i == 0 else chr(ord("a") + i))
            h = lab.host(short)
            lab.plug(h, r, "198.18.%d.%d/24" % (n, 10 + i), bridge="lan")
            lab.route(h, "default", "198.18.%d.1" % n)
            self.nodes[short] = h
            names.append(h)
        p = subprocess.run(["ip", "netns", "exec", r, ROUTER_NAT, nat, "wan", "lan"]
                           + router_nat_args(nat, "203.0.113.%d" % (100 + n),
                                             "198.18.%d.0/24" % n, hairpin, rst, map_timeout),
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise RuntimeError("router-nat.sh failed for %s: %s" % (nat, p.stdout))
        # conntrack exists in the namespace once the rules use it
        if udp_timeout is not None:
            lab.sysctl(r, "net.netfilter.nf_conntrack_udp_timeout", str(udp_timeout))
        if udp_stream_timeout is not None:
            lab.sysctl(r, "net.netfilter.nf_conntrack_udp_timeout_stream",
                       str(udp_stream_timeout))
        lan = Lan(self, n, nat, hairpin, rst, r, names)
        self.lans.append(lan)
        if upnp:
            self.miniupnpd(lan)
            lan.upnp = True
        return lan

    # --- gateways that map ports -------------------------------------------------

    def miniupnpd(self, lan, deny=False, min_lifetime=None):
        """miniupnpd (Debian's miniupnpd-nftables) on lan's router, as NATLAB.md
        says: its nft tables loaded here, UPnP on http port 5000 of the LAN side,
        NAT-PMP and PCP on UDP 5351, secure_mode, and the external address
        learned by STUN from a coturn on the public side (our WAN range is
        reserved, so ext_ip= is refused); the router lets that STUN server's
        answers in. deny=True refuses every UPnP mapping (error 606) and turns
        NAT-PMP/PCP off: miniupnpd answers a refused NAT-PMP or PCP request only
        after trying every other port, busy for minutes. Stopped by PID at close()."""
        if not getattr(self, "_stun", None):
            self._stun = self.stun_server()
        r = lan.router
        p = subprocess.run(["ip", "netns", "exec", r, "nft", "-f", "-"], input=MINIUPNPD_TABLES,
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise RuntimeError("nft rejected miniupnpd's tables: %s" % p.stdout)
        for ip in self.coord_ips:   # RFC 5780 answers come from the other address/port
            self.run(r, "nft", "insert", "rule", "ip", "natlab", "input", "iifname", "wan",
                     "ip", "saddr", ip, "udp", "sport", "{ 3478, 3479 }", "accept")
        conf = ["ext_ifname=wan", "listening_ip=lan", "http_port=%d" % UPNP_HTTP_PORT,
                "enable_upnp=yes", "enable_natpmp=%s" % ("no" if deny else "yes"),
                "secure_mode=yes",
                "ext_perform_stun=yes", "ext_stun_host=%s" % self.coord_ips[0],
                "ext_stun_port=%d" % STUN_PORT, "upnp_table_name=miniupnpd",
                "upnp_nat_table_name=miniupnpd", "system_uptime=yes",
                "uuid=3d3cec3a-8cf0-11e0-98ee-0000000000%02d" % lan.index]
        if min_lifetime is not None:
            conf.append("min_lifetime=%d" % min_lifetime)
        if not deny:
            conf.append("allow 1024-65535 %s 1024-65535" % lan.net)
        conf.append("deny 0-65535 0.0.0.0/0 0-65535")
        d = tempfile.mkdtemp(prefix="crust-miniupnpd-r%d-" % lan.index)
        self._tmpdirs = getattr(self, "_tmpdirs", []) + [d]
        path = os.path.join(d, "miniupnpd.conf")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        logf = open(os.path.join(d, "miniupnpd.log"), "w")
        # its own pid file: the default one would make a second miniupnpd refuse to run
        proc = self.daemon(r, "miniupnpd", "-f", path, "-d", "-P", os.path.join(d, "pid"),
                           stdout=logf,
                           stderr=subprocess.STDOUT)
        logf.close()
        m = MiniUpnpd(self, lan, proc, path, os.path.join(d, "miniupnpd.log"))
        m.wait_ready()
        return m

    def fake_gateway(self, lan, mode="garbage"):
        """tests/lab/fakegw.py on lan's router (stopped by PID at close())."""
        p = self.daemon(lan.router, sys.executable, FAKEGW, "--mode", mode, "--addr", lan.gw_ip,
                        "--http-port", str(UPNP_HTTP_PORT), stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        if "ready" not in line:
            raise RuntimeError("fakegw.py did not start: %r" % line)
        return p

    # --- running things ---------------------------------------------------------

    def node(self, name):
        if name not in self.nodes:
            raise KeyError("no node %r (have %s)" % (name, ", ".join(sorted(self.nodes))))
        return self.nodes[name]

    def run(self, ns, *cmd, check=True):
        return self.lab.run(ns, *cmd, check=check)

    def daemon(self, ns, *cmd, **kw):
        return self.lab.daemon(ns, *cmd, **kw)

    def probe(self, ns):
        p = Probe(self, ns)
        self.probes.append(p)
        return p

    def stun_server(self, ns=None, ips=None, port=STUN_PORT):
        """coturn's turnserver as a STUN-only server (no TURN, no auth) on ips
        (default lab.coord_ips: two addresses enable RFC 5780) in ns (default
        lab.public); stopped by PID at close(). Returns the Popen once it
        answers a Binding request (turnutils_stunclient from ns)."""
        ns = ns or self.public
        ips = ips or self.coord_ips
        cmd = ["turnserver", "-n", "-S", "--no-tls", "--no-dtls", "--no-cli",
               "--listening-port", str(port), "--log-file", "stdout", "--simple-log",
               "--pidfile", "/dev/null"]
        for ip in ips:
            cmd += ["-L", ip]
        p = self.daemon(ns, *cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(20):
            if p.poll() is not None:
                raise RuntimeError("turnserver exited with status %d" % p.returncode)
            if self.stun_mapped(ns, ips[0], port, bound=2.0):
                return p
        raise RuntimeError("turnserver does not answer STUN on %s:%d" % (ips[0], port))

    @staticmethod
    def stun_mapped(ns, server, port=STUN_PORT, bound=15.0):
        """(ip, port): the mapped address turnutils_stunclient in ns gets from
        server's first Binding response, or None within bound seconds. The
        client then runs RFC 5780 tests (one asks the server to answer to
        another local port, which a NAT rightly drops, and it would wait
        forever), so it is stopped by PID once it has printed the address."""
        p = subprocess.Popen(["ip", "netns", "exec", ns, "turnutils_stunclient", "-p", str(port),
                              server], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        found = None
        out = b""
        try:
            # raw reads: a buffered readline() could hold the line we wait for
            # while select() sees an empty pipe
            fd = p.stdout.fileno()
            deadline = time.monotonic() + bound
            while found is None and time.monotonic() < deadline:
                r, _, _ = select.select([fd], [], [], 0.1)
                if not r:
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                out += chunk
                m = re.search(rb"UDP reflexive addr: ([0-9.]+):(\d+)", out)
                if m:
                    found = (m.group(1).decode(), int(m.group(2)))
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()
        return found

    def close(self):
        for p in self.probes:
            p.close()
        self.probes = []
        self.lab.close()
        for d in getattr(self, "_tmpdirs", []):
            shutil.rmtree(d, ignore_errors=True)
        self._tmpdirs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self):
        return {"prefix": self.lab.prefix, "public": self.public, "coord_ips": self.coord_ips,
                "public2": self.public2, "public2_ip": self.public2_ip, "inet": self.inet,
                "nodes": self.nodes, "lans": [lan.describe() for lan in self.lans]}


class MiniUpnpd:
    """A miniupnpd started by NatLab.miniupnpd()."""

    def __init__(self, lab, lan, proc, conf, logpath):
        self.lab, self.lan, self.proc, self.conf, self.logpath = lab, lan, proc, conf, logpath

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def wait_ready(self, bound=15.0):
        """Until it serves HTTP on the LAN side (a bound, not a timing)."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("miniupnpd exited (%d): %s" % (self.proc.returncode,
                                                                   self.log()[-2000:]))
            out = self.lab.run(self.lan.router, "ss", "-ltn", check=False)
            if ":%d " % UPNP_HTTP_PORT in out:
                return
            time.sleep(0.1)
        raise RuntimeError("miniupnpd does not listen: %s" % self.log()[-2000:])

    def mappings(self):
        """[(proto, external port, internal ip, internal port)] from miniupnpd's
        nat chain (what it forwards now)."""
        out = self.lab.run(self.lan.router, "nft", "list", "chain", "inet", "miniupnpd",
                           "prerouting_miniupnpd", check=False)
        got = []
        # miniupnpd writes the protocol as the IP header's byte: 0x6 TCP, 0x11 UDP
        for m in re.finditer(r"@nh,72,8 (0x6|0x11) th dport (\d+) dnat ip to ([0-9.]+):(\d+)",
                             out):
            got.append(("tcp" if m.group(1) == "0x6" else "udp", int(m.group(2)), m.group(3),
                        int(m.group(4))))
        return got


class ProbeError(AssertionError):
    pass


class Probe:
    """A natprobe.py agent in one namespace: plain sockets kept open across
    steps (see tests/lab/natprobe.py for the commands)."""

    def __init__(self, lab, ns):
        self.ns = ns
        self.proc = lab.daemon(ns, sys.executable, PROBE, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, op, **kw):
        kw["op"] = op
        self.proc.stdin.write(json.dumps(kw) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise ProbeError("probe in %s exited (status %s)" % (self.ns, self.proc.poll()))
        out = json.loads(line)
        if "error" in out:
            raise ProbeError("probe in %s: %s: %s" % (self.ns, op, out["error"]))
        return out

    def udp(self, port=0, addr="0.0.0.0", reflect=False):
        """A UDP socket: (id, local port)."""
        out = self.call("udp", port=port, addr=addr, reflect=reflect)
        return out["sock"], out["port"]

    def send(self, sock, to, data="x"):
        self.call("send", sock=sock, to=to, data=data)

    def recv(self, sock, count=1, timeout=5.0):
        return self.call("recv", sock=sock, count=count, timeout=timeout)["got"]

    def ask(self, sock, to, timeout=5.0):
        """The source address a reflector at `to` saw for this socket (its
        public mapping), or None."""
        return self.call("ask", sock=sock, to=to, timeout=timeout)["seen"]

    def tcp(self, to, port=0):
        out = self.call("tcp", to=to, port=port)
        return out["sock"], out["state"]

    def tcpstate(self, sock):
        return self.call("tcpstate", sock=sock)["state"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


# --- the by-hand lab (tests/lab/natlab) --------------------------------------------

STATE = os.environ.get("NATLAB_STATE", "/run/crust-natlab")
USAGE = """usage: natlab up [--name NAME] [--public2] [--hosts N] [--udp-timeout S]
                  [--udp-stream-timeout S] TYPE[+hairpin][+rst][+upnp] ...
       natlab down [--name NAME]
       natlab exec [--name NAME] NODE CMD...
       natlab status [--name NAME] [--rules]
TYPE: full, addr, port, sym, sympred (or full-cone, address-restricted,
port-restricted, symmetric, symmetric-predictable); +upnp runs miniupnpd
(UPnP IGD, NAT-PMP, PCP) on that LAN's router. NODE: pub, pub2, inet,
rN (router of LAN N), hN, hNb, ... (hosts of LAN N), or a namespace name."""


class UsageError(Exception):
    pass


def _state_file(name):
    return os.path.join(STATE, name, "state.json")


def _load(name):
    try:
        with open(_state_file(name)) as f:
            return json.load(f)
    except FileNotFoundError:
        raise SystemExit("natlab: no lab named %s is up (natlab up first)" % name)


def _take(args, flag, conv=str):
    if flag in args:
        i = args.index(flag)
        if i + 1 >= len(args):
            raise UsageError("%s needs a value" % flag)
        v = args[i + 1]
        del args[i:i + 2]
        try:
            return conv(v)
        except ValueError:
            raise UsageError("%s %r: not a valid value" % (flag, v))
    return None


def cmd_up(name, args):
    public2 = "--public2" in args
    if public2:
        args.remove("--public2")
    hosts = _take(args, "--hosts", int) or 1
    udp_t = _take(args, "--udp-timeout", int)
    udp_st = _take(args, "--udp-stream-timeout", int)
    if not args:
        raise UsageError("up needs at least one NAT type")
    specs = []
    for a in args:
        if a.startswith("-"):
            raise UsageError("unknown option %s" % a)
        parts = a.split("+")
        extra = set(parts[1:]) - {"hairpin", "rst", "upnp"}
        if extra:
            raise UsageError("%s: unknown modifier %s (hairpin, rst, upnp)"
                             % (a, ", ".join(extra)))
        try:
            specs.append((nat_name(parts[0]), "hairpin" in parts, "rst" in parts,
                          "upnp" in parts))
        except ValueError as e:
            raise UsageError(str(e))
    if os.path.exists(_state_file(name)):
        raise SystemExit("natlab: lab %s is already up (natlab down --name %s first)"
                         % (name, name))
    lab = NatLab(tag=name, public2=public2)
    try:
        for nat, hairpin, rst, upnp in specs:
            lab.lan(nat, hairpin=hairpin, rst=rst, hosts=hosts, udp_timeout=udp_t,
                    udp_stream_timeout=udp_st, upnp=upnp)
        os.makedirs(os.path.dirname(_state_file(name)), exist_ok=True)
        state = lab.describe()
        state["tmpdirs"] = getattr(lab, "_tmpdirs", [])
        state["namespaces"], state["pids"] = lab.lab.detach()
        with open(_state_file(name), "w") as f:
            json.dump(state, f, indent=1)
    except BaseException:
        lab.close()
        raise
    print_status(state, rules=False)


def print_status(st, rules):
    print("lab %s" % st["prefix"].rstrip("-"))
    print("  pub   %-40s %s" % (st["public"], " ".join(st["coord_ips"])))
    if st.get("public2"):
        print("  pub2  %-40s %s" % (st["public2"], st["public2_ip"]))
    for lan in st["lans"]:
        mods = "".join("+" + m for m in ("hairpin", "rst", "upnp") if lan.get(m))
        print("  r%-4d %-40s %s  %s%s, LAN %s" % (lan["index"], lan["router"], lan["wan_ip"],
                                                 lan["nat"], mods, lan["net"]))
        for h, ip in zip(lan["hosts"], lan["host_ips"]):
            short = h[len(st["prefix"]):]
            print("  %-5s %-40s %s" % (short, h, ip))
    missing = [ns for ns in st["namespaces"] if not os.path.exists("/run/netns/" + ns)]
    if missing:
        print("  missing namespaces: %s" % " ".join(missing))
    if rules:
        for lan in st["lans"]:
            print("\n# r%d (%s)" % (lan["index"], lan["nat"]))
            print(sh("ip", "netns", "exec", lan["router"], "nft", "list", "table", "ip",
                     "natlab", check=False), end="")


def main(argv):
    args = list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    cmd = args.pop(0)
    name = os.environ.get("NATLAB_NAME", "natlab")
    if args[:1] == ["--name"]:     # only right after the command: exec's CMD may hold one
        name = _take(args, "--name")
    if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 24:
        raise UsageError("--name %r: 1-24 of A-Z a-z 0-9 _ -" % name)
    if os.geteuid() != 0:
        raise SystemExit("natlab: needs root (network namespaces)")
    if cmd == "up":
        cmd_up(name, args)
    elif cmd == "down":
        if args:
            raise UsageError("down takes only --name")
        if not os.path.exists(_state_file(name)):
            print("natlab: no lab named %s" % name, file=sys.stderr)
            return 0
        st = _load(name)
        remove(st["namespaces"], st.get("pids", ()))
        for d in st.get("tmpdirs", ()):
            shutil.rmtree(d, ignore_errors=True)
        os.remove(_state_file(name))
        os.rmdir(os.path.dirname(_state_file(name)))
        print("natlab: %s removed (%d namespaces)" % (name, len(st["namespaces"])))
    elif cmd == "status":
        rules = "--rules" in args
        if rules:
            args.remove("--rules")
        if args:
            raise UsageError("status takes only --name and --rules")
        print_status(_load(name), rules)
    elif cmd == "exec":
        if len(args) < 2:
            raise UsageError("exec NODE CMD...")
        st = _load(name)
        node = args.pop(0)
        ns = st["nodes"].get(node, node if node in st["namespaces"] else None)
        if ns is None:
            raise UsageError("no node %r (have %s)" % (node, ", ".join(sorted(st["nodes"]))))
        os.execvp("ip", ["ip", "netns", "exec", ns] + args)
    else:
        raise UsageError("unknown command %r" % cmd)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except UsageError as e:
        print("natlab: %s\n%s" % (e, USAGE), file=sys.stderr)
        sys.exit(2)
    except ValueError as e:     # a bad lab option (natlab.py names it); nothing is left
        print("natlab: %s" % e, file=sys.stderr)
        sys.exit(2)
