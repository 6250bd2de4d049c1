#!/usr/bin/env python3
"""A hostile process floods node A while a legitimate node B connects.

The hostile process (this file run with --hostile PORT, all from
127.0.0.1, bounded: 300 connections over ~12 s, 4 record flooders):
  burst:  150 connections, beyond A's per-source handshake limits (50/s,
          burst 100, 16 pending), in two waves: 20 left unfinished at once
          (silent, msg1 and no msg3, half a frame): the pending limit; then,
          once A has timed those out, 115 that fail at once (random bytes,
          bad magic, the old clear hello), one after the other so that they
          spend tokens, not slots: the rate limit; and 15 more unfinished
  steady: 150 more spread over ~9 s (at most 6 unfinished handshakes of
          its own at a time), mixed the same way
  record flooders, which complete the handshake (retrying while limited)
  and then send records:
      fast        one message per record, as fast as it can
      batch       100 messages per record
      over        one message per record, twice --max-rx-msgs-per-s
      below       one message per record at half --max-rx-msgs-per-s for
                  3 s: a heavy but legal sender, which must not be cut
      keepalives  10 keepalive control messages per record, 5x the rate in
                  records, for 3 s
      empty       records without messages, 10x the rate, for 3 s
                  (these two are not limited today: see CONTROL_FLOOD_IS_LIMITED)

A (--max-rx-msgs-per-s 200, --handshake-timeout-ms 2000) must:
  - stay up, with its RSS bounded (sampled all along: < 128 MiB above
    where it started) and its descriptors back where they were after;
  - report abuse events: the handshake limits ("rate limit" / "pending
    handshakes") and "message flood" for fast, batch and over, each of which
    it disconnects; nothing for below, which leaves on its own;
  - admit at once a peer from another source (127.0.0.2) while 127.0.0.1
    is at its limits (the limits are per source);
  - let B (also from 127.0.0.1, so limited with the flood) connect by
    retrying, within a bound, and exchange messages with it while the
    flood is still running. How many tries B needed is printed.
"""
import json
import os
import queue
import random
import selectors
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crustwire as w  # noqa: E402
from crustnode import (CrustNode, check, exchange, frame, hello_v1, log, msg_bytes,  # noqa: E402
                       run)

RATE = 200                 # --max-rx-msgs-per-s on A
HS_TIMEOUT_MS = 2000
BURST = 150
STEADY = 150
STEADY_SECONDS = 9.0
BURST2_AT = HS_TIMEOUT_MS / 1000 + 0.5   # the burst's second wave
STEADY_AT = BURST2_AT + 0.5
MAX_OWN_STALLED = 6        # the hostile's unfinished handshakes in the steady phase
RSS_BOUND_KIB = 128 * 1024
B_MAX_TRIES = 60
B_MAX_SECONDS = 30.0
# Library gap (reported): --max-rx-msgs-per-s counts user messages only
# (p2p/secure.c: control messages `continue` before flooding(), and a
# record without messages never reaches it), so records of keepalives or
# empty records flood a node without limit (>100k records/s per connection
# on loopback), each costing an AEAD open. Set to True once the limit (or a
# record limit) covers them: then the test requires them to be cut.
CONTROL_FLOOD_IS_LIMITED = True

# --- the hostile process --------------------------------------------------------------------

STALLED = ("silent", "msg1_only", "half_frame")
FAST = ("garbage", "badmagic", "oldhello")


def payload(kind):
    if kind == "silent":
        return b""
    if kind == "msg1_only":
        return frame(w.Handshake(True).make_msg1())
    if kind == "half_frame":
        return frame(w.Handshake(True).make_msg1())[:30]
    if kind == "garbage":
        return b"\xff" + os.urandom(random.randrange(3, 1500))
    if kind == "badmagic":
        return frame(b"EVIL" + os.urandom(44))
    if kind == "oldhello":
        return frame(hello_v1())
    raise ValueError(kind)


