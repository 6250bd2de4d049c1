"""crustwire.py - a crust peer's wire protocol (version 2) in Python.

python3 standard library + PyNaCl (Debian python3-nacl; tools/deps.sh base
installs it). It follows docs/PROTOCOL.md and the C reference
(p2p/handshake.c, p2p/session.c), so tests can be a crust peer, a careful
one or a hostile one, without the library:

    ident = Identity()                      # Ed25519 key pair; ident.peer = hex id
    c = connect("127.0.0.1", node.port)     # initiator: msg1, msg2, msg3
    c.peer, c.peer_port                     # what the node proved: its id, its port
    c.me                                    # our id (hex), as the node names us
    c.send(b"hello", b"world")              # two messages in one sealed record
    c.recv_user()                           # b"..." the next user message
    lst = Listener(); node.connect(lst.port); c = lst.accept()   # responder

and the pieces, for building bad input: frame(), header(), Handshake
(make_msg1/on_msg1/on_msg2/on_msg3 with knobs for wrong keys and claims),
Session (seal/open with the record counters; seal() consumes a counter, so
a sealed record can be sent twice, reordered, or altered), pack()/unpack()
for the messages inside a record, and tracer records (tracer=True).

Only ChaCha20-Poly1305 records: PyNaCl has no AES-256-GCM, so msg1 never
offers AES (flag bit 1 clear) and, as responder, we always choose ChaCha.

Every socket read has a timeout: nothing here can hang a test.
"""

import hashlib
import os
import socket
import struct
import time

try:
    from nacl import bindings as _nacl
    from nacl import exceptions as _nacl_exc
except ImportError as _e:  # pragma: no cover - environment problem
    raise ImportError("crustwire needs PyNaCl: install the Debian package python3-nacl "
                      "(tools/deps.sh base), then run the tests with the python3 that "
                      "sees it (tests/e2e/run.sh picks one): %s" % _e) from None

# --- constants (p2p/handshake.h, p2p/session.h, p2p/node.h, transports/framing.h) ---------

MAGIC = b"CRST"
VERSION = 2
MSG1, MSG2, MSG3 = 1, 2, 3
HDR_LEN = 8
MSG1_LEN = 48
MSG2_LEN = 154
MSG3_LEN = 122
REFUSAL = 4                      # type of the responder's refusal (instead of msg2)
REFUSAL_LEN = 9                  # header | u8 reason
REFUSE_NETWORK, REFUSE_VERSION, REFUSE_TRACER = 1, 2, 3
M2_CLEAR = HDR_LEN + 32          # msg2's clear part: header + e_r
PROOF_LEN = 32 + 64 + 2          # s_x | sig_x | port
SEALED_PROOF_LEN = PROOF_LEN + 16
FLAG_TRACER = 1
FLAG_AES = 2

REC_SECURE = 0x10
REC_TRACER = 0x20
TRACER_MAGIC = b"CRTR"
TAG_LEN = 16
REKEY_RECORDS = 1 << 24

FRAME_HDR_LEN = 4
CTRL_BIT = 0x80000000
CTRL_KEEPALIVE = 1
CTRL_RETIRE = 2

DEFAULT_MAX_MSG_SIZE = 16 << 20
ARENA_CHUNK = 64 * 1024
ZERO_NONCE = bytes(12)


def max_frame_len(max_msg_size=DEFAULT_MAX_MSG_SIZE):
    """The largest frame a node with this --max-msg-size accepts."""
    return max(max_msg_size, ARENA_CHUNK) + 64


class WireError(Exception):
    """The peer broke the protocol (or went away); str() says how."""


class HandshakeError(WireError):
    """A refused handshake; .reason is the C library's wording for the same case.
    .refusal: the refusal frame's payload a responder sends before closing
    (None: it says nothing); .refused_by_peer: the peer's refusal code."""

    def __init__(self, reason, refusal=None, refused_by_peer=None):
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal
        self.refused_by_peer = refused_by_peer


