"""The peer handshake and the encrypted channel, sans-I/O.

Handshake (docs/P2P.md has the byte-level description)::

    dialer                                         listener
      Hello{v, chain, eph_D, time, DIALER}  ---->
                                            <----  Hello{v, chain, eph_L, time, LISTENER}
      both: shared = X25519(eph, peer eph); T = transcript(Hello_D, Hello_L)
            keys  = BLAKE2b(key=shared, person=direction, T)
      seal(Auth{key_D, sig_D(chain, T, DIALER)})  ---->
                    listener checks key_D is allowed and sig_D verifies, then
                                            <----  seal(Auth{key_L, sig_L(chain, T, LISTENER)})
      dialer checks key_L is allowed (and is the peer it dialed) and sig_L verifies

Both sides prove possession of their node key over a transcript bound to both
fresh ephemeral keys and the chain id; identities travel encrypted; the
listener reveals itself only to an authenticated dialer. Every later frame is
ChaCha20-Poly1305 (IETF) with a per-direction key and a counter nonce that is
never sent: a replayed, dropped or reordered frame fails authentication and
the connection is closed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.public

from ledger.errors import DecodeError
from ledger.handshake import P2P_VERSION, Auth, Hello, Role, transcript_hash
from ledger.keys import SigningKey

KEY_BYTES: Final = 32
TAG_BYTES: Final = 16
_NONCE_PREFIX: Final = b"\x00\x00\x00\x00"
_MAX_COUNTER: Final = (1 << 64) - 1


class Refusal(Enum):
    """Why a handshake was refused: one label per metric series and log line."""

    MALFORMED = "malformed"
    VERSION = "version"
    CHAIN_ID = "chain_id"
    CLOCK = "clock"
    ROLE = "role"
    WEAK_KEY = "weak_key"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    WRONG_PEER = "wrong_peer"
    SELF = "self"
    DECRYPT = "decrypt"
    UNEXPECTED = "unexpected"


class HandshakeError(Exception):
    def __init__(self, reason: Refusal, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"handshake refused ({reason.value}): {detail}")


class ChannelError(Exception):
    """A frame failed authentication (tampered, replayed, reordered) or the
    counter ran out; the connection must be closed."""


class SecureChannel:
    """One connection's two directions of ChaCha20-Poly1305 with counter nonces."""

    __slots__ = ("_recv_counter", "_recv_key", "_send_counter", "_send_key")

    def __init__(self, send_key: bytes, recv_key: bytes) -> None:
        self._send_key = send_key
        self._recv_key = recv_key
        self._send_counter = 0
        self._recv_counter = 0

    @staticmethod
    def _nonce(counter: int) -> bytes:
        return _NONCE_PREFIX + counter.to_bytes(8, "big")

    def seal(self, plaintext: bytes) -> bytes:
        if self._send_counter >= _MAX_COUNTER:
            raise ChannelError("send counter exhausted; reconnect")
        nonce = self._nonce(self._send_counter)
        self._send_counter += 1
        return nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            plaintext, None, nonce, self._send_key
        )

    def open(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) < TAG_BYTES:
            raise ChannelError("frame shorter than its authentication tag")
        if self._recv_counter >= _MAX_COUNTER:
            raise ChannelError("receive counter exhausted; reconnect")
        nonce = self._nonce(self._recv_counter)
        try:
            plaintext = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
                ciphertext, None, nonce, self._recv_key
            )
        except nacl.exceptions.CryptoError:
            raise ChannelError(
                f"frame {self._recv_counter} failed authentication "
                "(tampered, replayed or out of order)"
            ) from None
        self._recv_counter += 1
        return plaintext


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """Who we are and whom we accept."""

    chain_id: str
    node_key: SigningKey
    allowed: frozenset[bytes]
    max_clock_skew_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class Session:
    """The outcome of a successful handshake."""

    peer_key: bytes
    role: Role
    channel: SecureChannel


def _derive(shared: bytes, transcript: bytes, direction: bytes) -> bytes:
    return hashlib.blake2b(
        transcript, digest_size=KEY_BYTES, key=shared, person=b"radledger-" + direction
    ).digest()


