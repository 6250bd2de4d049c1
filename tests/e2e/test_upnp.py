#!/usr/bin/env python3
"""Port mapping at the gateway, for real (natlab.py; every namespace removed
and every daemon stopped by PID at the end, also on failure).

The lab: LAN 1 behind a port-restricted router running miniupnpd (UPnP IGD,
NAT-PMP and PCP on 5351, secure_mode, external address by STUN from a coturn
on the public side); LAN 2 the same with every mapping refused; LAN 3 with no
gateway service at all; LAN 4 with tests/lab/fakegw.py answering garbage to
SSDP, HTTP and UDP 5351; LAN 5 behind a symmetric router. A node P on the
public segment (no mapping), later a crust coordinator there too.

  - UPnP (forced, lease 6 s): the node behind LAN 1 reports port_mapping and
    external_endpoint (source "upnp (double NAT)": our WAN range is reserved,
    which miniupnpc reports as 2 from UPNP_GetValidIGD) for TCP and reliable
    UDP on the router's address, and lists both among its own endpoints
    (`endpoints`: crust_own_endpoints); miniupnpd's nat chain forwards both to it;
    a renewal is reported (the lease is short); P dials the mapped TCP
    endpoint and the mapped reliable-UDP endpoint directly: the node says via
    "upnp", P says direct; messages both ways; after the node quits, its
    mappings are gone from miniupnpd's chain.
  - a port another LAN host holds (upnpc): error 718, and the IGD hands out
    another external port (AddAnyPortMapping), which is reported and forwarded.
  - through a coordinator: the node registers its mapped endpoints (at once,
    not at the next refresh), and a peer behind a symmetric NAT (LAN 5) with
    the relay off reaches it there with `punch` (port-restricted <-> symmetric
    has no punch that works otherwise); the node says via "upnp".
  - PCP (forced by --port-mapping, lease 6 s: renewed with its nonce) and NAT-PMP
    (forced by a config file's port_mapping, with its port_mapping_lease_s) map
    through the same miniupnpd, P connects,
    and the mappings are deleted at exit.
  - refused (LAN 2, auto: UPnP error 606; NAT-PMP/PCP off on that router, as
    miniupnpd answers a refused one only after walking every port), no
    gateway (LAN 3) and garbage (LAN 4): one port_mapping event with ok false
    naming each method's reason; the node runs on and reaches P directly.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, crust_binary, exchange, log, run  # noqa: E402
from natlab import NatLab  # noqa: E402

T = 30.0
COORD_PORT = 4478


def node_behind(lab, lan, name, method, lease=None, config=None):
    if config:   # isolated's --no-port-mapping would override the file: isolate by hand
        return CrustNode(name, netns=lan.host, bind="0.0.0.0", isolated=False,
                         args=["--no-pex", "--no-beacon", "--no-cache", "--no-bootstrap",
                               "--config", config])
    args = ["--port-mapping", method]
    if lease:
        args += ["--port-mapping-lease-s", str(lease)]
    return CrustNode(name, netns=lan.host, bind="0.0.0.0", args=args)


def mapped(n, transport, timeout=T):
    return n.wait_for("port_mapping", lambda e: e["ok"] and e["transport"] == transport,
                      timeout)


def check_mapping(lab, lan, mini, n, method, renew):
    ev_t = mapped(n, "tcp")
    ev_u = mapped(n, "rudp")
    want = "%s:%d" % (lan.wan_ip, n.port)
    check(ev_t["addr"] == want and ev_t["reason"].startswith(method + ": mapped"),
          "%s: TCP listener mapped at %s (%s)" % (method, ev_t["addr"], ev_t["reason"]), n)
    check(ev_u["addr"].startswith(lan.wan_ip + ":"),
          "%s: reliable-UDP listener mapped at %s" % (method, ev_u["addr"]), n)
    ext = n.wait_for("external_endpoint", lambda e: e["source"].startswith(method), T)
    check(ext["source"] == method + " (double NAT)",
          "%s: external_endpoint source %r (reserved WAN range: double NAT)"
          % (method, ext["source"]), n)
    rules = mini.mappings()
    check(("tcp", n.port, lan.host_ip, n.port) in rules and
          ("udp", n.rudp_port, lan.host_ip, n.rudp_port) in rules,
          "%s: miniupnpd forwards TCP %d and UDP %d to %s: %s"
          % (method, n.port, n.rudp_port, lan.host_ip, rules), n)
    n.send_command("endpoints")
    own = [(e["transport"], e["addr"]) for e in n.wait_for("endpoints", timeout=T)["endpoints"]]
    check(("tcp", ev_t["addr"]) in own and ("rudp", ev_u["addr"]) in own,
          "%s: crust_own_endpoints lists the mapped endpoints: %s" % (method, own), n)
    if renew:
        ev = n.wait_for("port_mapping", lambda e: e["ok"] and "renewed" in e["reason"], T)
        check(True, "%s: lease renewed before expiry (%s)" % (method, ev["reason"]))
    return ev_t["addr"], ev_u["addr"]


def dial_mapped(p, n, addr, transport):
    prefix = "rudp://" if transport == "rudp" else ""
    p.send_command("connect %s%s" % (prefix, addr))
    ep = p.wait_for("new_connection", lambda e: e["peer"] == n.peer, T)
    en = n.wait_for("new_connection", lambda e: e["peer"] == p.peer, T)
    check(ep["transport"] == transport and en["via"] == "upnp" and ep["via"] == "direct",
          "P reached the mapped %s endpoint %s: node says via %s, P says %s"
          % (transport, addr, en["via"], ep["via"]), n, p)
    exchange(p, n, "to the mapped %s port" % transport)
    exchange(n, p, "back over %s" % transport)
    p.send_command("drop " + n.peer)
    n.wait_for("lost_connection", lambda e: e["peer"] == p.peer, T)


def gone_after_exit(lab, mini, n, method):
    n.quit()
    rules = [r for r in mini.mappings() if r[2] == mini.lan.host_ip]
    check(not rules, "%s: mappings deleted when the node exited (left: %s)" % (method, rules))


def conflict(lab, lan, mini):
    """The external port is another host's: error 718 (ConflictInMappingEntry, as
    secure_mode answers), then the IGD picks another port (AddAnyPortMapping)."""
    port = 40000 + os.getpid() % 20000
    lab.run(lan.hosts[1], "upnpc", "-i", "-e", "other host", "-a", lan.host_ips[1], str(port),
            str(port), "TCP")
    check(("tcp", port, lan.host_ips[1], port) in mini.mappings(),
          "upnpc on the neighbour holds external TCP port %d" % port)
    n = CrustNode("conflict", netns=lan.host, bind="0.0.0.0", tcp_port=port,
                  args=["--port-mapping", "upnp"])
    ev = mapped(n, "tcp")
    ext_port = int(ev["addr"].rsplit(":", 1)[1])
    check(n.port == port and ext_port != port and
          ("tcp", ext_port, lan.host_ip, port) in mini.mappings(),
          "port %d taken (718): mapped at another external port, %s -> %d"
          % (port, ev["addr"], port), n)
    gone_after_exit(lab, mini, n, "upnp (conflict)")
    lab.run(lan.hosts[1], "upnpc", "-i", "-d", str(port), "TCP")


def start_coordinator(lab):
    """crust coordinator on the public side (port 4478: coturn has 3478), stopped by PID."""
    c = lab.daemon(lab.public, crust_binary(), "coordinator", "--listen",
                   "%s:%d" % (lab.coord_ips[0], COORD_PORT), stdout=subprocess.PIPE,
                   stderr=subprocess.DEVNULL, text=True)
    ev = json.loads(c.stdout.readline())
    check(ev["event"] == "coordinator_started", "coordinator started: %s" % ev)
    return c


def through_coordinator(lab, lan, sym_lan, mini):
    """A symmetric-NAT peer with the relay off reaches a port-restricted node only
    through the mapping the node registered (no punch works between those two)."""
    coord = ["--coordinator", "%s:%d" % (lab.coord_ips[0], COORD_PORT)]
    a = CrustNode("mapped", netns=lan.host, bind="0.0.0.0",
                  args=coord + ["--port-mapping", "upnp"])
    mapped(a, "tcp")
    a.wait_for("external_endpoint", lambda e: e["source"] == "coordinator", T)
    b = CrustNode("symmetric", netns=sym_lan.host, bind="0.0.0.0",
                  args=coord + ["--no-relay", "--punch-timeout-ms", "4000"])
    b.wait_for("external_endpoint", lambda e: e["source"] == "coordinator", T)
    b.send_command("punch " + a.peer)
    rb = b.wait_for("punch_result", lambda e: e["peer"] == a.peer, T)
    check(rb["ok"] and rb["addr"] == "%s:%d" % (lan.wan_ip, a.port),
          "symmetric peer, relay off, reached the node at its registered mapping: %s" % rb,
          a, b)
    ea = a.wait_for("new_connection", lambda e: e["peer"] == b.peer, T)
    ra = a.wait_for("punch_result", lambda e: e["peer"] == b.peer, T)
    check(ea["via"] == "upnp" and ra["ok"] and ra["via"] == "upnp",
          "the node says via %s (punch_result: %s); the peer %s (it dialed an endpoint that "
          "looks public)" % (ea["via"], ra["via"], rb["via"]), a)
    exchange(b, a, "through the registered mapping")
    b.quit()
    gone_after_exit(lab, mini, a, "upnp (coordinator)")


def failing(lab, n, name, p, words):
    ev = n.wait_for("port_mapping", timeout=T)
    check(not ev["ok"] and all(w in ev["reason"] for w in words),
          "%s: one clear port_mapping failure: %s" % (name, ev["reason"]), n)
    check(not n.collect("external_endpoint", timeout=0.2),
          "%s: no external endpoint claimed" % name, n)
    n.connect(p.port, host=lab.coord_ips[0])
    n.wait_for("new_connection", lambda e: e["peer"] == p.peer, T)
    exchange(n, p, "%s carries on" % name)
    check(n.alive(), "%s: still running" % name, n)
    return n


def main():
    lab = NatLab(tag="upnp")
    tmp = tempfile.mkdtemp(prefix="crust-upnp-test-")
    try:
        ok_lan = lab.lan("port", hosts=2)
        mini = lab.miniupnpd(ok_lan, min_lifetime=4)   # PCP's floor is 120 s by default
        deny_lan = lab.lan("port")
        lab.miniupnpd(deny_lan, deny=True)
        bare_lan = lab.lan("port")
        junk_lan = lab.lan("port")
        lab.fake_gateway(junk_lan)
        sym_lan = lab.lan("sym")
        p = CrustNode("P", netns=lab.public, bind="0.0.0.0")

        # the failures first, in parallel: each takes a few seconds of bounded waiting
        cases = [(deny_lan, "refused", ["upnp: AddPortMapping: error 606", "pcp: port 5351 refused",
                                         "natpmp: "]),
                 (bare_lan, "no-gateway", ["upnp: no gateway answered", "pcp: ", "natpmp: "]),
                 (junk_lan, "garbage", ["upnp: ", "pcp: malformed", "natpmp: "])]
        nodes = [(node_behind(lab, lan, name, "auto"), name, words)
                 for lan, name, words in cases]
        for n, name, words in nodes:
            failing(lab, n, name, p, words)
        for n, _, _ in nodes:
            n.quit()

        n = node_behind(lab, ok_lan, "upnp", "upnp", lease=6)
        tcp, udp = check_mapping(lab, ok_lan, mini, n, "upnp", renew=True)
        dial_mapped(p, n, tcp, "tcp")
        dial_mapped(p, n, udp, "rudp")
        gone_after_exit(lab, mini, n, "upnp")

        conflict(lab, ok_lan, mini)
        start_coordinator(lab)
        through_coordinator(lab, ok_lan, sym_lan, mini)
        # NAT-PMP chosen by the config file's keys, PCP by the command line
        cfg = os.path.join(tmp, "natpmp.json")
        with open(cfg, "w") as f:
            json.dump({"port_mapping": "natpmp", "port_mapping_lease_s": 600}, f)
        for method in ("pcp", "natpmp"):
            pcp = method == "pcp"
            n = node_behind(lab, ok_lan, method, method, lease=6 if pcp else None,
                            config=None if pcp else cfg)
            tcp, _ = check_mapping(lab, ok_lan, mini, n, method, renew=pcp)
            if method == "natpmp":
                check(any("lease 600 s" in e["reason"] for e in n.events
                          if e["event"] == "port_mapping"),
                      "natpmp: the config file's port_mapping_lease_s (600) was asked for", n)
            dial_mapped(p, n, tcp, "tcp")
            gone_after_exit(lab, mini, n, method)
        p.quit()
    finally:
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)
    log("namespaces removed, miniupnpd, coturn and fakegw stopped by PID")


if __name__ == "__main__":
    run(main)
