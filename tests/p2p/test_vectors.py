"""docs/P2P.md's test vectors: our code, an independent re-derivation (cbor2,
hashlib, raw libsodium) and the document itself agree byte for byte.

Regenerate ``p2p_vectors.json`` (only when the protocol changes on purpose) with
``python -m tests.p2p.test_vectors``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cbor2
import nacl.bindings
import nacl.public
import nacl.signing

from ledger.handshake import Role
from ledger.keys import SigningKey
from p2p.frames import Kind, encode_batch
from p2p.secure import Handshake, PeerPolicy

HERE = Path(__file__).resolve().parent
VECTORS_FILE = HERE / "p2p_vectors.json"
DOC = HERE.parents[1] / "docs" / "P2P.md"

CHAIN = "radledger-vectors"
DIALER_SEED, LISTENER_SEED = b"\x11" * 32, b"\x22" * 32
DIALER_EPH, LISTENER_EPH = b"\x33" * 32, b"\x44" * 32
DIALER_TIME, LISTENER_TIME = 1_767_225_600_000, 1_767_225_600_123
FIRST_BATCH = [(Kind.CONSENSUS, b"\x01\x02\x03"), (Kind.TX, b"")]


def with_our_code() -> dict[str, str]:
    dialer_key, listener_key = SigningKey(DIALER_SEED), SigningKey(LISTENER_SEED)
    allowed = frozenset({dialer_key.public_key, listener_key.public_key})
    dialer = Handshake(
        PeerPolicy(CHAIN, dialer_key, allowed),
        Role.DIALER,
        DIALER_TIME,
        expected_peer=listener_key.public_key,
        ephemeral=nacl.public.PrivateKey(DIALER_EPH),
    )
    listener = Handshake(
        PeerPolicy(CHAIN, listener_key, allowed),
        Role.LISTENER,
        LISTENER_TIME,
        ephemeral=nacl.public.PrivateKey(LISTENER_EPH),
    )
    (hello_d,) = dialer.start()
    (hello_l,) = listener.receive(hello_d, LISTENER_TIME)
    (auth_d,) = dialer.receive(hello_l, DIALER_TIME)
    (auth_l,) = listener.receive(auth_d, LISTENER_TIME)
    dialer.receive(auth_l, DIALER_TIME)
    assert dialer.session is not None
    plaintext = encode_batch(FIRST_BATCH)
    return {
        "hello_dialer": hello_d.hex(),
        "hello_listener": hello_l.hex(),
        "sealed_auth_dialer": auth_d.hex(),
        "sealed_auth_listener": auth_l.hex(),
        "first_frame_plaintext": plaintext.hex(),
        "first_frame_dialer": dialer.session.channel.seal(plaintext).hex(),
    }


def independently() -> dict[str, str]:
    """Everything from the document's rules, with no radledger code."""

    def x25519_public(private: bytes) -> bytes:
        return nacl.bindings.crypto_scalarmult_base(private)

    def hello(eph_private: bytes, time_ms: int, role: int) -> bytes:
        fields = {"v": 1, "chain": CHAIN, "eph": x25519_public(eph_private), "time": time_ms}
        return cbor2.dumps({**fields, "role": role}, canonical=True)

    hello_d, hello_l = hello(DIALER_EPH, DIALER_TIME, 0), hello(LISTENER_EPH, LISTENER_TIME, 1)
    transcript = hashlib.sha256(
        b"radledger/p2p-transcript/v1\x00"
        + len(hello_d).to_bytes(4, "big")
        + hello_d
        + len(hello_l).to_bytes(4, "big")
        + hello_l
    ).digest()
    shared = nacl.bindings.crypto_scalarmult(DIALER_EPH, x25519_public(LISTENER_EPH))

    def key(direction: bytes) -> bytes:
        return hashlib.blake2b(
            transcript, digest_size=32, key=shared, person=b"radledger-" + direction
        ).digest()

    d2l, l2d = key(b"d2l"), key(b"l2d")

    def nonce(counter: int) -> bytes:
        return bytes(4) + counter.to_bytes(8, "big")

    def auth(seed: bytes, role: int) -> tuple[bytes, bytes, bytes]:
        signer = nacl.signing.SigningKey(seed)
        node_key = bytes(signer.verify_key)
        payload = cbor2.dumps(
            {"chain": CHAIN, "transcript": transcript, "role": role, "node_key": node_key},
            canonical=True,
        )
        sig = signer.sign(b"radledger/p2p-auth/v1\x00" + payload).signature
        record = cbor2.dumps({"node_key": node_key, "sig": sig}, canonical=True)
        return payload, sig, record

    payload_d, sig_d, record_d = auth(DIALER_SEED, 0)
    payload_l, sig_l, record_l = auth(LISTENER_SEED, 1)
    aead = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt
    first = b"".join(
        bytes([kind]) + len(payload).to_bytes(4, "big") + payload for kind, payload in FIRST_BATCH
    )
    return {
        "chain_id": CHAIN,
        "dialer_node_seed": DIALER_SEED.hex(),
        "dialer_node_key": bytes(nacl.signing.SigningKey(DIALER_SEED).verify_key).hex(),
        "listener_node_seed": LISTENER_SEED.hex(),
        "listener_node_key": bytes(nacl.signing.SigningKey(LISTENER_SEED).verify_key).hex(),
        "dialer_ephemeral_private": DIALER_EPH.hex(),
        "dialer_ephemeral_public": x25519_public(DIALER_EPH).hex(),
        "listener_ephemeral_private": LISTENER_EPH.hex(),
        "listener_ephemeral_public": x25519_public(LISTENER_EPH).hex(),
        "dialer_time_ms": str(DIALER_TIME),
        "listener_time_ms": str(LISTENER_TIME),
        "hello_dialer": hello_d.hex(),
        "hello_listener": hello_l.hex(),
        "transcript": transcript.hex(),
        "shared_secret": shared.hex(),
        "key_d2l": d2l.hex(),
        "key_l2d": l2d.hex(),
        "auth_payload_dialer": payload_d.hex(),
        "auth_signature_dialer": sig_d.hex(),
        "auth_dialer": record_d.hex(),
        "sealed_auth_dialer": aead(record_d, None, nonce(0), d2l).hex(),
        "auth_payload_listener": payload_l.hex(),
        "auth_signature_listener": sig_l.hex(),
        "auth_listener": record_l.hex(),
        "sealed_auth_listener": aead(record_l, None, nonce(0), l2d).hex(),
        "first_frame_plaintext": first.hex(),
        "first_frame_dialer": aead(first, None, nonce(1), d2l).hex(),
    }


def stored() -> dict[str, str]:
    vectors: dict[str, str] = json.loads(VECTORS_FILE.read_text())
    return vectors


def test_our_code_produces_the_vectors() -> None:
    expected = stored()
    for name, value in with_our_code().items():
        assert value == expected[name], name


def test_an_independent_derivation_produces_the_vectors() -> None:
    assert independently() == stored()


def test_the_document_carries_every_vector() -> None:
    text = DOC.read_text()
    flat = "".join(text.split())  # long hex strings are wrapped in the document
    for name, value in stored().items():
        assert value in flat, f"docs/P2P.md lacks {name}"


if __name__ == "__main__":
    VECTORS_FILE.write_text(json.dumps(independently(), indent=2) + "\n")
    print(f"wrote {VECTORS_FILE}")
