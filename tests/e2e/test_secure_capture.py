#!/usr/bin/env python3
"""What a passive observer on the wire sees (tshark on lo).

1. Secure mode: A and B exchange "plaintext-probe-<random>" texts (both
   ways, a short one and one in a 20000-byte message) while tshark
   captures A's port. The pcap must hold the connection (the clear "CRST"
   handshake magic, a few KB of records) but none of the texts, in any
   raw byte of the file. tools/wireshark/crust.lua names the frames:
   handshake msg1/msg2/msg3 and "Encrypted record", no tracer data.
2. Tracer mode (both nodes --tracer): the same exchange; the pcap DOES
   hold the texts, and tshark with the Lua dissector decodes the tracer
   frames: crust.msg.text / crust.msg.data give the texts, the Info
   column names handshake msg1/msg2/msg3 (with the tracer flag) and
   "Tracer data".
3. Mode mismatch, both ways round: the dialer's connect_failed and the
   listener's handshake_failed both say "tracer mode mismatch".

tshark is installed with apt-get if missing (root only). Captures are on
lo only, with a capture filter on the node's port; tshark runs in the
background and is always stopped by its PID (SIGINT, then SIGKILL).
Env: E2E_KEEP_CAPTURE=dir copies the two captures there.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import (ROOT, CrustNode, _child_setup, check, connect_pair, exchange,  # noqa: E402
                       log, quit_all, run)

LUA = os.path.join(ROOT, "tools", "wireshark", "crust.lua")
BIG = 20000

_tsharks = []  # capture processes still running (stopped by PID at exit)


def ensure_tshark():
    if shutil.which("tshark"):
        return
    log("tshark not found: installing it with apt-get")
    check(os.geteuid() == 0, "tshark is missing and we are not root to apt-get it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "tshark"]
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=600)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=600)
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=600)
    check(r.returncode == 0 and shutil.which("tshark"),
          "apt-get install tshark (%s)" % r.stderr.decode(errors="replace")[-500:])


def stop(proc):
    """SIGINT (tshark finishes the file), then SIGKILL; always reaped."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc in _tsharks:
        _tsharks.remove(proc)


def stop_all():
    for p in list(_tsharks):
        stop(p)