class Handshake:
    """One side of the handshake. Feed it the peer's messages; send what it returns.

    ``expected_peer`` (dialer only) is the node key we meant to reach: a
    different, even if allowed, key is refused.
    """

    def __init__(
        self,
        policy: PeerPolicy,
        role: Role,
        now_ms: int,
        *,
        expected_peer: bytes | None = None,
        ephemeral: nacl.public.PrivateKey | None = None,
    ) -> None:
        self._policy = policy
        self._role = role
        self._expected = expected_peer
        self._eph = ephemeral or nacl.public.PrivateKey.generate()
        self._hello = Hello(
            P2P_VERSION, policy.chain_id, bytes(self._eph.public_key), now_ms, role
        ).encode()
        self._peer_hello: bytes | None = None
        self._channel: SecureChannel | None = None
        self._transcript = b""
        self._session: Session | None = None
        self._step = 0
        self._failed = False

    @property
    def session(self) -> Session | None:
        return self._session

    def start(self) -> list[bytes]:
        """The messages to send first: the dialer's Hello; nothing for a listener."""
        return [self._hello] if self._role is Role.DIALER else []

    def receive(self, data: bytes, now_ms: int) -> list[bytes]:
        """Process the peer's next handshake message; return the replies to send."""
        if self._session is not None:
            raise HandshakeError(Refusal.UNEXPECTED, "handshake already complete")
        if self._failed:
            raise HandshakeError(Refusal.UNEXPECTED, "handshake already refused")
        self._step += 1
        try:
            if self._step == 1:
                return self._on_hello(data, now_ms)
            if self._step == 2:
                return self._on_auth(data)
        except HandshakeError:
            self._failed = True  # a refused handshake stays refused
            raise
        raise HandshakeError(Refusal.UNEXPECTED, "too many handshake messages")

    def _on_hello(self, data: bytes, now_ms: int) -> list[bytes]:
        try:
            hello = Hello.decode(data)
        except DecodeError as exc:
            raise HandshakeError(Refusal.MALFORMED, f"Hello does not decode: {exc}") from None
        if hello.version != P2P_VERSION:
            raise HandshakeError(Refusal.VERSION, f"peer speaks version {hello.version}")
        if hello.chain_id != self._policy.chain_id:
            raise HandshakeError(Refusal.CHAIN_ID, f"peer is on chain {hello.chain_id!r}")
        if abs(hello.time_ms - now_ms) > self._policy.max_clock_skew_ms:
            raise HandshakeError(
                Refusal.CLOCK, f"peer clock differs by {hello.time_ms - now_ms} ms"
            )
        peer_role = Role.LISTENER if self._role is Role.DIALER else Role.DIALER
        if hello.role is not peer_role:
            raise HandshakeError(Refusal.ROLE, f"peer claims role {hello.role.name}")
        try:
            shared = nacl.bindings.crypto_scalarmult(bytes(self._eph), hello.ephemeral)
        except nacl.exceptions.RuntimeError:
            raise HandshakeError(Refusal.WEAK_KEY, "peer ephemeral key is of low order") from None
        if shared == bytes(KEY_BYTES):
            raise HandshakeError(Refusal.WEAK_KEY, "all-zero shared secret")
        self._peer_hello = data
        dialer_hello, listener_hello = (
            (self._hello, data) if self._role is Role.DIALER else (data, self._hello)
        )
        self._transcript = transcript_hash(dialer_hello, listener_hello)
        d2l = _derive(shared, self._transcript, b"d2l")
        l2d = _derive(shared, self._transcript, b"l2d")
        self._channel = (
            SecureChannel(d2l, l2d) if self._role is Role.DIALER else SecureChannel(l2d, d2l)
        )
        if self._role is Role.DIALER:
            return [self._channel.seal(self._auth().encode())]
        return [self._hello]

    def _auth(self) -> Auth:
        return Auth.create(
            self._policy.node_key,
            chain_id=self._policy.chain_id,
            transcript=self._transcript,
            role=self._role,
        )

    def _on_auth(self, data: bytes) -> list[bytes]:
        channel = self._channel
        assert channel is not None  # set by _on_hello
        try:
            auth = Auth.decode(channel.open(data))
        except ChannelError as exc:
            raise HandshakeError(Refusal.DECRYPT, str(exc)) from None
        except DecodeError as exc:
            raise HandshakeError(Refusal.MALFORMED, f"Auth does not decode: {exc}") from None
        peer_role = Role.LISTENER if self._role is Role.DIALER else Role.DIALER
        own_key = self._policy.node_key.public_key
        if auth.node_key != own_key and auth.node_key not in self._policy.allowed:
            raise HandshakeError(Refusal.UNKNOWN_KEY, f"node key {auth.node_key.hex()} is unknown")
        # The signature is checked before SELF and WRONG_PEER: what the caller does
        # on those refusals (stop dialing an address) must rest on a proven key,
        # not on a claim that anyone on the path could make.
        if not auth.verify(
            chain_id=self._policy.chain_id, transcript=self._transcript, role=peer_role
        ):
            raise HandshakeError(Refusal.BAD_SIGNATURE, "Auth signature does not verify")
        if auth.node_key == own_key:
            raise HandshakeError(Refusal.SELF, "connected to ourselves")
        if self._expected is not None and auth.node_key != self._expected:
            raise HandshakeError(
                Refusal.WRONG_PEER, f"expected {self._expected.hex()}, got {auth.node_key.hex()}"
            )
        self._session = Session(auth.node_key, self._role, channel)
        if self._role is Role.LISTENER:
            return [channel.seal(self._auth().encode())]
        return []
