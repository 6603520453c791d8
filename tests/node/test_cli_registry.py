"""The researcher commands through click, as a researcher runs them.

Three situations:

* no node at all (an unused port on 127.0.0.1): every command that needs one
  fails with one ``Error:`` line and exit 1, never a traceback; bad arguments
  are usage errors (exit 2) before anything is sent;
* offline, with a receipt and the genesis file: ``receipt verify`` and
  ``verify --receipt`` need no node; every tampering is caught and named;
* a node serving the RPC from a thread (built as in test_rpc_registry.py, not
  running consensus): receipts fetched, reads, authorisation, a refusal, and
  ``submit`` up to its first commit (already registered, changed, gate, unreadable).

node/client.py is tested last, partly against a stub server on 127.0.0.1 that
answers POST /v1/txs as told (back-pressure, pending) and anything else with HTML.

The chain, its receipt and the synthetic study are built once per module; no
test changes them (tampering happens on copies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pydicom
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from pydicom.uid import UID

from imaging import synthetic
from imaging.inspect import Series
from ledger.genesis import Genesis
from ledger.keys import SigningKey, write_key_file
from ledger.receipt import Receipt, verify
from node.cli import cli
from node.client import Nonces, RpcClient, RpcError, sign
from node.receipts import dataset_receipt
from node.rpc import Rpc
from node.testnet import ADMIN_KEY_FILE, create_testnet, ports
from tests.factories import make_genesis
from tests.node.test_network_processes import Network, network, wait_for
from tests.node.test_rpc_registry import (
    DATASET,
    INSTANCES,
    OTHER,
    RESEARCHER,
    Ledger,
    World,
    build_world,
    synthetic_series,
    unstarted_node,
)

__all__ = ["network"]  # the fixture of a running network, imported for the submit test

STRANGER: Final = SigningKey(b"\x91" * 32)
_PROXY_VARIABLES: Final = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy")


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_clean_failure(result: Result, exit_code: int = 1) -> str:
    """A failure as the CLI promises it: the exit code, one line on stderr, no traceback."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if exit_code == 1:
        (line,) = lines(result.stderr)
        assert line.startswith("Error: "), line
        return line
    return result.stderr


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib would send 127.0.0.1 requests to a proxy named in the environment."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RADLEDGER_RPC", raising=False)


# --------------------------------------------------------------------------- the module's chain


@dataclass(frozen=True)
class Chain:
    world: World
    genesis: Genesis
    genesis_file: Path
    study: Path  # the registered series' files, <study>/s01/i*.dcm
    receipt_file: Path  # the dataset receipt, as `receipt get` writes it
    instance_receipt_file: Path  # the receipt of one instance (series.leaves[4])

    @property
    def series(self) -> Series:
        return self.world.series


def _write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return path


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("chain")
    create_testnet(root / "net", 4, base_port=47500)
    ledger = Ledger.open(root / "net")
    series = synthetic_series(root / "study", seed=51)
    world = build_world(ledger, series)
    genesis = ledger.genesis
    dataset = dataset_receipt(ledger.store, ledger.store, genesis, DATASET)
    instance = dataset_receipt(
        ledger.store, ledger.store, genesis, DATASET, series.leaves[4].sop_instance_uid
    )
    yield Chain(
        world=world,
        genesis=genesis,
        genesis_file=root / "net" / "genesis.json",
        study=root / "study",
        receipt_file=_write_json(root / "receipt.json", dataset.to_json()),
        instance_receipt_file=_write_json(root / "instance.json", instance.to_json()),
    )
    ledger.store.close()


def _receipt_json(chain: Chain, instance: bool = False) -> dict[str, Any]:
    path = chain.instance_receipt_file if instance else chain.receipt_file
    obj: dict[str, Any] = json.loads(path.read_text())
    return obj


# --------------------------------------------------------------------------- no node answers