class Flooder(threading.Thread):
    """rate: records per second (0: as fast as it can); per_record user
    messages in each, or kind "ctrl": that many keepalive control messages,
    "empty": records without messages."""

    def __init__(self, name, port, per_record, rate, seconds, kind="user"):
        super().__init__(daemon=True)
        self.name_, self.port = name, port
        self.per_record, self.rate, self.seconds = per_record, rate, seconds
        self.kind = kind
        self.res = {"tries": 0, "records": 0, "msgs": 0, "end": None}

    def run(self):
        c = None
        for _ in range(200):                     # retry while A limits 127.0.0.1
            self.res["tries"] += 1
            try:
                c = w.connect("127.0.0.1", self.port, timeout=5)
                break
            except (OSError, EOFError, w.WireError):
                time.sleep(0.05)
        if c is None:
            self.res["end"] = "never connected"
            return
        self.res["peer"] = c.me
        t0 = time.monotonic()
        body = {"user": [b"flood %s" % self.name_.encode()] * self.per_record,
                "ctrl": [w.ctrl(w.CTRL_KEEPALIVE)] * self.per_record,
                "empty": []}[self.kind]
        try:
            while time.monotonic() - t0 < self.seconds:
                c.send(*body)
                self.res["records"] += 1
                self.res["msgs"] += self.per_record
                if self.rate:
                    # pace on the schedule, not on the previous send
                    ahead = t0 + self.res["records"] / self.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            self.res["end"] = "finished"
        except (ConnectionResetError, BrokenPipeError, OSError) as e:
            self.res["end"] = "cut: %s" % type(e).__name__
        self.res["seconds"] = round(time.monotonic() - t0, 2)
        c.close()