def make_refusal(code, flags=0):
    """A refusal (type 4, 9 bytes): header with the responder's own flags | reason code."""
    return header(REFUSAL, flags) + bytes([code])


def refusal_reason(msg):
    """The C library's connect_failed wording for a received refusal."""
    if len(msg) != REFUSAL_LEN:
        return "malformed handshake (refusal of %d bytes)" % len(msg)
    tracer = struct.unpack(">H", msg[6:8])[0] & FLAG_TRACER
    return {REFUSE_NETWORK: "refused by peer: it belongs to another network",
            REFUSE_VERSION: "refused by peer: unsupported protocol version",
            REFUSE_TRACER: "refused by peer: tracer mode mismatch (the peer is %s)"
            % ("tracer" if tracer else "secure")}.get(msg[8], "refused by peer (reason %d)"
                                                      % msg[8])


class IntegrityError(WireError):
    """A record that does not open: altered, replayed, reordered, wrong key/mode."""


class MalformedRecord(WireError):
    """A record that opened but whose messages run past its end."""


# --- hashing -------------------------------------------------------------------------------


def H(label, *parts, key=None):
    """BLAKE2b-256 of label | parts..., keyed with key (32 bytes) if given."""
    if isinstance(label, str):
        label = label.encode()
    h = hashlib.blake2b(digest_size=32, key=key or b"")
    h.update(label)
    for p in parts:
        h.update(p)
    return h.digest()


def network_tag(name=None):
    """8 bytes: BLAKE2b-64 of the network name, zero without one."""
    if not name:
        return bytes(8)
    if isinstance(name, str):
        name = name.encode()
    return hashlib.blake2b(name, digest_size=8).digest()


def _tag_of(network):
    """network: None/"" (no network), a name (str), or an 8-byte tag (bytes)."""
    if isinstance(network, (bytes, bytearray)) and len(network) == 8:
        return bytes(network)
    return network_tag(network)


# --- framing ---------------------------------------------------------------------------------


def frame(payload):
    """One frame: u32 big-endian length | payload."""
    return struct.pack(">I", len(payload)) + payload


def header(type_, flags=0, magic=MAGIC, version=VERSION):
    """The 8-byte handshake header: magic | version | type | u16 flags."""
    return bytes(magic) + bytes([version, type_]) + struct.pack(">H", flags)


def parse_header(msg):
    """(magic, version, type, flags) of a handshake message."""
    if len(msg) < HDR_LEN:
        raise WireError("handshake message of %d bytes" % len(msg))
    return msg[:4], msg[4], msg[5], struct.unpack(">H", msg[6:8])[0]


