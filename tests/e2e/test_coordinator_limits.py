#!/usr/bin/env python3
"""The coordinator under abuse (punchlab.py; removed at the end, daemons
stopped by PID also on failure). Counts, never timings.

  1. Registrations are bounded: 12 crust sessions from one IP against
     --max-per-ip 5 give 5 registrations and 7 refusals; a flood of 50
     registers on one session is mostly refused (rate limited); a reach for
     an unknown id is refused with a reason; a relay preamble with a token
     nobody was given is closed; a malformed rendezvous message closes that
     session. The coordinator stays up and counts it all.
  2. The relay's byte cap: two nodes behind symmetric NATs are relayed;
     past --relay-max-bytes the pair is cut (lost_connection on both
     sides, relay_capped counted), and the coordinator stays up.
  3. The relay's rate cap: a burst far above --relay-rate overflows the
     relay's queue and the pair is cut ("relay rate cap exceeded").
  4. Registrations expire: with --registration-ttl-ms 3000, a session that
     registered and then stayed silent is not handed out 5 s later (a reach
     for it is refused), though it was right after it registered.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from crustnode import CrustNode, check, exchange, log, run  # noqa: E402
from punchlab import COORD_IP, PunchLab  # noqa: E402

T = 30.0


def relayed_pair(lab, tag, port):
    opts = ["--coordinator", "%s:%d" % (COORD_IP, port), "--punch-timeout-ms", "500"]
    a = CrustNode("A" + tag, netns=lab.hosts[0], bind="0.0.0.0", args=opts)
    b = CrustNode("B" + tag, netns=lab.hosts[1], bind="0.0.0.0", args=opts)
    for n in (a, b):
        n.wait_for("external_endpoint", lambda e: e["transport"] == "tcp", timeout=T)
    a.send_command("punch %s" % b.peer)
    r = a.wait_for("punch_result", lambda e: e["peer"] == b.peer, timeout=T)
    check(r["ok"] and r["via"] == "relay", "symmetric NATs: relayed (%r)" % r, a)
    b.wait_for("new_connection", lambda e: e["peer"] == a.peer, timeout=T)
    exchange(a, b, "before the cap")
    return a, b


def cut(a, b, count, size, why, coord_log):
    blob = "x" * size
    for _ in range(count):
        a.send_command("send %s %s" % (b.peer, blob))
    a.wait_for("lost_connection", lambda e: e["peer"] == b.peer, timeout=T)
    b.wait_for("lost_connection", lambda e: e["peer"] == a.peer, timeout=T)
    with open(coord_log) as f:
        logged = f.read()
    check(why in logged, "the coordinator cut the pair: %s" % why)


def main():
    lab = PunchLab("coordlim", ["port", "sym", "sym"])
    nodes = []
    try:
        coord, _ = lab.start_coordinator(3478, ["--max-per-ip", "5", "--relay-max-bytes",
                                                "200000", "--verbose"])
        probe = json.loads(lab.lab.run(lab.hosts[0], sys.executable,
                                       os.path.join(HERE, "rdvprobe.py"), COORD_IP, "3478", "12"))
        log("probe: %s" % json.dumps(probe))
        check(probe["registered"] == 5 and probe["refused"] == 7,
              "12 sessions from one IP: 5 registered, 7 refused")
        check(probe["reach_unknown"] and probe["reach_unknown"][0][1] == 1 and
              "unknown peer" in probe["reach_unknown"][0][2],
              "a reach for an unknown id is refused: %r" % probe["reach_unknown"])
        check(probe["flood_registered"] + probe["flood_refused"] <= 50 and
              probe["flood_refused"] >= 40,
              "a flood of 50 registers is mostly refused (%d answered, %d refused)" %
              (probe["flood_registered"], probe["flood_refused"]))
        check(probe["bad_token_closed"], "an unknown relay token is refused")
        check(probe["malformed_closed"], "a malformed rendezvous message ends the session")
        stats = lab.coordinator_stats(coord)
        check(coord.poll() is None and stats["relay_refused"] >= 1 and
              stats["registrations_refused"] >= 7 and stats["rendezvous_unknown"] >= 1,
              "the coordinator is up and counted it (%r)" % stats)

        # relay caps: hosts 2 and 3 are behind symmetric NATs
        lab.hosts = lab.hosts[1:]
        a, b = relayed_pair(lab, "1", 3478)
        nodes = [a, b]
        cut(a, b, 30, 10000, "relay byte cap reached", coord.log_path)
        stats = lab.coordinator_stats(coord)
        check(stats["relay_capped"] == 1, "one pair capped (%r)" % stats)
        for n in nodes:
            n.quit()
        nodes = []
        check(lab.stop(coord) == 0, "the coordinator exits with status 0 on SIGTERM")
        # another port: the first one's connections linger in TIME_WAIT
        coord, _ = lab.start_coordinator(3479, ["--relay-rate", "16384", "--verbose"])
        a, b = relayed_pair(lab, "2", 3479)
        nodes = [a, b]
        cut(a, b, 100, 20000, "relay rate cap exceeded", coord.log_path)
        check(coord.poll() is None, "the coordinator is still up")
        for n in nodes:
            n.quit()
        nodes = []
        check(lab.stop(coord) == 0, "the coordinator exits with status 0 on SIGTERM")

        coord, _ = lab.start_coordinator(3480, ["--registration-ttl-ms", "3000"])
        probe = json.loads(lab.lab.run(lab.hosts[0], sys.executable,
                                       os.path.join(HERE, "rdvprobe.py"), COORD_IP, "3480",
                                       "expiry", "5"))
        log("probe: %s" % json.dumps(probe))
        check(probe["a_registered"] == 1 and probe["b_registered"] == 1 and
              probe["before"] == [8], "a fresh registration is handed out (punch)")
        check(len(probe["after"]) == 1 and probe["after"][0][0] == 9 and
              "unknown peer" in probe["after"][0][1],
              "an expired one is not: %r" % probe["after"])
        check(lab.coordinator_stats(coord)["expired"] >= 1, "the expiry was counted")
        check(lab.stop(coord) == 0, "the coordinator exits with status 0 on SIGTERM")
    finally:
        for n in nodes:
            n.kill()
        lab.close()


if __name__ == "__main__":
    run(main)
