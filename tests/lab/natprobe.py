#!/usr/bin/env python3
"""natprobe.py - a socket agent for the NAT lab, run inside one namespace.

    ip netns exec NS python3 natprobe.py

Reads one JSON command per line on stdin and answers each with one JSON line
on stdout, so a test in the host namespace drives plain sockets in many
namespaces at once and keeps them open between steps (a NAT mapping lives as
long as its socket is used). Python standard library only.

Commands ({"op": ...}):
  udp      {"addr": "0.0.0.0", "port": 0, "reflect": false}
           -> {"sock": ID, "port": P}. A reflecting socket answers every
           datagram with {"seen": "IP:PORT"} (the source it saw) and keeps it.
  send     {"sock": ID, "to": "IP:PORT", "data": "text"} -> {"ok": true}
  recv     {"sock": ID, "count": N, "timeout": S}
           -> {"got": [{"from": "IP:PORT", "data": "text"}, ...]}: the first N
           datagrams not yet returned, or fewer if S seconds pass first (S is a
           bound for a failing test, never a measurement).
  ask      {"sock": ID, "to": "IP:PORT", "timeout": S} -> {"seen": "IP:PORT"}:
           send to a reflector and return the source it saw (null if no
           answer within S).
  tcp      {"to": "IP:PORT", "port": 0} -> {"sock": ID, "port": P, "state": ...}:
           a non-blocking connect(); state is "connecting", "connected" or
           "refused" (an RST came back at once) or another errno name.
  tcpstate {"sock": ID} -> {"state": ...} the connect's outcome so far.
  close    {"sock": ID} -> {"ok": true}
Errors answer {"error": "text"}; the agent exits at end of input.
"""
import errno
import json
import select
import socket
import sys
import time


def fmt(addr):
    return "%s:%d" % (addr[0], addr[1])


def parse(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


class Agent:
    def __init__(self):
        self.socks = {}       # id -> socket
        self.reflect = set()  # ids of reflecting sockets
        self.inbox = {}       # id -> [datagram dicts not yet returned]
        self.next_id = 1

    def add(self, s):
        sid = self.next_id
        self.next_id += 1
        self.socks[sid] = s
        self.inbox[sid] = []
        return sid

    def pump(self, timeout):
        """Read what has arrived on the UDP sockets (reflectors answer)."""
        udp = [s for s in self.socks.values() if s.type == socket.SOCK_DGRAM]
        if not udp:
            time.sleep(timeout)
            return
        r, _, _ = select.select(udp, [], [], timeout)
        for s in r:
            sid = next(k for k, v in self.socks.items() if v is s)
            while True:
                try:
                    data, src = s.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break   # ICMP errors on an unconnected socket: ignore
                self.inbox[sid].append({"from": fmt(src),
                                        "data": data.decode("utf-8", "replace")})
                if sid in self.reflect:
                    s.sendto(json.dumps({"seen": fmt(src)}).encode(), src)

    def wait(self, sid, count, timeout):
        deadline = time.monotonic() + timeout
        self.pump(0)
        while len(self.inbox[sid]) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.pump(min(left, 0.05))
        got, self.inbox[sid] = self.inbox[sid][:count], self.inbox[sid][count:]
        return got

    def do(self, cmd):
        op = cmd.get("op")
        if op == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((cmd.get("addr", "0.0.0.0"), int(cmd.get("port", 0))))
            s.setblocking(False)
            sid = self.add(s)
            if cmd.get("reflect"):
                self.reflect.add(sid)
            return {"sock": sid, "port": s.getsockname()[1]}
        if op == "send":
            self.socks[cmd["sock"]].sendto(cmd.get("data", "").encode(), parse(cmd["to"]))
            return {"ok": True}
        if op == "recv":
            return {"got": self.wait(cmd["sock"], int(cmd.get("count", 1)),
                                     float(cmd.get("timeout", 5)))}
        if op == "ask":
            sid = cmd["sock"]
            self.socks[sid].sendto(b"ask", parse(cmd["to"]))
            deadline = time.monotonic() + float(cmd.get("timeout", 5))
            while time.monotonic() < deadline:
                for i, d in enumerate(self.inbox[sid]):
                    if d["from"] == cmd["to"] and d["data"].startswith("{"):
                        del self.inbox[sid][i]
                        return {"seen": json.loads(d["data"])["seen"]}
                self.pump(0.05)
            return {"seen": None}
        if op == "tcp":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", int(cmd.get("port", 0))))
            s.setblocking(False)
            rc = s.connect_ex(parse(cmd["to"]))
            sid = self.add(s)
            return {"sock": sid, "port": s.getsockname()[1], "state": self.tcp_state(s, rc)}
        if op == "tcpstate":
            return {"state": self.tcp_state(self.socks[cmd["sock"]], None)}
        if op == "close":
            self.socks.pop(cmd["sock"]).close()
            self.reflect.discard(cmd["sock"])
            self.inbox.pop(cmd["sock"], None)
            return {"ok": True}
        return {"error": "unknown op %r" % op}

    @staticmethod
    def tcp_state(s, rc):
        if rc in (errno.EINPROGRESS, None):
            r, w, _ = select.select([], [s], [], 0)
            if not w:
                return "connecting"
            rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if rc == 0:
            return "connected"
        if rc == errno.ECONNREFUSED:
            return "refused"
        return errno.errorcode.get(rc, str(rc))


def main():
    agent = Agent()
    stdin = sys.stdin.fileno()
    buf = b""
    while True:
        # serve the reflectors while no command is pending
        socks = [s for s in agent.socks.values() if s.type == socket.SOCK_DGRAM]
        r, _, _ = select.select([stdin] + socks, [], [], 1.0)
        if stdin not in r:
            agent.pump(0)
            continue
        chunk = sys.stdin.buffer.raw.read(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                out = agent.do(json.loads(line))
            except (OSError, KeyError, ValueError) as e:
                out = {"error": "%s: %s" % (type(e).__name__, e)}
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
