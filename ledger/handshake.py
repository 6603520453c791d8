"""Peer handshake records (see docs/P2P.md for the protocol).

Two records, both canonical CBOR like everything else we hash or sign:

* ``Hello`` (sent in the clear, first by the dialer, then by the listener):
  protocol version, chain id, a fresh X25519 ephemeral public key, the
  sender's clock and its role;
* ``Auth`` (sent encrypted, after both Hellos): the sender's ed25519 node key
  and its signature over the handshake transcript hash, its role and the chain
  id, under the domain tag ``radledger/p2p-auth/v1``.

The transcript hash covers both Hellos byte for byte, so each signature is
bound to both sides' fresh ephemeral keys: a recorded handshake cannot be
replayed, and a signature made in one role cannot be reflected in the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ledger import codec
from ledger.errors import ValidationError
from ledger.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, verify
from ledger.schema import Bytes, FieldSpec, Schema, Text, UInt
from ledger.types import CHAIN_ID_PATTERN, sha256

P2P_VERSION: Final = 1
AUTH_DOMAIN: Final = b"radledger/p2p-auth/v1"
TRANSCRIPT_DOMAIN: Final = b"radledger/p2p-transcript/v1"
X25519_BYTES: Final = 32


class Role(IntEnum):
    DIALER = 0
    LISTENER = 1


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    chain_id: str
    ephemeral: bytes
    time_ms: int
    role: Role

    def __post_init__(self) -> None:
        if len(self.ephemeral) != X25519_BYTES:
            raise ValidationError("ephemeral key must be 32 bytes")
        try:
            object.__setattr__(self, "role", Role(self.role))
        except ValueError:
            raise ValidationError(f"unknown role {self.role!r}") from None

    def encode(self) -> bytes:
        return HELLO_SCHEMA.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        return HELLO_SCHEMA.decode(data)


@dataclass(frozen=True, slots=True)
class Auth:
    node_key: bytes
    sig: bytes

    def __post_init__(self) -> None:
        if len(self.node_key) != PUBLIC_KEY_BYTES or len(self.sig) != SIGNATURE_BYTES:
            raise ValidationError("node key is 32 bytes and signature 64")

    @classmethod
    def create(cls, key: SigningKey, *, chain_id: str, transcript: bytes, role: Role) -> Auth:
        unsigned = cls(key.public_key, bytes(SIGNATURE_BYTES))
        sig = key.sign(AUTH_DOMAIN, auth_payload(chain_id, transcript, role, key.public_key))
        return dataclasses.replace(unsigned, sig=sig)

    def verify(self, *, chain_id: str, transcript: bytes, role: Role) -> bool:
        payload = auth_payload(chain_id, transcript, role, self.node_key)
        return verify(self.node_key, AUTH_DOMAIN, payload, self.sig)

    def encode(self) -> bytes:
        return AUTH_SCHEMA.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> Auth:
        return AUTH_SCHEMA.decode(data)


def auth_payload(chain_id: str, transcript: bytes, role: Role, node_key: bytes) -> bytes:
    """What an Auth signature covers (after the domain tag and a NUL byte)."""
    return codec.encode(
        {"chain": chain_id, "transcript": transcript, "role": int(role), "node_key": node_key}
    )


def transcript_hash(dialer_hello: bytes, listener_hello: bytes) -> bytes:
    """SHA-256 over the domain tag and both Hellos exactly as they were sent."""
    return sha256(
        TRANSCRIPT_DOMAIN
        + b"\x00"
        + len(dialer_hello).to_bytes(4, "big")
        + dialer_hello
        + len(listener_hello).to_bytes(4, "big")
        + listener_hello
    )


HELLO_SCHEMA: Final = Schema[Hello](
    "hello",
    Hello,
    [
        FieldSpec("v", "version", UInt(0xFFFF)),
        FieldSpec("chain", "chain_id", Text(64, CHAIN_ID_PATTERN)),
        FieldSpec("eph", "ephemeral", Bytes(size=X25519_BYTES)),
        FieldSpec("time", "time_ms", UInt()),
        FieldSpec("role", "role", UInt(1)),
    ],
    max_bytes=256,
)
AUTH_SCHEMA: Final = Schema[Auth](
    "auth",
    Auth,
    [
        FieldSpec("node_key", "node_key", Bytes(size=PUBLIC_KEY_BYTES)),
        FieldSpec("sig", "sig", Bytes(size=SIGNATURE_BYTES)),
    ],
    max_bytes=256,
)
