"""`radledger genesis build` and `show`: a consortium's genesis from its members' public values."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ledger.genesis import GENESIS_VERSION, ConsensusParams, Genesis, Site, Validator
from ledger.keys import SigningKey
from node.cli_genesis import format_time, genesis
from node.config import toml_value
from tests.factories import make_genesis

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "genesis-members.example.toml"
TIME = "2027-01-15T09:00:00Z"
TIME_MS = 1_800_003_600_000
CHAIN = "radiology-consortium-1"
NOT_A_POINT = "00" * 31 + "31"  # 64 hex digits, but no ed25519 public key

Members = dict[str, Any]
Mutation = Callable[[Members], None]


def _key() -> str:
    return SigningKey.generate().public_key.hex()


def members(n: int = 4) -> Members:
    """A members file (as a dict) for ``n`` sites with one validator each and fresh keys."""
    ids = [f"site-{chr(ord('a') + i)}" for i in range(n)]
    return {
        "chain_id": CHAIN,
        "genesis_time": TIME,
        "params": {"view_timeout_ms": 3000, "checkpoint_interval": 50},
        "sites": [
            {"site_id": s, "name": f"Hospital {s[-1].upper()}, Radiology", "admin_key": _key()}
            for s in ids
        ],
        "validators": [
            {
                "name": f"{s}-val",
                "site_id": s,
                "validator_key": _key(),
                "node_key": _key(),
                "address": f"val.{s}.example.org:26600",
            }
            for s in ids
        ],
    }


def to_toml(doc: Members) -> str:
    """TOML for a members dict: scalars first, then [tables] and [[arrays of tables]]."""
    lines = [
        f"{k} = {toml_value(v)}"
        for k, v in doc.items()
        if not isinstance(v, dict | list) or v == []
    ]
    for key, value in doc.items():
        tables = [value] if isinstance(value, dict) else value if isinstance(value, list) else []
        for table in tables:
            lines.append(f"[{key}]" if isinstance(value, dict) else f"[[{key}]]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, doc: Members | str, name: str = "members.toml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else to_toml(doc), encoding="utf-8")
    return path


def build(source: Path, out: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        genesis, ["build", "--members", str(source), "--out", str(out), *extra]
    )


def printed_hash(output: str) -> str:
    found = re.search(r"^genesis hash\s+([0-9a-f]{64})$", output, re.MULTILINE)
    assert found is not None, output
    return found.group(1)


def assert_refused(result: Result, *expected: str) -> None:
    """Exit 1, one ``Error:`` line containing every expected fragment, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])


# ---- building


@pytest.mark.parametrize("n", [4, 7])
def test_build_writes_exactly_the_genesis_the_members_file_describes(
    tmp_path: Path, n: int
) -> None:
    doc = members(n)
    out = tmp_path / "genesis.json"
    result = build(write(tmp_path, doc), out)
    assert result.exit_code == 0, result.output
    loaded = Genesis.load(out)
    assert loaded.version == GENESIS_VERSION
    assert loaded.chain_id == CHAIN
    assert loaded.genesis_time_ms == TIME_MS
    assert loaded.params == ConsensusParams(view_timeout_ms=3000, checkpoint_interval=50)
    assert loaded.sites == tuple(
        Site(s["site_id"], s["name"], bytes.fromhex(s["admin_key"])) for s in doc["sites"]
    )
    assert loaded.validators == tuple(
        Validator(
            v["name"],
            v["site_id"],
            bytes.fromhex(v["validator_key"]),
            bytes.fromhex(v["node_key"]),
            v["address"],
        )
        for v in doc["validators"]
    )
    assert printed_hash(result.output) == loaded.hash.hex()
    f = (n - 1) // 3
    assert f"n = {n}, f = {f}, quorum = {loaded.quorum}" in result.output
    assert CHAIN in result.output
    assert "every site" in result.output
    assert "second channel" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genesis.json", "members.toml"]


