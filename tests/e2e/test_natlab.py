#!/usr/bin/env python3
"""The NAT lab's routers behave as their names say (tests/e2e/natlab.py).

One lab (removed at the end, also on failure): the coordinator host (two
addresses) and a second public host, and six LANs: full cone, address-
restricted, port-restricted with hairpinning (2 hosts), symmetric, symmetric
predictable, port-restricted without hairpinning and with RST (2 hosts).
Plain UDP/TCP sockets in the namespaces (tests/lab/natprobe.py agents) and
nft counters on the routers; every packet sent is accounted for, delivered or
counted as dropped by the router, so nothing depends on timing (the waits are
bounds for a failing run only). Checks:
  - mapping: the external address is the router's; one socket keeps its
    external port toward any destination on cone routers, gets a new one per
    destination on symmetric ones, 256 more each new flow on the predictable one
    (nft's byte-swapped counter: 257 where the low byte wraps);
  - filtering, toward one contacted endpoint (coordinator .10:4000): from the
    same endpoint, from another port of that address, from the coordinator's
    other address and from another host: full cone lets all in, address-
    restricted the first two, port-restricted and symmetric only the first;
  - hairpinning: a host reaches its neighbour's public mapping and back when
    on; refused (counted) when off;
  - an unsolicited TCP SYN: answered with RST by the rst router, dropped (the
    connect stays pending) by the others;
  - coturn as STUN server on both coordinator addresses: turnutils_stunclient
    behind each router gets the router's address as its mapped address, and
    turnutils_natdiscovery (RFC 5780) classifies each router as named;
  - the conntrack timeout options reach the router's sysctls and its map;
  - afterwards every namespace is gone and turnserver stopped;
  - tests/lab/natlab by hand: up, exec, status --rules, down; bad types,
    modifiers and options exit 2 with a message and leave nothing.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import check, log, run  # noqa: E402
from natlab import NAT_DELTA_SYMPRED, NatLab  # noqa: E402

BOUND = 15.0     # generous bound for one wait; nothing is timed
K = 3            # datagrams per source in the filtering step

# which unsolicited sources each NAT type lets in (after contacting C10:4000)
FILTERS = {
    "full": {"same": True, "port": True, "addr": True, "host": True},
    "addr": {"same": True, "port": True, "addr": False, "host": False},
    "port": {"same": True, "port": False, "addr": False, "host": False},
    "sym": {"same": True, "port": False, "addr": False, "host": False},
    "sympred": {"same": True, "port": False, "addr": False, "host": False},
}
DISCOVERY = {   # turnutils_natdiscovery's words
    "full": ("Endpoint Independent Mapping", "Endpoint Independent Filtering"),
    "addr": ("Endpoint Independent Mapping", "Address Dependent Filtering"),
    "port": ("Endpoint Independent Mapping", "Address and Port Dependent Filtering"),
    "sym": ("Address and Port Dependent Mapping", "Address and Port Dependent Filtering"),
    "sympred": ("Address and Port Dependent Mapping", "Address and Port Dependent Filtering"),
}


def ip_port(text):
    ip, port = text.rsplit(":", 1)
    return ip, int(port)


def wait_counter(lan, name, want, what, exact=True):
    """Poll the router's counter until it reaches want (a bound, not a timing);
    then it must be exactly want (or at least, for TCP, whose SYN may be
    retransmitted meanwhile)."""
    deadline = time.monotonic() + BOUND
    while True:
        got = lan.counters()[name]
        if got >= want or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check(got == want or (not exact and got > want), "%s: router r%d counter %s = %d (want %d)"
          % (what, lan.index, name, got, want))


def main():
    lab = NatLab("natt", public2=True)
    turn = None
    try:
        lans = [lab.lan("full"), lab.lan("addr"), lab.lan("port", hairpin=True, hosts=2),
                lab.lan("sym"), lab.lan("sympred"), lab.lan("port", rst=True, hosts=2),
                lab.lan("port", udp_timeout=5, udp_stream_timeout=7)]
        timed = lans.pop()
        c10, c11 = lab.coord_ips
        pub = lab.probe(lab.public)
        pub2 = lab.probe(lab.public2)
        refl = {}   # "ip:port" -> socket id of a reflector in the public host
        for ip in (c10, c11):
            for port in (4000, 4001, 4002):
                refl["%s:%d" % (ip, port)] = pub.udp(port, ip, reflect=True)[0]
        other, _ = pub2.udp(4000, lab.public2_ip)
        probes = {}
        for lan in lans:
            for h in lan.hosts:
                probes[h] = lab.probe(h)

        # --- mapping ---------------------------------------------------------
        dests = ["%s:4000" % c10, "%s:4000" % c11, "%s:4001" % c10, "%s:4001" % c11,
                 "%s:4002" % c10]
        for lan in lans:
            p = probes[lan.host]
            s, local = p.udp(5000 + lan.index)
            seen = [p.ask(s, d, BOUND) for d in dests]
            check(all(seen), "r%d %s: every reflector answered (%s)" % (lan.index, lan.nat, seen))
            addrs = [ip_port(x) for x in seen]
            check(all(ip == lan.wan_ip for ip, _ in addrs),
                  "r%d %s: the mapped address is the router's %s (%s)"
                  % (lan.index, lan.nat, lan.wan_ip, seen))
            ports = [port for _, port in addrs]
            again = ip_port(p.ask(s, dests[0], BOUND))[1]
            check(again == ports[0], "r%d %s: the same destination keeps its mapping (%d, %d)"
                  % (lan.index, lan.nat, ports[0], again))
            if lan.nat in ("full", "addr", "port"):
                check(set(ports) == {local}, "r%d %s: one external port toward %d destinations, "
                      "the local one (%s)" % (lan.index, lan.nat, len(dests), ports))
            else:
                check(len(set(ports)) == len(ports), "r%d %s: a new external port per destination"
                      " (%s)" % (lan.index, lan.nat, ports))
                deltas = [(b - a) % 65536 for a, b in zip(ports, ports[1:])]
                if lan.nat == "sympred":
                    ok = (all(d in (NAT_DELTA_SYMPRED, NAT_DELTA_SYMPRED + 1) for d in deltas)
                          and deltas.count(NAT_DELTA_SYMPRED + 1) <= 1)
                    check(ok, "r%d sympred: each new flow's port is the last + %d (deltas %s)"
                          % (lan.index, NAT_DELTA_SYMPRED, deltas))
                else:
                    check(len(set(deltas)) > 1, "r%d sym: ports not in a fixed step (deltas %s)"
                          % (lan.index, deltas))

        # --- filtering -------------------------------------------------------
        sources = [("same", pub, refl["%s:4000" % c10]), ("port", pub, refl["%s:4001" % c10]),
                   ("addr", pub, refl["%s:4000" % c11]), ("host", pub2, other)]
        for lan in lans:
            p = probes[lan.host]
            s, _ = p.udp(6000 + lan.index)
            mapped = p.ask(s, "%s:4000" % c10, BOUND)
            before = lan.counters()["unsolicited"]
            for name, agent, sock in sources:
                for i in range(K):
                    agent.send(sock, mapped, "%s-%d" % (name, i))
            allowed = FILTERS[lan.nat]
            want_in = sorted("%s-%d" % (n, i) for n, ok in allowed.items() if ok for i in range(K))
            want_drop = K * sum(1 for ok in allowed.values() if not ok)
            got = p.recv(s, len(want_in), BOUND)
            wait_counter(lan, "unsolicited", before + want_drop,
                         "r%d %s: %d datagrams from sources it filters were dropped"
                         % (lan.index, lan.nat, want_drop))
            got_tags = sorted(d["data"] for d in got)
            check(got_tags == want_in, "r%d %s: delivered exactly from %s (got %s)"
                  % (lan.index, lan.nat, [n for n, ok in allowed.items() if ok], got_tags))

        # --- hairpinning -----------------------------------------------------
        for lan in (lans[2], lans[5]):
            pa, pb = probes[lan.hosts[0]], probes[lan.hosts[1]]
            sa, _ = pa.udp(7000)
            sb, _ = pb.udp(7001)
            mapped = pa.ask(sa, "%s:4000" % c10, BOUND)
            before = lan.counters()["no_hairpin"]
            for i in range(K):
                pb.send(sb, mapped, "hairpin-%d" % i)
            if lan.hairpin:
                got = pa.recv(sa, K, BOUND)
                check(len(got) == K and all(ip_port(d["from"])[0] == lan.wan_ip for d in got),
                      "r%d hairpin: %d datagrams to the neighbour's public mapping arrived, from "
                      "the router's address (%s)" % (lan.index, K, [d["from"] for d in got]))
                pa.send(sa, got[0]["from"], "back")
                back = pb.recv(sb, 1, BOUND)
                check(len(back) == 1 and back[0]["from"] == mapped,
                      "r%d hairpin: the answer comes back from the public mapping %s (%s)"
                      % (lan.index, mapped, back))
                check(lan.counters()["no_hairpin"] == before, "r%d hairpin: nothing refused"
                      % lan.index)
            else:
                wait_counter(lan, "no_hairpin", before + K,
                             "r%d no hairpin: the %d datagrams to the public mapping were refused"
                             % (lan.index, K))
                got = pa.recv(sa, 1, 0)
                check(got == [], "r%d no hairpin: none arrived (%s)" % (lan.index, got))

        # --- unsolicited TCP SYN ---------------------------------------------
        for lan in (lans[2], lans[5]):
            before = lan.counters()
            sock, state = pub.tcp("%s:9" % lan.wan_ip)
            if lan.rst:
                wait_counter(lan, "rst_sent", before["rst_sent"] + 1,
                             "r%d rst: the SYN was answered with RST" % lan.index, exact=False)
                deadline = time.monotonic() + BOUND
                while state == "connecting" and time.monotonic() < deadline:
                    state = pub.tcpstate(sock)
                    time.sleep(0.05)
                check(state == "refused", "r%d rst: connect() is refused (%s)" % (lan.index, state))
            else:
                wait_counter(lan, "unsolicited", before["unsolicited"] + 1,
                             "r%d: the SYN was dropped" % lan.index, exact=False)
                state = pub.tcpstate(sock)
                check(state == "connecting" and lan.counters()["rst_sent"] == 0,
                      "r%d: no RST, the connect() is still pending (%s)" % (lan.index, state))
            pub.call("close", sock=sock)

        # --- STUN with coturn ------------------------------------------------
        turn = lab.stun_server()
        log("ok: turnserver (STUN only) answers on %s and %s" % (c10, c11))
        for lan in lans:
            mapped = lab.stun_mapped(lan.host, c10)
            check(mapped is not None and mapped[0] == lan.wan_ip,
                  "r%d %s: turnutils_stunclient's mapped address is the router's %s (%s)"
                  % (lan.index, lan.nat, lan.wan_ip, mapped))
        # RFC 5780 behaviour discovery, all routers at once (each takes a few
        # seconds of the client's own timeouts)
        procs = [(lan, subprocess.Popen(["ip", "netns", "exec", lan.host,
                                         "turnutils_natdiscovery", "-m", "-f", c10],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)) for lan in lans]
        for lan, pr in procs:
            try:
                out, _ = pr.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pr.kill()
                out, _ = pr.communicate()
            found = re.findall(r"NAT with ([A-Za-z ]+)!", out)
            check(tuple(found) == DISCOVERY[lan.nat], "r%d %s: coturn's RFC 5780 discovery says "
                  "%s" % (lan.index, lan.nat, found))

        # --- conntrack timeout options ---------------------------------------
        check(timed.conntrack_timeouts() == (5, 7) and "timeout 7s" in timed.ruleset(),
              "udp_timeout=5, udp_stream_timeout=7 set the router's conntrack and map timeouts")
        check(lans[0].conntrack_timeouts() == (30, 120),
              "the other routers keep the kernel's 30 / 120 s")
    finally:
        namespaces = list(lab.lab.namespaces)
        lab.close()
    left = [ns for ns in namespaces if os.path.exists("/run/netns/" + ns)]
    check(not left, "every namespace of the lab is gone (%d made)" % len(namespaces))
    check(turn.poll() is not None, "turnserver (pid %d) was stopped" % turn.pid)
    by_hand()


def by_hand():
    """tests/lab/natlab: up, status, exec, down; bad input exits 2, leaves nothing."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "lab", "natlab")
    state = tempfile.mkdtemp(prefix="crust-natlab-")
    env = dict(os.environ, NATLAB_STATE=state, NATLAB_NAME="t%d" % os.getpid())

    def nl(*args):
        return subprocess.run([script] + list(args), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=60)
    try:
        for bad in (["up", "bogus"], ["up", "full+nope"], ["up", "sym+hairpin"],
                    ["up", "--udp-timeout", "0", "full"], ["up"], ["frobnicate"]):
            r = nl(*bad)
            check(r.returncode == 2 and "natlab:" in r.stdout,
                  "natlab %s exits 2 with a message (%s)" % (" ".join(bad),
                                                             r.stdout.splitlines()[:1]))
        check(not [n for n in os.listdir("/run/netns") if env["NATLAB_NAME"] in n],
              "the refused ups left no namespace")
        r = nl("up", "port+rst", "sym")
        check(r.returncode == 0 and "203.0.113.101" in r.stdout, "natlab up port+rst sym")
        r = nl("exec", "h2", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
        check(r.returncode == 0 and "198.18.2.10/24" in r.stdout, "natlab exec h2 runs there")
        r = nl("status", "--rules")
        check(r.returncode == 0 and "masquerade fully-random" in r.stdout
              and "reject with tcp reset" in r.stdout, "natlab status --rules shows the tables")
        r = nl("down")
        check(r.returncode == 0 and not [n for n in os.listdir("/run/netns")
                                         if env["NATLAB_NAME"] in n],
              "natlab down removes every namespace (%s)" % r.stdout.strip())
    finally:
        nl("down")
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    run(main)
