"""Builders of real ledger objects shared by tests of several packages."""

from __future__ import annotations

from ledger.genesis import ConsensusParams, Genesis, Site, Validator
from ledger.keys import SigningKey


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