def test_the_same_members_file_builds_byte_identical_genesis_files(tmp_path: Path) -> None:
    source = write(tmp_path, members())
    first = build(source, tmp_path / "one.json")
    second = build(source, tmp_path / "two.json")
    assert first.exit_code == second.exit_code == 0
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()
    assert printed_hash(first.output) == printed_hash(second.output)


def test_params_are_optional_and_default(tmp_path: Path) -> None:
    doc = members()
    del doc["params"]
    out = tmp_path / "genesis.json"
    assert build(write(tmp_path, doc), out).exit_code == 0
    assert Genesis.load(out).params == ConsensusParams()


def test_without_genesis_time_the_time_is_now_and_the_output_says_so(tmp_path: Path) -> None:
    doc = members()
    del doc["genesis_time"]
    out = tmp_path / "genesis.json"
    before = time.time_ns() // 1_000_000
    result = build(write(tmp_path, doc), out)
    after = time.time_ns() // 1_000_000
    assert result.exit_code == 0, result.output
    assert before <= Genesis.load(out).genesis_time_ms <= after
    assert "genesis_time was not set" in result.output


@pytest.mark.parametrize(
    ("line", "expected_ms"),
    [
        (f'genesis_time = "{TIME}"', TIME_MS),
        ('genesis_time = "2027-01-15T10:00:00+01:00"', TIME_MS),
        ('genesis_time = "2027-01-15t09:00:00.250z"', TIME_MS + 250),
        ("genesis_time = 2027-01-15T09:00:00Z", TIME_MS),  # a TOML offset date-time
        ("genesis_time = 1970-01-01T00:00:00.0019Z", 1),  # below a millisecond: dropped
    ],
)
def test_genesis_time_forms(tmp_path: Path, line: str, expected_ms: int) -> None:
    doc = members()
    del doc["genesis_time"]
    out = tmp_path / "genesis.json"
    result = build(write(tmp_path, f"{line}\n{to_toml(doc)}"), out)
    assert result.exit_code == 0, result.output
    assert Genesis.load(out).genesis_time_ms == expected_ms


def test_force_replaces_an_existing_genesis(tmp_path: Path) -> None:
    out = tmp_path / "genesis.json"
    out.write_text("old\n")
    refused = build(write(tmp_path, members()), out)
    assert_refused(refused, str(out), "already exists", "--force")
    assert out.read_text() == "old\n"
    forced = build(tmp_path / "members.toml", out, "--force")
    assert forced.exit_code == 0, forced.output
    assert printed_hash(forced.output) == Genesis.load(out).hash.hex()


def test_out_may_never_be_the_members_file(tmp_path: Path) -> None:
    source = write(tmp_path, members())
    text = source.read_text()
    assert_refused(build(source, source, "--force"), "is the members file")
    assert source.read_text() == text


def test_an_unwritable_out_is_one_line(tmp_path: Path) -> None:
    result = build(write(tmp_path, members()), tmp_path / "missing" / "genesis.json")
    assert_refused(result, "cannot write genesis")


# ---- refusals: exit 1, one line naming the file and the problem, no file written


def _at(doc: Members, path: tuple[str | int, ...]) -> Any:
    node: Any = doc
    for part in path:
        node = node[part]
    return node


def put(*path: str | int, value: object) -> Mutation:
    def mutate(doc: Members) -> None:
        _at(doc, path[:-1])[path[-1]] = value

    return mutate


def drop(*path: str | int) -> Mutation:
    def mutate(doc: Members) -> None:
        del _at(doc, path[:-1])[path[-1]]

    return mutate


def copy(source: tuple[str | int, ...], target: tuple[str | int, ...]) -> Mutation:
    def mutate(doc: Members) -> None:
        _at(doc, target[:-1])[target[-1]] = _at(doc, source)

    return mutate


V0_KEY = ("validators", 0, "validator_key")
V0_NODE = ("validators", 0, "node_key")
V1_KEY = ("validators", 1, "validator_key")
V1_NODE = ("validators", 1, "node_key")
S0_ADMIN = ("sites", 0, "admin_key")
S1_ADMIN = ("sites", 1, "admin_key")

