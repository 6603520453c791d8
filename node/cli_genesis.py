"""``radledger genesis build`` and ``radledger genesis show``: a consortium's genesis.json.

The consortium's coordinator collects each site's public values (validator, node
and admin public keys, p2p address, site id, validator name) into a members file
(TOML) and runs ``genesis build``; every site then runs ``genesis show`` on the file
it received and compares the genesis hash with the one the coordinator published
through a second channel. ``configs/genesis-members.example.toml`` is an example::

    chain_id = "radiology-consortium-1"
    genesis_time = "2027-01-15T09:00:00Z"   # optional, RFC 3339; default: now

    [params]                 # optional: any ConsensusParams field
    view_timeout_ms = 2000

    [[sites]]                # one per site
    site_id = "site-a"
    name = "Hospital A, Radiology Research"
    admin_key = "<64 hex digits>"

    [[validators]]           # one per validator, at least 4
    name = "site-a-val"
    site_id = "site-a"
    validator_key = "<64 hex digits>"
    node_key = "<64 hex digits>"
    address = "val.site-a.example.org:26600"

Every problem in the members file (not TOML, an unknown or missing key, a bad key,
a key used twice in any role, fewer than 4 validators, an unknown site, a bad
address or parameter) is one line naming the file and the entry, exit status 1,
and no file written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import click
import nacl.bindings

from ledger.errors import GenesisError, ValidationError
from ledger.genesis import (
    ADDRESS_PATTERN,
    GENESIS_VERSION,
    MIN_VALIDATORS,
    ConsensusParams,
    Genesis,
    Site,
    Validator,
)
from ledger.keys import PUBLIC_KEY_BYTES
from ledger.types import MAX_VALIDATORS

__all__ = ["MembersError", "format_time", "genesis", "load_members", "parse_members"]

TOP_LEVEL_KEYS: Final = ("chain_id", "genesis_time", "params", "sites", "validators")
REQUIRED_TOP_LEVEL_KEYS: Final = ("chain_id", "sites", "validators")
SITE_KEYS: Final = ("site_id", "name", "admin_key")
VALIDATOR_KEYS: Final = ("name", "site_id", "validator_key", "node_key", "address")
PARAM_KEYS: Final = tuple(f.name for f in dataclasses.fields(ConsensusParams))

_KEY_HEX_RE: Final = re.compile(rf"[0-9a-fA-F]{{{2 * PUBLIC_KEY_BYTES}}}")
_ADDRESS_RE: Final = re.compile(ADDRESS_PATTERN)
_RFC3339_RE: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
_TIME_EXAMPLE: Final = '"2027-01-15T09:00:00Z"'


class MembersError(ValueError):
    """The members file is unreadable or describes no valid genesis; the message says why."""


# ---- reading the members file


def _known(keys: Sequence[str]) -> str:
    return ", ".join(keys)


def _check_keys(where: str, table: Mapping[str, Any], known: Sequence[str]) -> None:
    """Refuse unknown keys (a typo would otherwise silently drop a value)."""
    for key in table:
        if key not in known:
            raise MembersError(f"{where}: unknown key {key!r} (known keys: {_known(known)})")


def _required(where: str, table: Mapping[str, Any], keys: Sequence[str]) -> None:
    missing = [key for key in keys if key not in table]
    if missing:
        raise MembersError(f"{where}: missing {', '.join(missing)} (required: {_known(keys)})")


def _text(where: str, table: Mapping[str, Any], key: str) -> str:
    value = table[key]
    if not isinstance(value, str):
        raise MembersError(f"{where}: {key} must be a string, got {_describe(value)}")
    return value


def _public_key(where: str, table: Mapping[str, Any], key: str) -> bytes:
    value = _text(where, table, key)
    if _KEY_HEX_RE.fullmatch(value) is None:
        raise MembersError(
            f"{where}: {key} must be a public key of {2 * PUBLIC_KEY_BYTES} hex digits "
            f"(as printed by `radledger keygen`), got {value!r} ({len(value)} characters)"
        )
    public = bytes.fromhex(value)
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(public):
        # Every key keygen prints is one; a random 32 bytes is one about 6% of the time,
        # so this catches most mistyped digits.
        raise MembersError(
            f"{where}: {key} {value} is not an ed25519 public key (a digit mistyped? copy "
            "it again from the site's `radledger keygen` output)"
        )
    return public


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{type(value).__name__} {value!r}"


def _entries(document: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = document[key]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MembersError(f"{key}: must be an array of tables, one [[{key}]] entry each")
    return value


def _label(section: str, index: int, table: Mapping[str, Any], name_key: str) -> str:
    name = table.get(name_key)
    suffix = f" ({name_key} {name!r})" if isinstance(name, str) else ""
    return f"[[{section}]] #{index + 1}{suffix}"


def _site(where: str, table: Mapping[str, Any]) -> Site:
    _check_keys(where, table, SITE_KEYS)
    _required(where, table, SITE_KEYS)
    site_id = _text(where, table, "site_id")
    name = _text(where, table, "name")
    if not name.isprintable():
        raise MembersError(f"{where}: name must be printable text (no control characters)")
    admin_key = _public_key(where, table, "admin_key")
    try:
        return Site(site_id=site_id, name=name, admin_key=admin_key)
    except ValidationError as exc:
        raise MembersError(f"{where}: {exc}") from None


def _validator(where: str, table: Mapping[str, Any]) -> Validator:
    _check_keys(where, table, VALIDATOR_KEYS)
    _required(where, table, VALIDATOR_KEYS)
    name = _text(where, table, "name")
    site_id = _text(where, table, "site_id")
    validator_key = _public_key(where, table, "validator_key")
    node_key = _public_key(where, table, "node_key")
    address = _text(where, table, "address")
    if _ADDRESS_RE.fullmatch(address) is None or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
        raise MembersError(
            f"{where}: address {address!r} must be host:port ([v6addr]:port for IPv6) "
            "with a port in [1, 65535], the p2p address the other validators dial"
        )
    try:
        return Validator(
            name=name,
            site_id=site_id,
            validator_key=validator_key,
            node_key=node_key,
            address=address,
        )
    except ValidationError as exc:
        raise MembersError(f"{where}: {exc}") from None


def _genesis_time_ms(value: object, now_ms: int) -> int:
    if value is None:
        return now_ms
    if isinstance(value, str):
        if _RFC3339_RE.fullmatch(value) is None:
            raise MembersError(
                f"genesis_time: {value!r} is not an RFC 3339 time with an offset, "
                f"e.g. {_TIME_EXAMPLE}"
            )
        try:
            value = datetime.fromisoformat(value.upper())
        except ValueError as exc:  # the shape is right but, e.g., February 30
            raise MembersError(f"genesis_time: {value!r} is not an RFC 3339 time: {exc}") from None
    if isinstance(value, datetime) and value.tzinfo is None:
        raise MembersError(
            f"genesis_time: {value.isoformat()} has no offset; write UTC, e.g. {_TIME_EXAMPLE}"
        )
    if not isinstance(value, datetime):
        raise MembersError(
            f"genesis_time: must be an RFC 3339 UTC time such as {_TIME_EXAMPLE}, "
            f"got {_describe(value)}"
        )
    ms = (value - _EPOCH) // _ONE_MS
    if ms < 0:
        raise MembersError(f"genesis_time: {value.isoformat()} is before 1970")
    return ms


def _check_distinct(sites: Sequence[Site], validators: Sequence[Validator]) -> None:
    """Every public key once, in one role: ed25519 keys are never shared between roles."""
    seen: dict[bytes, str] = {}
    named = [(f"site {s.site_id!r} admin_key", s.admin_key) for s in sites]
    for v in validators:
        named.append((f"validator {v.name!r} validator_key", v.validator_key))
        named.append((f"validator {v.name!r} node_key", v.node_key))
    for role, key in named:
        first = seen.setdefault(key, role)
        if first != role:
            raise MembersError(
                f"public key {key.hex()} is both {first} and {role}; every validator, "
                "node and admin key must be a distinct key (run `radledger keygen` once per role)"
            )
    site_ids = [s.site_id for s in sites]
    for site_id in site_ids:
        if site_ids.count(site_id) > 1:
            raise MembersError(f"site id {site_id!r} appears in more than one [[sites]] entry")
    for what, attr in (("name", "name"), ("address", "address")):
        values = [getattr(v, attr) for v in validators]
        for value in values:
            if values.count(value) > 1:
                raise MembersError(
                    f"validator {what} {value!r} appears in more than one [[validators]] entry"
                )


def parse_members(document: Mapping[str, Any], *, now_ms: int | None = None) -> Genesis:
    """The genesis a parsed members file describes; :class:`MembersError` if it has a problem.

    ``now_ms`` is the genesis time used when the file sets no ``genesis_time``
    (default: the current time).
    """
    _check_keys("top level", document, TOP_LEVEL_KEYS)
    _required("top level", document, REQUIRED_TOP_LEVEL_KEYS)
    chain_id = _text("top level", document, "chain_id")
    site_tables = _entries(document, "sites")
    validator_tables = _entries(document, "validators")
    sites = [
        _site(_label("sites", i, table, "site_id"), table) for i, table in enumerate(site_tables)
    ]
    validators = [
        _validator(_label("validators", i, table, "name"), table)
        for i, table in enumerate(validator_tables)
    ]
    if len(validators) < MIN_VALIDATORS:
        raise MembersError(
            f"a BFT network needs at least {MIN_VALIDATORS} validators (n >= 3f + 1 with "
            f"f >= 1); the file has {len(validators)} [[validators]] entries"
        )
    if len(validators) > MAX_VALIDATORS or len(sites) > MAX_VALIDATORS:
        raise MembersError(f"at most {MAX_VALIDATORS} validators and {MAX_VALIDATORS} sites")
    _check_distinct(sites, validators)
    known_sites = [s.site_id for s in sites]
    for v in validators:
        if v.site_id not in known_sites:
            raise MembersError(
                f"validator {v.name!r} names unknown site {v.site_id!r} "
                f"(sites: {_known(known_sites) or 'none'}); add a [[sites]] entry for it"
            )
    params_table = document.get("params", {})
    if not isinstance(params_table, dict):
        raise MembersError(f"params: must be a table ([params]), got {_describe(params_table)}")
    _check_keys("[params]", params_table, PARAM_KEYS)
    try:
        params = ConsensusParams(**params_table)
    except ValidationError as exc:
        raise MembersError(f"[params]: {exc}") from None
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    genesis_time_ms = _genesis_time_ms(document.get("genesis_time"), now_ms)
    try:
        return Genesis(
            version=GENESIS_VERSION,
            chain_id=chain_id,
            genesis_time_ms=genesis_time_ms,
            validators=tuple(validators),
            sites=tuple(sites),
            params=params,
        )
    except ValidationError as exc:
        raise MembersError(str(exc)) from None


def load_members(path: str | os.PathLike[str], *, now_ms: int | None = None) -> Genesis:
    """Read a members file; every :class:`MembersError` message starts with the file name."""
    return _load(Path(path), now_ms)[0]


def _load(source: Path, now_ms: int | None) -> tuple[Genesis, bool]:
    """The genesis, and whether the file fixes ``genesis_time``."""
    try:
        text = source.read_bytes().decode("utf-8")
    except OSError as exc:
        raise MembersError(f"{source}: cannot read members file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise MembersError(f"{source}: not valid TOML: the file is not UTF-8") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MembersError(f"{source}: not valid TOML: {exc}") from None
    try:
        return parse_members(document, now_ms=now_ms), "genesis_time" in document
    except MembersError as exc:
        raise MembersError(f"{source}: {exc}") from None


# ---- presenting a genesis


def format_time(ms: int) -> str:
    """UTC ISO 8601 (``...Z``), milliseconds shown only when there are some."""
    try:
        moment = _EPOCH + ms * _ONE_MS
    except OverflowError:
        return f"{ms} ms after 1970-01-01T00:00:00Z"
    spec = "milliseconds" if ms % 1000 else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so a genesis cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _summary(genesis: Genesis) -> list[str]:
    n = len(genesis.validators)
    return [
        f"chain id      {_printable(genesis.chain_id)}",
        f"genesis hash  {genesis.hash.hex()}",
        f"genesis time  {format_time(genesis.genesis_time_ms)}",
        f"validators    n = {n}, f = {genesis.f}, quorum = {genesis.quorum}"
        f" ({len(genesis.sites)} sites)",
    ]


def _details(genesis: Genesis) -> list[str]:
    lines = ["params"]
    lines.extend(f"  {name} = {getattr(genesis.params, name)}" for name in PARAM_KEYS)
    lines.append("sites")
    for s in genesis.sites:
        lines.append(f"  {s.site_id}  {_printable(s.name)}")
        lines.append(f"    admin key      {s.admin_key.hex()}")
    lines.append("validators")
    for v in genesis.validators:
        lines.append(f"  {v.name}  site {v.site_id}  address {v.address}")
        lines.append(f"    validator key  {v.validator_key.hex()}")
        lines.append(f"    node key       {v.node_key.hex()}")
    return lines


def _as_json(genesis: Genesis) -> dict[str, Any]:
    return {
        **genesis.to_json(),
        "hash": genesis.hash.hex(),
        "genesis_time": format_time(genesis.genesis_time_ms),
        "n": len(genesis.validators),
        "f": genesis.f,
        "quorum": genesis.quorum,
    }


# ---- the commands


@click.group()
def genesis() -> None:
    """Build a consortium's genesis.json from its members' public values, or inspect one."""


@genesis.command("build")
@click.option(
    "--members",
    "members",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The members file (TOML): chain_id, optional genesis_time and [params], "
    "[[sites]] and [[validators]] with the sites' public keys and addresses.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The genesis file to write (JSON). Refuses to overwrite.",
)
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
def build(members: Path, out: Path, force: bool) -> None:
    """Write genesis.json from a members file and print its hash.

    Checks every entry (known keys only, 64-hex public keys, every key distinct
    across all roles, at least 4 validators, each on a known site, host:port
    addresses, consensus parameters in range) and writes nothing if any check
    fails. Without genesis_time in the file the genesis time is now, so set it to
    rebuild the same file (and hash) later.
    """
    try:
        built, timed = _load(members, None)
    except MembersError as exc:
        raise click.ClickException(str(exc)) from None
    if out.exists():
        if members.exists() and out.samefile(members):
            raise click.ClickException(f"{out}: is the members file; choose another --out")
        if not force:
            raise click.ClickException(f"{out}: already exists; pass --force to replace it")
    try:
        built.save(out)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else out
        raise click.ClickException(f"{where}: cannot write genesis: {exc.strerror}") from None
    click.echo(f"wrote {out}")
    for line in _summary(built):
        click.echo(line)
    if not timed:
        click.echo(
            "genesis_time was not set, so it is now; add it to the members file to rebuild "
            "the same genesis"
        )
    click.echo(
        f"Send {out.name} to every site, and publish the genesis hash above through a second "
        "channel (phone, signed e-mail); each site runs `radledger genesis show "
        f"{out.name}` and starts its node only if the hashes match."
    )


@genesis.command("show")
@click.argument("genesis_path", metavar="GENESIS", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object (with the hash).")
def show(genesis_path: Path, as_json: bool) -> None:
    """Print a genesis file: chain id, hash, time, n/f/quorum, params, sites, validators.

    Compare the genesis hash with the one the coordinator published through a
    second channel, and check your own keys and address, before starting a node.
    A running node reports the same hash as genesis_hash in /v1/status.
    """
    try:
        loaded = Genesis.load(genesis_path)
    except GenesisError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(_as_json(loaded), indent=2, sort_keys=True))
        return
    for line in [*_summary(loaded), *_details(loaded)]:
        click.echo(line)
