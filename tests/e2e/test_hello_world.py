#!/usr/bin/env python3
"""Two crust nodes over loopback: B dials A, both see the other's id,
messages both ways arrive intact, `peers` lists the other, `drop` ends the
connection on both sides and they reconnect, quit (and SIGTERM, and the
end of stdin) exits 0."""
import os
import random
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crustnode import CrustNode, check, connect_pair, exchange, run  # noqa: E402


def main():
    a = CrustNode("A", shards=2)
    b = CrustNode("B")
    check(a.peer != b.peer, "the two nodes have different peer ids", a, b)
    for n in (a, b):
        check(len(n.peer) == 64 and all(c in "0123456789abcdef" for c in n.peer),
              "%s's peer id is 64 hex characters" % n.name, n)
        check(n.listener["fallback"] is False and n.port > 0,
              "%s listens on port %d without fallback" % (n.name, n.port), n)
        check(n.listener["addr"] == "127.0.0.1:%d" % n.port,
              "%s's listener_started addr is 127.0.0.1:%d" % (n.name, n.port), n)

    b.connect(a.port)
    eb = b.wait_for("new_connection")
    check(eb["peer"] == a.peer, "B's new_connection names A's id", a, b)
    check(eb["addr"] == "127.0.0.1:%d" % a.port, "B's new_connection addr is A's listener", b)
    ea = a.wait_for("new_connection")
    check(ea["peer"] == b.peer, "A's new_connection names B's id", a, b)
    check(ea["addr"].startswith("127.0.0.1:"), "A's new_connection addr is loopback", a)

    check(a.peers() == [b.peer], "A's peers lists exactly B", a)
    check(b.peers() == [a.peer], "B's peers lists exactly A", b)

    # messages both ways, intact: spaces, quotes, backslashes, JSON-ish text,
    # UTF-8, an empty message, a long one
    texts = [
        "hello from B",
        "  leading and trailing spaces  ",
        'quotes " and \\ backslashes \\n {"json":true} tab\there',
        "utf-8: h\u00e9llo w\u00f6rld \u2603 \U0001F600",
        "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(50000)),
    ]
    for t in texts:
        exchange(b, a, t)
        exchange(a, b, t[::-1])

    # an empty message ("send PEER " sends zero bytes)
    b.send_command("send %s " % a.peer)
    ev = a.wait_for("new_message", lambda e: e["peer"] == b.peer)
    check(ev["len"] == 0 and ev["data"] == "", "an empty message arrives as len 0", a)

    # a burst arrives complete and in order
    for i in range(100):
        b.send(a.peer, "burst %03d" % i)
    got = [a.wait_for("new_message", lambda e: e["peer"] == b.peer)["data"] for _ in range(100)]
    check(got == ["burst %03d" % i for i in range(100)], "100 messages arrive in order", a, b)

    # nothing unexpected on either side
    for n in (a, b):
        bad = n.pending(None, lambda e: e["event"] in ("error", "lost_connection",
                                                        "send_failed", "connect_failed"))
        check(not bad, "%s reported no errors (%r)" % (n.name, bad), n)

    stats = a.stats()
    check(stats["connections"] == 1, "A's stats count one connection", a)
    check(stats["rx_msgs"] >= len(texts) + 101, "A's stats count the received messages", a)

    # a bad command answers with an error event and the node carries on
    a.send_command("send nothex hello")
    err = a.wait_for("error")
    check(err.get("command") == "send" and err.get("reason"), "a bad peer id gives an error", a)
    exchange(a, b, "still fine")

    # drop: both sides see lost_connection, peers become empty
    a.send_command("drop %s" % b.peer)
    la = a.wait_for("lost_connection", lambda e: e["peer"] == b.peer)
    check(la["reason"] == "dropped", "A's lost_connection says dropped", a)
    lb = b.wait_for("lost_connection", lambda e: e["peer"] == a.peer)
    check(bool(lb["reason"]), "B's lost_connection has a reason (%r)" % lb["reason"], b)
    check(a.peers() == [] and b.peers() == [], "no peers after drop", a, b)

    # and they can connect again
    b.connect(a.port)
    b.wait_for("new_connection", lambda e: e["peer"] == a.peer)
    a.wait_for("new_connection", lambda e: e["peer"] == b.peer)
    exchange(b, a, "again")
    exchange(a, b, "again back")

    # a message sent right before quit still arrives (quit lingers for it)
    b.send(a.peer, "last words")
    rb = b.quit()
    check(rb == 0, "B's quit exits 0 (got %s)" % rb, b)
    ev = a.wait_for("new_message", lambda e: e["peer"] == b.peer)
    check(ev["data"] == "last words", "the message sent before quit arrived", a)
    a.wait_for("lost_connection", lambda e: e["peer"] == b.peer)
    ra = a.quit()
    check(ra == 0, "A's quit exits 0 (got %s)" % ra, a)

    # the other two ways out end cleanly too: SIGTERM, and the end of stdin
    c = CrustNode("C")
    d = CrustNode("D")
    connect_pair(c, d)
    c.proc.send_signal(signal.SIGTERM)
    rc = c.proc.wait(timeout=15)
    check(rc == 0, "SIGTERM: C exits 0 (got %s)" % rc, c)
    d.wait_for("lost_connection", lambda e: e["peer"] == c.peer)
    d.proc.stdin.close()
    rd = d.proc.wait(timeout=15)
    check(rd == 0, "end of stdin: D exits 0 (got %s)" % rd, d)
    c.kill()
    d.kill()


if __name__ == "__main__":
    run(main)