@pytest.fixture
def nowhere() -> str:
    """The URL of a port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    key = tmp_path / "key.json"
    write_key_file(key, SigningKey(b"\x33" * 32))
    secret = tmp_path / "site.secret"
    secret.write_bytes(b"\x07" * 32)
    document = tmp_path / "protocol.pdf"
    document.write_bytes(b"%PDF-1.7 synthetic protocol")
    study = tmp_path / "study"
    synthetic_series(study, seed=52, instances=2)
    return {"key": key, "secret": secret, "document": document, "study": study}


HEX64: Final = "ab" * 32
MEMBER_HEX: Final = STRANGER.public_key.hex()

#: Every command that writes, with valid arguments (the node is the only thing missing).
WRITE_COMMANDS: Final[dict[str, Callable[[dict[str, Path]], list[str | Path]]]] = {
    "submit": lambda f: [
        *("submit", "--key", f["key"], "--dataset", "ds1", "--reason", "baseline"),
        f["study"],
    ],
    "member enroll": lambda f: [
        *("member", "enroll", "--key", f["key"], "--member", MEMBER_HEX, "--site", "site0"),
        *("--role", "researcher", "--reason", "new team member"),
    ],
    "member revoke": lambda f: [
        *("member", "revoke", "--key", f["key"], "--member", MEMBER_HEX, "--reason", "left"),
    ],
    "access log": lambda f: [
        *("access", "log", "--key", f["key"], "--dataset", "ds1", "--purpose", "research"),
        *("--consent", HEX64, "--reason", "analysis"),
    ],
    "subject link": lambda f: [
        *("subject", "link", "--key", f["key"], "--subject", MEMBER_HEX, "--site", "site0"),
        *("--dataset", "ds1", "--site-secret", f["secret"], "--pseudonym", "p-17"),
        *("--reason", "enrolled"),
    ],
    "consent grant": lambda f: [
        *("consent", "grant", "--key", f["key"], "--grantee-kind", "member"),
        *("--grantee", MEMBER_HEX, "--site", "site0", "--purpose", "research"),
        *("--reason", "I agree"),
    ],
    "consent revoke": lambda f: [
        *("consent", "revoke", "--key", f["key"], "--grant", HEX64, "--reason", "changed mind"),
    ],
    "trial register": lambda f: [
        *("trial", "register", "--key", f["key"], "--trial", "t1", "--protocol", f["document"]),
        *("--endpoints", HEX64, "--registry-id", "NCT01234567", "--reason", "pre-registration"),
    ],
    "trial amend": lambda f: [
        *("trial", "amend", "--key", f["key"], "--trial", "t1", "--protocol", HEX64),
        *("--reason", "amendment 1"),
    ],
    "trial result": lambda f: [
        *("trial", "result", "--key", f["key"], "--trial", "t1", "--results", f["document"]),
        *("--reason", "final analysis"),
    ],
    "dataset derive": lambda f: [
        *("dataset", "derive", "--key", f["key"], "--dataset", "ds2", "--parent", "ds1"),
        *("--transformation", "lossy-compression", "--code-version", HEX64),
        *("--output", f["document"], "--reason", "teaching copy"),
    ],
}

#: Every command that only reads from a node.
READ_COMMANDS: Final[dict[str, Callable[[dict[str, Path]], list[str | Path]]]] = {
    "verify": lambda f: ["verify", "--dataset", "ds1", "--jobs", "1", f["study"]],
    "receipt get": lambda f: ["receipt", "get", "--dataset", "ds1", "--out", f["key"].parent / "r"],
    "dataset show": lambda f: ["dataset", "show", "ds1"],
    "trial show": lambda f: ["trial", "show", "t1"],
    "member show": lambda f: ["member", "show", MEMBER_HEX],
    "authz": lambda f: ["authz", "--grantee", MEMBER_HEX, "--dataset", "ds1"],
}


@pytest.mark.parametrize("command", sorted(WRITE_COMMANDS))
def test_a_write_without_a_node_fails_in_one_line(
    command: str, files: dict[str, Path], nowhere: str
) -> None:
    result = run(*WRITE_COMMANDS[command](files), "--rpc", nowhere)
    line = assert_clean_failure(result)
    assert f"no node answers at {nowhere}" in line
    assert result.stdout == ""


@pytest.mark.parametrize("command", sorted(READ_COMMANDS))
def test_a_read_without_a_node_fails_in_one_line(
    command: str, files: dict[str, Path], nowhere: str
) -> None:
    result = run(*READ_COMMANDS[command](files), "--rpc", nowhere)
    line = assert_clean_failure(result)
    assert "unreachable" in line
    assert nowhere in line


def test_the_rpc_address_can_come_from_the_environment(
    files: dict[str, Path], nowhere: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADLEDGER_RPC", nowhere)
    line = assert_clean_failure(run("dataset", "show", "ds1"))
    assert nowhere in line


def test_an_rpc_address_without_a_scheme_fails_in_one_line() -> None:
    assert_clean_failure(run("dataset", "show", "ds1", "--rpc", "node1"))


BAD_ARGUMENTS: Final[dict[str, tuple[Callable[[dict[str, Path]], list[str | Path]], str]]] = {
    "member not hex": (
        lambda f: [
            *("member", "enroll", "--key", f["key"], "--member", "zz" * 32, "--site", "site0"),
            *("--role", "researcher", "--reason", "r"),
        ],
        "--member must be a public key",
    ),
    "member too short": (
        lambda f: ["member", "revoke", "--key", f["key"], "--member", "ab" * 31, "--reason", "r"],
        "--member must be a public key",
    ),
    "protocol neither file nor digest": (
        lambda f: [
            *("trial", "register", "--key", f["key"], "--trial", "t1"),
            *("--protocol", f["key"].parent / "no-such-file.pdf", "--endpoints", HEX64),
            *("--reason", "r"),
        ],
        "--protocol must be a file or a 64-hex SHA-256 digest",
    ),
    "output digest too short": (
        lambda f: [
            *("dataset", "derive", "--key", f["key"], "--dataset", "ds2", "--parent", "ds1"),
            *("--transformation", "segmentation", "--code-version", HEX64),
            *("--output", "ab" * 16, "--reason", "r"),
        ],
        "--output must be a file or a 64-hex SHA-256 digest",
    ),
    "unknown role": (
        lambda f: [
            *("member", "enroll", "--key", f["key"], "--member", MEMBER_HEX, "--site", "site0"),
            *("--role", "admin", "--reason", "r"),
        ],
        "--role",
    ),
    "grant not hex": (
        lambda f: ["consent", "revoke", "--key", f["key"], "--grant", "g-17", "--reason", "r"],
        "--grant must be",
    ),
    "missing reason": (
        lambda f: ["consent", "revoke", "--key", f["key"], "--grant", HEX64],
        "--reason",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_arguments_are_usage_errors_before_anything_is_sent(
    case: str, files: dict[str, Path], nowhere: str
) -> None:
    build, message = BAD_ARGUMENTS[case]
    result = run(*build(files), "--rpc", nowhere)
    stderr = assert_clean_failure(result, exit_code=2)
    assert message in stderr
    assert "no node answers" not in result.output  # refused before connecting


@pytest.mark.parametrize(
    "secret",
    [b"", b"\x07" * 31, b"\x07" * 33, (b"\x07" * 32).hex().encode() + b"\n"],
    ids=["empty", "31-bytes", "33-bytes", "hex-text"],
)
def test_a_site_secret_not_of_32_bytes_is_refused_before_anything_is_sent(
    files: dict[str, Path], nowhere: str, secret: bytes
) -> None:
    """SHA-256(secret || pseudonym) has no separator: only a fixed length keeps it unambiguous."""
    files["secret"].write_bytes(secret)
    result = run(*WRITE_COMMANDS["subject link"](files), "--rpc", nowhere)
    line = assert_clean_failure(result)
    assert line == (
        f"Error: --site-secret {files['secret']} holds {len(secret)} bytes; a site secret "
        "must be exactly 32 random bytes (make one with: head -c 32 /dev/urandom > FILE)"
    )
    assert "no node answers" not in result.output


def test_a_missing_site_secret_fails_in_one_line(files: dict[str, Path], nowhere: str) -> None:
    files["secret"].unlink()
    line = assert_clean_failure(run(*WRITE_COMMANDS["subject link"](files), "--rpc", nowhere))
    assert line.startswith(f"Error: cannot read {files['secret']}: ")


# --------------------------------------------------------------------------- receipt verify


def test_a_good_receipt_verifies_and_every_step_is_printed(chain: Chain) -> None:
    result = run("receipt", "verify", chain.receipt_file, "--genesis", chain.genesis_file)
    assert result.exit_code == 0, result.output
    steps = verify(Receipt.from_json(_receipt_json(chain)), chain.genesis)
    printed = lines(result.stdout)
    assert printed[:-1] == [f"ok    {s.name}: {s.detail}" for s in steps]
    assert printed[-1] == f"receipt verified: dataset {DATASET} on chain {chain.genesis.chain_id}"
    assert result.stderr == ""


def test_a_good_instance_receipt_verifies_as_json(chain: Chain) -> None:
    result = run(
        "receipt", "verify", chain.instance_receipt_file, "--genesis", chain.genesis_file, "--json"
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in lines(result.stdout)]
    assert all(set(r) == {"step", "ok", "detail"} for r in records)
    assert all(r["ok"] for r in records)
    assert records[0]["step"] == "genesis"
    assert records[-1]["step"].endswith("inclusion in series manifest")


def _flip(text: str, at: int = 10) -> str:
    """``text`` (hex) with the digit at ``at`` changed."""
    digit = "0" if text[at] != "0" else "1"
    return text[:at] + digit + text[at + 1 :]


def _tamper_tx_signature(obj: dict[str, Any]) -> None:
    tx = obj["entries"][0]["tx"]
    tx["sig"] = _flip(tx["sig"])


def _tamper_cert_signature(obj: dict[str, Any]) -> None:
    signature = obj["entries"][1]["cert"]["sigs"][0]
    signature["sig"] = _flip(signature["sig"])


def _tamper_body_leaf_digest(obj: dict[str, Any]) -> None:
    leaf = obj["entries"][0]["tx"]["body"]["leaves"][3]
    leaf["pixel"]["$hex"] = _flip(leaf["pixel"]["$hex"])


def _tamper_header_state_root(obj: dict[str, Any]) -> None:
    header = obj["entries"][1]["header"]
    header["state_root"] = _flip(header["state_root"])


def _tamper_header_tx_root(obj: dict[str, Any]) -> None:
    header = obj["entries"][0]["header"]
    header["tx_root"] = _flip(header["tx_root"])


def _tamper_instance_leaf(obj: dict[str, Any]) -> None:
    leaf = obj["instance"]["leaf"]
    leaf["meta"] = _flip(leaf["meta"])


def _tamper_dataset(obj: dict[str, Any]) -> None:
    obj["dataset"] = "ct-2027"


TAMPERINGS: Final[dict[str, tuple[Callable[[dict[str, Any]], None], bool, str]]] = {
    # name: (tampering, on the instance receipt, the first step that must fail)
    "tx signature": (_tamper_tx_signature, False, "tx 0 (dataset.register, block 2): signature"),
    "certificate signature": (
        _tamper_cert_signature,
        False,
        "tx 1 (dataset.register, block 3): commit certificate",
    ),
    "leaf digest in a tx body": (
        _tamper_body_leaf_digest,
        False,
        "tx 0 (dataset.register, block 2): signature",
    ),
    "header state_root": (
        _tamper_header_state_root,
        False,
        "tx 1 (dataset.register, block 3): commit certificate",
    ),
    "header tx_root": (
        _tamper_header_tx_root,
        False,
        "tx 0 (dataset.register, block 2): inclusion in block",
    ),
    "instance leaf": (_tamper_instance_leaf, True, "inclusion in series manifest"),
    "dataset named": (_tamper_dataset, False, "tx 0 (dataset.register, block 2): subject"),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_a_tampered_receipt_fails_naming_the_step(chain: Chain, tmp_path: Path, case: str) -> None:
    tamper, of_instance, step = TAMPERINGS[case]
    obj = _receipt_json(chain, of_instance)
    tamper(obj)
    tampered = _write_json(tmp_path / "tampered.json", obj)
    result = run("receipt", "verify", tampered, "--genesis", chain.genesis_file)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    failed = [line for line in lines(result.stdout) if line.startswith("FAIL")]
    assert failed, result.stdout
    assert step in failed[0]
    (summary,) = lines(result.stderr)
    assert summary.startswith(f"receipt NOT verified: {len(failed)} step(s) failed: ")
    assert summary.endswith(step)
    assert "receipt verified" not in result.stdout


def test_the_genesis_of_another_network_fails_at_the_genesis_step(
    chain: Chain, tmp_path: Path
) -> None:
    other = make_genesis(4)
    other.save(tmp_path / "other-genesis.json")
    result = run(
        "receipt", "verify", chain.receipt_file, "--genesis", tmp_path / "other-genesis.json"
    )
    assert result.exit_code == 1, result.output
    assert lines(result.stdout)[0].startswith("FAIL  genesis: ")
    assert lines(result.stderr)[0].endswith("failed: genesis")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"format": "radledger-receipt", "v": 1, "entries": [', "not valid JSON"),
        ("[]", "a JSON array"),
        ('{"format": "something-else"}', "not a receipt"),
        ("", "empty"),
    ],
    ids=["cut-json", "array", "other-format", "empty"],
)
def test_a_malformed_receipt_file_fails_in_one_line(
    chain: Chain, tmp_path: Path, content: str, why: str
) -> None:
    path = tmp_path / "receipt.json"
    path.write_text(content)
    line = assert_clean_failure(run("receipt", "verify", path, "--genesis", chain.genesis_file))
    assert f"{path} is not a readable receipt" in line, why


def test_a_missing_receipt_file_fails_in_one_line(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    line = assert_clean_failure(run("receipt", "verify", path, "--genesis", chain.genesis_file))
    assert str(path) in line


def test_a_binary_receipt_file_fails_in_one_line(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "receipt.json"
    path.write_bytes(b"\xff\xfe\x00\x01 not text")
    line = assert_clean_failure(run("receipt", "verify", path, "--genesis", chain.genesis_file))
    assert "not a readable receipt" in line


def test_a_binary_genesis_file_fails_in_one_line(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(b"\xff\xfe\x00\x01 not text")
    line = assert_clean_failure(run("receipt", "verify", chain.receipt_file, "--genesis", path))
    assert str(path) in line


def test_a_malformed_genesis_file_fails_in_one_line(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text('{"chain_id": ')
    line = assert_clean_failure(run("receipt", "verify", chain.receipt_file, "--genesis", path))
    assert str(path) in line


# --------------------------------------------------------------------------- verify, offline


def _verify_offline(chain: Chain, study: Path, *extra: str | Path) -> Result:
    return run(
        *("verify", "--dataset", DATASET, "--jobs", "1", study),
        *("--receipt", chain.receipt_file, "--genesis", chain.genesis_file),
        *extra,
    )


def test_verify_offline_matches_the_registered_study(chain: Chain) -> None:
    result = _verify_offline(chain, chain.study)
    assert result.exit_code == 0, result.output
    printed = lines(result.stdout)
    assert len(printed) == INSTANCES + 1
    assert all(line.startswith("MATCH ") for line in printed[:-1])
    assert printed[-1] == f"{DATASET}: {INSTANCES} match -> all instances match"


def test_verify_offline_names_only_the_changed_file(chain: Chain, tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil.copytree(chain.study, study)
    changed = sorted(study.rglob("*.dcm"))[5]
    ds = pydicom.dcmread(changed)
    values = np.frombuffer(ds.PixelData, dtype="<i2").copy()
    values[0] += 1
    ds.PixelData = values.tobytes()
    ds.save_as(changed, enforce_file_format=True)

    result = _verify_offline(chain, study)
    assert result.exit_code == 1, result.output
    printed = lines(result.stdout)
    flagged = [line for line in printed[:-1] if not line.startswith("MATCH ")]
    assert len(flagged) == 1
    assert flagged[0].startswith("PIXELS CHANGED ")
    assert str(changed) in flagged[0]
    assert printed[-1] == f"{DATASET}: {INSTANCES - 1} match, 1 pixels changed -> MISMATCH"


def test_verify_offline_as_json(chain: Chain) -> None:
    result = _verify_offline(chain, chain.study, "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in lines(result.stdout)]
    assert {r["verdict"] for r in records[:-1]} == {"match"}
    assert records[-1] == {"summary": {"match": INSTANCES}, "unreadable": 0, "ok": True}


def test_verify_offline_reports_missing_files(chain: Chain, tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil.copytree(chain.study, study)
    gone = sorted(study.rglob("*.dcm"))[0]
    gone.unlink()
    result = _verify_offline(chain, study)
    assert result.exit_code == 1, result.output
    missing = [line for line in lines(result.stdout) if line.startswith("MISSING ")]
    assert len(missing) == 1
    assert lines(result.stdout)[-1].endswith("1 missing -> MISMATCH")


def _with_a_huge_image(chain: Chain, folder: Path) -> tuple[Path, Path]:
    """A copy of the study plus ``a-huge.dcm`` (walked first), a registered file made to
    claim 65535 x 65535 16-bit pixels (8 GiB decoded) under a new SOP Instance UID."""
    study = folder / "study"
    shutil.copytree(chain.study, study)
    ds = pydicom.dcmread(sorted(study.rglob("*.dcm"))[0])
    ds.Rows = ds.Columns = 65535
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.826.0.1.3680043.10.9999")
    huge = study / "a-huge.dcm"
    ds.save_as(huge, enforce_file_format=True)
    assert huge.stat().st_size < 4_000
    return study, huge


@pytest.mark.parametrize("jobs", ["1", "2"], ids=["in-process", "pooled"])
def test_verify_reports_an_image_over_the_pixel_limit_and_checks_the_others(
    chain: Chain, tmp_path: Path, jobs: str
) -> None:
    study, huge = _with_a_huge_image(chain, tmp_path)
    result = run(
        *("verify", "--dataset", DATASET, "--jobs", jobs, study),
        *("--receipt", chain.receipt_file, "--genesis", chain.genesis_file),
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    printed = lines(result.stdout)
    assert sum(line.startswith("MATCH ") for line in printed) == INSTANCES
    (unreadable,) = [line for line in printed if line.startswith("UNREADABLE ")]
    assert f" {huge}  too_large: " in unreadable
    assert "65535 x 65535" in unreadable
    assert "limit of 2.0 GiB" in unreadable
    assert printed[-1] == f"{DATASET}: {INSTANCES} match, 1 unreadable -> MISMATCH"


def test_verify_takes_the_pixel_limit_as_an_option(chain: Chain) -> None:
    """8 x 8 x 2 bytes = 128 decoded bytes per instance of the chain's study."""
    at_limit = _verify_offline(chain, chain.study, "--max-pixel-bytes", "128")
    assert at_limit.exit_code == 0, at_limit.output
    over = _verify_offline(chain, chain.study, "--max-pixel-bytes", "127", "--json")
    assert over.exit_code == 1, over.output
    records = [json.loads(line) for line in lines(over.stdout)]
    problems = [r for r in records if "error" in r]
    assert len(problems) == INSTANCES
    assert {r["error"] for r in problems} == {"too_large"}
    assert all("limit of 127 bytes" in r["message"] for r in problems)
    assert records[-1]["unreadable"] == INSTANCES
    assert records[-1]["ok"] is False


