"""docs/PROTOCOL.md's test vectors: our code, an independent re-derivation, and
the document itself must all agree byte for byte."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import cbor2
import nacl.signing
import pytest

from ledger import merkle
from ledger.keys import SigningKey
from ledger.types import BlockHeader, Tx, Vote, VoteKind

ROOT = Path(__file__).resolve().parent.parent
VECTORS: dict[str, Any] = json.loads((ROOT / "tests/vectors/protocol.json").read_text())


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


def test_tx_vector() -> None:
    v = VECTORS["tx"]
    key = SigningKey(hx(v["signer_seed"]))
    assert key.public_key.hex() == v["signer_public_key"]
    tx = Tx.create(key, chain_id=v["chain_id"], kind=v["kind"], nonce=v["nonce"], body=v["body"])
    assert tx.unsigned_bytes().hex() == v["unsigned_encoding"]
    assert tx.sig.hex() == v["signature"]
    assert tx.encode().hex() == v["encoding"]
    assert tx.hash.hex() == v["hash"]
    assert Tx.decode(hx(v["encoding"])) == tx


def test_tx_vector_independently() -> None:
    """Re-derive with cbor2, hashlib and raw PyNaCl: no radledger code involved."""
    v = VECTORS["tx"]
    unsigned = {
        "v": 1,
        "chain": v["chain_id"],
        "kind": v["kind"],
        "signer": hx(v["signer_public_key"]),
        "nonce": v["nonce"],
        "body": v["body"],
    }
    encoded_unsigned = cbor2.dumps(unsigned, canonical=True)
    assert encoded_unsigned.hex() == v["unsigned_encoding"]
    sign_bytes = b"radledger/tx/v1\x00" + encoded_unsigned
    assert sign_bytes.hex() == v["sign_bytes"]
    signature = nacl.signing.SigningKey(hx(v["signer_seed"])).sign(sign_bytes).signature
    assert signature.hex() == v["signature"]
    full = cbor2.dumps({**unsigned, "sig": signature}, canonical=True)
    assert full.hex() == v["encoding"]
    assert hashlib.sha256(full).hexdigest() == v["hash"]


def test_header_vector() -> None:
    v = VECTORS["header"]
    header = BlockHeader(
        version=1,
        chain_id=v["chain_id"],
        height=v["height"],
        view=v["view"],
        prev_hash=hx(v["prev_hash"]),
        time_ms=v["time_ms"],
        proposer=hx(v["proposer"]),
        tx_root=hx(v["tx_root"]),
        state_root=hx(v["state_root"]),
        evidence_root=hx(v["evidence_root"]),
    )
    assert header.encode().hex() == v["encoding"]
    assert header.hash.hex() == v["block_hash"]
    # tx_root is the RFC 6962 root over the one transaction hash.
    leaf = hashlib.sha256(b"\x00" + hx(VECTORS["tx"]["hash"])).hexdigest()
    assert leaf == v["tx_root"] == merkle.root([hx(VECTORS["tx"]["hash"])]).hex()
    assert v["evidence_root"] == hashlib.sha256(b"").hexdigest()
    independent = cbor2.dumps(
        {
            "v": 1,
            "chain": v["chain_id"],
            "height": v["height"],
            "view": v["view"],
            "prev": hx(v["prev_hash"]),
            "time": v["time_ms"],
            "proposer": hx(v["proposer"]),
            "tx_root": hx(v["tx_root"]),
            "state_root": hx(v["state_root"]),
            "ev_root": hx(v["evidence_root"]),
        },
        canonical=True,
    )
    assert independent.hex() == v["encoding"]


def test_vote_vector() -> None:
    v = VECTORS["vote"]
    key = SigningKey(hx(v["signer_seed"]))
    vote = Vote.create(
        key,
        chain_id=v["chain_id"],
        kind=VoteKind(v["kind"]),
        height=v["height"],
        view=v["view"],
        block_hash=hx(v["block_hash"]),
    )
    assert vote.validator.hex() == v["validator"]
    assert vote.unsigned_bytes().hex() == v["unsigned_encoding"]
    assert (b"radledger/vote/v1\x00" + vote.unsigned_bytes()).hex() == v["sign_bytes"]
    assert vote.sig.hex() == v["signature"]
    assert vote.encode().hex() == v["encoding"]
    nacl.signing.VerifyKey(hx(v["validator"])).verify(hx(v["sign_bytes"]), hx(v["signature"]))


def _hex_strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [h for value in obj.values() for h in _hex_strings(value)]
    if isinstance(obj, str) and len(obj) >= 64 and re.fullmatch(r"[0-9a-f]+", obj):
        return [obj]
    return []


@pytest.mark.parametrize("section", ["tx", "header", "vote"])
def test_protocol_document_quotes_the_vectors(section: str) -> None:
    """The spec cannot drift from the code: every vector appears in it verbatim
    (hex may be wrapped across lines in the document)."""
    document = re.sub(r"\s+", "", (ROOT / "docs/PROTOCOL.md").read_text())
    missing = [h[:16] + "..." for h in _hex_strings(VECTORS[section]) if h not in document]
    assert missing == []
