"""Genesis: JSON round trip, identity hash, validation with clear errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import GenesisError, ValidationError
from ledger.genesis import ConsensusParams, Genesis
from tests.factories import make_genesis


def test_json_round_trip(tmp_path: Path) -> None:
    genesis = make_genesis()
    path = tmp_path / "genesis.json"
    genesis.save(path)
    loaded = Genesis.load(path)
    assert loaded == genesis
    assert loaded.hash == genesis.hash
    assert Genesis.decode(genesis.encode()) == genesis
    assert json.loads(path.read_text())["chain_id"] == "radledger-test"


def test_derived_facts() -> None:
    genesis = make_genesis(7)
    assert genesis.f == 2
    assert genesis.quorum == 5
    assert genesis.primary(0).name == "val0"
    assert genesis.primary(9).name == "val2"
    assert genesis.site("site3") is not None
    assert genesis.site("nowhere") is None


def test_hash_changes_with_any_field() -> None:
    genesis = make_genesis()
    changed = dataclasses.replace(genesis, params=ConsensusParams(view_timeout_ms=3000))
    assert changed.hash != genesis.hash
    assert dataclasses.replace(genesis, chain_id="other").hash != genesis.hash


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: {"validators": g.validators[:3]}, "at least 4 validators"),
        (lambda g: {"validators": (*g.validators[:3], g.validators[0])}, "unique"),
        (lambda g: {"sites": g.sites[1:]}, "unknown site"),
        (lambda g: {"sites": (*g.sites, g.sites[0])}, "site ids must be unique"),
        (lambda g: {"version": 2}, "version"),
        (lambda g: {"chain_id": "bad id"}, "chain id"),
    ],
)
def test_rejects_inconsistent_genesis(mutate: Any, message: str) -> None:
    genesis = make_genesis()
    with pytest.raises(ValidationError, match=message):
        dataclasses.replace(genesis, **mutate(genesis))


def test_rejects_bad_validator_and_params() -> None:
    with pytest.raises(ValidationError, match="host:port"):
        dataclasses.replace(make_genesis().validators[0], address="nohost")
    with pytest.raises(ValidationError, match="view_timeout_ms"):
        ConsensusParams(view_timeout_ms=1)
    with pytest.raises(ValidationError, match="max_tx_bytes"):
        ConsensusParams(max_block_bytes=2048, max_tx_bytes=4096)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    with pytest.raises(GenesisError, match="cannot read") as info:
        Genesis.load(missing)
    assert str(missing) in str(info.value)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(GenesisError, match="not valid JSON"):
        Genesis.load(broken)
    document = make_genesis().to_json()
    document["validators"][0]["validator_key"] = "zz"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(GenesisError, match=r"validators\[0\].validator_key"):
        Genesis.load(bad)
    document = make_genesis().to_json()
    document["surprise"] = 1
    bad.write_text(json.dumps(document))
    with pytest.raises(GenesisError, match="unknown fields"):
        Genesis.load(bad)
    document = make_genesis().to_json()
    document["validators"] = document["validators"][:2]
    bad.write_text(json.dumps(document))
    with pytest.raises(GenesisError, match="at least 4"):
        Genesis.load(bad)
