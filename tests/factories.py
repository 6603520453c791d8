"""Builders of real ledger objects shared by tests of several packages."""

from __future__ import annotations

import time

from ledger.genesis import ConsensusParams, Genesis, Site, Validator
from ledger.keys import SigningKey
from ledger.types import Tx, sha256


def make_genesis(n: int = 4) -> Genesis:
    sites = tuple(
        Site(f"site{i}", f"Hospital {i}", SigningKey(bytes([50 + i]) * 32).public_key)
        for i in range(n)
    )
    validators = tuple(
        Validator(
            name=f"val{i}",
            site_id=f"site{i}",
            validator_key=SigningKey(bytes([i + 1]) * 32).public_key,
            node_key=SigningKey(bytes([i + 100]) * 32).public_key,
            address=f"127.0.0.1:{26600 + i}",
        )
        for i in range(n)
    )
    return Genesis(1, "radledger-test", 1_700_000_000_000, validators, sites, ConsensusParams())


def admin_key(site: int) -> SigningKey:
    """The admin key of ``site{site}`` in :func:`make_genesis`."""
    return SigningKey(bytes([50 + site]) * 32)


def enroll_tx(
    admin: SigningKey,
    nonce: int,
    *,
    chain_id: str = "radledger-test",
    site: str = "site0",
    kind: str = "member.enroll",
    time_ms: int | None = None,
) -> Tx:
    """A valid registry transaction needing no prior state: a site admin enrolls a
    fresh researcher (a different one per admin and nonce)."""
    member = SigningKey(sha256(admin.public_key + nonce.to_bytes(8, "big"))).public_key
    body = {
        "member": member,
        "site": site,
        "role": "researcher",
        "reason": "joins the imaging study team",
        "time_ms": int(time.time() * 1000) if time_ms is None else time_ms,
    }
    return Tx.create(admin, chain_id=chain_id, kind=kind, nonce=nonce, body=body)
