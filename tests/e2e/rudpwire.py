"""rudpwire.py - just enough of crust's reliable-UDP packets (docs/PROTOCOL.md,
"Reliable UDP") for tests to forge them: client Initial packets sealed
with the public initial keys, and a parser for what a node answers.

Needs PyNaCl (BLAKE2b) and python3-cryptography (AES-256-GCM), both
Debian packages (tools/deps.sh base).
"""
import os
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.hashlib import blake2b

VERSION = 0x43520001
INITIAL, RETRY, SHORT = 0xC0, 0xC1, 0x40
SALT = b"crust rudp initial salt v1....." + b"\0"
PING, PADDING, ACK = 0x01, 0x00, 0x02
TAG = 16
MIN_INITIAL = 1200


def _kdf(key, label, extra=b"", n=32):
    return blake2b(label + extra, key=key, digest_size=n).digest()


class Keys:
    """One direction's packet protection, from a 32-byte secret."""

    def __init__(self, secret):
        self.base = _kdf(secret, b"crust rudp key")
        self.iv = _kdf(secret, b"crust rudp iv", n=12)

    def _aead(self, pn):
        epoch = pn >> 23
        return AESGCM(_kdf(self.base, b"epoch", struct.pack(">Q", epoch)))

    def _nonce(self, pn):
        return self.iv[:4] + bytes(a ^ b for a, b in zip(self.iv[4:], struct.pack(">Q", pn)))

    def seal(self, pn, header, payload):
        return header + self._aead(pn).encrypt(self._nonce(pn), payload, header)

    def open(self, pn, header, body):
        return self._aead(pn).decrypt(self._nonce(pn), body, header)


def initial_keys(odcid):
    """(client->server, server->client) keys for a first DCID of 8 bytes."""
    return (Keys(_kdf(SALT, b"client", odcid)), Keys(_kdf(SALT, b"server", odcid)))


def varint(v):
    if v < 64:
        return bytes([v])
    if v < 16384:
        return struct.pack(">H", v | 0x4000)
    if v < (1 << 30):
        return struct.pack(">I", v | 0x80000000)
    return struct.pack(">Q", v | 0xC000000000000000)


def long_header(dcid, scid, pn, token=b""):
    return (bytes([INITIAL]) + struct.pack(">I", VERSION) + dcid + scid + varint(len(token)) +
            token + struct.pack(">I", pn & 0xFFFFFFFF))


def initial(odcid=None, scid=None, pn=0, size=MIN_INITIAL, frames=bytes([PING]), token=b""):
    """A client Initial of size bytes (PING + padding), sealed; returns (packet, odcid, scid)."""
    odcid = odcid or os.urandom(8)
    scid = scid or os.urandom(8)
    hdr = long_header(odcid, scid, pn, token)
    c2s, _ = initial_keys(odcid)
    pad = size - len(hdr) - TAG - len(frames)
    payload = frames + bytes(max(pad, 0))
    return c2s.seal(pn, hdr, payload), odcid, scid


def short_header(dcid, pn):
    return bytes([SHORT]) + dcid + struct.pack(">I", pn & 0xFFFFFFFF)


def packet_type(data):
    return data[0] if data else None


def retry_token(data):
    """The token of a Retry packet (type, version, dcid, scid, varint len, token, tag)."""
    if len(data) < 1 + 4 + 16 + 1 or data[0] != RETRY:
        return None
    n = data[21]
    if n >= 64:
        return None
    return data[22:22 + n]