REFUSALS = [
    # typos: unknown keys anywhere, with the known keys listed
    pytest.param(
        put("chainid", value="x"), ("unknown key 'chainid'", "chain_id, genesis_time"), id="top"
    ),
    pytest.param(
        put("params", "view_timeout", value=1),
        ("[params]", "unknown key 'view_timeout'", "view_timeout_ms"),
        id="param-key",
    ),
    pytest.param(
        put("sites", 0, "admin", value="x"),
        ("[[sites]] #1", "unknown key 'admin'", "site_id, name, admin_key"),
        id="site-key",
    ),
    pytest.param(
        put("validators", 2, "port", value=1),
        ("[[validators]] #3", "'site-c-val'", "unknown key 'port'", "node_key, address"),
        id="validator-key",
    ),
    # missing keys
    pytest.param(drop("chain_id"), ("missing chain_id",), id="no-chain-id"),
    pytest.param(drop("validators"), ("missing validators",), id="no-validators"),
    pytest.param(drop("sites"), ("missing sites",), id="no-sites"),
    pytest.param(drop("sites", 1, "admin_key"), ("[[sites]] #2", "missing admin_key"), id="no-ak"),
    pytest.param(drop("validators", 0, "address"), ("missing address",), id="no-address"),
    pytest.param(drop("validators", 0, "node_key"), ("missing node_key",), id="no-node-key"),
    # keys: hex, length, type, curve
    pytest.param(put(*V0_KEY, value="zz" * 32), ("validator_key", "64 hex digits"), id="hex"),
    pytest.param(
        put(*S0_ADMIN, value="ab" * 31), ("admin_key", "64 hex digits", "62 characters"), id="short"
    ),
    pytest.param(put(*V0_NODE, value="ab" * 33), ("node_key", "66 characters"), id="long"),
    pytest.param(put(*V0_NODE, value="0x" + "ab" * 31), ("node_key", "64 hex"), id="0x"),
    pytest.param(put(*V0_KEY, value=12345), ("validator_key must be a string",), id="int-key"),
    pytest.param(put(*V0_KEY, value=NOT_A_POINT), ("not an ed25519 public key",), id="point"),
    # the same public key twice, in any roles
    pytest.param(copy(V0_KEY, V0_NODE), ("validator_key and", "node_key"), id="val=own-node"),
    pytest.param(copy(V0_KEY, V1_NODE), ("'site-a-val' validator_key",), id="val=other-node"),
    pytest.param(copy(V0_KEY, V1_KEY), ("validator 'site-b-val' validator_key",), id="val=val"),
    pytest.param(copy(S0_ADMIN, V1_KEY), ("site 'site-a' admin_key",), id="val=admin"),
    pytest.param(copy(S0_ADMIN, V0_NODE), ("admin_key and", "node_key"), id="node=admin"),
    pytest.param(copy(S0_ADMIN, S1_ADMIN), ("'site-b' admin_key",), id="admin=admin"),
    pytest.param(copy(V0_NODE, V1_NODE), ("must be a distinct key",), id="node=node"),
    # the validator set
    pytest.param(drop("validators", 3), ("at least 4 validators", "has 3"), id="three"),
    pytest.param(put("validators", value=[]), ("at least 4 validators",), id="none"),
    pytest.param(
        put("validators", 0, "site_id", value="site-z"),
        ("unknown site 'site-z'", "site-a, site-b"),
        id="unknown-site",
    ),
    pytest.param(
        copy(("sites", 0, "site_id"), ("sites", 1, "site_id")),
        ("site id 'site-a' appears in more than one",),
        id="dup-site",
    ),
    pytest.param(
        copy(("validators", 0, "name"), ("validators", 1, "name")),
        ("validator name 'site-a-val' appears",),
        id="dup-name",
    ),
    pytest.param(
        copy(("validators", 0, "address"), ("validators", 1, "address")),
        ("validator address", "appears in more than one"),
        id="dup-address",
    ),
    pytest.param(
        put("validators", 1, "address", value="val.example.org"), ("host:port",), id="no-port"
    ),
    pytest.param(put("validators", 1, "address", value="val:0"), ("host:port",), id="port-0"),
    pytest.param(put("validators", 1, "address", value="v:70000"), ("[1, 65535]",), id="port-hi"),
    pytest.param(put("validators", 1, "address", value="a b:1"), ("'a b:1'",), id="space"),
    pytest.param(put("validators", 1, "address", value=26600), ("must be a string",), id="int"),
    pytest.param(
        put("validators", 1, "name", value="val b"), ("validator name 'val b'",), id="bad-name"
    ),
    pytest.param(put("sites", 2, "site_id", value="site c"), ("site id 'site c'",), id="bad-id"),
    pytest.param(put("sites", 2, "name", value=""), ("1-128 characters",), id="empty-name"),
    pytest.param(put("sites", 2, "name", value="x" * 129), ("1-128",), id="long-name"),
    pytest.param(put("sites", 2, "name", value="A\x07B"), ("printable",), id="control-char"),
    pytest.param(put("sites", value="site-a"), ("array of tables", "[[sites]]"), id="sites-str"),
    pytest.param(
        put("validators", value={"name": "v"}), ("[[validators]]",), id="validators-table"
    ),
    # chain id and params
    pytest.param(put("chain_id", value="bad chain!"), ("chain id 'bad chain!'",), id="chain"),
    pytest.param(
        put("params", "view_timeout_ms", value=10),
        ("[params]", "view_timeout_ms must be in [50, 600000]"),
        id="param-range",
    ),
    pytest.param(put("params", "max_block_txs", value=True), ("max_block_txs",), id="param-bool"),
    pytest.param(put("params", "max_block_txs", value="5"), ("max_block_txs",), id="param-str"),
    pytest.param(put("params", value=5), ("params: must be a table",), id="params-int"),
    # genesis_time
    pytest.param(put("genesis_time", value="tomorrow"), ("RFC 3339",), id="time-word"),
    pytest.param(put("genesis_time", value="2027-01-15T09:00:00"), ("RFC 3339",), id="naive"),
    pytest.param(put("genesis_time", value="2027-02-30T09:00:00Z"), ("RFC 3339",), id="feb-30"),
    pytest.param(put("genesis_time", value="1969-12-31T23:59:59Z"), ("before 1970",), id="1969"),
    pytest.param(put("genesis_time", value=1_800_000_000), ("genesis_time",), id="time-int"),
]


