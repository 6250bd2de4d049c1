"""cachefile.py - read and write bootstrap cache files (docs/CONFIG.md,
"Bootstrap cache") independently of the C code, for the end-to-end tests.

load(path) -> list of entries (dicts: transport, addr, port, peer, failures,
last_success) from the valid slot with the higher sequence number; raises
ValueError if neither slot is valid. build(cap, entries) -> file bytes.
"""
import hashlib
import socket
import struct

MAGIC = b"CRSTBOOT"
VERSION = 1
HDR = 64
ENTRY = 64


def _slot_size(cap):
    return HDR + cap * ENTRY


def _checksum(slot, count):
    h = hashlib.blake2b(digest_size=16)
    h.update(slot[:48])
    h.update(slot[HDR:HDR + count * ENTRY])
    return h.digest()


def _entry(raw):
    transport, family, port, failures = raw[0], raw[1], struct.unpack(">H", raw[2:4])[0], \
        struct.unpack("<I", raw[4:8])[0]
    if transport not in (1, 2) or family not in (4, 6):
        raise ValueError("bad entry")
    addr = socket.inet_ntop(socket.AF_INET, raw[8:12]) if family == 4 else \
        socket.inet_ntop(socket.AF_INET6, raw[8:24])
    return {"transport": "tcp" if transport == 1 else "rudp", "addr": addr, "port": port,
            "failures": failures, "peer": raw[24:56].hex(),
            "last_success": struct.unpack("<Q", raw[56:64])[0]}


def parse(data):
    if len(data) < 2 * HDR or len(data) % (2 * ENTRY):
        raise ValueError("size %d is no cache size" % len(data))
    cap = (len(data) // 2 - HDR) // ENTRY
    best = None
    for i in range(2):
        slot = data[i * _slot_size(cap):(i + 1) * _slot_size(cap)]
        if slot[:8] != MAGIC:
            continue
        version, scap, seq, count = struct.unpack("<IIQI", slot[8:28])
        if version != VERSION or scap != cap or count > cap:
            continue
        if _checksum(slot, count) != slot[48:64]:
            continue
        if best is None or seq > best[0]:
            best = (seq, [_entry(slot[HDR + k * ENTRY:HDR + (k + 1) * ENTRY])
                          for k in range(count)])
    if best is None:
        raise ValueError("no valid slot")
    return best[1]


def load(path):
    with open(path, "rb") as f:
        return parse(f.read())


def build(cap, entries):
    """A file whose slot 0 holds entries (list of raw 64-byte entries), seq 1."""
    slot = bytearray(_slot_size(cap))
    for k, e in enumerate(entries):
        slot[HDR + k * ENTRY:HDR + (k + 1) * ENTRY] = e
    slot[0:28] = MAGIC + struct.pack("<IIQI", VERSION, cap, 1, len(entries))
    slot[48:64] = _checksum(bytes(slot), len(entries))
    return bytes(slot) + bytes(_slot_size(cap))