@pytest.mark.parametrize("command", ["submit", "verify"])
def test_the_pixel_limit_must_be_positive(
    command: str, files: dict[str, Path], nowhere: str
) -> None:
    build = {**WRITE_COMMANDS, **READ_COMMANDS}[command]
    result = run(*build(files), "--max-pixel-bytes", "0", "--rpc", nowhere)
    stderr = assert_clean_failure(result, exit_code=2)
    assert "--max-pixel-bytes" in stderr
    assert "no node answers" not in result.output


def test_verify_offline_refuses_a_receipt_of_another_dataset(chain: Chain) -> None:
    result = run(
        *("verify", "--dataset", "another-dataset", "--jobs", "1", chain.study),
        *("--receipt", chain.receipt_file, "--genesis", chain.genesis_file),
    )
    line = assert_clean_failure(result)
    assert f"the receipt is for dataset {DATASET}, not another-dataset" in line


def test_verify_offline_refuses_a_receipt_that_does_not_verify(
    chain: Chain, tmp_path: Path
) -> None:
    obj = _receipt_json(chain)
    _tamper_tx_signature(obj)
    tampered = _write_json(tmp_path / "tampered.json", obj)
    result = run(
        *("verify", "--dataset", DATASET, "--jobs", "1", chain.study),
        *("--receipt", tampered, "--genesis", chain.genesis_file),
    )
    line = assert_clean_failure(result)
    assert "the receipt does not verify: tx 0 (dataset.register, block 2): signature" in line


