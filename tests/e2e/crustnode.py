"""crustnode.py - drive `crust node` processes from end-to-end tests.

python3 standard library only. A CrustNode starts `crust node` with pipes,
reads its JSON-lines stdout in a background thread into a queue (stderr,
where the logs go, is collected by a second thread), and offers:

    node.wait_for("new_connection", lambda ev: ev["peer"] == other.peer, timeout=10)
    node.send_command("send %s hello" % other.peer)
    node.kill()        # SIGKILL, then reap
    node.quit()        # "quit" on stdin, wait, return the exit status

Every node started here is reaped: by quit()/kill(), by the context
manager, and at interpreter exit (atexit, also on SIGTERM/SIGINT/SIGHUP,
which this module turns into SystemExit). As a last resort each child is
started with PR_SET_PDEATHSIG=SIGKILL, so it dies with the thread that
started it even if the test process is SIGKILLed.

Events are consumed in order of arrival: wait_for() returns the first
not-yet-returned event that matches and keeps every other event for later
calls, so waiting for B's new_connection does not lose the messages that
arrived before it. node.events holds every event ever read.

Environment: CRUST = path of the crust binary (default build/crust
relative to the repository root).
"""

import atexit
import ctypes
import json
import os
import queue
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

DEFAULT_TIMEOUT = 15.0

# --- the wire format --------------------------------------------------------------
# Version 2 (docs/PROTOCOL.md) lives in crustwire.py (it needs PyNaCl); what
# is here is the plain framing, and the old version 1 hello, kept so tests
# can check that a node refuses it.

HELLO_V1_LEN = 52
FRAME_HDR_LEN = 4


def frame(payload):
    """One frame: 4-byte big-endian length + payload."""
    return struct.pack(">I", len(payload)) + payload


def hello_v1(peer_id=None, listen_port=0, network=b"\0" * 8, magic=b"CRST", version=1,
             type_=1):
    """The 52-byte clear hello of wire version 1 (not framed): what an old
    crust sends first. Version 2 nodes must refuse it."""
    if peer_id is None:
        peer_id = os.urandom(32)
    assert len(peer_id) == 32 and len(network) == 8 and len(magic) == 4
    return (magic + bytes([version, type_, 0, 0]) + network + peer_id +
            struct.pack(">H", listen_port) + b"\0\0")


def recv_exact(sock, n):
    """n bytes from sock, or fewer if the peer closes first."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def recv_frame(sock):
    """One frame's payload from sock; raises EOFError if the stream ends first."""
    hdr = recv_exact(sock, FRAME_HDR_LEN)
    if len(hdr) < FRAME_HDR_LEN:
        raise EOFError("stream ended inside a frame header (%d bytes)" % len(hdr))
    (n,) = struct.unpack(">I", hdr)
    body = recv_exact(sock, n)
    if len(body) < n:
        raise EOFError("stream ended inside a frame (%d of %d bytes)" % (len(body), n))
    return body


