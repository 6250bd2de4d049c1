#!/usr/bin/env python3
"""STUN interoperability and bad input, behind a port-restricted cone NAT
(punchlab.py; removed at the end, daemons stopped by PID also on failure).

  1. coturn's turnutils_stunclient (a real STUN client) against
     `crust coordinator`, on both --listen addresses: it learns its public
     address (the NAT router's WAN address).
  2. stunprobe.py against the coordinator: XOR-MAPPED-ADDRESS right,
     FINGERPRINT echoed and correct, an old (RFC 3489, no cookie) client
     gets MAPPED-ADDRESS, CHANGE-REQUEST gets 420 with UNKNOWN-ATTRIBUTES;
     malformed datagrams (truncated, wrong lengths, 300 attributes, wrong
     FINGERPRINT, random bytes) get no answer at all; every answer is at most
     3x its request; the coordinator still answers afterwards and counted
     the drops.
  3. crust's own STUN client (a node with --coordinator pointing at coturn's
     `turnserver`, STUN only, started here) learns the right public UDP
     endpoint: the router's WAN address with the node's port (Linux
     masquerade keeps ports that do not clash).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from crustnode import CrustNode, check, log, run  # noqa: E402
from punchlab import COORD_IP, COORD_IP2, PunchLab  # noqa: E402

T = 20.0


def stunclient(lab, ip, port, quiet=False):
    """turnutils_stunclient from host 1 (bounded: it retries forever without an answer)."""
    out = lab.lab.run(lab.hosts[0], "timeout", "5", "turnutils_stunclient", "-p", str(port), ip,
                      check=False)
    m = re.search(r"UDP reflexive addr: ([0-9.]+):(\d+)", out)
    if quiet and not m:
        return None
    check(m is not None, "turnutils_stunclient got an answer from %s:%d" % (ip, port))
    return m.group(1), int(m.group(2))


def main():
    lab = PunchLab("stun", ["port"])
    tmp = tempfile.mkdtemp(prefix="crust-stun-")
    node = None
    turn = None
    try:
        coord, _ = lab.start_coordinator(3478)
        for ip in (COORD_IP, COORD_IP2):
            got_ip, got_port = stunclient(lab, ip, 3478)
            check(got_ip == lab.wan[0],
                  "turnutils_stunclient learns the NAT's public address via %s (%s:%d)" %
                  (ip, got_ip, got_port))

        probe = json.loads(lab.lab.run(lab.hosts[0], sys.executable,
                                       os.path.join(HERE, "stunprobe.py"), COORD_IP, "3478"))
        log("probe: %s" % json.dumps(probe))
        check(probe["plain"]["type"] == 0x0101 and probe["plain"]["txid_ok"] and
              probe["plain"]["xor_mapped"].startswith(lab.wan[0] + ":"),
              "Binding success with the right XOR-MAPPED-ADDRESS")
        check(probe["fingerprint"]["has_fp"] and probe["fingerprint"]["fp_ok"],
              "a request with FINGERPRINT gets a correct FINGERPRINT back")
        check(probe["old_client"]["txid_ok"] and
              (probe["old_client"]["mapped"] or "").startswith(lab.wan[0] + ":"),
              "an RFC 3489 client gets MAPPED-ADDRESS (%s)" % probe["old_client"])
        check(probe["change_request"]["type"] == 0x0111 and
              probe["change_request"]["code"] == 420 and
              probe["change_request"]["unknown"] == [3],
              "CHANGE-REQUEST is answered 420 listing 0x0003 (%s)" % probe["change_request"])
        check(probe["malformed_answered"] == 0,
              "%d malformed datagrams got no answer" % probe["malformed_sent"])
        check(probe["max_ratio"] <= 3.0,
              "no answer is larger than 3x its request (max %.2f)" % probe["max_ratio"])
        check(probe["after_malformed"], "the coordinator still answers after the garbage")
        stats = lab.coordinator_stats(coord)
        # the 7 STUN-shaped bad ones are STUN's drops; random bytes whose first byte has
        # bit 6 or 7 set look like reliable UDP and are that transport's bad packets
        check(stats["stun_dropped"] >= 7 and stats["stun_errors"] == 1,
              "the coordinator counted the drops and the 420 (%r)" % stats)
        check(coord.poll() is None, "the coordinator is still running")
        check(lab.stop(coord) == 0, "the coordinator exits with status 0 on SIGTERM")

        # a real STUN server (coturn, STUN only) for crust's own STUN client
        db = os.path.join(tmp, "turndb")
        argv = ["ip", "netns", "exec", lab.coord, "turnserver", "-n", "-S", "-L", COORD_IP2,
                "--listening-port", "3479", "--no-tls", "--no-dtls", "--no-cli",
                "--db", db, "--pidfile", os.path.join(tmp, "turnserver.pid"),
                "--log-file", os.path.join(tmp, "turn.log"), "--no-stdout-log"]
        log("[turnserver] start: %s" % " ".join(argv))
        turn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        for _ in range(10):   # until it answers (bounded)
            if stunclient(lab, COORD_IP2, 3479, quiet=True):
                break
            time.sleep(0.2)
        node = CrustNode("N", netns=lab.hosts[0], bind="0.0.0.0",
                         args=["--coordinator", "%s:3479" % COORD_IP2])
        ev = node.wait_for("external_endpoint", lambda e: e["transport"] == "rudp", timeout=T)
        check(ev["addr"] == "%s:%d" % (lab.wan[0], node.port) and ev["source"] == "stun",
              "crust's STUN client learns %s:%d from coturn (%s)" %
              (lab.wan[0], node.port, ev["addr"]), node)
        check(node.quit() == 0, "the node quits with status 0", node)
        node = None
    finally:
        if node:
            node.kill()
        if turn and turn.poll() is None:
            turn.terminate()
            try:
                turn.wait(timeout=5)
            except subprocess.TimeoutExpired:
                turn.kill()
                turn.wait()
        lab.close()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    run(main)