@pytest.mark.parametrize(("mutate", "expected"), REFUSALS)
def test_a_bad_members_file_is_refused_with_one_line(
    tmp_path: Path, mutate: Mutation, expected: tuple[str, ...]
) -> None:
    doc = members()
    mutate(doc)
    source = write(tmp_path, doc)
    out = tmp_path / "genesis.json"
    result = build(source, out)
    assert_refused(result, f"Error: {source}: ", *expected)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["members.toml"]


def test_param_bound_across_fields_is_refused(tmp_path: Path) -> None:
    doc = members()
    doc["params"].update(max_tx_bytes=4096, max_block_bytes=2048)
    result = build(write(tmp_path, doc), tmp_path / "genesis.json")
    assert_refused(result, "max_tx_bytes cannot exceed max_block_bytes")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'chain_id = "x"\n[[sites]\n', "not valid TOML"),
        (b'chain_id = "x"\nchain_id = "y"\n', "not valid TOML"),
        (b'chain_id = "\xff"\n', "not UTF-8"),
        (b"genesis_time = 2027-01-15T09:00:00\n", "has no offset"),
        (b"genesis_time = 2027-01-15\n", "RFC 3339"),
    ],
)
def test_unreadable_members_files_are_refused(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    doc = members()
    del doc["genesis_time"]
    source = tmp_path / "members.toml"
    source.write_bytes(content + to_toml(doc).encode())
    result = build(source, tmp_path / "genesis.json")
    assert_refused(result, str(source), expected)
    assert not (tmp_path / "genesis.json").exists()


def test_a_missing_members_file_is_refused(tmp_path: Path) -> None:
    result = build(tmp_path / "nope.toml", tmp_path / "genesis.json")
    assert_refused(result, "nope.toml", "cannot read members file")


def test_the_example_members_file_builds_once_its_placeholders_are_replaced(
    tmp_path: Path,
) -> None:
    text = EXAMPLE.read_text()
    # unedited, the placeholders stop the build: they are not ed25519 keys
    assert_refused(build(EXAMPLE, tmp_path / "g.json"), "admin_key", "not an ed25519 public key")
    assert not (tmp_path / "g.json").exists()
    placeholders = re.findall(r'"([0-9a-f]{64})"  # PLACEHOLDER', text)
    assert len(placeholders) == len(set(placeholders)) == 12
    for placeholder in placeholders:
        text = text.replace(placeholder, _key())
    out = tmp_path / "genesis.json"
    result = build(write(tmp_path, text), out)
    assert result.exit_code == 0, result.output
    loaded = Genesis.load(out)
    assert (len(loaded.sites), len(loaded.validators), loaded.f, loaded.quorum) == (4, 4, 1, 3)
    assert format_time(loaded.genesis_time_ms) == TIME


# ---- show


def test_show_prints_the_hash_the_build_printed_and_every_public_value(tmp_path: Path) -> None:
    doc = members()
    out = tmp_path / "genesis.json"
    built = build(write(tmp_path, doc), out)
    shown = CliRunner().invoke(genesis, ["show", str(out)])
    assert shown.exit_code == 0, shown.output
    assert printed_hash(shown.output) == printed_hash(built.output)
    assert f"genesis time  {TIME}" in shown.output
    assert "n = 4, f = 1, quorum = 3" in shown.output
    assert "view_timeout_ms = 3000" in shown.output
    for site in doc["sites"]:
        assert site["admin_key"] in shown.output
        assert site["name"] in shown.output
    for validator in doc["validators"]:
        for key in ("validator_key", "node_key", "address", "name"):
            assert validator[key] in shown.output


def test_show_json_has_the_same_facts_and_the_hash(tmp_path: Path) -> None:
    doc = members()
    out = tmp_path / "genesis.json"
    build(write(tmp_path, doc), out)
    shown = CliRunner().invoke(genesis, ["show", str(out), "--json"])
    assert shown.exit_code == 0, shown.output
    facts = json.loads(shown.output)
    loaded = Genesis.load(out)
    assert facts["hash"] == loaded.hash.hex()
    assert facts["chain_id"] == CHAIN
    assert facts["genesis_time"] == TIME
    assert facts["genesis_time_ms"] == TIME_MS
    assert (facts["n"], facts["f"], facts["quorum"]) == (4, 1, 3)
    assert facts["params"]["view_timeout_ms"] == 3000
    assert [s["admin_key"] for s in facts["sites"]] == [s["admin_key"] for s in doc["sites"]]
    assert [v["node_key"] for v in facts["validators"]] == [
        v["node_key"] for v in doc["validators"]
    ]
    assert Genesis.from_json({k: facts[k] for k in loaded.to_json()}) == loaded


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read genesis file"), ("{", "not valid JSON"), ("{}", "genesis.json")],
)
def test_show_refuses_a_bad_genesis_with_one_line(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "genesis.json"
    if content is not None:
        path.write_text(content)
    for extra in ([], ["--json"]):
        assert_refused(CliRunner().invoke(genesis, ["show", str(path), *extra]), expected)


def test_show_escapes_control_characters_and_survives_any_time(tmp_path: Path) -> None:
    base = make_genesis()
    site = Site("site0", "Evil\x1b[2J", base.sites[0].admin_key)
    odd = Genesis(
        base.version,
        base.chain_id,
        2**63,
        base.validators,
        (site, *base.sites[1:]),
        base.params,
    )
    path = tmp_path / "genesis.json"
    odd.save(path)
    shown = CliRunner().invoke(genesis, ["show", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output
    assert "Evil\\x1b[2J" in shown.output
    assert f"{2**63} ms after 1970" in shown.output


def test_format_time() -> None:
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(TIME_MS) == TIME
    assert format_time(TIME_MS + 7) == "2027-01-15T09:00:00.007Z"
