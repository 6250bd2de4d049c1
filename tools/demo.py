#!/usr/bin/env python3
"""make run: two crust nodes on loopback connect and talk, then a throughput figure.

Shows what a new user should see first: the JSON events each node prints,
messages both ways, a clean shutdown, and how fast the TCP path is here.
"""
import json
import queue
import subprocess
import sys
import threading

CRUST = sys.argv[1] if len(sys.argv) > 1 else "build/crust"


class Node:
    def __init__(self, name, *args):
        self.name = name
        self.events = queue.Queue()
        self.proc = subprocess.Popen([CRUST, "node", "--bind", "127.0.0.1", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            print(f"  [{self.name}] {line.rstrip()}", flush=True)
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                pass

    def wait_for(self, kind, timeout=10):
        while True:
            ev = self.events.get(timeout=timeout)
            if ev.get("event") == kind:
                return ev

    def cmd(self, line):
        print(f"  [{self.name}] <- {line}", flush=True)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def quit(self):
        try:
            self.cmd("quit")
        except BrokenPipeError:
            pass
        return self.proc.wait(timeout=10)


def main():
    print("== two nodes on 127.0.0.1 (crust node; JSON events on stdout, commands on stdin)")
    a = Node("A")
    a_id = a.wait_for("node_started")["peer"]
    port = a.wait_for("listener_started")["port"]
    b = Node("B", "--connect", f"127.0.0.1:{port}")
    b_id = b.wait_for("node_started")["peer"]
    b.wait_for("new_connection")
    a.wait_for("new_connection")
    b.cmd(f"send {a_id} hello from B")
    assert a.wait_for("new_message")["data"] == "hello from B"
    a.cmd(f"send {b_id} hello back from A")
    assert b.wait_for("new_message")["data"] == "hello back from A"
    b.cmd("peers")
    b.wait_for("peers")
    rc = b.quit()
    a.wait_for("lost_connection")
    rc |= a.quit()
    if rc:
        print(f"a node exited with {rc}", file=sys.stderr)
        return 1
    print("\n== throughput: crust bench tcp-bulk (two shards, loopback, 2 s)")
    out = subprocess.run([CRUST, "bench", "tcp-bulk", "--seconds", "2"],
                         stdout=subprocess.PIPE, text=True, check=False)
    if out.returncode != 0:
        print("bench failed", file=sys.stderr)
        return 1
    r = json.loads(out.stdout)
    gbit = r.get("rx_gbit_s") or r.get("rx_bytes_s", 0) * 8 / 1e9
    print(f"  {gbit:.2f} Gbit/s received, {r.get('rx_msgs_s', 0):,.0f} messages/s "
          f"of {r.get('size')} bytes")
    print("\nOK: both nodes connected, exchanged messages and shut down cleanly.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