def hostile(port):
    random.seed()
    out = sys.stdout
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "connect_errors": 0, "closed_by_a": 0, "substituted": 0}
    stalled_open = set()
    t0 = time.monotonic()
    # the burst, in two waves: 20 handshakes left unfinished at once (the
    # pending limit: 16), then, once A has timed those out, 115 quick failures
    # one after the other (the rate limit: they spend tokens, not slots) and
    # 15 more unfinished ones
    plan = [(0.0, STALLED[i % 3]) for i in range(20)]
    plan += [(BURST2_AT, FAST[i % 3] if i < 115 else STALLED[i % 3]) for i in range(BURST - 20)]
    plan += [(STEADY_AT + STEADY_SECONDS * i / STEADY, (STALLED + FAST)[i % 6])
             for i in range(STEADY)]
    flooders = [Flooder("fast", port, 1, 0, 5.0), Flooder("batch", port, 100, 0, 5.0),
                Flooder("over", port, 1, 2 * RATE, 5.0), Flooder("below", port, 1, RATE // 2, 3.0),
                Flooder("keepalives", port, 10, 5 * RATE, 3.0, "ctrl"),
                Flooder("empty", port, 0, 10 * RATE, 3.0, "empty")]

    def reap(timeout):
        for key, _ in sel.select(timeout):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                stalled_open.discard(s)
                stats["closed_by_a"] += 1

    burst_said = False
    started_flooders = False
    while plan or sel.get_map():
        now = time.monotonic() - t0
        if now > STEADY_AT + STEADY_SECONDS + 15.0:
            break
        if not started_flooders and now >= STEADY_AT:
            for f in flooders:
                f.start()
            started_flooders = True
        while plan and plan[0][0] <= now:
            at, kind = plan.pop(0)
            if at >= STEADY_AT and kind in STALLED and len(stalled_open) >= MAX_OWN_STALLED:
                kind = random.choice(FAST)
                stats["substituted"] += 1
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                stats["opened"] += 1
            except OSError:
                stats["connect_errors"] += 1
                continue
            try:
                s.sendall(payload(kind))
                if at == BURST2_AT and kind in FAST:
                    # the burst's quick failures one after the other, each
                    # closed before the next: only tokens run out, not slots
                    # (a refused crust peer's slot is held until it closes)
                    while s.recv(65536):
                        pass
                    s.close()
                    stats["closed_by_a"] += 1
                    continue
            except OSError:
                pass
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            if kind in STALLED:
                stalled_open.add(s)
        if not burst_said and not any(at < STEADY_AT for at, _ in plan):
            out.write("burst_done\n")
            out.flush()
            burst_said = True
        reap(min(0.02, max(0.0, plan[0][0] - now)) if plan else 0.05)
    stats["still_open"] = len(sel.get_map())
    stats["seconds"] = round(time.monotonic() - t0, 2)
    for f in flooders:
        f.join(15)
        stats[f.name_] = f.res
    out.write("done " + json.dumps(stats) + "\n")
    out.flush()


# --- the test ---------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    def __init__(self, node):
        super().__init__(daemon=True)
        self.node, self.peak, self.stop = node, 0, threading.Event()

    def run(self):
        while not self.stop.is_set() and self.node.alive():
            try:
                self.peak = max(self.peak, self.node.rss_kib())
            except Exception:  # noqa: BLE001 - the process may be gone
                return
            time.sleep(0.05)


def b_connects(A, B):
    """B dials A until it gets in; returns (tries, seconds, failure reasons)."""
    t0 = time.monotonic()
    reasons = []
    for tries in range(1, B_MAX_TRIES + 1):
        if time.monotonic() - t0 > B_MAX_SECONDS:
            break
        B.connect(A.port)
        ev = B.wait_for(None, lambda e: e["event"] in ("new_connection", "connect_failed",
                                                        "handshake_failed"), 15)
        if ev["event"] == "new_connection" and ev.get("peer") == A.peer:
            return tries, time.monotonic() - t0, reasons
        reasons.append(ev.get("reason", ev["event"]))
        time.sleep(0.2)
    check(False, "B connected to A within %d tries / %.0f s (failures: %r)"
          % (B_MAX_TRIES, B_MAX_SECONDS, reasons[-5:]), A, B)


def main():
    A = CrustNode("A", shards=2, args=["--max-rx-msgs-per-s", str(RATE),
                                       "--handshake-timeout-ms", str(HS_TIMEOUT_MS)])
    B = CrustNode("B", args=["--handshake-timeout-ms", "3000"])
    time.sleep(0.3)
    rss0, fds0 = A.rss_kib(), A.fd_count()
    log("A before: VmRSS %d KiB, %d descriptors" % (rss0, fds0))
    sampler = RssSampler(A)
    sampler.start()

    lines = queue.Queue()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--hostile", str(A.port)],
                            stdout=subprocess.PIPE, text=True)

    def read_lines():
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        line = lines.get(timeout=30)
        check(line == "burst_done", "the hostile process opened its burst of %d (%r)"
              % (BURST, line))

        # another source is not limited by what 127.0.0.1 does
        try:
            other = w.connect("127.0.0.1", A.port, source="127.0.0.2")
        except (OSError, EOFError, w.WireError) as e:
            other = None
            check(False, "a peer from 127.0.0.2 gets in at once during the burst (%s)" % e, A)
        A.wait_for("new_connection", lambda e: e.get("peer") == other.me, 15)
        other.send(b"from another source")
        ev = A.wait_for("new_message", lambda e: e.get("peer") == other.me, 15)
        check(msg_bytes(ev) == b"from another source",
              "a peer from 127.0.0.2 gets in at once during the burst", A)
        other.close()

        tries, took, reasons = b_connects(A, B)
        log("B needed %d tries (%.2f s) to connect during the flood; refusals: %r"
            % (tries, took, reasons))
        A.wait_for("new_connection", lambda e: e.get("peer") == B.peer, 15)
        for i in range(3):
            exchange(B, A, "B to A during the flood #%d" % i)
            exchange(A, B, "A to B during the flood #%d" % i)
        check(proc.poll() is None, "B exchanged messages while the flood was still running", A, B)

        line = lines.get(timeout=60)
        check(line is not None and line.startswith("done "), "the hostile process finished (%r)"
              % line)
        st = json.loads(line[5:])
        log("hostile: %s" % json.dumps(st))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    sampler.stop.set()
    sampler.join(5)

    check(A.alive(), "A survived the flood", A)
    check(st["opened"] + st["connect_errors"] == BURST + STEADY,
          "the hostile process tried %d connections (%d opened)"
          % (BURST + STEADY, st["opened"]))
    check(st["still_open"] == 0, "A closed every hostile connection (%d left open)"
          % st["still_open"], A)

    for name in ("fast", "batch", "over"):
        f = st[name]
        check("peer" in f, "flooder %s completed a handshake (%d tries)" % (name, f["tries"]), A)
        ev = A.wait_for("lost_connection", lambda e, p=f["peer"]: e.get("peer") == p, 15)
        check("flood" in ev["reason"],
              "flooder %s (%d records, %d messages in %ss, %s) was cut: %r"
              % (name, f["records"], f["msgs"], f.get("seconds"), f["end"], ev["reason"]), A)
        ab = A.wait_for("abuse", lambda e, p=f["peer"]: e.get("peer") == p, 15)
        check("flood" in ab["reason"], "flooder %s: abuse event %r" % (name, ab["reason"]), A)
        check(f["msgs"] > RATE, "flooder %s sent more than %d messages" % (name, RATE))
    f = st["below"]
    check("peer" in f and f["end"] == "finished",
          "the sender below the rate limit sent all along (%r)" % f, A)
    ev = A.wait_for("lost_connection", lambda e: e.get("peer") == f["peer"], 15)
    check("flood" not in ev["reason"] and not A.pending("abuse", lambda e: e.get("peer") ==
                                                         f["peer"]),
          "the sender below the rate limit (%d messages in %ss) was not cut: %r"
          % (f["msgs"], f["seconds"], ev["reason"]), A)

    for name in ("keepalives", "empty"):
        f = st[name]
        check("peer" in f, "flooder %s completed a handshake (%d tries)" % (name, f["tries"]), A)
        ev = A.wait_for("lost_connection", lambda e, p=f["peer"]: e.get("peer") == p, 15)
        log("flooder %s: %d records in %ss (%s), A: %r" % (name, f["records"], f["seconds"],
                                                          f["end"], ev["reason"]))
        if CONTROL_FLOOD_IS_LIMITED:
            check("flood" in ev["reason"], "flooder %s was cut: %r" % (name, ev["reason"]), A)
        elif "flood" not in ev["reason"]:
            log("note: KNOWN LIBRARY GAP: %d %s records at %d/s were not limited"
                % (f["records"], name, f["records"] / max(f["seconds"], 0.1)))

    abuse = A.collect("abuse", None, 1.0)
    kinds = {}
    for e in abuse:
        kinds[e["reason"]] = kinds.get(e["reason"], 0) + 1
    log("A's abuse events by reason: %s" % json.dumps(kinds, indent=1))
    for what, word in (("handshake rate limit", "rate limit"),
                       ("pending handshake limit", "pending")):
        n = sum(k for r, k in kinds.items() if word in r)
        check(n > 0, "A reported the %s as abuse (%d events)" % (what, n), A)

    deadline = time.monotonic() + 15
    while A.fd_count() > fds0 and time.monotonic() < deadline:
        time.sleep(0.1)
    rss1, fds1 = A.rss_kib(), A.fd_count()
    log("A after: VmRSS %d KiB (peak %d KiB, %+d KiB over the start), %d descriptors"
        % (rss1, sampler.peak, sampler.peak - rss0, fds1))
    check(sampler.peak - rss0 < RSS_BOUND_KIB, "A's RSS stayed within %d MiB of its start "
          "(peak %+d KiB)" % (RSS_BOUND_KIB // 1024, sampler.peak - rss0), A)
    check(fds1 <= fds0 + 1, "A's descriptors are back to %d (now %d; +1 for B)"
          % (fds0, fds1), A)
    check(A.peers() == [B.peer], "A's only peer is B", A)
    exchange(B, A, "after the flood")
    exchange(A, B, "after the flood, back")
    check(B.quit() == 0, "B quits with status 0", B)
    check(A.quit() == 0, "A quits with status 0", A)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--hostile":
        hostile(int(sys.argv[2]))
    else:
        run(main)
