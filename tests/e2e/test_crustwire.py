#!/usr/bin/env python3
"""crustwire.py (the Python crust peer the other tests use) against the real
`crust node`, both roles and both record modes, so the tests' peer and the
library agree on every byte of docs/PROTOCOL.md:

  0. crustwire against itself (both roles, replay refused, rekey boundary)
  1. Python initiator -> node: the node's msg2 proves its id and port;
     messages both ways (several per record, empty ones, empty records,
     control messages, a large one, binary bytes); the node prints them
  2. node `connect` -> Python responder: the same, the other way round;
     key confirmation (the node reports the connection only after our first
     record; without one, connect_failed); our refusals (network, mode) reach
     the node's connect_failed word for word;
     `connect ADDR PEER` with our id works, with another id it is refused
  3. tracer mode (--tracer): clear records both ways, both roles; the
     node's refusal of a secure peer
  4. a named network (--network): the tag is BLAKE2b-64 of the name
  5. liveness: the node's keepalives arrive as control messages; our
     keepalives keep the connection up past --idle-timeout-ms; silence ends
     it with reason "timeout"; only user messages count for --provisional-ms
  6. one connection per pair: dialing the node twice with one identity, the
     node keeps the connection with the smaller transcript id and retires
     the other (a retire control message, then end of stream), quietly
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crustwire as w  # noqa: E402
from crustnode import CrustNode, check, log, msg_bytes, read_until_closed, run  # noqa: E402

WAIT = 15.0


def node_gets(node, conn, wants, what):
    for want in wants:
        ev = node.wait_for("new_message", lambda e: e.get("peer") == conn.me, WAIT)
        got = msg_bytes(ev)
        # the CLI shows at most 64 KiB of a message's data ("truncated": true)
        check(ev["len"] == len(want) and (got == want or ev.get("truncated") and
                                          len(got) == 65536 and want.startswith(got)),
              "%s: the node got %r (%d bytes)" % (what, want[:40], len(want)), node)


def two_way(node, conn, what):
    """Messages both ways over an established Conn."""
    conn.send(b"one", b"", b"three")
    conn.send()                                   # an empty record
    conn.send(w.ctrl(w.CTRL_KEEPALIVE))           # a keepalive
    conn.send(w.ctrl(77), b"after an unknown control code")
    conn.send(bytes(range(256)))
    node_gets(node, conn, [b"one", b"", b"three", b"after an unknown control code",
                           bytes(range(256))], what)
    texts = ["n%d" % i for i in range(5)]
    for t in texts:
        node.send(conn.me, t)
    for t in texts:
        check(conn.recv_user() == t.encode(), "%s: we got %r from the node" % (what, t), node)
    big = "x" * 200000
    node.send(conn.me, big)
    check(conn.recv_user(WAIT) == big.encode(), "%s: a 200000-byte message from the node" % what,
          node)
    conn.send(b"y" * 300000)
    node_gets(node, conn, [b"y" * 300000], what + ", 300000 bytes")
    check(conn.me in node.peers(), "%s: we are one of the node's peers" % what, node)
    check(not node.pending("abuse"), "%s: no abuse reported" % what, node)


def case_selftest():
    w.self_test()
    check(True, "crustwire agrees with itself (both roles, both modes, rekey)")


def case_initiator(a):
    what = "python initiator"
    c = w.connect("127.0.0.1", a.port)
    check(c.peer == a.peer, "%s: the node's msg2 proves its id" % what, a)
    check(c.peer_port == a.port, "%s: and carries its listen port %d" % (what, a.port), a)
    check(c.hs.peer_flags == 0, "%s: msg2 flags 0 (secure, ChaCha: we offered no AES)" % what, a)
    ev = a.wait_for("new_connection", lambda e: e.get("peer") == c.me, WAIT)
    check(ev["addr"] == "127.0.0.1:%d" % c.sock.getsockname()[1],
          "%s: the node names our address" % what, a)
    two_way(a, c, what)
    c.close()
    ev = a.wait_for("lost_connection", lambda e: e.get("peer") == c.me, WAIT)
    log("%s: lost_connection reason %r" % (what, ev["reason"]))


def case_responder(a):
    what = "python responder"
    lst = w.Listener()
    ident = w.Identity()
    a.connect(lst.port)
    s = lst.accept_socket(WAIT)
    msg1 = w.recv_frame(s, WAIT)
    magic, version, type_, flags = w.parse_header(msg1)
    check((magic, version, type_, len(msg1)) == (b"CRST", 2, 1, 48),
          "%s: the node's msg1 is CRST v2 type 1, 48 bytes" % what, a)
    check(not flags & w.FLAG_TRACER and msg1[8:16] == bytes(8),
          "%s: msg1: not tracer, no network (AES offered: %s; we choose ChaCha)"
          % (what, bool(flags & w.FLAG_AES)), a)
    hs = w.Handshake(False, identity=ident, listen_port=4242)
    s.sendall(w.frame(hs.on_msg1(msg1)))
    hs.on_msg3(w.recv_frame(s, WAIT))
    c = w.Conn(s, hs)
    check(c.peer == a.peer and c.peer_port == a.port,
          "%s: the node's msg3 proves its id and port" % what, a)
    time.sleep(0.5)
    check(not a.pending("new_connection"),
          "%s: key confirmation: no new_connection before our first record" % what, a)
    c.send_ctrl(w.CTRL_KEEPALIVE)
    ev = a.wait_for("new_connection", lambda e: e.get("peer") == ident.peer, WAIT)
    check(ev["addr"] == "127.0.0.1:%d" % lst.port, "%s: the node names our address" % what, a)
    two_way(a, c, what)
    c.close()
    a.wait_for("lost_connection", lambda e: e.get("peer") == ident.peer, WAIT)

    what = "connect ADDR PEER"
    a.send_command("connect 127.0.0.1:%d %s" % (lst.port, ident.peer))
    c = lst.accept(WAIT, identity=ident)
    a.wait_for("new_connection", lambda e: e.get("peer") == ident.peer, WAIT)
    c.send(b"the peer you dialed")
    node_gets(a, c, [b"the peer you dialed"], what)
    c.close()
    a.wait_for("lost_connection", lambda e: e.get("peer") == ident.peer, WAIT)
    what = "key confirmation"
    a.connect(lst.port)
    c = lst.accept(WAIT, identity=ident, confirm=False)
    c.close()           # accepted msg3 but never confirmed: the node must not connect
    ev = a.wait_for(None, lambda e: e["event"] in ("new_connection", "connect_failed"), WAIT)
    check(ev["event"] == "connect_failed",
          "%s: a responder that closes after msg3 without a record: connect_failed (%s %r)"
          % (what, ev["event"], ev.get("reason")), a)

    for name, kw, want in [
            ("another network", {"network": "not-yours"},
             "refused by peer: it belongs to another network"),
            ("tracer mode", {"tracer": True},
             "refused by peer: tracer mode mismatch (the peer is tracer)")]:
        what = "our refusal (%s)" % name
        a.connect(lst.port)
        try:
            lst.accept(WAIT, identity=ident, **kw)
            check(False, "%s: we accepted" % what)
        except w.HandshakeError as e:
            check(e.refusal is not None, "%s: we refuse with a refusal frame (%s)"
                  % (what, e.refusal.hex()))
        ev = a.wait_for("connect_failed", None, WAIT)
        check(ev.get("reason") == want, "%s: the node says %r (%r)" % (what, want,
                                                                      ev.get("reason")), a)

    what = "connect ADDR PEER"
    other = w.Identity()
    a.send_command("connect 127.0.0.1:%d %s" % (lst.port, other.peer))
    try:
        lst.accept(WAIT, identity=ident)
        check(False, "%s: the node goes on with the wrong key" % what, a)
    except (w.WireError, EOFError, OSError) as e:
        log("%s, wrong key: our side: %s" % (what, e))
    ev = a.wait_for("connect_failed", None, WAIT)
    check("peer proved a different key than the one dialed" in ev.get("reason", ""),
          "%s: another key is refused: %r" % (what, ev.get("reason")), a)
    check(not a.pending("new_connection"), "%s: no new_connection for it" % what, a)
    lst.close()


def case_tracer():
    t = CrustNode("T", args=["--tracer"])
    what = "tracer initiator"
    c = w.connect("127.0.0.1", t.port, tracer=True)
    check(c.hs.peer_flags == w.FLAG_TRACER, "%s: msg2 flags: tracer" % what, t)
    t.wait_for("new_connection", lambda e: e.get("peer") == c.me, WAIT)
    c.send(b"in the clear")
    node_gets(t, c, [b"in the clear"], what)
    t.send(c.me, "clear back")
    rec = w.recv_frame(c.sock, WAIT)
    check(rec[:5] == b"CRTR\x20" and b"clear back" in rec,
          "%s: the node's record is a clear tracer record (%r)" % (what, rec[:30]), t)
    c.session.open(rec)
    two_way(t, c, what)
    c.close()
    t.wait_for("lost_connection", lambda e: e.get("peer") == c.me, WAIT)

    what = "tracer responder"
    lst = w.Listener()
    t.connect(lst.port)
    c = lst.accept(WAIT, tracer=True)
    check(c.hs.peer_flags & w.FLAG_TRACER, "%s: the node's msg1 has the tracer flag" % what, t)
    t.wait_for("new_connection", lambda e: e.get("peer") == c.me, WAIT)
    two_way(t, c, what)
    c.close()
    lst.close()

    what = "secure peer, tracer node"
    try:
        w.connect("127.0.0.1", t.port)
        check(False, "%s: the tracer node accepted a secure peer" % what, t)
    except w.HandshakeError as e:
        check(e.reason == "refused by peer: tracer mode mismatch (the peer is tracer)",
              "%s: the node's refusal says so: %r" % (what, e.reason), t)
    ev = t.wait_for("handshake_failed", None, WAIT)
    check(ev["reason"] == "tracer mode mismatch: we are tracer, the peer is secure",
          "%s: refused: %r" % (what, ev["reason"]), t)
    check(t.quit() == 0, "T quits with status 0", t)


def case_network():
    n = CrustNode("N", args=["--network", "crust-e2e-net"])
    c = w.connect("127.0.0.1", n.port, network="crust-e2e-net")
    n.wait_for("new_connection", lambda e: e.get("peer") == c.me, WAIT)
    c.send(b"same network")
    node_gets(n, c, [b"same network"], "network")
    check(True, "the network tag is BLAKE2b-64 of the name, as the node computes it")
    c.close()
    try:
        w.connect("127.0.0.1", n.port)
        check(False, "a peer without a network got in", n)
    except w.HandshakeError as e:
        check(e.reason == "refused by peer: it belongs to another network",
              "no network against a named one: the node's refusal says so (%r)" % e.reason, n)
    ev = n.wait_for("handshake_failed", None, WAIT)
    check(ev["reason"] == "peer belongs to another network",
          "no network against a named one: %r" % ev["reason"], n)
    check(n.quit() == 0, "N quits with status 0", n)


def case_liveness():
    idle_ms = 1500
    k = CrustNode("K", args=["--keepalive-ms", "200", "--idle-timeout-ms", str(idle_ms),
                             "--provisional-ms", "0"])
    what = "liveness"
    c = w.connect("127.0.0.1", k.port)
    k.wait_for("new_connection", lambda e: e.get("peer") == c.me, WAIT)
    msgs = c.recv_msgs(WAIT)
    check(msgs == [(True, bytes([w.CTRL_KEEPALIVE]))],
          "%s: the node's keepalive is one control message, code 1 (%r)" % (what, msgs), k)
    # our keepalives (empty-of-user-data control messages) keep it up
    end = time.monotonic() + idle_ms / 1000 * 2
    while time.monotonic() < end:
        c.send_ctrl(w.CTRL_KEEPALIVE)
        t0 = time.monotonic()   # the node's idle timer restarts after this, never before
        time.sleep(0.2)
    check(not k.pending("lost_connection"),
          "%s: up after %.1f s of our keepalives only" % (what, idle_ms / 1000 * 2), k)
    ev = k.wait_for("lost_connection", lambda e: e.get("peer") == c.me, WAIT)
    took = time.monotonic() - t0
    check(ev["reason"] == "timeout" and took >= idle_ms / 1000 * 0.9,
          "%s: silence ends it with reason 'timeout' after %.2f s (%r)"
          % (what, took, ev["reason"]), k)
    c.close()
    check(k.quit() == 0, "K quits with status 0", k)

    grace_ms = 1000
    p = CrustNode("P", args=["--keepalive-ms", "200", "--provisional-ms", str(grace_ms)])
    what = "provisional"
    t0 = time.monotonic()   # the grace period starts after this, never before
    c = w.connect("127.0.0.1", p.port)
    p.wait_for("new_connection", lambda e: e.get("peer") == c.me, WAIT)
    deadline = time.monotonic() + WAIT
    while not p.pending("lost_connection") and time.monotonic() < deadline:
        c.send_ctrl(w.CTRL_KEEPALIVE)
        time.sleep(0.2)
    ev = p.wait_for("lost_connection", lambda e: e.get("peer") == c.me, 1)
    took = time.monotonic() - t0
    check(ev["reason"] == "not maintained" and took >= grace_ms / 1000 * 0.9,
          "%s: keepalives alone do not keep a provisional connection: %r after %.2f s"
          % (what, ev["reason"], took), p)
    c.close()
    c = w.connect("127.0.0.1", p.port)
    p.wait_for("new_connection", lambda e: e.get("peer") == c.me, WAIT)
    p.send_command("maintain %s" % c.me)
    end = time.monotonic() + grace_ms / 1000 * 2.5
    while time.monotonic() < end:
        c.send_ctrl(w.CTRL_KEEPALIVE)
        time.sleep(0.2)
    check(not p.pending("lost_connection"),
          "%s: a maintained connection stays past the grace period" % what, p)
    c.close()
    check(p.quit() == 0, "P quits with status 0", p)


def case_one_per_pair(a):
    what = "one connection per pair"
    ident = w.Identity()
    c1 = w.connect("127.0.0.1", a.port, identity=ident)
    a.wait_for("new_connection", lambda e: e.get("peer") == ident.peer, WAIT)
    c2 = w.connect("127.0.0.1", a.port, identity=ident)
    # both dialed by us: the smaller transcript id survives
    keep, lose = (c1, c2) if c1.transcript < c2.transcript else (c2, c1)
    log("%s: the %s connection should survive" % (what, "first" if keep is c1 else "second"))
    # connect() read the node's first record (key confirmation): for the
    # second connection, when it loses, that record is the retire itself
    msgs = list(lose.first_record)
    while not msgs or msgs[-1] == (True, bytes([w.CTRL_KEEPALIVE])):
        msgs += lose.recv_msgs(WAIT)
    check(msgs[-1] == (True, bytes([w.CTRL_RETIRE])) and
          all(m == (True, bytes([w.CTRL_KEEPALIVE])) for m in msgs[:-1]),
          "%s: the node retires the one with the larger transcript id (%r)" % (what, msgs), a)
    rest, how = read_until_closed(lose.sock, WAIT)
    check(rest == b"" and how == "eof", "%s: then ends its stream (%s, %d bytes)"
          % (what, how, len(rest)), a)
    lose.close()
    a.send(ident.peer, "to the survivor")
    check(keep.recv_user() == b"to the survivor", "%s: messages go to the survivor" % what, a)
    keep.send(b"from the survivor")
    node_gets(a, keep, [b"from the survivor"], what)
    time.sleep(0.5)
    check(not a.pending(None, lambda e: e.get("peer") == ident.peer and
                        e["event"] in ("new_connection", "lost_connection")),
          "%s: the user saw one new_connection and no lost_connection" % what, a)
    keep.close()
    a.wait_for("lost_connection", lambda e: e.get("peer") == ident.peer, WAIT)


def main():
    case_selftest()
    a = CrustNode("A")
    case_initiator(a)
    case_responder(a)
    case_one_per_pair(a)
    check(a.quit() == 0, "A quits with status 0", a)
    case_tracer()
    case_network()
    case_liveness()


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    run(main)
