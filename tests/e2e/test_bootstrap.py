#!/usr/bin/env python3
"""Bootstrap, the bootstrap cache, the config file and peer exchange, with
real `crust node` processes on loopback (no beacon: --no-beacon).

1. Restart: B bootstraps from a contact in its config file; restarted with
   the same cache and no config, B bootstraps from its cache alone.
2. All contacts down: bootstrap rounds fail and are retried (bootstrap_round
   events with a retry delay) until a contact comes up; then
   new_bootstrap_connection and bootstrap_finished.
3. Peer exchange: A-B and B-C; A learns C's endpoint from B and connects
   to C; C enters A's cache only after that direct connection.
4. Re-bind: with rebind_interval_ms the listeners move to new random ports
   (UDP to the TCP port's number); existing TCP and reliable-UDP connections
   keep working both ways and newcomers reach the new ports over both.
5. A cache file that is corrupt, truncated, of another version or empty:
   the node starts, its log names the file and where it was set aside
   (the old bytes kept), and the new cache works.
6. Config files with a wrong type, an unknown key, invalid JSON: exit 2,
   the message names the key and line (or line and column)."""
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import (CrustNode, check, crust_binary, exchange, free_port, log,  # noqa: E402
                       run)
import cachefile  # noqa: E402

NB = ["--no-beacon"]


