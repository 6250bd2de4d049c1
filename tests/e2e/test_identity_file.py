#!/usr/bin/env python3
"""`crust node --identity F` (docs/CONFIG.md, "Identity file").

1. First start (umask 022): F is created, mode 0600, "crust-identity 1"
   format; node_started gives its peer id, which is the id peers see.
2. Restart with the same F: the same peer id; F is not rewritten (same
   bytes, same inode). Another file: another id.
3. A hand-made file (seed only, written by the user): loaded; the id is
   the Ed25519 key of that seed (checked with PyNaCl when available), and
   a node dialing it sees that id.
4. A group-readable F still loads, with a warning on stderr naming F; crust
   does not chmod it.
5. Malformed F (random bytes, text garbage, wrong version, bad hex, a
   public key that does not match the seed, empty): the node exits
   non-zero without node_started, stderr names F, and F is left exactly
   as it was (bytes and mode).
6. F in a directory that does not exist: exits non-zero naming F; nothing
   is created.
"""
import os
import stat
import subprocess
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import (CrustNode, _child_setup, check, connect_pair, crust_binary,  # noqa: E402
                       exchange, log, run)

T = 15.0


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def start_fails(name, path):
    """Run a node on identity file path; it must exit non-zero, say why
    naming path, and print no node_started. Returns stderr."""
    argv = [crust_binary(), "node", "--tcp-port", "0", "--bind", "127.0.0.1",
            "--identity", path]
    log("[%s] start (must fail): %s" % (name, " ".join(argv)))
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=T,
                           preexec_fn=_child_setup)
    except subprocess.TimeoutExpired:
        check(False, "[%s] the node neither started nor exited within %.0fs" % (name, T))
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    check(r.returncode not in (0, None) and r.returncode > 0,
          "[%s] the node exits non-zero (status %s; stderr %r)" % (name, r.returncode, err[-300:]))
    check("node_started" not in out, "[%s] no node_started (stdout %r)" % (name, out[-300:]))
    check(path in err, "[%s] stderr names the file: %r" % (name, err.strip()[-300:]))
    check("identity" in err.lower(), "[%s] stderr says it is about the identity file" % name)
    return err


def main():
    tmp = tempfile.mkdtemp(prefix="crust-identity.")
    old_umask = os.umask(0o022)  # what most users have: crust must not rely on it
    try:
        cases(tmp)
    finally:
        os.umask(old_umask)
        shutil.rmtree(tmp, ignore_errors=True)