def read_until_closed(sock, timeout):
    """Read until the peer closes (EOF or reset). Returns (bytes read, how)
    where how is "eof" or "reset"; raises TimeoutError if still open after
    timeout seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("connection still open after %.1fs (read %d bytes)"
                               % (timeout, len(data)))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk


def msg_bytes(ev):
    """The bytes of a new_message event (json.c escapes each byte >= 0x7f as
    \\u00XX, so latin-1 gives the bytes back)."""
    return ev["data"].encode("latin-1")


# --- reaping ------------------------------------------------------------------

_live = set()
_live_lock = threading.Lock()


def _reap_all():
    with _live_lock:
        nodes = list(_live)
    for n in nodes:
        try:
            n.kill()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_reap_all)


def _exit_on_signal(signum, frame_):
    raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread():
    for _sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        try:
            signal.signal(_sig, _exit_on_signal)
        except (ValueError, OSError):
            pass

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None


def _child_setup():
    # runs in the child between fork and exec
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def crust_binary():
    path = os.environ.get("CRUST") or os.path.join(ROOT, "build", "crust")
    return os.path.abspath(path)


def log(*args):
    print(*args, flush=True)


class NodeError(AssertionError):
    pass


class CrustNode:
    """One `crust node` process.

    args: extra command-line options (list). By default the node listens on
    127.0.0.1 with a random port (--tcp-port 0) and one shard; pass
    tcp_port/bind/shards to change that. isolated=True (the default) adds
    --no-pex --no-beacon --no-cache --no-bootstrap --no-port-mapping so the node makes no
    connection and asks no gateway for anything the test did not ask for (a later
    --port-mapping M in args turns mapping back on); discovery tests pass isolated=False. Either way the
    node's XDG config and cache homes are a fresh directory of its own, so
    no config or cache outside the test is ever read. The constructor waits for
    node_started and listener_started: self.peer is the node's id,
    self.port its listening port, self.listener the listener_started event.

    netns: run the node inside that network namespace (`ip netns exec NS`;
    the process is still crust itself, so pid/kill work as usual; see
    netlab.py for making namespaces). Tests that turn the LAN beacon on
    (isolated=False) run their nodes in namespaces they made, so nothing
    broadcasts onto the host's network.
    """

    def __init__(self, name="node", args=(), tcp_port=0, bind="127.0.0.1", shards=1,
                 wait_listening=True, timeout=DEFAULT_TIMEOUT, isolated=True, env=None,
                 netns=None, prefix=()):
        self.name = name
        self.netns = netns
        # netns: run inside that namespace; prefix: any other command that execs the node
        self.argv = ["ip", "netns", "exec", netns] if netns else list(prefix)
        self.argv += [crust_binary(), "node"]
        if tcp_port is not None:
            self.argv += ["--tcp-port", str(tcp_port)]
        if bind is not None:
            self.argv += ["--bind", bind]
        if shards is not None:
            self.argv += ["--shards", str(shards)]
        if isolated:
            self.argv += ["--no-pex", "--no-beacon", "--no-cache", "--no-bootstrap",
                          "--no-port-mapping"]
        self.argv += list(args)
        self.home = tempfile.mkdtemp(prefix="crust-node-home-")
        child_env = dict(os.environ)
        child_env["XDG_CONFIG_HOME"] = os.path.join(self.home, "config")
        child_env["XDG_CACHE_HOME"] = os.path.join(self.home, "cache")
        child_env.update(env or {})
        self.events = []          # every event read, in order
        self.stderr_lines = []    # every stderr line read
        self._q = queue.Queue()
        self._backlog = []        # read but not yet returned by wait_for
        self._stdout_done = threading.Event()
        self.returncode = None
        self.peer = None
        self.port = None
        self.listener = None
        self.rudp_port = None
        self.rudp_listener = None
        log("[%s] start: %s" % (name, " ".join(self.argv)))
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, preexec_fn=_child_setup, close_fds=True, env=child_env)
        with _live_lock:
            _live.add(self)
        self._t_out = threading.Thread(target=self._read_stdout, daemon=True)
        self._t_err = threading.Thread(target=self._read_stderr, daemon=True)
        self._t_out.start()
        self._t_err.start()
        try:
            ev = self.wait_for("node_started", timeout=timeout)
            self.peer = ev["peer"]
            if wait_listening:
                self.listener = self.wait_for("listener_started", timeout=timeout)
                self.port = self.listener["port"]
                # the UDP listener follows the TCP one
                self.rudp_listener = self.wait_for("listener_started", timeout=timeout)
                self.rudp_port = self.rudp_listener["port"]
        except BaseException:
            self.kill()
            raise

    # --- background readers ---------------------------------------------------

    def _read_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "_unparsable", "line": line}
            self.events.append(ev)
            self._q.put(ev)
        self._stdout_done.set()
        self._q.put(None)  # end of stream marker

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    # --- events -----------------------------------------------------------------

    def _matches(self, ev, event, predicate):
        if ev is None:
            return False
        if event is not None and ev.get("event") != event:
            return False
        return predicate is None or bool(predicate(ev))

    def wait_for(self, event=None, predicate=None, timeout=DEFAULT_TIMEOUT):
        """Return the first unreturned event named `event` (any if None) for
        which predicate(ev) is true; fail after timeout seconds or if the
        node's output ends first."""
        self.drain()
        for i, ev in enumerate(self._backlog):
            if self._matches(ev, event, predicate):
                del self._backlog[i]
                return ev
        deadline = time.monotonic() + timeout
        ended = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or ended:
                break
            try:
                ev = self._q.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if ev is None:
                ended = True
                continue
            if self._matches(ev, event, predicate):
                return ev
            self._backlog.append(ev)
        why = "its output ended (exit status %s)" % self.proc.poll() if ended else \
            "%.1fs passed" % timeout
        raise NodeError("[%s] no %s event matching the predicate: %s\n%s"
                        % (self.name, event or "any", why, self.describe()))

    def collect(self, event=None, predicate=None, timeout=0.5):
        """Every matching event arriving within timeout seconds (and those
        already waiting); non-matching ones stay available."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.wait_for(event, predicate,
                                         max(0.0, deadline - time.monotonic())))
            except NodeError:
                return got

    def pending(self, event=None, predicate=None):
        """Matching events already read but not yet returned (non-consuming)."""
        self.drain()
        return [ev for ev in self._backlog if self._matches(ev, event, predicate)]

    def drain(self):
        """Move everything read so far from the queue into the backlog."""
        while True:
            try:
                ev = self._q.get_nowait()
            except queue.Empty:
                return
            if ev is not None:
                self._backlog.append(ev)
            else:
                self._q.put(None)
                return

    # --- commands ---------------------------------------------------------------

    def send_command(self, line):
        if "\n" in line:
            raise ValueError("a command is one line")
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as e:
            raise NodeError("[%s] cannot send %r: %s\n%s"
                            % (self.name, line, e, self.describe())) from None

    def send(self, peer, text):
        self.send_command("send %s %s" % (peer, text))

    def connect(self, port, host="127.0.0.1"):
        self.send_command("connect %s:%d" % (host, port))

    def peers(self, timeout=DEFAULT_TIMEOUT):
        """The `peers` command's list of peer ids."""
        self.send_command("peers")
        ev = self.wait_for("peers", timeout=timeout)
        if ev["count"] != len(ev["peers"]):
            raise NodeError("[%s] peers: count %d but %d ids: %r"
                            % (self.name, ev["count"], len(ev["peers"]), ev))
        return ev["peers"]

    def stats(self, timeout=DEFAULT_TIMEOUT):
        self.send_command("stats")
        return self.wait_for("stats", timeout=timeout)

    # --- process ----------------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        """VmRSS from /proc/PID/status, in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise NodeError("[%s] no VmRSS in /proc/%d/status" % (self.name, self.proc.pid))

    def stderr_text(self):
        return "\n".join(self.stderr_lines)

    def wait_stderr(self, predicate, timeout=DEFAULT_TIMEOUT, start=0):
        """The first stderr line (from line number start on) for which
        predicate(line) is true, waiting up to timeout seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stderr_lines[start:]:
                if predicate(line):
                    return line
            if time.monotonic() >= deadline or not self._t_err.is_alive():
                raise NodeError("[%s] no matching stderr line within %.1fs\n%s"
                                % (self.name, timeout, self.describe()))
            time.sleep(0.05)

    def fd_count(self):
        """How many descriptors the process has open."""
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def _finish(self):
        with _live_lock:
            _live.discard(self)
        for t in (self._t_out, self._t_err):
            t.join(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(self.home, ignore_errors=True)

    def quit(self, timeout=DEFAULT_TIMEOUT):
        """Send quit, wait for the exit, return its status (SIGKILL and
        fail if it does not exit within timeout)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise NodeError("[%s] did not exit within %.1fs of quit\n%s"
                                % (self.name, timeout, self.describe())) from None
        self.returncode = self.proc.returncode
        self._finish()
        return self.returncode

    def kill(self):
        """SIGKILL and reap."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.returncode = self.proc.returncode
        self._finish()
        return self.returncode

    def describe(self, last=30):
        evs = "\n".join("    " + json.dumps(e)[:300] for e in self.events[-last:])
        errs = "\n".join("    " + l[:300] for l in self.stderr_lines[-last:])
        return ("  [%s] pid %d, exit status %s\n  last events:\n%s\n  last stderr:\n%s"
                % (self.name, self.proc.pid, self.proc.poll(), evs or "    (none)",
                   errs or "    (none)"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False

    def __repr__(self):
        return "CrustNode(%s, pid=%d, port=%s)" % (self.name, self.proc.pid, self.port)


# --- test helpers ----------------------------------------------------------------


def check(cond, what, *nodes):
    """Fail with what (and the nodes' recent output) unless cond."""
    if not cond:
        raise NodeError(what + "".join("\n" + n.describe() for n in nodes))
    log("ok: " + what)


def quit_all(nodes):
    """Each node quits, in order, with status 0."""
    for n in nodes:
        check(n.quit() == 0, "%s quits with status 0" % n.name, n)


def connect_pair(a, b, timeout=DEFAULT_TIMEOUT):
    """b dials a; both see new_connection with the other's id."""
    b.connect(a.port)
    eb = b.wait_for("new_connection", lambda ev: ev["peer"] == a.peer, timeout)
    ea = a.wait_for("new_connection", lambda ev: ev["peer"] == b.peer, timeout)
    return ea, eb


def exchange(src, dst, text, timeout=DEFAULT_TIMEOUT):
    """src sends text to dst; the next message dst gets from src must be
    exactly those bytes."""
    src.send(dst.peer, text)
    want = text.encode("utf-8")
    ev = dst.wait_for("new_message", lambda e: e["peer"] == src.peer, timeout)
    got = msg_bytes(ev)
    check(ev["len"] == len(want) and got == want and not ev.get("truncated"),
          "%s -> %s: %d bytes arrived intact (got len %s, %r...)"
          % (src.name, dst.name, len(want), ev["len"], got[:40]), src, dst)
    return ev


def free_port():
    """A TCP port on 127.0.0.1 free at the time of the call."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def raw_client(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def run(main):
    """Run a test's main(); print PASS/FAIL with the traceback; exit 0/1.
    Every node is reaped whatever happens."""
    name = os.path.basename(sys.argv[0])
    seed = int(os.environ.get("E2E_SEED", str(random.randrange(1 << 30))))
    random.seed(seed)
    log("%s: seed %d (E2E_SEED=%d reproduces)" % (name, seed, seed))
    try:
        main()
    except BaseException as e:  # noqa: BLE001 - report everything
        import traceback
        traceback.print_exc()
        sys.stdout.flush()
        _reap_all()
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) and e.code else 1
        sys.exit(code)
    _reap_all()
    log("%s: all checks passed" % name)
    sys.exit(0)
