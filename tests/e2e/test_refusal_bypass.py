#!/usr/bin/env python3
"""A refused dialer must stay refused.

When a responder refuses a msg1 from a crust peer (another network, another
protocol version, the other tracer mode) it sends a refusal frame and
half-closes (p2p/secure.c handshake_step). The dialer must get no further:
whatever it sends next is not a handshake message any more.

Regression test for a bypass: the responder kept reading and took the
dialer's next frame as msg3 (hs_recv had counted the refused msg1 as step
0). Its handshake state was still all zero (no msg1 copied, no msg2, no
X25519 done), so a msg3 sealed and signed over that zero state was
accepted: the refused dialer became a connected peer (new_connection, its
messages delivered), across networks and modes, and with traffic keys
derived from public data only (anyone who saw msg3 could read and forge the
session's records).

For each refusal: the dialer reads the refusal, sends such a msg3 and a
record, and A must not report a connection or a message; it closes the
connection with the refusal's reason (handshake_failed).
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crustwire as w  # noqa: E402
from crustnode import CrustNode, check, connect_pair, exchange, log, read_until_closed, run  # noqa: E402

WAIT = 15.0


USED_PORTS = set()  # each client's "IP:PORT" names it alone (ports are reused after a close)

def forged_msg3_and_record(me):
    """msg3 and a sealed record for a responder whose handshake state is all zero."""
    z1, z2, dh = bytes(w.MSG1_LEN), bytes(w.MSG2_LEN), bytes(32)
    k_i = w.H("i", key=w.H("crust v2 hs", z1, z2[:w.M2_CLEAR], key=dh))
    hdr = w.header(w.MSG3)
    t = w.H("crust v2 initiator", z1, z2, me.pk)
    msg3 = hdr + w.aead_seal(k_i, bytes(12), me.pk + me.sign(t) + struct.pack(">H", 0), hdr)
    final = w.H("crust v2 keys", z1, z2, msg3, key=dh)
    session = w.Session(w.H("i2r", key=final), w.H("r2i", key=final))
    return w.frame(msg3), session.seal_frame(w.pack(b"a refused peer talks"))


def main():
    a = CrustNode("A", args=["--network", "private-net", "--handshake-timeout-ms", "3000"])
    b = CrustNode("B", args=["--network", "private-net"])
    connect_pair(a, b)
    good = w.Handshake(True, network="private-net").make_msg1()
    cases = [
        ("another network", w.Handshake(True, network="elsewhere").make_msg1(),
         w.REFUSE_NETWORK, "another network"),
        ("protocol version 3", w.header(1, version=3) + good[8:], w.REFUSE_VERSION,
         "unsupported protocol version 3"),
        ("tracer mode", w.header(1, w.FLAG_TRACER) + good[8:], w.REFUSE_TRACER,
         "tracer mode mismatch"),
    ]
    for name, msg1, code, words in cases:
        what = "refused for %s, then a msg3 over the zero state" % name
        me = w.Identity()
        s = w.open_socket("127.0.0.1", a.port, avoid=USED_PORTS)
        addr = "127.0.0.1:%d" % s.getsockname()[1]
        s.sendall(w.frame(msg1))
        ref = w.recv_frame(s, WAIT)
        check(ref == w.make_refusal(code, 0), "%s: A refuses (%s)" % (what, ref.hex()), a)
        msg3, rec = forged_msg3_and_record(me)
        try:
            s.sendall(msg3 + rec)
        except OSError as e:
            log("%s: A no longer reads (%s)" % (what, e))
        try:
            _, how = read_until_closed(s, WAIT)
        except TimeoutError:
            how = "still open"
        s.close()
        ev = a.wait_for(None, lambda e: e.get("addr") == addr and e["event"] in (
            "handshake_failed", "new_connection", "new_message"), WAIT)
        check(ev["event"] == "handshake_failed" and words in ev.get("reason", ""),
              "%s: A reports handshake_failed %r, not a connection (got %s %r; the "
              "connection: %s)" % (what, words, ev["event"], ev.get("reason", ""), how), a)
        time.sleep(0.3)
        late = a.pending(None, lambda e: e.get("peer") == me.peer)
        check(not late, "%s: nothing from the refused peer reached the user (%r)"
              % (what, late), a)
        check(me.peer not in a.peers(), "%s: the refused peer is not A's peer" % what, a)
    exchange(b, a, "B is still fine")
    check(b.quit() == 0, "B quits with status 0", b)
    check(a.quit() == 0, "A quits with status 0", a)


if __name__ == "__main__":
    run(main)