def cases(tmp):
    # --- 1. first start creates F, 0600 ----------------------------------------------
    f = os.path.join(tmp, "node.id")
    check(not os.path.exists(f), "F does not exist yet")
    a = CrustNode("A", args=["--identity", f])
    check(os.path.isfile(f), "the first start created F")
    check(mode(f) == 0o600, "F has mode 0600 (got %o, umask 022)" % mode(f), a)
    body = read(f)
    check(body.startswith(b"crust-identity 1\n"), "F starts with 'crust-identity 1' (%r)"
          % body[:40])
    check(b"seed " in body and len(body) <= 1024, "F holds a seed line, at most 1024 bytes")
    if b"public " in body:
        pub = body.split(b"public ", 1)[1].split(b"\n", 1)[0].decode().lower()
        check(pub == a.peer, "F's public line is the node's peer id", a)
    leftovers = [n for n in os.listdir(tmp) if n != "node.id"]
    check(not leftovers, "no temporary file left next to F (%r)" % leftovers)
    st1 = os.stat(f)

    # the id peers see is the file's id
    b = CrustNode("B")
    _, eb = connect_pair(a, b)
    check(eb["peer"] == a.peer, "B sees A's file id in new_connection", a, b)
    exchange(b, a, "hello, stable id")
    check(a.quit() == 0, "A quits with status 0", a)
    b.wait_for("lost_connection", lambda e: e["peer"] == a.peer, timeout=T)

    # --- 2. restart: same id, file untouched ---------------------------------------------
    a2 = CrustNode("A-again", args=["--identity", f])
    check(a2.peer == a.peer, "restarted with the same F: the same peer id (%s...)" % a.peer[:16],
          a2)
    st2 = os.stat(f)
    check(read(f) == body, "F's bytes are unchanged by the restart", a2)
    check(st2.st_ino == st1.st_ino and mode(f) == 0o600,
          "F is the same file (inode), still 0600", a2)
    b.send_command("connect 127.0.0.1:%d %s" % (a2.port, a.peer))
    ev = b.wait_for(None, lambda e: e["event"] in ("new_connection", "connect_failed"), timeout=T)
    check(ev["event"] == "new_connection" and ev["peer"] == a.peer,
          "B dialing A's old id at the restarted node connects (%s %s)"
          % (ev["event"], ev.get("reason", "")), a2, b)
    check(a2.quit() == 0, "A-again quits with status 0", a2)

    g = os.path.join(tmp, "other.id")
    c = CrustNode("C", args=["--identity", g])
    check(c.peer != a.peer, "another identity file gives another id", c)
    c.kill()
    # without --identity: a fresh id each start, and nothing written
    before = sorted(os.listdir(tmp))
    d1 = CrustNode("D1")
    d2 = CrustNode("D2")
    check(d1.peer != d2.peer and a.peer not in (d1.peer, d2.peer),
          "without --identity each start has a fresh id", d1, d2)
    check(sorted(os.listdir(tmp)) == before, "without --identity nothing is written")
    d1.kill()
    d2.kill()

    # --- 3. a hand-made file -----------------------------------------------------------------
    seed = os.urandom(32)
    h = os.path.join(tmp, "hand.id")
    fd = os.open(h, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"crust-identity 1\nseed %s\n" % seed.hex().encode())
    os.close(fd)
    hand_body = read(h)
    e = CrustNode("E", args=["--identity", h])
    try:
        from nacl.bindings import crypto_sign_seed_keypair
        pk, _ = crypto_sign_seed_keypair(seed)
        check(e.peer == pk.hex(), "a hand-made seed gives the Ed25519 key of that seed", e)
    except ImportError:
        log("(PyNaCl missing: the seed -> id check is skipped)")
    check(read(h) == hand_body, "the hand-made file is not rewritten", e)
    b.send_command("connect 127.0.0.1:%d %s" % (e.port, e.peer))
    ev = b.wait_for(None, lambda x: x["event"] in ("new_connection", "connect_failed"), timeout=T)
    check(ev["event"] == "new_connection" and ev["peer"] == e.peer,
          "B dialing the hand-made id connects", b, e)
    e.kill()

    # --- 4. group-readable: loads, warns, not chmod-ed -------------------------------------------
    os.chmod(h, 0o644)
    e2 = CrustNode("E-open", args=["--identity", h])
    check(e2.peer == e.peer, "a group-readable file still loads (same id)", e2)
    line = e2.wait_stderr(lambda l: h in l, timeout=T)
    check("group" in line or "others" in line or "chmod" in line,
          "a warning on stderr names the file and the permissions (%r)" % line, e2)
    check(mode(h) == 0o644 and read(h) == hand_body, "crust did not chmod or rewrite it", e2)
    e2.kill()

    # --- 5. malformed files: refused, untouched ------------------------------------------------------
    good_seed = seed.hex()
    other_pub = os.urandom(32).hex()
    bad = {
        "random-bytes": os.urandom(300),
        "text-garbage": b"this is not an identity file\nat all\n",
        "wrong-version": b"crust-identity 9\nseed %s\n" % good_seed.encode(),
        "bad-hex": b"crust-identity 1\nseed %s\n" % (b"zz" * 32),
        "short-seed": b"crust-identity 1\nseed %s\n" % good_seed[:40].encode(),
        "no-seed": b"crust-identity 1\npublic %s\n" % other_pub.encode(),
        "public-mismatch": b"crust-identity 1\nseed %s\npublic %s\n"
                           % (good_seed.encode(), other_pub.encode()),
        "empty": b"",
        "huge": b"crust-identity 1\n" + b"#" * 5000 + b"\n",
    }
    for name, content in bad.items():
        p = os.path.join(tmp, "bad-%s.id" % name)
        with open(p, "wb") as fh:
            fh.write(content)
        os.chmod(p, 0o600)
        st = os.stat(p)
        start_fails(name, p)
        check(read(p) == content and mode(p) == 0o600 and os.stat(p).st_ino == st.st_ino,
              "[%s] the file is left exactly as it was" % name)
    leftovers = [n for n in os.listdir(tmp) if ".tmp" in n]
    check(not leftovers, "no temporary files left behind (%r)" % leftovers)

    # --- 6. missing directory -----------------------------------------------------------------------------
    m = os.path.join(tmp, "no-such-dir", "node.id")
    start_fails("missing-dir", m)
    check(not os.path.exists(os.path.dirname(m)), "the missing directory was not created")

    b.kill()


if __name__ == "__main__":
    run(main)
