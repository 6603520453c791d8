"""Genesis: the chain's founding document.

A genesis names the chain, its validators (consensus key, node key, network
address, owning site), the consortium's sites with their admin keys, and the
consensus parameters. On disk it is JSON (``genesis.json``, bytes as hex); its
identity is the SHA-256 of its canonical encoding, and block 1's ``prev_hash``
is that hash, so every block chains back to exactly one genesis.

An auditor holding only this file can check a commit certificate: the
validator keys and the quorum rule are all here.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ledger.errors import DecodeError, GenesisError, ValidationError
from ledger.keys import PUBLIC_KEY_BYTES
from ledger.schema import Array, Bytes, FieldSpec, Nested, Schema, Text, UInt
from ledger.types import (
    CHAIN_ID_PATTERN,
    MAX_BLOCK_BYTES,
    MAX_BLOCK_TXS,
    MAX_TX_BYTES,
    MAX_VALIDATORS,
    max_faulty,
    quorum_size,
    sha256,
)

GENESIS_VERSION: Final = 1
MIN_VALIDATORS: Final = 4
NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
ADDRESS_PATTERN: Final = r"[A-Za-z0-9.\-\[\]:]{1,253}:[0-9]{1,5}"
_ADDRESS_RE: Final = re.compile(ADDRESS_PATTERN)
_NAME_RE: Final = re.compile(NAME_PATTERN)


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or _NAME_RE.fullmatch(value) is None:
        raise ValidationError(f"{what} {value!r} does not match {NAME_PATTERN}")


@dataclass(frozen=True, slots=True)
class Site:
    """A consortium member (a research site) and the key that administers it."""

    site_id: str
    name: str
    admin_key: bytes

    def __post_init__(self) -> None:
        _check_name("site id", self.site_id)
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 128:
            raise ValidationError("site name must be 1-128 characters")
        if not isinstance(self.admin_key, bytes) or len(self.admin_key) != PUBLIC_KEY_BYTES:
            raise ValidationError(f"admin key of site {self.site_id} must be 32 bytes")


@dataclass(frozen=True, slots=True)
class Validator:
    """A consensus participant run by a site."""

    name: str
    site_id: str
    validator_key: bytes
    node_key: bytes
    address: str

    def __post_init__(self) -> None:
        _check_name("validator name", self.name)
        _check_name("site id", self.site_id)
        for what, key in (("validator key", self.validator_key), ("node key", self.node_key)):
            if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_BYTES:
                raise ValidationError(f"{what} of {self.name} must be 32 bytes")
        if not isinstance(self.address, str) or _ADDRESS_RE.fullmatch(self.address) is None:
            raise ValidationError(f"address {self.address!r} of {self.name} is not host:port")
        port = int(self.address.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise ValidationError(f"address {self.address!r} of {self.name}: bad port")


@dataclass(frozen=True, slots=True)
class ConsensusParams:
    """Parameters every validator must agree on. Units are in the names."""

    view_timeout_ms: int = 2_000
    max_block_txs: int = 5_000
    max_block_bytes: int = 8 * 1024 * 1024
    max_tx_bytes: int = 32 * 1024
    checkpoint_interval: int = 100
    max_clock_skew_ms: int = 5_000

    def __post_init__(self) -> None:
        bounds = {
            "view_timeout_ms": (50, 600_000),
            "max_block_txs": (1, MAX_BLOCK_TXS),
            "max_block_bytes": (1024, MAX_BLOCK_BYTES),
            "max_tx_bytes": (256, MAX_TX_BYTES),
            "checkpoint_interval": (1, 1_000_000),
            "max_clock_skew_ms": (0, 3_600_000),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValidationError(f"consensus parameter {name} must be in [{low}, {high}]")
        if self.max_tx_bytes > self.max_block_bytes:
            raise ValidationError("max_tx_bytes cannot exceed max_block_bytes")


@dataclass(frozen=True, slots=True)
class Genesis:
    version: int
    chain_id: str
    genesis_time_ms: int
    validators: tuple[Validator, ...]
    sites: tuple[Site, ...]
    params: ConsensusParams

    def __post_init__(self) -> None:
        if self.version != GENESIS_VERSION:
            raise ValidationError(f"unsupported genesis version {self.version}")
        if (
            not isinstance(self.chain_id, str)
            or re.fullmatch(CHAIN_ID_PATTERN, self.chain_id) is None
        ):
            raise ValidationError(f"chain id {self.chain_id!r} does not match {CHAIN_ID_PATTERN}")
        if len(self.validators) < MIN_VALIDATORS:
            raise ValidationError(
                f"a BFT network needs at least {MIN_VALIDATORS} validators, "
                f"genesis has {len(self.validators)}"
            )
        site_ids = [s.site_id for s in self.sites]
        if len(set(site_ids)) != len(site_ids):
            raise ValidationError("site ids must be unique")
        for attr in ("name", "validator_key", "node_key", "address"):
            values = [getattr(v, attr) for v in self.validators]
            if len(set(values)) != len(values):
                raise ValidationError(f"validator {attr}s must be unique")
        known_sites = set(site_ids)
        for validator in self.validators:
            if validator.site_id not in known_sites:
                raise ValidationError(
                    f"validator {validator.name} names unknown site {validator.site_id!r}"
                )

    # ---- derived facts used everywhere

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())

    @property
    def validator_keys(self) -> tuple[bytes, ...]:
        return tuple(v.validator_key for v in self.validators)

    @property
    def f(self) -> int:
        return max_faulty(len(self.validators))

    @property
    def quorum(self) -> int:
        return quorum_size(len(self.validators))

    def primary(self, view: int) -> Validator:
        """The primary of ``view``: validators[view mod n]."""
        return self.validators[view % len(self.validators)]

    def site(self, site_id: str) -> Site | None:
        return next((s for s in self.sites if s.site_id == site_id), None)

    # ---- encodings

    def encode(self) -> bytes:
        return GENESIS_SCHEMA.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> Genesis:
        return GENESIS_SCHEMA.decode(data)

    def to_json(self) -> dict[str, Any]:
        return GENESIS_SCHEMA.to_json(self)

    @classmethod
    def from_json(cls, obj: Any) -> Genesis:
        return GENESIS_SCHEMA.from_json(obj)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON form (readable by everyone: genesis holds no secrets)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Genesis:
        """Read a genesis file; :class:`GenesisError` naming the file for any problem."""
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise GenesisError(f"{source}: cannot read genesis file: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise GenesisError(f"{source}: not a genesis file (not UTF-8 text)") from None
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise GenesisError(f"{source}: not valid JSON: {exc}") from None
        try:
            return cls.from_json(obj)
        except DecodeError as exc:
            raise GenesisError(f"{source}: {exc}") from None


_SITE_SCHEMA: Final = Schema[Site](
    "site",
    Site,
    [
        FieldSpec("site_id", "site_id", Text(64, NAME_PATTERN)),
        FieldSpec("name", "name", Text(512)),
        FieldSpec("admin_key", "admin_key", Bytes(size=PUBLIC_KEY_BYTES)),
    ],
)
_VALIDATOR_SCHEMA: Final = Schema[Validator](
    "validator",
    Validator,
    [
        FieldSpec("name", "name", Text(64, NAME_PATTERN)),
        FieldSpec("site_id", "site_id", Text(64, NAME_PATTERN)),
        FieldSpec("validator_key", "validator_key", Bytes(size=PUBLIC_KEY_BYTES)),
        FieldSpec("node_key", "node_key", Bytes(size=PUBLIC_KEY_BYTES)),
        FieldSpec("address", "address", Text(260, ADDRESS_PATTERN)),
    ],
)
_PARAMS_SCHEMA: Final = Schema[ConsensusParams](
    "params",
    ConsensusParams,
    [
        FieldSpec("view_timeout_ms", "view_timeout_ms", UInt()),
        FieldSpec("max_block_txs", "max_block_txs", UInt()),
        FieldSpec("max_block_bytes", "max_block_bytes", UInt()),
        FieldSpec("max_tx_bytes", "max_tx_bytes", UInt()),
        FieldSpec("checkpoint_interval", "checkpoint_interval", UInt()),
        FieldSpec("max_clock_skew_ms", "max_clock_skew_ms", UInt()),
    ],
)
GENESIS_SCHEMA: Final = Schema[Genesis](
    "genesis",
    Genesis,
    [
        FieldSpec("version", "version", UInt(0xFFFF)),
        FieldSpec("chain_id", "chain_id", Text(64, CHAIN_ID_PATTERN)),
        FieldSpec("genesis_time_ms", "genesis_time_ms", UInt()),
        FieldSpec("validators", "validators", Array(Nested(_VALIDATOR_SCHEMA), MAX_VALIDATORS)),
        FieldSpec("sites", "sites", Array(Nested(_SITE_SCHEMA), MAX_VALIDATORS)),
        FieldSpec("params", "params", Nested(_PARAMS_SCHEMA)),
    ],
)