def recv_exact(sock, n, deadline=None):
    """n bytes; fewer if the peer closes first. socket.timeout past deadline."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out with %d of %d bytes" % (len(buf), n))
            sock.settimeout(left)
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_frame(sock, timeout=10.0, max_len=256 << 20):
    """One frame's payload. EOFError if the stream ends first (a reset counts
    as an end), socket.timeout after timeout seconds."""
    deadline = time.monotonic() + timeout
    try:
        hdr = recv_exact(sock, FRAME_HDR_LEN, deadline)
        if len(hdr) < FRAME_HDR_LEN:
            raise EOFError("stream ended inside a frame header (%d bytes)" % len(hdr))
        (n,) = struct.unpack(">I", hdr)
        if n > max_len:
            raise WireError("frame of %d bytes above our limit %d" % (n, max_len))
        body = recv_exact(sock, n, deadline)
    except (ConnectionResetError, BrokenPipeError) as e:
        raise EOFError("connection reset: %s" % e) from None
    if len(body) < n:
        raise EOFError("stream ended inside a frame (%d of %d bytes)" % (len(body), n))
    return body


# --- identity ----------------------------------------------------------------------------------


class Identity:
    """An Ed25519 key pair (libsodium crypto_sign): pk (32), sk (64), peer (hex)."""

    def __init__(self, seed=None):
        if seed is None:
            self.pk, self.sk = _nacl.crypto_sign_keypair()
        else:
            self.pk, self.sk = _nacl.crypto_sign_seed_keypair(seed)

    @property
    def peer(self):
        return self.pk.hex()

    def sign(self, data):
        return _nacl.crypto_sign(data, self.sk)[:64]

    def __repr__(self):
        return "Identity(%s)" % self.peer[:16]


def verify(pk, sig, data):
    try:
        _nacl.crypto_sign_open(sig + data, pk)
        return True
    except (_nacl_exc.BadSignatureError, _nacl_exc.CryptoError, ValueError, TypeError):
        return False


def aead_seal(key, nonce, plain, ad):
    return _nacl.crypto_aead_chacha20poly1305_ietf_encrypt(plain, ad, nonce, key)


def aead_open(key, nonce, sealed, ad):
    """The plaintext, or None if it does not authenticate."""
    try:
        return _nacl.crypto_aead_chacha20poly1305_ietf_decrypt(sealed, ad, nonce, key)
    except (_nacl_exc.CryptoError, ValueError):
        return None


def x25519(sk, pk):
    """X25519; None for an all-zero result (a low-order point), as libsodium refuses."""
    try:
        out = _nacl.crypto_scalarmult(sk, pk)
    except (_nacl_exc.RuntimeError, _nacl_exc.CryptoError, RuntimeError):
        return None
    return None if out == bytes(32) else out


# --- the handshake -----------------------------------------------------------------------------


class Handshake:
    """One side of the three-message handshake (pure: bytes in, bytes out).

    Initiator: msg1 = hs.make_msg1(); msg3 = hs.on_msg2(msg2)
    Responder: msg2 = hs.on_msg1(msg1); hs.on_msg3(msg3)
    Then hs.peer (32 bytes), hs.peer_port, hs.tx_key/rx_key, hs.transcript,
    hs.session(). Refusals raise HandshakeError with the C library's reason.

    network: None (no network), a name, or an 8-byte tag. expected_peer: the
    id (bytes or hex) a dialer insists on.
    """

    def __init__(self, initiator, identity=None, network=None, tracer=False, listen_port=0,
                 expected_peer=None):
        self.initiator = initiator
        self.identity = identity or Identity()
        self.tag = _tag_of(network)
        self.tracer = tracer
        self.listen_port = listen_port
        if isinstance(expected_peer, str):
            expected_peer = bytes.fromhex(expected_peer)
        self.expected = expected_peer
        self.e_pk, self.e_sk = _nacl.crypto_box_keypair()
        self.msg1 = self.msg2 = self.msg3 = None
        self.dh = None
        self.peer = None
        self.peer_port = None
        self.peer_flags = None
        self.aes = False
        self.tx_key = self.rx_key = self.transcript = None
        self.done = False

    def own_flags(self):
        return FLAG_TRACER if self.tracer else 0   # never FLAG_AES: ChaCha only

    # -- shared pieces --

    def _hs_keys(self, peer_e):
        self.dh = x25519(self.e_sk, peer_e)
        if self.dh is None:
            raise HandshakeError("malformed handshake (bad ephemeral key)")
        base = H("crust v2 hs", self.msg1, self.msg2[:M2_CLEAR], key=self.dh)
        return H("r", key=base), H("i", key=base)

    def _proof(self, t, k, ad, claim_pk=None, port=None):
        pk = self.identity.pk if claim_pk is None else claim_pk
        port = self.listen_port if port is None else port
        plain = pk + self.identity.sign(t) + struct.pack(">H", port)
        return aead_seal(k, ZERO_NONCE, plain, ad)

    def _open_proof(self, sealed, k, ad, label, m2):
        plain = aead_open(k, ZERO_NONCE, sealed, ad)
        if plain is None:
            raise HandshakeError("handshake authentication failed (cannot open the proof)")
        pk, sig, port = plain[:32], plain[32:96], struct.unpack(">H", plain[96:98])[0]
        if not verify(pk, sig, H(label, self.msg1, m2, pk)):
            raise HandshakeError("handshake authentication failed (bad signature)")
        self.peer, self.peer_port = pk, port
        if self.expected is not None and pk != self.expected:
            raise HandshakeError("peer proved a different key than the one dialed")

    def _traffic_keys(self):
        final = H("crust v2 keys", self.msg1, self.msg2, self.msg3, key=self.dh)
        k_i2r, k_r2i = H("i2r", key=final), H("r2i", key=final)
        self.transcript = H("crust v2 id", self.msg1, self.msg2, self.msg3)
        self.tx_key, self.rx_key = (k_i2r, k_r2i) if self.initiator else (k_r2i, k_i2r)
        self.done = True

    @staticmethod
    def _check_hdr(msg, type_, want_len):
        if len(msg) < 6 or msg[:4] != MAGIC:
            raise HandshakeError("not a crust peer (bad magic)")
        if msg[4] != VERSION:
            raise HandshakeError("unsupported protocol version %d (we speak %d)"
                                 % (msg[4], VERSION))
        if msg[5] != type_ or len(msg) != want_len:
            raise HandshakeError("malformed handshake (type %d, %d bytes; expected type %d)"
                                 % (msg[5], len(msg), type_))

    def _check_tracer(self, flags):
        theirs = bool(flags & FLAG_TRACER)
        if theirs != self.tracer:
            raise HandshakeError("tracer mode mismatch: we are %s, the peer is %s"
                                 % ("tracer" if self.tracer else "secure",
                                    "tracer" if theirs else "secure"))

    # -- initiator --

    def make_msg1(self, flags=None, tag=None, e_pk=None, magic=MAGIC, version=VERSION,
                  type_=MSG1):
        """msg1 (48 bytes); the knobs make bad ones (the real one uses none)."""
        assert self.initiator
        flags = self.own_flags() if flags is None else flags
        self.msg1 = (header(type_, flags, magic, version) + (self.tag if tag is None else tag)
                     + (self.e_pk if e_pk is None else e_pk))
        return self.msg1

    def on_msg2(self, msg2, claim_pk=None, sign_label="crust v2 initiator"):
        """msg3 for msg2. claim_pk: put another key in our proof (signed with
        ours: 'bad signature'); sign_label: sign the wrong transcript."""
        assert self.initiator and self.msg1 is not None
        if len(msg2) >= 6 and msg2[:4] == MAGIC and msg2[4] == VERSION and msg2[5] == REFUSAL:
            raise HandshakeError(refusal_reason(msg2), refused_by_peer=msg2[8] if len(msg2) > 8 else None)
        self._check_hdr(msg2, MSG2, MSG2_LEN)
        flags = struct.unpack(">H", msg2[6:8])[0]
        self._check_tracer(flags)
        if flags & FLAG_AES:
            raise HandshakeError("peer chose AES-256-GCM, which we did not offer")
        self.peer_flags = flags
        self.msg2 = bytes(msg2)
        k_r, k_i = self._hs_keys(msg2[HDR_LEN:M2_CLEAR])
        self._open_proof(msg2[M2_CLEAR:], k_r, msg2[:M2_CLEAR], "crust v2 responder",
                         msg2[:M2_CLEAR])
        hdr = header(MSG3, self.own_flags())
        pk = self.identity.pk if claim_pk is None else claim_pk
        t = H(sign_label, self.msg1, self.msg2, pk)
        self.msg3 = hdr + self._proof(t, k_i, hdr, claim_pk=claim_pk)
        self._traffic_keys()
        return self.msg3

    # -- responder --

    def precheck_msg1(self, msg1):
        self._check_hdr(msg1, MSG1, MSG1_LEN)
        if msg1[HDR_LEN:HDR_LEN + 8] != self.tag:
            raise HandshakeError("peer belongs to another network")
        self._check_tracer(struct.unpack(">H", msg1[6:8])[0])

    def refusal_for(self, msg1):
        """The refusal a responder sends for a msg1 it refused (None: say nothing),
        like p2p/handshake.c: only to crust peers, for version, network, mode."""
        if len(msg1) < 6 or msg1[:4] != MAGIC:
            return None
        if msg1[4] != VERSION:
            return make_refusal(REFUSE_VERSION, self.own_flags())
        if len(msg1) == MSG1_LEN and msg1[5] == MSG1:
            code = REFUSE_NETWORK if msg1[8:16] != self.tag else REFUSE_TRACER
            return make_refusal(code, self.own_flags())
        return None

    def on_msg1(self, msg1):
        """msg2 for msg1 (we choose ChaCha20-Poly1305 whatever msg1 offers).
        A refused msg1 raises HandshakeError with .refusal to send (or None)."""
        assert not self.initiator
        try:
            self.precheck_msg1(msg1)
        except HandshakeError as e:
            e.refusal = self.refusal_for(msg1)
            raise
        self.peer_flags = struct.unpack(">H", msg1[6:8])[0]
        self.msg1 = bytes(msg1)
        self.msg2 = header(MSG2, self.own_flags()) + self.e_pk
        k_r, _ = self._hs_keys(msg1[16:48])
        t = H("crust v2 responder", self.msg1, self.msg2, self.identity.pk)
        self.msg2 += self._proof(t, k_r, self.msg2)
        return self.msg2

    def on_msg3(self, msg3):
        assert not self.initiator and self.msg2 is not None
        self._check_hdr(msg3, MSG3, MSG3_LEN)
        self.msg3 = bytes(msg3)
        base = H("crust v2 hs", self.msg1, self.msg2[:M2_CLEAR], key=self.dh)
        self._open_proof(msg3[HDR_LEN:], H("i", key=base), msg3[:HDR_LEN],
                         "crust v2 initiator", self.msg2)
        self._traffic_keys()

    def session(self):
        assert self.done
        return Session(self.tx_key, self.rx_key, self.tracer)


# --- records -----------------------------------------------------------------------------------


def pack(*msgs):
    """A record's plaintext. Each item: bytes/str (a user message) or
    ("ctrl", code_or_bytes) (a control message, bit 31 set in its header)."""
    out = bytearray()
    for m in msgs:
        ctrl = False
        if isinstance(m, tuple):
            kind, m = m
            ctrl = kind == "ctrl"
            if isinstance(m, int):
                m = bytes([m])
        if isinstance(m, str):
            m = m.encode()
        out += struct.pack(">I", len(m) | (CTRL_BIT if ctrl else 0)) + m
    return bytes(out)


def ctrl(code):
    """A control message for pack(): ctrl(CTRL_KEEPALIVE), ctrl(CTRL_RETIRE)."""
    return ("ctrl", code)


def unpack(plain):
    """[(is_ctrl, bytes), ...] of a plaintext; MalformedRecord if a length runs past the end."""
    out = []
    i = 0
    while i < len(plain):
        if len(plain) - i < 4:
            raise MalformedRecord("%d stray bytes at the end of a record" % (len(plain) - i))
        (n,) = struct.unpack(">I", plain[i:i + 4])
        is_ctrl = bool(n & CTRL_BIT)
        n &= ~CTRL_BIT
        if n > len(plain) - i - 4:
            raise MalformedRecord("message of %d bytes runs past the record's end" % n)
        out.append((is_ctrl, plain[i + 4:i + 4 + n]))
        i += 4 + n
    return out


def _nonce(counter):
    return bytes(4) + struct.pack(">Q", counter)


class _Dir:
    def __init__(self, key):
        self.key = key
        self.counter = 0

    def maybe_rekey(self):
        if self.counter and self.counter % REKEY_RECORDS == 0:
            self.key = H("crust v2 rekey", key=self.key)


class Session:
    """Records of an established session: seal() and open() keep the two
    per-direction counters (implicit nonces) and rekey every 2^24 records."""

    def __init__(self, tx_key, rx_key, tracer=False):
        self.tracer = tracer
        self.tx = _Dir(tx_key)
        self.rx = _Dir(rx_key)

    def seal(self, plain):
        """The record (a frame's payload) for plaintext; uses up one tx counter."""
        if self.tracer:
            rec = TRACER_MAGIC + bytes([REC_TRACER]) + struct.pack(">Q", self.tx.counter) + plain
            self.tx.counter += 1
            return rec
        self.tx.maybe_rekey()
        ad = bytes([REC_SECURE])
        rec = ad + aead_seal(self.tx.key, _nonce(self.tx.counter), plain, ad)
        self.tx.counter += 1
        return rec

    def seal_frame(self, plain):
        return frame(self.seal(plain))

    def open(self, rec):
        """The plaintext of the next record; IntegrityError if it is not the next one intact."""
        if self.tracer:
            if (len(rec) < 13 or rec[:4] != TRACER_MAGIC or rec[4] != REC_TRACER or
                    struct.unpack(">Q", rec[5:13])[0] != self.rx.counter):
                raise IntegrityError("tracer record %r... is not record #%d"
                                     % (rec[:13].hex(), self.rx.counter))
            self.rx.counter += 1
            return rec[13:]
        if len(rec) < 1 + TAG_LEN or rec[0] != REC_SECURE:
            raise IntegrityError("not a secure record (%d bytes, type %s)"
                                 % (len(rec), rec[:1].hex()))
        self.rx.maybe_rekey()
        plain = aead_open(self.rx.key, _nonce(self.rx.counter), rec[1:], rec[:1])
        if plain is None:
            raise IntegrityError("record #%d does not authenticate" % self.rx.counter)
        self.rx.counter += 1
        return plain


# --- a connection over a socket ------------------------------------------------------------------


class Conn:
    """An established session over a TCP socket.

    send(*msgs) seals one record with those messages; sealed(*msgs) returns
    the framed record without sending it (its counter is used up: send it
    twice for a replay, alter it, reorder it); recv_msgs() returns the
    messages of the next record; recv_user() the next user message, skipping
    control messages (keepalives).
    """

    def __init__(self, sock, hs, timeout=10.0):
        self.sock = sock
        self.hs = hs
        self.session = hs.session()
        self.identity = hs.identity
        self.me = hs.identity.peer        # our id (hex): what the node calls us
        self.peer = hs.peer.hex()         # the id the other end proved (hex)
        self.peer_port = hs.peer_port
        self.transcript = hs.transcript
        self.timeout = timeout
        self._user = []          # user messages received, not yet returned
        self.ctrl_seen = []      # control messages received (bytes), in order
        self.first_record = None  # the responder's first record (key confirmation)

    def sealed(self, *msgs):
        return self.session.seal_frame(pack(*msgs))

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, *msgs):
        """One record holding msgs (none: an empty record, which is valid)."""
        data = self.sealed(*msgs)
        self.sock.sendall(data)
        return data

    def send_ctrl(self, code):
        return self.send(ctrl(code))

    def recv_record(self, timeout=None):
        rec = recv_frame(self.sock, self.timeout if timeout is None else timeout)
        return self.session.open(rec)

    def recv_msgs(self, timeout=None):
        """[(is_ctrl, bytes)] of the next record."""
        msgs = unpack(self.recv_record(timeout))
        self.ctrl_seen += [m for c, m in msgs if c]
        return msgs

    def recv_user(self, timeout=None):
        """The next user message (bytes), skipping control messages."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._user:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no user message within the timeout")
            self._user += [m for c, m in self.recv_msgs(left) if not c]
        return self._user.pop(0)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _hs_frame(sock, deadline, what):
    try:
        return recv_frame(sock, max(0.0, deadline - time.monotonic()), max_len=4096)
    except EOFError as e:
        raise WireError("the peer closed the connection before its %s (%s)" % (what, e)) from None


def handshake_initiator(sock, timeout=10.0, confirm=True, **kw):
    """Run the initiator's side on a connected socket; returns a Conn.
    confirm: like the library, count the connection as up only when the
    responder's first record opens (key confirmation: it may still refuse us
    after msg3); its messages stay readable on the Conn. kw: identity,
    network, tracer, listen_port, expected_peer (see Handshake)."""
    hs = Handshake(True, **kw)
    deadline = time.monotonic() + timeout
    sock.sendall(frame(hs.make_msg1()))
    msg3 = hs.on_msg2(_hs_frame(sock, deadline, "msg2"))
    sock.sendall(frame(msg3))
    conn = Conn(sock, hs, timeout)
    if confirm:
        try:
            first = conn.recv_msgs(max(0.0, deadline - time.monotonic()))
        except EOFError as e:
            raise WireError("the responder closed before its first record: it refused us "
                            "after msg3 (%s)" % e) from None
        conn.first_record = first
        conn._user += [m for c, m in first if not c]
    return conn


def handshake_responder(sock, timeout=10.0, confirm=True, **kw):
    """Run the responder's side on an accepted socket; returns a Conn. A
    refused msg1 gets the refusal the library would send (then HandshakeError).
    confirm: send the first record (a keepalive) at once, as the library does:
    the initiator counts the connection as up only when it arrives."""
    hs = Handshake(False, **kw)
    deadline = time.monotonic() + timeout
    try:
        msg2 = hs.on_msg1(_hs_frame(sock, deadline, "msg1"))
    except HandshakeError as e:
        if e.refusal:
            sock.sendall(frame(e.refusal))
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        raise
    sock.sendall(frame(msg2))
    hs.on_msg3(_hs_frame(sock, deadline, "msg3"))
    conn = Conn(sock, hs, timeout)
    if confirm:
        conn.send_ctrl(CTRL_KEEPALIVE)
    return conn


def open_socket(host, port, timeout=10.0, source=None, avoid=None):
    """A connected TCP socket with TCP_NODELAY (source: a local address to bind).

    avoid: a set of local ports not to use (the one chosen is added to it).
    Tests that name connections by "IP:PORT" need it: once a node has
    closed a connection, the kernel may hand its port to the next one."""
    if avoid is None:
        s = socket.create_connection((host, port), timeout=timeout,
                                     source_address=(source, 0) if source else None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s
    for attempt in range(3):
        s = _bind_unused(source or "127.0.0.1", avoid)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            # bound before connect, the port skipped the 4-tuple check an
            # unbound connect() makes: the server may still hold that tuple
            # in TIME_WAIT and refuse it; another port gets through
            s.close()
            if attempt == 2:
                raise
            continue
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


def _bind_unused(addr, avoid):
    """A TCP socket bound to addr on a kernel-chosen port not in avoid."""
    for _ in range(1000):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((addr, 0))
        p = s.getsockname()[1]
        if p not in avoid:
            avoid.add(p)
            return s
        s.close()
    raise RuntimeError("open_socket: no unused local port in 1000 tries")


def connect(host, port, timeout=10.0, source=None, **kw):
    """Dial a node and complete the handshake as initiator; returns a Conn.
    source: the local address to dial from (e.g. 127.0.0.2: another source IP)."""
    s = open_socket(host, port, timeout, source)
    try:
        return handshake_initiator(s, timeout, **kw)
    except BaseException:
        s.close()
        raise


class Listener:
    """A listening socket on 127.0.0.1 (random port): accept() completes the
    responder's handshake with whoever dialed and returns a Conn."""

    def __init__(self, host="127.0.0.1", port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def accept_socket(self, timeout=10.0):
        self.sock.settimeout(timeout)
        s, _ = self.sock.accept()
        s.settimeout(timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def accept(self, timeout=10.0, **kw):
        s = self.accept_socket(timeout)
        try:
            return handshake_responder(s, timeout, **kw)
        except BaseException:
            s.close()
            raise

    def close(self):
        self.sock.close()


# --- self-test: both roles against each other, no crust needed ----------------------------------


def _swallow(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except (WireError, OSError, EOFError):
        pass


def self_test():
    """Python initiator against Python responder over a socketpair, both modes;
    and the rekey boundary (both ends switch keys at record 2^24)."""
    import threading
    for tracer in (False, True):
        a, b = socket.socketpair()
        ia, ib = Identity(), Identity()
        out = {}

        def responder():
            out["r"] = handshake_responder(b, identity=ib, tracer=tracer, listen_port=7,
                                           network="net")

        t = threading.Thread(target=responder)
        t.start()
        ci = handshake_initiator(a, identity=ia, tracer=tracer, listen_port=9, network="net",
                                 expected_peer=ib.peer)
        t.join()
        cr = out["r"]
        assert ci.peer == ib.peer and cr.peer == ia.peer, "ids"
        assert ci.peer_port == 7 and cr.peer_port == 9, "ports"
        assert ci.transcript == cr.transcript, "transcript"
        assert ci.first_record == [(True, bytes([CTRL_KEEPALIVE]))], ci.first_record
        ci.send(b"one", b"", ctrl(CTRL_KEEPALIVE), b"three")
        assert cr.recv_msgs() == [(False, b"one"), (False, b""), (True, b"\x01"),
                                  (False, b"three")]
        cr.send(b"back")
        assert ci.recv_user() == b"back"
        rec = ci.sealed(b"x")
        a.sendall(rec + rec)
        assert cr.recv_user() == b"x"
        try:
            cr.recv_record()
            raise AssertionError("a replayed record opened")
        except IntegrityError:
            pass
        a.close()
        b.close()
    # rekey: both directions at the same record
    k1, k2 = os.urandom(32), os.urandom(32)
    s1, s2 = Session(k1, k2), Session(k2, k1)
    s1.tx.counter = s2.rx.counter = REKEY_RECORDS - 1
    for i in range(3):
        assert s2.open(s1.seal(b"r%d" % i)) == b"r%d" % i
    assert s1.tx.key != k1 and s1.tx.key == s2.rx.key == H("crust v2 rekey", key=k1)
    # a refusal reaches the initiator
    a, b = socket.socketpair()
    t = threading.Thread(target=lambda: _swallow(handshake_responder, b, network="one"))
    t.start()
    try:
        handshake_initiator(a, network="two")
        raise AssertionError("another network accepted")
    except HandshakeError as e:
        assert e.reason == "refused by peer: it belongs to another network", e.reason
    t.join()
    a.close()
    b.close()
    # refusals word for word like the C library
    for bad, why in [(header(1, magic=b"XRST") + bytes(40), "bad magic"),
                     (header(1, version=1) + bytes(40), "unsupported protocol version 1"),
                     (header(1) + b"\1" * 8 + bytes(32), "another network"),
                     (header(1, FLAG_TRACER) + bytes(40), "tracer mode mismatch: we are secure"),
                     (header(1) + bytes(40), "bad ephemeral key")]:
        try:
            Handshake(False).on_msg1(bad)
            raise AssertionError("accepted " + why)
        except HandshakeError as e:
            assert why in e.reason, (why, e.reason)
    print("crustwire self-test: ok")


if __name__ == "__main__":
    self_test()
