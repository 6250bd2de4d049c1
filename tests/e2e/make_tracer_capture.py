#!/usr/bin/env python3
"""make_tracer_capture.py - synthetic crust (wire version 2) traffic on 127.0.0.1.

python3 standard library only; used by test_dissector_synthetic.sh to make
traffic for tools/wireshark/crust.lua without needing crust itself.

    make_tracer_capture.py --pick-port   print a free TCP port on 127.0.0.1, exit
    make_tracer_capture.py --port N      listen on 127.0.0.1:N, connect to it twice
                                         and write the conversations below

Both ends of every connection are sockets of this process, on 127.0.0.1
only. The bytes follow the spec (docs/PROTOCOL.md); the crypto parts
(ephemeral keys, AEAD payloads, ciphertexts, tags) are random bytes of the
right length. TCP_NODELAY and short pauses make each send() one segment.

Connection 1, tracer mode (flags tracer|aes in msg1, tracer in msg2/msg3):
  I->R msg1, R->I msg2, I->R msg3, then I->R tracer records:
    #0  "tracer-probe-42"                       one send()
    #1  "hello", 6 binary bytes                 #1 and #2 coalesced in one send()
    #2  keepalive (no messages)
    #3  "split-across-sends"                    record split over two send()s
    #4  BIG_LEN bytes of "x"                    several TCP segments
    #5  "" (empty), "last"
    #6  "split-in-length-header"                split inside the 4-byte frame length
  and R->I tracer records: #0 "pong", #1 keepalive.
Connection 2, secure mode (flags aes in msg1/msg2/msg3):
  msg1, msg2, msg3, then I->R two 0x10 records (36 and 116 bytes after the
  type byte), R->I one (16 bytes: empty plaintext, tag only).

Each receiving side reads everything and checks it got exactly what was
sent; exit status 0 on success, 1 (with a message on stderr) otherwise.
"""

import argparse
import os
import socket
import struct
import sys
import threading
import time

PROBE = b"tracer-probe-42"
BIG_LEN = 100000
PAUSE = 0.05
NETWORK_TAG = b"crustnet"
FLAG_TRACER = 1
FLAG_AES = 2


def frame(record):
    return struct.pack(">I", len(record)) + record


def msg1(flags):
    return frame(b"CRST" + bytes([2, 1]) + struct.pack(">H", flags) + NETWORK_TAG +
                 os.urandom(32))


def msg2(flags):
    return frame(b"CRST" + bytes([2, 2]) + struct.pack(">H", flags) + os.urandom(32) +
                 os.urandom(114))


def msg3(flags):
    return frame(b"CRST" + bytes([2, 3]) + struct.pack(">H", flags) + os.urandom(114))


def tracer(counter, messages):
    body = b"".join(struct.pack(">I", len(m)) + m for m in messages)
    return frame(b"CRTR" + bytes([0x20]) + struct.pack(">Q", counter) + body)


def secure(plain_len):
    return frame(bytes([0x10]) + os.urandom(plain_len) + os.urandom(16))


class Reader(threading.Thread):
    """Reads a socket to EOF into self.data."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.data = bytearray()
        self.error = None

    def run(self):
        try:
            while True:
                b = self.sock.recv(65536)
                if not b:
                    break
                self.data += b
        except OSError as e:
            self.error = e


def connect_pair(listener, port):
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    s, _ = listener.accept()
    s.settimeout(10)
    for x in (c, s):
        x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c, s


def send(sock, data, sent):
    sock.sendall(data)
    sent.extend(data)
    time.sleep(PAUSE)


def run_conversation(listener, port, script):
    """script(i, r, sent_i, sent_r) writes; then both directions are checked."""
    i, r = connect_pair(listener, port)
    ri, rr = Reader(i), Reader(r)  # ri reads what R sent, rr what I sent
    ri.start()
    rr.start()
    sent_i, sent_r = bytearray(), bytearray()
    script(i, r, sent_i, sent_r)
    i.shutdown(socket.SHUT_WR)
    r.shutdown(socket.SHUT_WR)
    for t in (ri, rr):
        t.join(10)
        if t.is_alive():
            raise RuntimeError("a reader did not see EOF")
        if t.error:
            raise RuntimeError("read failed: %s" % t.error)
    i.close()
    r.close()
    if bytes(rr.data) != bytes(sent_i):
        raise RuntimeError("R received %d bytes, I sent %d" % (len(rr.data), len(sent_i)))
    if bytes(ri.data) != bytes(sent_r):
        raise RuntimeError("I received %d bytes, R sent %d" % (len(ri.data), len(sent_r)))


def tracer_script(i, r, si, sr):
    send(i, msg1(FLAG_TRACER | FLAG_AES), si)
    send(r, msg2(FLAG_TRACER), sr)
    send(i, msg3(FLAG_TRACER), si)
    send(i, tracer(0, [PROBE]), si)
    send(r, tracer(0, [b"pong"]), sr)
    send(i, tracer(1, [b"hello", bytes([0, 1, 2, 0xfe, 0xff, 0x7f])]) + tracer(2, []), si)
    rec = tracer(3, [b"split-across-sends"])
    send(i, rec[:20], si)
    send(i, rec[20:], si)
    send(i, tracer(4, [b"x" * BIG_LEN]), si)
    send(r, tracer(1, []), sr)
    send(i, tracer(5, [b"", b"last"]), si)
    rec = tracer(6, [b"split-in-length-header"])
    send(i, rec[:2], si)
    send(i, rec[2:], si)


def secure_script(i, r, si, sr):
    send(i, msg1(FLAG_AES), si)
    send(r, msg2(FLAG_AES), sr)
    send(i, msg3(FLAG_AES), si)
    send(i, secure(20), si)
    send(r, secure(0), sr)
    send(i, secure(100), si)


def pick_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--pick-port", action="store_true")
    g.add_argument("--port", type=int)
    a = ap.parse_args()
    if a.pick_port:
        print(pick_port())
        return 0
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", a.port))
    except OSError as e:
        print("make_tracer_capture: cannot bind 127.0.0.1:%d: %s" % (a.port, e),
              file=sys.stderr)
        return 1
    listener.listen(4)
    listener.settimeout(10)
    try:
        run_conversation(listener, a.port, tracer_script)
        run_conversation(listener, a.port, secure_script)
    except (OSError, RuntimeError) as e:
        print("make_tracer_capture: %s" % e, file=sys.stderr)
        return 1
    finally:
        listener.close()
    print("make_tracer_capture: sent 2 conversations on 127.0.0.1:%d" % a.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
