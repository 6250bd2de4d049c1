#!/usr/bin/env python3
"""stunprobe.py SERVER PORT - send STUN requests, well-formed and malformed,
to a STUN server and print one JSON object with what came back.

Run inside a test's network namespace (`ip netns exec NS python3
stunprobe.py ...`). python3 standard library only. Bounded: a fixed number
of datagrams, each answer waited for at most a short time.
"""
import json
import os
import random
import socket
import struct
import sys

MAGIC = 0x2112A442


def crc32(b):
    import zlib
    return zlib.crc32(b) & 0xFFFFFFFF


def request(attrs=b"", cookie=True, fingerprint=False, txid=None):
    txid = txid or os.urandom(12 if cookie else 16)
    body = attrs
    length = len(body) + (8 if fingerprint else 0)
    hdr = struct.pack(">HH", 1, length) + (struct.pack(">I", MAGIC) if cookie else b"") + txid
    msg = hdr + body
    if fingerprint:
        msg += struct.pack(">HHI", 0x8028, 4, crc32(msg) ^ 0x5354554E)
    return msg, txid


def parse(b):
    """type, {attr type: value}."""
    t, length = struct.unpack(">HH", b[:4])
    attrs, off = {}, 20
    while off + 4 <= len(b):
        at, al = struct.unpack(">HH", b[off:off + 4])
        attrs[at] = b[off + 4:off + 4 + al]
        off += 4 + ((al + 3) & ~3)
    return t, attrs


def xor_addr(v, txid):
    port = struct.unpack(">H", v[2:4])[0] ^ (MAGIC >> 16)
    ip = bytes(a ^ b for a, b in zip(v[4:8], struct.pack(">I", MAGIC)))
    return "%s:%d" % (socket.inet_ntoa(ip), port)


def plain_addr(v):
    return "%s:%d" % (socket.inet_ntoa(v[4:8]), struct.unpack(">H", v[2:4])[0])


def ask(s, dst, msg, wait=1.0):
    s.sendto(msg, dst)
    s.settimeout(wait)
    try:
        return s.recvfrom(2048)[0]
    except socket.timeout:
        return None


def main():
    dst = (sys.argv[1], int(sys.argv[2]))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    out = {"answers": [], "max_ratio": 0.0}

    def note(name, req, resp):
        if resp:
            out["max_ratio"] = max(out["max_ratio"], len(resp) / len(req))
        return resp

    msg, txid = request()
    r = note("plain", msg, ask(s, dst, msg))
    t, a = parse(r)
    out["plain"] = {"type": t, "len": len(r), "xor_mapped": xor_addr(a[0x20], txid),
                    "txid_ok": r[8:20] == txid}
    msg, txid = request(fingerprint=True)
    r = note("fp", msg, ask(s, dst, msg))
    t, a = parse(r)
    out["fingerprint"] = {"type": t, "has_fp": 0x8028 in a,
                          "fp_ok": struct.unpack(">I", a[0x8028])[0] ==
                          crc32(r[:-8]) ^ 0x5354554E}
    msg, txid = request(cookie=False)
    r = note("old", msg, ask(s, dst, msg))
    t, a = parse(r)
    out["old_client"] = {"type": t, "mapped": plain_addr(a[1]) if 1 in a else None,
                         "txid_ok": r[4:20] == txid}
    msg, txid = request(attrs=struct.pack(">HHI", 0x0003, 4, 6))  # CHANGE-REQUEST
    r = note("change", msg, ask(s, dst, msg))
    t, a = parse(r)
    code = a.get(0x0009, b"\0\0\0\0")
    out["change_request"] = {"type": t, "code": (code[2] & 7) * 100 + code[3],
                             "unknown": list(struct.unpack(">%dH" % (len(a.get(0x000A, b"")) // 2),
                                                           a.get(0x000A, b"")))}
    # malformed: none of these may get an answer
    bad = []
    good, _ = request()
    bad.append(good[:10])                                      # truncated header
    bad.append(good[:2] + struct.pack(">H", 8) + good[4:])     # length says more than there is
    bad.append(good[:2] + struct.pack(">H", 3) + good[4:] + b"xyz")  # not a multiple of 4
    attrs = b"".join(struct.pack(">HH", 0x8022, 0) for _ in range(300))  # 300 attributes
    bad.append(request(attrs=attrs)[0])
    bad.append(request(attrs=struct.pack(">HH", 0x0024, 40) + b"\0" * 4)[0])  # attr too long
    fp_req, _ = request(fingerprint=True)
    bad.append(fp_req[:-1] + bytes([fp_req[-1] ^ 1]))          # wrong FINGERPRINT
    bad.append(struct.pack(">HH", 0x0101, 0) + good[4:])         # a response, not a request
    rnd = random.Random(5)
    for _ in range(200):
        n = rnd.randrange(0, 120)
        bad.append(bytes(rnd.randrange(256) for _ in range(n)))
    answered = 0
    for b in bad:
        s.sendto(b, dst)
    s.settimeout(1.0)
    try:
        while True:
            s.recvfrom(2048)
            answered += 1
    except socket.timeout:
        pass
    out["malformed_sent"] = len(bad)
    out["malformed_answered"] = answered
    msg, txid = request()
    r = ask(s, dst, msg)
    out["after_malformed"] = r is not None and r[8:20] == txid
    print(json.dumps(out))


if __name__ == "__main__":
    main()