def write_config(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def part_restart(tmp):
    log("--- 1. restart: bootstrap from the cache alone")
    a = CrustNode("A", args=NB + ["--no-pex", "--no-cache"], isolated=False)
    cfg = os.path.join(tmp, "b.json")
    cache = os.path.join(tmp, "b.cache")
    write_config(cfg, {"hard_coded_contacts": ["127.0.0.1:%d" % a.port]})
    b = CrustNode("B", args=NB + ["--config", cfg, "--cache", cache], isolated=False)
    ev = b.wait_for("new_bootstrap_connection")
    check(ev["peer"] == a.peer, "B's bootstrap reached A through its config contact", b)
    fin = b.wait_for("bootstrap_finished")
    check(fin["succeeded"] >= 1, "bootstrap_finished after round %d" % fin["round"], b)
    entries = cachefile.load(cache)
    check(any(e["peer"] == a.peer and e["port"] == a.port for e in entries),
          "A is in B's cache file: %r" % entries, b)
    check(b.quit() == 0, "B quit")
    a.wait_for("lost_connection", lambda e: e["peer"] == b.peer)

    b2 = CrustNode("B again", args=NB + ["--cache", cache], isolated=False)
    ev = b2.wait_for("new_bootstrap_connection")
    check(ev["peer"] == a.peer and ev["addr"] == "127.0.0.1:%d" % a.port,
          "restarted B (no config, no contacts) bootstrapped from its cache to A", b2)
    b2.wait_for("bootstrap_finished")
    a.wait_for("new_connection", lambda e: e["peer"] == b2.peer)
    exchange(b2, a, "back from the cache")
    b2.quit()
    a.quit()


def part_retry(tmp):
    log("--- 2. all contacts down: retries until one comes up")
    p1, p2 = free_port(), free_port()
    cfg = os.path.join(tmp, "retry.json")
    write_config(cfg, {"hard_coded_contacts": ["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2],
                       "bootstrap_retry_min_ms": 200, "bootstrap_retry_max_ms": 800})
    b = CrustNode("B", args=NB + ["--no-pex", "--no-cache", "--config", cfg], isolated=False)
    rounds = [b.wait_for("bootstrap_round") for _ in range(3)]
    check([r["round"] for r in rounds] == [1, 2, 3] and
          all(r["tried"] == 2 and r["succeeded"] == 0 and r["retry_ms"] > 0 for r in rounds),
          "three failed rounds seen, each with a retry delay: %r"
          % [(r["round"], r["retry_ms"]) for r in rounds], b)
    check(b.pending("connect_failed"), "each round's dials failed visibly", b)
    a = CrustNode("A", tcp_port=p2, args=NB + ["--no-pex", "--no-cache"], isolated=False)
    ev = b.wait_for("new_bootstrap_connection", timeout=20)
    check(ev["peer"] == a.peer, "once A came up on a contact's port, B's retry reached it", b)
    fin = b.wait_for("bootstrap_finished")
    check(fin["round"] > 3, "finished in round %d, after the failed ones" % fin["round"], b)
    time.sleep(1.5)
    check(not b.pending("bootstrap_round"), "no more rounds after success", b)
    b.quit()
    a.quit()


def part_pex(tmp):
    log("--- 3. peer exchange: A-B, B-C; A learns C through B and connects")
    base = NB + ["--no-bootstrap"]
    b = CrustNode("B", args=base + ["--no-cache"], isolated=False)
    c = CrustNode("C", args=base + ["--no-cache"], isolated=False)
    b.connect(c.port)                       # B dials C: B knows where C listens
    b.wait_for("new_connection", lambda e: e["peer"] == c.peer)
    a_cache = os.path.join(tmp, "a-pex.cache")
    a = CrustNode("A", args=base + ["--cache", a_cache], isolated=False)
    a.connect(b.port)                       # A's only contact is B
    a.wait_for("new_connection", lambda e: e["peer"] == b.peer)
    disc = a.wait_for("peer_discovered", lambda e: e.get("peer") == c.peer)
    check(disc["addr"] == "127.0.0.1:%d" % c.port and "peer exchange" in disc["reason"],
          "A discovered C at its listening endpoint through B: %r" % disc, a)
    a.wait_for("new_connection", lambda e: e["peer"] == c.peer)
    c.wait_for("new_connection", lambda e: e["peer"] == a.peer)
    exchange(a, c, "found you through B")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        peers = {e["peer"] for e in cachefile.load(a_cache)}
        if c.peer in peers:
            break
        time.sleep(0.1)
    check(c.peer in peers and b.peer in peers,
          "after the direct connections both B and C are in A's cache", a)
    for n in (a, b, c):
        n.quit()


def moved(a, transport):
    """A's next listener_started for transport after a move."""
    return a.wait_for("listener_started", lambda e: e.get("transport") == transport and
                      "moved from port" in e.get("reason", ""), timeout=10)


def newest_port(a, transport, port):
    """The port of A's latest move of transport seen so far (port if none since)."""
    for ev in a.pending("listener_started", lambda e: e.get("transport") == transport):
        port = ev["port"]
    return port


def dial_newest(node, a, transport, port, who="a newcomer"):
    """node dials A's newest transport port; a dial that loses the race with
    the next move (the old port stops taking connections) is retried."""
    for _ in range(4):
        node.send_command("connect %s://127.0.0.1:%d" % (transport, port))
        ev = node.wait_for(None, lambda e: e["event"] in ("connect_failed", "new_connection"),
                           timeout=30)
        if ev["event"] == "new_connection":
            check(ev["peer"] == a.peer and ev["transport"] == transport,
                  "%s reached A over %s on its newest port %d" % (who, transport, port), node)
            return
        log("dial of %s port %d failed (%s); A moved meanwhile?" % (transport, port, ev))
        port = newest_port(a, transport, port)
    check(False, "%s reached A over %s" % (who, transport), node, a)


def part_rebind(tmp):
    log("--- 4. listeners move to new random ports; connections stay (TCP and reliable UDP)")
    cfg = os.path.join(tmp, "rebind.json")
    write_config(cfg, {"rebind_interval_ms": 1000})
    a = CrustNode("A", args=NB + ["--no-pex", "--no-cache", "--config", cfg], isolated=False)
    b = CrustNode("B", args=NB)
    d = CrustNode("D", args=NB)
    c = CrustNode("C", args=NB)              # newcomers, started now: they dial right after a move
    e = CrustNode("E", args=NB)
    # A may already have moved (nodes start slowly on a loaded machine)
    dial_newest(b, a, "tcp", newest_port(a, "tcp", a.port), "B")
    dial_newest(d, a, "rudp", newest_port(a, "rudp", a.rudp_port), "D")
    tcp_ports, udp_ports = {a.port}, {a.rudp_port}
    for _ in range(2):
        t = moved(a, "tcp")
        u = moved(a, "rudp")
        check(t["port"] not in tcp_ports,
              "A moved its TCP listener to port %d (%s)" % (t["port"], t["reason"]), a)
        check(u["port"] not in udp_ports and (u["port"] == t["port"] or u["fallback"]),
              "A moved its UDP listener to port %d, the TCP port's number unless taken (%s)"
              % (u["port"], u["reason"]), a)
        tcp_ports.add(t["port"])
        udp_ports.add(u["port"])
    # after two moves, the connections made on the first ports still work both ways
    exchange(b, a, "still connected after two moves")
    exchange(a, b, "and back")
    exchange(d, a, "still connected over UDP after two moves")
    exchange(a, d, "and back over UDP")
    dial_newest(c, a, "tcp", newest_port(a, "tcp", t["port"]))
    dial_newest(e, a, "rudp", newest_port(a, "rudp", u["port"]))
    exchange(e, a, "newcomer over UDP")
    exchange(a, e, "welcome over UDP")
    exchange(d, a, "the first UDP connection lives on")
    for n in (a, b, c, d, e):
        check(n.quit() == 0, "%s exits cleanly" % n.name)


def part_bad_cache(tmp):
    log("--- 5. unreadable cache files: reported, set aside, rebuilt")
    good = cachefile.build(4, [])
    bad_version = bytearray(good)
    bad_version[8:12] = struct.pack("<I", 7)
    cases = [("zero-length", b"", "empty (zero length)"),
             ("truncated", good[:len(good) - 64], "truncated"),
             ("wrong-version", bytes(bad_version), "unsupported version 7"),
             ("corrupt", bytes(b ^ 0x5a for b in good), "bad magic")]
    for name, data, want in cases:
        path = os.path.join(tmp, "bad-%s.cache" % name)
        with open(path, "wb") as f:
            f.write(data)
        n = CrustNode("node-" + name, args=NB + ["--no-pex", "--cache", path,
                                                 "--no-bootstrap"], isolated=False)
        line = n.wait_stderr(lambda l: "bootstrap cache" in l and path in l)
        check(want in line and "set aside as" in line,
              "%s cache: %s" % (name, line), n)
        asides = glob.glob(path + ".corrupt-*")
        check(len(asides) == 1 and open(asides[0], "rb").read() == data,
              "%s: the old bytes kept in %s" % (name, asides and asides[0]), n)
        other = CrustNode("peer", args=NB)
        n.connect(other.port)
        n.wait_for("new_connection", lambda e: e["peer"] == other.peer)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not cachefile.load(path):
            time.sleep(0.1)
        check([e["peer"] for e in cachefile.load(path)] == [other.peer],
              "%s: the rebuilt cache records the new connection" % name, n)
        check(n.quit() == 0 and other.quit() == 0, "%s: clean exit" % name)


def bad_config(tmp, name, text, wants):
    path = os.path.join(tmp, "bad-%s.json" % name)
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([crust_binary(), "node", "--config", path], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=20)
    err = p.stderr.decode()
    check(p.returncode == 2 and all(w in err for w in wants) and path in err,
          "%s config: exit %d, %r" % (name, p.returncode, err.strip()))
    check(p.stdout == b"", "%s config: nothing on stdout" % name)


def part_bad_config(tmp):
    log("--- 6. bad config files: exit 2 naming the key and line")
    bad_config(tmp, "wrong-type", '{\n  "shards": 1,\n  "tcp_port": "5483"\n}\n',
               ['line 3: key "tcp_port"', "expected an integer", "got a string"])
    bad_config(tmp, "unknown-key", '{\n  "tcp_port": 0,\n  "beacon_prot": 5483\n}\n',
               ['line 3: key "beacon_prot"', "unknown key"])
    bad_config(tmp, "invalid-json", '{\n  "tcp_port": 0,\n  "shards": 1,,\n}\n',
               ["invalid JSON at line 3, column"])
    bad_config(tmp, "bad-contact", '{"hard_coded_contacts": ["127.0.0.1:1",\n "nowhere"]}',
               ['line 2: key "hard_coded_contacts"[1]', 'bad endpoint "nowhere"'])
    # a missing file means the defaults; the flags still apply
    n = CrustNode("missing-config", args=NB + ["--no-cache", "--config",
                                               os.path.join(tmp, "absent.json")],
                  isolated=False)
    check(any("not found (using the defaults)" in l for l in n.stderr_lines) or
          n.wait_stderr(lambda l: "not found" in l), "missing config: defaults, with a note", n)
    n.quit()
    # flags override the file
    cfg = os.path.join(tmp, "override.json")
    write_config(cfg, {"tcp_port": free_port(), "network_name": "from-file"})
    want = free_port()
    n = CrustNode("override", tcp_port=want, args=NB + ["--no-cache", "--config", cfg],
                  isolated=False)
    check(n.port == want, "--tcp-port overrode the file's tcp_port", n)
    n.quit()


def main():
    with tempfile.TemporaryDirectory(prefix="crust-boot-") as tmp:
        part_bad_config(tmp)
        part_bad_cache(tmp)
        part_restart(tmp)
        part_retry(tmp)
        part_pex(tmp)
        part_rebind(tmp)


if __name__ == "__main__":
    run(main)