def test_verify_with_a_receipt_needs_the_genesis(chain: Chain) -> None:
    result = run(
        *("verify", "--dataset", DATASET, "--jobs", "1", chain.study),
        *("--receipt", chain.receipt_file),
    )
    stderr = assert_clean_failure(result, exit_code=2)
    assert "--genesis is required" in stderr


# --------------------------------------------------------------------------- a node answering


@contextlib.contextmanager
def serve(make_app: Callable[[], Awaitable[web.Application]]) -> Iterator[str]:
    """Serve the app ``make_app`` builds on 127.0.0.1 from its own thread and event loop."""
    loop = asyncio.new_event_loop()

    async def start() -> web.AppRunner:
        runner = web.AppRunner(await make_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = loop.run_until_complete(start())
    host, port = runner.addresses[0][:2]
    thread = threading.Thread(target=loop.run_forever, name="rpc", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


@pytest.fixture(scope="module")
def node_url(chain: Chain) -> Iterator[str]:
    """The chain's node (not running consensus) serving its RPC."""

    async def make_app() -> web.Application:
        return Rpc(unstarted_node(chain.world.ledger, chain.genesis_file.parent)).app

    with serve(make_app) as url:
        yield url


def test_receipt_get_writes_a_receipt_that_verifies(
    chain: Chain, node_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "fetched.json"
    result = run("receipt", "get", "--dataset", DATASET, "--out", out, "--rpc", node_url)
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.strip()
        == f"receipt for dataset {DATASET}: 2 transaction(s), written to {out}"
    )
    assert json.loads(out.read_text()) == _receipt_json(chain)
    verified = run("receipt", "verify", out, "--genesis", chain.genesis_file)
    assert verified.exit_code == 0, verified.output


def test_receipt_get_of_one_instance(chain: Chain, node_url: str, tmp_path: Path) -> None:
    sop = chain.series.leaves[4].sop_instance_uid
    out = tmp_path / "instance.json"
    result = run(
        *("receipt", "get", "--dataset", DATASET, "--instance", sop, "--out", out),
        *("--rpc", node_url),
    )
    assert result.exit_code == 0, result.output
    assert f"instance {sop} of dataset {DATASET}" in result.stdout
    assert json.loads(out.read_text()) == _receipt_json(chain, instance=True)


def test_receipt_get_of_an_unknown_dataset_fails_in_one_line(node_url: str, tmp_path: Path) -> None:
    out = tmp_path / "none.json"
    result = run("receipt", "get", "--dataset", "no-such-dataset", "--out", out, "--rpc", node_url)
    line = assert_clean_failure(result)
    assert line.startswith("Error: not_found: ")
    assert not out.exists()


def test_verify_online_matches_the_registered_study(chain: Chain, node_url: str) -> None:
    result = run("verify", "--dataset", DATASET, "--jobs", "1", chain.study, "--rpc", node_url)
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[-1] == f"{DATASET}: {INSTANCES} match -> all instances match"


def test_dataset_show_prints_what_the_node_holds(chain: Chain, node_url: str) -> None:
    result = run("dataset", "show", DATASET, "--rpc", node_url)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == DATASET
    assert shown["series"][0]["series_root"] == chain.series.root.hex()


@pytest.mark.parametrize(
    ("grantee", "exit_code", "decision"),
    [(RESEARCHER, 0, "allow"), (OTHER, 1, "deny")],
    ids=["consented", "not-consented"],
)
def test_authz_exit_status_is_the_decision(
    node_url: str, grantee: SigningKey, exit_code: int, decision: str
) -> None:
    result = run(
        *("authz", "--grantee", grantee.public_key.hex(), "--dataset", DATASET),
        *("--purpose", "research", "--rpc", node_url),
    )
    assert result.exit_code == exit_code, result.output
    assert json.loads(result.stdout)["decision"] == decision


def test_a_refused_write_names_the_rejection(node_url: str, tmp_path: Path) -> None:
    key = tmp_path / "stranger.json"
    write_key_file(key, STRANGER)
    result = run(
        *("member", "enroll", "--key", key, "--member", "cd" * 32, "--site", "site0"),
        *("--role", "researcher", "--reason", "not my site", "--rpc", node_url),
    )
    line = assert_clean_failure(result)
    assert line.startswith("Error: member.enroll refused (not_site_admin): ")


def test_verify_online_of_an_unknown_dataset_fails_in_one_line(chain: Chain, node_url: str) -> None:
    result = run("verify", "--dataset", "no-such", "--jobs", "1", chain.study, "--rpc", node_url)
    line = assert_clean_failure(result)
    assert line.startswith("Error: not_found: ")


@pytest.mark.parametrize("dataset", ["lung ct", f"{DATASET}#draft"], ids=["space", "hash"])
def test_an_id_is_sent_as_typed(node_url: str, dataset: str) -> None:
    assert_clean_failure(run("dataset", "show", dataset, "--rpc", node_url))


# --------------------------------------------------------------------------- submit, up to the
# first commit (this node runs no consensus, so nothing it admits is ever committed)


@pytest.fixture
def researcher_key(tmp_path: Path) -> Path:
    path = tmp_path / "researcher.json"
    write_key_file(path, RESEARCHER)
    return path


def _submit(key: Path, study: Path, node_url: str, manifest: Path, *extra: str) -> Result:
    return run(
        *("submit", "--key", key, "--dataset", DATASET, "--reason", "baseline", "--jobs", "1"),
        *(study, "--manifest", manifest, "--rpc", node_url),
        *extra,
    )


def test_submit_of_an_already_registered_series_sends_nothing(
    chain: Chain, node_url: str, researcher_key: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "local.manifest.json"
    result = _submit(researcher_key, chain.study, node_url, manifest)
    assert result.exit_code == 0, result.output
    assert f"series {chain.series.series_uid}: already registered, same manifest" in result.stdout
    written = json.loads(manifest.read_text())
    assert written["dataset"] == DATASET
    assert written["chain_id"] == chain.genesis.chain_id
    (series,) = written["series"]
    assert series["status"] == "already registered"
    assert series["transactions"] == []
    assert series["root"] == chain.series.root.hex()
    assert len(series["instances"]) == INSTANCES


def test_submit_of_a_changed_series_points_to_supersedes(
    chain: Chain, node_url: str, researcher_key: Path, tmp_path: Path
) -> None:
    study = tmp_path / "study"
    shutil.copytree(chain.study, study)
    changed = sorted(study.rglob("*.dcm"))[0]
    ds = pydicom.dcmread(changed)
    ds.SliceThickness = "5"
    ds.save_as(changed, enforce_file_format=True)
    manifest = tmp_path / "local.manifest.json"
    line = assert_clean_failure(_submit(researcher_key, study, node_url, manifest))
    assert "different manifest root" in line
    assert "--supersedes" in line
    assert not manifest.exists()


def test_submit_refuses_files_that_fail_the_gate_and_registers_nothing(
    node_url: str, researcher_key: Path, tmp_path: Path
) -> None:
    study = tmp_path / "identified"
    synthetic.write_study(
        study, synthetic.StudySpec(seed=53, instances=2, rows=8, columns=8, identity_removed=False)
    )
    result = _submit(researcher_key, study, node_url, tmp_path / "m.json")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "2 file(s) fail the de-identification gate" in result.stderr
    assert lines(result.stderr)[-1] == (
        "Error: nothing was registered (fix the files, or relax a named check with --policy)"
    )


def test_submit_refuses_an_unreadable_file_and_registers_nothing(
    chain: Chain, node_url: str, researcher_key: Path, tmp_path: Path
) -> None:
    study = tmp_path / "study"
    shutil.copytree(chain.study, study)
    (study / "notes.dcm").write_text("not DICOM at all")
    result = _submit(researcher_key, study, node_url, tmp_path / "m.json")
    assert result.exit_code == 1, result.output
    assert "1 file(s) could not be fingerprinted" in result.stderr
    assert "notes.dcm" in result.stderr
    assert lines(result.stderr)[-1] == "Error: nothing was registered"


def test_submit_refuses_an_image_over_the_pixel_limit_and_registers_nothing(
    chain: Chain, node_url: str, researcher_key: Path, tmp_path: Path
) -> None:
    """The huge file is read first; every file after it is still read, and each failure
    reported (an unreadable one too), before the run stops with nothing signed."""
    study, huge = _with_a_huge_image(chain, tmp_path)
    (study / "z-notes.dcm").write_text("not DICOM at all")
    manifest = tmp_path / "m.json"
    result = _submit(researcher_key, study, node_url, manifest)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    reported = lines(result.stderr)
    assert reported[0] == "2 file(s) could not be fingerprinted:"
    assert reported[1].startswith(f"  {huge}: too_large: the image declares 65535 x 65535")
    assert reported[2].startswith(f"  {study / 'z-notes.dcm'}: not_dicom: ")
    assert reported[-1] == "Error: nothing was registered"
    assert not manifest.exists()


def test_submit_takes_the_pixel_limit_as_an_option(
    chain: Chain, node_url: str, researcher_key: Path, tmp_path: Path
) -> None:
    over = _submit(
        researcher_key, chain.study, node_url, tmp_path / "m.json", "--max-pixel-bytes", "127"
    )
    assert over.exit_code == 1, over.output
    assert f"{INSTANCES} file(s) could not be fingerprinted" in over.stderr
    assert over.stderr.count(": too_large: ") == INSTANCES
    assert "limit of 127 bytes" in over.stderr
    at_limit = _submit(
        researcher_key, chain.study, node_url, tmp_path / "m.json", "--max-pixel-bytes", "128"
    )
    assert at_limit.exit_code == 0, at_limit.output
    assert "already registered, same manifest" in at_limit.stdout


# --------------------------------------------------------------------------- submit on a running
# network, to the commit


def test_submit_with_a_policy_commits_and_records_the_relaxation_on_chain(
    network: Network, tmp_path: Path
) -> None:
    """A study failing exactly one gate check (burned-in) is refused, then registered
    with ``--policy burned-in`` on a real 4-process network; the committed transaction,
    read back from another node, carries the relaxation in its series summary."""
    study = tmp_path / "burned"
    synthetic.write_study(
        study, synthetic.StudySpec(seed=57, instances=3, rows=8, columns=8, burned_in="YES")
    )
    gated = run("gate", "--json", "--jobs", "1", study)
    assert gated.exit_code == 1
    failed = {f["check"] for line in lines(gated.stdout) for f in json.loads(line)["failures"]}
    assert failed == {"burned-in"}

    key = network.net.nodes[0].home / ADMIN_KEY_FILE
    node0 = f"http://127.0.0.1:{ports(network.base, 0)[1]}"
    manifest = tmp_path / "burned.manifest.json"

    def submit(*extra: str) -> Result:
        return run(
            *("submit", "--key", key, "--dataset", "ct-burned-in", "--jobs", "1"),
            *("--reason", "CT with burned-in flag set, reviewed: no text", "--rpc", node0),
            *("--manifest", manifest),
            *extra,
            study,
        )

    refused = submit()
    assert refused.exit_code == 1, refused.output
    assert "3 file(s) fail the de-identification gate" in refused.stderr
    assert not manifest.exists()

    registered = submit("--policy", "burned-in")
    assert registered.exit_code == 0, registered.output
    assert "3 instances in 1 series registered" in registered.stdout
    (series,) = json.loads(manifest.read_text())["series"]
    assert series["summary"]["deid"]["relaxed"] == ["burned-in"]
    (tx,) = series["transactions"]
    wait_for(lambda: network.height(1) >= tx["height"], 30, "node 1 to reach the commit")
    committed = network.get(1, f"/v1/txs/{tx['hash']}")
    assert committed["status"] == "committed"
    assert committed["height"] == tx["height"]
    assert committed["tx"]["kind"] == "dataset.register"
    summary = committed["tx"]["body"]["summary"]
    assert summary["deid"]["relaxed"] == ["burned-in"]
    assert summary["deid"]["codes"] == ["113100"]
    assert summary["instances"] == 3


# --------------------------------------------------------------------------- node/client.py


def test_nonces_increase_strictly_even_when_the_clock_stands_still(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now_ns = [1_700_000_000_000_000_000]
    monkeypatch.setattr(time, "time_ns", lambda: now_ns[0])
    nonces = Nonces()
    first = [nonces.next() for _ in range(3)]
    assert first == [1_700_000_000_000_000, 1_700_000_000_000_001, 1_700_000_000_000_002]
    now_ns[0] -= 5_000_000_000  # the clock steps back 5 s
    assert nonces.next() == first[-1] + 1
    now_ns[0] += 60_000_000_000  # and then runs ahead again
    assert nonces.next() == now_ns[0] // 1000


def test_sign_makes_a_verifiable_transaction_with_the_next_nonce() -> None:
    nonces = Nonces()
    body = {"dataset": "ds1", "reason": "r"}
    first = sign(RESEARCHER, "radledger-testnet", "access.log", body, nonces)
    second = sign(RESEARCHER, "radledger-testnet", "access.log", body, nonces)
    assert first.verify_signature()
    assert (first.chain_id, first.kind, first.signer) == (
        "radledger-testnet",
        "access.log",
        RESEARCHER.public_key,
    )
    assert first.body_value() == body
    assert second.nonce > first.nonce


def test_the_client_reads_and_drops_empty_parameters(chain: Chain, node_url: str) -> None:
    client = RpcClient(node_url + "/")
    assert client.status()["chain_id"] == chain.genesis.chain_id
    answer = client.get(f"/v1/receipts/{DATASET}", {"instance": None})
    assert answer == _receipt_json(chain)


def test_the_client_turns_an_error_envelope_into_rpc_error(node_url: str) -> None:
    with pytest.raises(RpcError) as caught:
        RpcClient(node_url).get("/v1/datasets/no-such")
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert "no-such" in caught.value.message


@dataclass
class Stub:
    """Answers to POST /v1/txs, in order; every request seen."""

    answers: list[web.Response]
    seen: list[str]


@pytest.fixture
def stub() -> Iterator[tuple[str, Stub]]:
    state = Stub([], [])

    async def submit(request: web.Request) -> web.Response:
        state.seen.append(request.path_qs)
        return state.answers.pop(0)

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>not a radledger node</html>", content_type="text/html")

    async def make_app() -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/v1/txs", submit), web.get("/{tail:.*}", html)])
        return app

    with serve(make_app) as url:
        yield url, state


def _busy() -> web.Response:
    body = {"error": {"code": "mempool_full", "message": "the mempool is full", "detail": {}}}
    return web.json_response(body, status=429, headers={"Retry-After": "1"})


def test_submit_retries_while_the_node_is_busy(
    stub: tuple[str, Stub], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = stub
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    tx = sign(RESEARCHER, "radledger-testnet", "access.log", {"reason": "r"}, Nonces())
    committed = {"hash": tx.hash.hex(), "status": "committed", "height": 9, "index": 0}
    state.answers += [_busy(), _busy(), web.json_response(committed)]
    assert RpcClient(url).submit(tx, timeout_ms=5_000) == committed
    assert slept == [1.0, 1.0]
    assert state.seen == ["/v1/txs?wait=commit&timeout_ms=5000"] * 3


def test_submit_says_when_a_transaction_is_admitted_but_not_committed(
    stub: tuple[str, Stub],
) -> None:
    url, state = stub
    tx = sign(RESEARCHER, "radledger-testnet", "access.log", {"reason": "r"}, Nonces())
    state.answers.append(
        web.json_response({"hash": tx.hash.hex(), "status": "pending"}, status=202)
    )
    with pytest.raises(RpcError) as caught:
        RpcClient(url).submit(tx, timeout_ms=2_000)
    assert caught.value.code == "not_committed"
    assert f"GET /v1/txs/{tx.hash.hex()}" in caught.value.message


def test_submit_without_waiting_returns_the_admission(stub: tuple[str, Stub]) -> None:
    url, state = stub
    tx = sign(RESEARCHER, "radledger-testnet", "access.log", {"reason": "r"}, Nonces())
    admitted = {"hash": tx.hash.hex(), "status": "admitted"}
    state.answers.append(web.json_response(admitted, status=202))
    assert RpcClient(url).submit(tx, wait=False) == admitted
    assert state.seen == ["/v1/txs"]


def test_a_refusal_is_not_retried(stub: tuple[str, Stub]) -> None:
    url, state = stub
    body = {"error": {"code": "nonce_reused", "message": "nonce 3 is not above 5", "detail": {}}}
    state.answers.append(web.json_response(body, status=409))
    tx = sign(RESEARCHER, "radledger-testnet", "access.log", {"reason": "r"}, Nonces())
    with pytest.raises(RpcError) as caught:
        RpcClient(url).submit(tx)
    assert (caught.value.status, caught.value.code) == (409, "nonce_reused")
    assert len(state.seen) == 1


def test_a_server_that_is_not_a_node_fails_in_one_line(stub: tuple[str, Stub]) -> None:
    url, _ = stub
    assert_clean_failure(run("dataset", "show", "ds1", "--rpc", url))