class Capture:
    """tshark -i lo -f 'tcp port PORT' -w FILE, in the background."""

    def __init__(self, port, path):
        self.path = path
        self.log = path + ".log"
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", "tcp port %d" % port, "-w", path,
             "-a", "duration:120"],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
            preexec_fn=_child_setup)
        _tsharks.append(self.proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if b"Capturing on" in self._log_bytes():
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        if b"Capturing on" not in self._log_bytes():
            check(False, "tshark did not start capturing on lo, port %d (log: %r)"
                  % (port, self._log_bytes()[-400:]))
        log("tshark (pid %d) captures lo, tcp port %d, into %s" % (self.proc.pid, port, path))
        time.sleep(0.5)  # "Capturing on" can come just before the filter is live

    def _log_bytes(self):
        with open(self.log, "rb") as f:
            return f.read()

    def finish(self):
        time.sleep(0.5)  # the last segments reach the capture
        stop(self.proc)
        self.logf.close()
        if not (os.path.exists(self.path) and os.path.getsize(self.path) > 0):
            check(False, "tshark wrote no %s (log: %r)" % (self.path, self._log_bytes()[-400:]))
        with open(self.path, "rb") as f:
            return f.read()


def dissect(cap, *args):
    """tshark -r cap with the dissector (crust on the capture's port)."""
    r = subprocess.run(["tshark", "-X", "lua_script:" + LUA, "-r", cap] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    err = r.stderr.decode(errors="replace")
    bad = [l for l in err.splitlines() if ("lua" in l.lower() or "error" in l.lower())
           and "Running as user" not in l]
    if r.returncode != 0 or bad:
        check(False, "tshark %s: exit %d, stderr %s" % (" ".join(args), r.returncode, err[-800:]))
    return r.stdout.decode(errors="replace")


def probes(tag):
    u = uuid.uuid4().hex
    return {
        "a2b": "plaintext-probe-%s-a2b-%s" % (tag, u),
        "b2a": "plaintext-probe-%s-b2a-%s" % (tag, u),
        "big": "plaintext-probe-%s-big-%s " % (tag, u),
    }


def talk(a, b, p):
    connect_pair(a, b)
    exchange(a, b, p["a2b"])
    exchange(b, a, p["b2a"])
    big = (p["big"] * (BIG // len(p["big"]) + 1))[:BIG]
    exchange(b, a, big)
    return big


def session(tmp, tag, tracer):
    args = ["--tracer"] if tracer else []
    a = CrustNode("A-" + tag, args=args)
    cap = Capture(a.port, os.path.join(tmp, "%s.pcapng" % tag))
    b = CrustNode("B-" + tag, args=args)
    p = probes(tag)
    try:
        talk(a, b, p)
        raw = cap.finish()
    finally:
        stop(cap.proc)
    quit_all((a, b))
    if os.environ.get("E2E_KEEP_CAPTURE"):
        os.makedirs(os.environ["E2E_KEEP_CAPTURE"], exist_ok=True)
        shutil.copy(cap.path, os.environ["E2E_KEEP_CAPTURE"])
    log("%s capture: %d bytes" % (tag, len(raw)))
    check(raw.count(b"CRST") >= 3,
          "[%s] the capture holds the handshake (clear 'CRST' magic %d times)"
          % (tag, raw.count(b"CRST")))
    check(len(raw) > BIG, "[%s] the capture holds the records (%d bytes > %d)"
          % (tag, len(raw), BIG))
    return cap.path, raw, p


def info_lines(cap, port):
    out = dissect(cap, "-o", "crust.port:%d" % port, "-Y", "crust",
                  "-T", "fields", "-e", "_ws.col.Info")
    # one line per frame; several records in one segment are "; "-separated
    return [r for line in out.splitlines() for r in line.split("; ") if r]


def main():
    ensure_tshark()
    check(os.path.exists(LUA), "the dissector %s exists" % LUA)
    tmp = tempfile.mkdtemp(prefix="crust-capture.")
    try:
        run_all(tmp)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def run_all(tmp):
    # --- 1. secure ------------------------------------------------------------------
    cap, raw, p = session(tmp, "secure", tracer=False)
    for k, text in p.items():
        needle = text.encode()
        check(needle not in raw, "[secure] the pcap does not hold the %s text" % k)
        check(needle[16:40] not in raw, "[secure] nor a 24-byte piece of the %s text" % k)
    check(b"plaintext-probe" not in raw,
          "[secure] 'plaintext-probe' appears nowhere in the pcap")
    port = capture_port(cap)
    names = info_lines(cap, port)
    for m in ("msg1", "msg2", "msg3"):
        n = sum(1 for r in names if r.startswith("Handshake " + m))
        check(n == 1, "[secure] the dissector names one 'Handshake %s' (got %d)" % (m, n))
    enc = sum(1 for r in names if r.startswith("Encrypted record"))
    check(enc >= 3, "[secure] the dissector names the three messages' records 'Encrypted record'"
          " (%d)" % enc)
    check(not any(r.startswith("Tracer data") for r in names),
          "[secure] no frame decodes as tracer data")
    check(not any("tracer" in r for r in names if r.startswith("Handshake")),
          "[secure] no handshake message carries the tracer flag")
    texts = dissect(cap, "-o", "crust.port:%d" % port, "-Y", "crust", "-T", "fields",
                    "-e", "crust.msg.text").split()
    check(not texts, "[secure] crust.msg.text is empty (got %r)" % texts[:3])

    # --- 2. tracer ------------------------------------------------------------------
    cap, raw, p = session(tmp, "tracer", tracer=True)
    for k, text in p.items():
        check(text.encode() in raw, "[tracer] the pcap holds the %s text in the clear" % k)
    port = capture_port(cap)
    names = info_lines(cap, port)
    log("[tracer] dissector Info: %r" % names[:12])
    for m in ("msg1", "msg2", "msg3"):
        n = [r for r in names if r.startswith("Handshake " + m)]
        check(len(n) == 1 and "tracer" in n[0],
              "[tracer] the dissector names one 'Handshake %s' with the tracer flag (%r)"
              % (m, n))
    td = [r for r in names if r.startswith("Tracer data")]
    check(len(td) >= 3, "[tracer] the dissector names 'Tracer data' frames (%d)" % len(td))
    check(not any(r.startswith("Encrypted record") for r in names),
          "[tracer] no frame is an encrypted record")
    out = dissect(cap, "-o", "crust.port:%d" % port, "-Y", "crust.type == 0x20",
                  "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
                  "-e", "crust.msg.text")
    texts = [t for line in out.splitlines() for t in line.split("|") if t]
    for k in ("a2b", "b2a"):
        check(p[k] in texts, "[tracer] crust.msg.text shows the %s text (%r)"
              % (k, [t[:70] for t in texts[:4]]))
    check(any(t.startswith(p["big"]) for t in texts),
          "[tracer] crust.msg.text shows the %d-byte text (reassembled)" % BIG)
    out = dissect(cap, "-o", "crust.port:%d" % port, "-Y",
                  'crust.msg.data contains "%s"' % p["a2b"], "-T", "fields",
                  "-e", "crust.msg.data")
    blobs = []
    for line in out.split():
        for h in line.split(","):
            try:
                blobs.append(bytes.fromhex(h.replace(":", "")))
            except ValueError:
                pass
    check(p["a2b"].encode() in blobs,
          "[tracer] crust.msg.data holds the a2b text's bytes (%d fields)" % len(blobs))
    lens = dissect(cap, "-o", "crust.port:%d" % port, "-Y", "crust.msg.len == %d" % BIG,
                   "-T", "fields", "-e", "frame.number").split()
    check(len(lens) == 1, "[tracer] one frame holds the %d-byte message (%r)" % (BIG, lens))

    # --- 3. mismatch ------------------------------------------------------------------
    dialer_reasons = []
    for listener_tracer in (True, False):
        a = CrustNode("A-mix", args=["--tracer"] if listener_tracer else [])
        b = CrustNode("B-mix", args=[] if listener_tracer else ["--tracer"])
        what = "listener %s, dialer %s" % (("tracer", "secure") if listener_tracer
                                           else ("secure", "tracer"))
        b.connect(a.port)
        ev = b.wait_for(None, lambda e: e["event"] in ("new_connection", "connect_failed"),
                        timeout=15)
        eva = a.wait_for(None, lambda e: e["event"] in ("new_connection", "handshake_failed"),
                         timeout=15)
        check(eva["event"] == "handshake_failed" and
              "tracer mode mismatch" in eva.get("reason", ""),
              "[%s] the listener refuses: handshake_failed %r" % (what, eva.get("reason")), a)
        check(ev["event"] == "connect_failed",
              "[%s] the dialer's connect fails (got %s)" % (what, ev["event"]), b)
        check(a.peers() == [] and b.peers() == [], "[%s] no connection" % what, a, b)
        dialer_reasons.append((what, ev.get("reason", "")))
        a.kill()
        b.kill()
    # the user who ran `connect` must learn why, not just "closed by peer"
    bad = [(w, r) for w, r in dialer_reasons if "tracer mode mismatch" not in r]
    check(not bad, "the dialer's connect_failed says 'tracer mode mismatch' both ways round "
          "(got %r)" % dialer_reasons)


def capture_port(cap):
    """The capture's server port: the port of the SYN's destination."""
    out = dissect(cap, "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0", "-T", "fields",
                  "-e", "tcp.dstport").split()
    check(len(out) >= 1, "the capture holds the SYN (%r)" % out)
    return int(out[0])


if __name__ == "__main__":
    run(main)
