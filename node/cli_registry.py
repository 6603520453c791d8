"""The researcher's commands: register and verify DICOM data, receipts, and the
registry's other records (members, access, subjects, consent, trials, derivations).

Every write asks for ``--reason`` (21 CFR Part 11: who, what, when, why); the
signer is the key file, the time is now. Writes wait until the transaction is
committed and print its height. Errors are one line naming what to do; exit
status 1 for a refusal or a failed check, 2 for bad usage.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click
from tqdm import tqdm

from imaging.deid import GatePolicy
from imaging.inspect import Instance, Problem, Series, group_series
from imaging.scan import scan, walk
from ledger.errors import DecodeError, GenesisError, KeyFileError, LedgerError
from ledger.genesis import Genesis
from ledger.keys import SigningKey, load_key_file
from ledger.manifest import GATE_CHECKS, INSTANCE_LEAF_SCHEMA
from ledger.receipt import Receipt, all_passed
from ledger.receipt import verify as verify_receipt
from node.cli_imaging import max_pixel_bytes_option
from node.client import DEFAULT_RPC, Nonces, RpcClient, RpcError, sign
from node.researcher import (
    Registered,
    compare,
    register_bodies,
    registered_from_receipt,
    subject_commitment,
    summary_counts,
)
from registry.kinds import GRANTEE_KINDS, PURPOSES, ROLES, TRANSFORMATIONS

EXIT_FAILED: Final = 1

rpc_option = click.option(
    "--rpc",
    default=DEFAULT_RPC,
    show_default=True,
    envvar="RADLEDGER_RPC",
    help="The node's RPC address (or set RADLEDGER_RPC).",
)
key_option = click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Your key file (from `radledger keygen`; a site's admin_key.json for admins).",
)
reason_option = click.option(
    "--reason", required=True, help="Why (recorded on chain with who, what and when)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
jobs_option = click.option(
    "--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes."
)


def _key(path: Path) -> SigningKey:
    try:
        return load_key_file(path)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_FAILED)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _digest_arg(value: str, what: str) -> bytes:
    """A 64-hex digest, or a file whose SHA-256 is taken (plain, so sha256sum agrees)."""
    path = Path(value)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).digest()
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise click.BadParameter(f"{what} must be a file or a 64-hex SHA-256 digest")
    return raw


def _key_arg(value: str, what: str, kind: str = "a public key") -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise click.BadParameter(f"{what} must be {kind}: 64 hex digits")
    return raw


def _grant_arg(value: str, what: str) -> bytes:
    return _key_arg(value, what, "a grant id (the granting transaction's hash)")


@dataclass
class _Writer:
    """Signs, submits and waits; remembers what it committed."""

    client: RpcClient
    key: SigningKey
    chain_id: str
    nonces: Nonces = field(default_factory=Nonces)

    @classmethod
    def connect(cls, rpc: str, key_file: Path) -> _Writer:
        client = RpcClient(rpc)
        try:
            chain_id = client.status()["chain_id"]
        except RpcError as exc:
            raise click.ClickException(exc.message) from None
        return cls(client, _key(key_file), str(chain_id))

    def commit(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        tx = sign(self.key, self.chain_id, kind, body, self.nonces)
        try:
            answer = self.client.submit(tx)
        except RpcError as exc:
            _fail(f"{kind} refused ({exc.code}): {exc.message}")
            raise AssertionError from None  # unreachable: _fail exits
        return {"kind": kind, "hash": tx.hash.hex(), "height": answer.get("height")}


def _write(rpc: str, key_file: Path, kind: str, body: dict[str, Any], as_json: bool) -> None:
    writer = _Writer.connect(rpc, key_file)
    result = writer.commit(kind, {**body, "time_ms": _now_ms()})
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(f"{kind} committed at height {result['height']} (tx {result['hash']})")


# --------------------------------------------------------------------------- scanning


def _scan_with_progress(
    paths: Sequence[Path],
    policy: GatePolicy,
    jobs: int | None,
    max_pixel_bytes: int,
    quiet: bool,
) -> tuple[list[Instance], list[Problem]]:
    files = walk(paths)
    if not files:
        raise click.ClickException("no files found under the given paths")
    instances: list[Instance] = []
    problems: list[Problem] = []
    started = time.perf_counter()
    size = 0
    with tqdm(
        total=len(files), unit="file", desc="fingerprinting", disable=quiet or None, file=sys.stderr
    ) as bar:
        for result in scan(files, policy, jobs, max_pixel_bytes):
            if isinstance(result, Problem):
                problems.append(result)
            else:
                instances.append(result)
                size += result.size
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"{size / 1e6 / elapsed:.0f} MB/s")
            bar.update()
    return instances, problems


def _report_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        click.echo(f"  {problem.path}: {problem.code}: {problem.message}", err=True)


# --------------------------------------------------------------------------- submit


@click.command()
@key_option
@click.option("--dataset", required=True, help="Dataset id (letters, digits, . _ -).")
@reason_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@rpc_option
@click.option(
    "--policy",
    "--relax",
    "policy",
    multiple=True,
    type=click.Choice(GATE_CHECKS),
    help="Relax a named de-identification check (repeatable; recorded on chain). "
    "--relax is the older name.",
)
@click.option("--supersedes", default=None, help="A dataset id this one corrects.")
@click.option(
    "--manifest",
    "manifest_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the local manifest (default: <dataset>.manifest.json).",
)
@jobs_option
@max_pixel_bytes_option
@json_option
def submit(
    key_file: Path,
    dataset: str,
    reason: str,
    paths: tuple[Path, ...],
    rpc: str,
    policy: tuple[str, ...],
    supersedes: str | None,
    manifest_out: Path | None,
    jobs: int | None,
    max_pixel_bytes: int,
    as_json: bool,
) -> None:
    """Fingerprint DICOM files and register them as a dataset.

    Walks PATHS, fingerprints every file in parallel, runs the de-identification
    gate, and registers each series (split into parts if large) through the
    node, waiting for each to commit. Nothing is registered if any file fails
    to read or fails the gate. Running it again resumes a series that was cut
    short and skips series already registered with the same manifest.
    """
    writer = _Writer.connect(rpc, key_file)
    try:
        max_tx_bytes = int(writer.client.status().get("max_tx_bytes", 32 * 1024))
    except RpcError as exc:
        raise click.ClickException(exc.message) from None
    instances, problems = _scan_with_progress(
        paths, GatePolicy.relaxing(policy), jobs, max_pixel_bytes, as_json
    )
    if problems:
        click.echo(f"{len(problems)} file(s) could not be fingerprinted:", err=True)
        _report_problems(problems)
        _fail("nothing was registered")
    refused = [i for i in instances if not i.gate.passed]
    if refused:
        click.echo(f"{len(refused)} file(s) fail the de-identification gate:", err=True)
        for instance in refused:
            click.echo(f"  {instance.path}: {instance.gate.explain()}", err=True)
        _fail("nothing was registered (fix the files, or relax a named check with --policy)")
    try:
        series_list = group_series(instances)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    existing = _dataset_or_none(writer.client, dataset)
    if existing is not None:
        _check_existing(dataset, existing, supersedes)
    known = {s["uid"]: s for s in (existing or {}).get("series", [])}
    created = existing is not None
    starts = {s.series_uid: _resume_point(s, known.get(s.series_uid)) for s in series_list}
    if existing is not None and existing.get("sealed") and 0 in starts.values():
        _fail(_sealed_message(dataset, existing))
    records = []
    for series in series_list:
        first_part = starts[series.series_uid]
        if first_part is None:
            records.append(_manifest_series(series, [], "already registered"))
            if not as_json:
                click.echo(f"series {series.series_uid}: already registered, same manifest")
            continue
        try:
            bodies = register_bodies(
                dataset,
                series,
                reason=reason,
                time_ms=_now_ms(),
                max_tx_bytes=max_tx_bytes,
                supersedes=None if created else supersedes,
                first_part=first_part,
            )
        except ValueError as exc:  # the network's transactions are too small for a part
            raise click.ClickException(str(exc)) from None
        committed = []
        for body in bodies:
            body["time_ms"] = _now_ms()
            result = writer.commit("dataset.register", body)
            committed.append(result)
            created = True
            if not as_json:
                click.echo(
                    f"series {series.series_uid}: part {body['part'] + 1}/{body['parts']} "
                    f"({len(body['leaves'])} instances) committed at height {result['height']}"
                )
        records.append(_manifest_series(series, committed, "registered"))
    manifest = {
        "format": "radledger-local-manifest",
        "dataset": dataset,
        "chain_id": writer.chain_id,
        "series": records,
    }
    out = manifest_out or Path(f"{dataset}.manifest.json")
    out.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    count = sum(len(s.leaves) for s in series_list)
    if as_json:
        click.echo(json.dumps({"dataset": dataset, "instances": count, "manifest": str(out)}))
    else:
        click.echo(
            f"dataset {dataset}: {count} instances in {len(series_list)} series registered; "
            f"local manifest {out}"
        )


def _dataset_or_none(client: RpcClient, dataset: str) -> dict[str, Any] | None:
    try:
        answer = client.get(RpcClient.path("v1", "datasets", dataset))
    except RpcError as exc:
        if exc.status == 404:
            return None
        raise click.ClickException(exc.message) from None
    assert isinstance(answer, dict)
    return answer


def _check_existing(dataset: str, existing: dict[str, Any], supersedes: str | None) -> None:
    """``--supersedes`` names the dataset a *new* id corrects; on an existing id it is refused
    (unless it resumes that very registration, which recorded the same supersession)."""
    if supersedes is None or existing["versions"]["supersedes"] == supersedes:
        return
    _fail(
        f"dataset {dataset} already exists (created at height {existing['created_height']}); "
        f"--supersedes {supersedes} applies only when creating a dataset: register the new "
        "version under a new --dataset id"
    )


def _sealed_message(dataset: str, existing: dict[str, Any]) -> str:
    sealed = existing["sealed"]
    latest = existing["versions"]["superseded_by"] or dataset
    return (
        f"dataset {dataset} is sealed ({sealed['cause']} at height {sealed['height']}) and "
        f"takes no new series; register a new version: --dataset <new id> --supersedes {latest}"
    )


def _resume_point(series: Series, state: dict[str, Any] | None) -> int | None:
    """The part to start from, or ``None`` if the series is already registered."""
    if state is None:
        return 0
    if state["series_root"] != series.root.hex():
        _fail(
            f"series {series.series_uid} is already in this dataset with a different manifest "
            "root: register a corrected dataset with --supersedes instead"
        )
    if state["complete"]:
        return None
    return int(state["parts_received"])


def _manifest_series(
    series: Series, committed: list[dict[str, Any]], status: str
) -> dict[str, Any]:
    return {
        "series_instance_uid": series.series_uid,
        "root": series.root.hex(),
        "status": status,
        "summary": series.summary.to_json(),
        "transactions": committed,
        "instances": [{"path": i.path, **i.fingerprint.to_json()} for i in series.instances],
    }


# --------------------------------------------------------------------------- verify


@click.command()
@click.option("--dataset", required=True, help="The dataset id to verify against.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@rpc_option
@click.option(
    "--receipt",
    "receipt_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Verify offline against this dataset receipt (needs --genesis) instead of a node.",
)
@click.option(
    "--genesis",
    "genesis_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The network's genesis file (for --receipt).",
)
@jobs_option
@max_pixel_bytes_option
@json_option
def verify(
    dataset: str,
    paths: tuple[Path, ...],
    rpc: str,
    receipt_file: Path | None,
    genesis_file: Path | None,
    jobs: int | None,
    max_pixel_bytes: int,
    as_json: bool,
) -> None:
    """Check DICOM files against what the ledger holds for a dataset.

    Prints, per instance: match, pixels changed, header changed, missing, not
    registered, or derived (a lossy copy), then a summary. Exit 0 only if every
    registered instance is present and matches.
    """
    newer: str | None = None
    if receipt_file is not None:
        registered = _registered_offline(dataset, receipt_file, genesis_file)
    else:
        registered, newer = _registered_online(dataset, RpcClient(rpc))
    if newer is not None:
        click.echo(
            f"warning: dataset {dataset} has been superseded by {newer}; these files are "
            f"checked against {dataset} as it was registered",
            err=True,
        )
    instances, problems = _scan_with_progress(paths, GatePolicy(), jobs, max_pixel_bytes, as_json)
    outcomes = compare(instances, registered)
    for outcome in outcomes:
        if as_json:
            click.echo(json.dumps(outcome.to_json(), sort_keys=True))
        else:
            where = outcome.path or "-"
            click.echo(
                f"{outcome.verdict.value.upper():<26} {where}  {outcome.sop_instance_uid}  "
                f"{outcome.detail}"
            )
    for problem in problems:
        if as_json:
            click.echo(json.dumps(problem.to_json(), sort_keys=True))
        else:
            click.echo(f"{'UNREADABLE':<26} {problem.path}  {problem.code}: {problem.message}")
    counts = {k: v for k, v in summary_counts(outcomes).items() if v}
    ok = all(o.ok for o in outcomes) and not problems and bool(outcomes)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    if problems:
        summary += f", {len(problems)} unreadable"
    if as_json:
        summary_json: dict[str, Any] = {"summary": counts, "unreadable": len(problems), "ok": ok}
        if newer is not None:  # only then: a newer version exists
            summary_json["superseded_by"] = newer
        click.echo(json.dumps(summary_json))
    else:
        verdict = "all instances match" if ok else "MISMATCH"
        click.echo(f"{dataset}: {summary} -> {verdict}")
    if not ok:
        sys.exit(EXIT_FAILED)


def _registered_online(dataset: str, client: RpcClient) -> tuple[list[Registered], str | None]:
    """The complete series' leaves, and the newer version superseding the dataset, if any."""
    try:
        info = client.get(RpcClient.path("v1", "datasets", dataset))
        out: list[Registered] = []
        for series in info["series"]:
            if not series["complete"]:
                continue
            uid = series["uid"]
            answer = client.get(RpcClient.path("v1", "datasets", dataset, "series", uid, "leaves"))
            out.extend(
                Registered(INSTANCE_LEAF_SCHEMA.from_json(raw), uid) for raw in answer["leaves"]
            )
    except RpcError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    newer = info.get("versions", {}).get("superseded_by")
    return out, None if newer is None else str(newer)


def _load_receipt(path: Path) -> Receipt:
    try:
        return Receipt.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, LedgerError) as exc:  # ValueError: bad JSON, not UTF-8
        _fail(f"{path} is not a readable receipt: {exc}")
        raise AssertionError from None
    except RecursionError:  # JSON nested deeper than the parser's stack
        _fail(f"{path} is not a readable receipt: it is nested too deeply")
        raise AssertionError from None


def _load_genesis(path: Path | None) -> Genesis:
    if path is None:
        raise click.UsageError("--genesis is required to check a receipt")
    try:
        return Genesis.load(path)
    except GenesisError as exc:
        raise click.ClickException(str(exc)) from None


def _registered_offline(
    dataset: str, receipt_file: Path, genesis_file: Path | None
) -> list[Registered]:
    genesis = _load_genesis(genesis_file)
    receipt = _load_receipt(receipt_file)
    if receipt.dataset != dataset:
        _fail(f"the receipt is for dataset {receipt.dataset}, not {dataset}")
    steps = verify_receipt(receipt, genesis)
    if not all_passed(steps):
        failed = next(s for s in steps if not s.ok)
        _fail(f"the receipt does not verify: {failed.name}: {failed.detail}")
    return registered_from_receipt(receipt)


# --------------------------------------------------------------------------- receipts


@click.group()
def receipt() -> None:
    """Offline-verifiable receipts of registrations (docs/RECEIPTS.md)."""


@receipt.command("get")
@click.option("--dataset", required=True)
@click.option("--instance", default=None, help="A SOP Instance UID: prove this instance too.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@rpc_option
def receipt_get(dataset: str, instance: str | None, out: Path, rpc: str) -> None:
    """Fetch a receipt from a node and write it to a file."""
    try:
        answer = RpcClient(rpc).get(
            RpcClient.path("v1", "receipts", dataset), {"instance": instance}
        )
    except RpcError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    try:
        parsed = Receipt.from_json(answer)
    except DecodeError as exc:
        raise click.ClickException(f"the node sent a malformed receipt: {exc}") from None
    out.write_text(json.dumps(answer, indent=2, sort_keys=True) + "\n")
    what = f"instance {instance} of dataset {dataset}" if instance else f"dataset {dataset}"
    click.echo(f"receipt for {what}: {len(parsed.entries)} transaction(s), written to {out}")


@receipt.command("verify")
@click.argument("receipt_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--genesis", "genesis_file", required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@json_option
def receipt_verify(receipt_file: Path, genesis_file: Path, as_json: bool) -> None:
    """Check a receipt with nothing but the genesis file: no node, no network.

    Exit 0 only if every step verifies; otherwise the failed steps are named.
    """
    genesis = _load_genesis(genesis_file)
    parsed = _load_receipt(receipt_file)
    steps = verify_receipt(parsed, genesis)
    for step in steps:
        if as_json:
            click.echo(
                json.dumps(
                    {"step": step.name, "ok": step.ok, "detail": step.detail}, sort_keys=True
                )
            )
        else:
            click.echo(f"{'ok' if step.ok else 'FAIL':<4}  {step.name}: {step.detail}")
    if all_passed(steps):
        if not as_json:
            click.echo(f"receipt verified: dataset {parsed.dataset} on chain {genesis.chain_id}")
        return
    failed = [s.name for s in steps if not s.ok]
    click.echo(f"receipt NOT verified: {len(failed)} step(s) failed: {failed[0]}", err=True)
    sys.exit(EXIT_FAILED)


# --------------------------------------------------------------------------- other records


@click.group()
def member() -> None:
    """Enrol or revoke researchers and auditors (site admins only)."""


@member.command("enroll")
@key_option
@click.option("--member", "member_key", required=True, help="The member's public key (hex).")
@click.option("--site", required=True, help="Your site id.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@reason_option
@rpc_option
@json_option
def member_enroll(
    key_file: Path, member_key: str, site: str, role: str, reason: str, rpc: str, as_json: bool
) -> None:
    """Enrol a researcher's or auditor's key at your site."""
    body = {
        "member": _key_arg(member_key, "--member"),
        "site": site,
        "role": role,
        "reason": reason,
    }
    _write(rpc, key_file, "member.enroll", body, as_json)


@member.command("revoke")
@key_option
@click.option("--member", "member_key", required=True, help="The member's public key (hex).")
@reason_option
@rpc_option
@json_option
def member_revoke(key_file: Path, member_key: str, reason: str, rpc: str, as_json: bool) -> None:
    """Revoke a member: the key can no longer act in the registry."""
    body = {"member": _key_arg(member_key, "--member"), "reason": reason}
    _write(rpc, key_file, "member.revoke", body, as_json)


@click.group()
def access() -> None:
    """The access log: who used which dataset, when and why."""


@access.command("log")
@key_option
@click.option("--dataset", required=True)
@click.option("--purpose", required=True, type=click.Choice(PURPOSES))
@click.option("--consent", "grant", default=None, help="The consent grant relied on (hex id).")
@click.option("--trial", default=None, help="The trial this access is for.")
@reason_option
@rpc_option
@json_option
def access_log(
    key_file: Path,
    dataset: str,
    purpose: str,
    grant: str | None,
    trial: str | None,
    reason: str,
    rpc: str,
    as_json: bool,
) -> None:
    """Record that you accessed a dataset."""
    body = {
        "dataset": dataset,
        "purpose": purpose,
        "consent": None if grant is None else _grant_arg(grant, "--consent"),
        "trial": trial,
        "reason": reason,
    }
    _write(rpc, key_file, "access.log", body, as_json)


@click.group()
def subject() -> None:
    """Pseudonymous patient keys (site admins)."""


@subject.command("link")
@key_option
@click.option("--subject", "subject_key", required=True, help="The patient's public key (hex).")
@click.option("--site", required=True)
@click.option("--dataset", "datasets", multiple=True, required=True, help="Repeatable.")
@click.option(
    "--site-secret",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The site's secret: a file of exactly 32 random bytes that only the site holds "
    "(destroying it shreds every link made with it).",
)
@click.option("--pseudonym", required=True, help="The site's pseudonym of the patient.")
@reason_option
@rpc_option
@json_option
def subject_link(
    key_file: Path,
    subject_key: str,
    site: str,
    datasets: tuple[str, ...],
    site_secret: Path,
    pseudonym: str,
    reason: str,
    rpc: str,
    as_json: bool,
) -> None:
    """Link a patient's key to datasets with a commitment only the site can open.

    The chain stores SHA-256(site secret || pseudonym), never the pseudonym; the
    secret must be exactly 32 bytes.
    """
    try:
        secret = site_secret.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {site_secret}: {exc.strerror}") from None
    try:
        commitment = subject_commitment(secret, pseudonym)
    except ValueError as exc:
        raise click.ClickException(f"--site-secret {site_secret} {exc}") from None
    body = {
        "subject": _key_arg(subject_key, "--subject"),
        "site": site,
        "commitment": commitment,
        "datasets": list(datasets),
        "reason": reason,
    }
    _write(rpc, key_file, "subject.link", body, as_json)


@click.group()
def consent() -> None:
    """Consent, signed with the patient's key."""


@consent.command("grant")
@key_option
@click.option("--grantee-kind", required=True, type=click.Choice(GRANTEE_KINDS))
@click.option("--grantee", required=True, help="Member key (hex), site id or project id.")
@click.option("--site", required=True, help="The site holding your data.")
@click.option(
    "--dataset", "datasets", multiple=True, help="Limit to these datasets (default: all)."
)
@click.option("--purpose", required=True, type=click.Choice(PURPOSES))
@click.option("--expires-ms", type=int, default=None, help="Expiry, ms since the epoch.")
@reason_option
@rpc_option
@json_option
def consent_grant(
    key_file: Path,
    grantee_kind: str,
    grantee: str,
    site: str,
    datasets: tuple[str, ...],
    purpose: str,
    expires_ms: int | None,
    reason: str,
    rpc: str,
    as_json: bool,
) -> None:
    """Grant consent; the grant id is the transaction hash."""
    body = {
        "grantee": {"kind": grantee_kind, "id": grantee},
        "scope": {"site": site, "datasets": list(datasets) if datasets else None},
        "purpose": purpose,
        "expires_ms": expires_ms,
        "reason": reason,
    }
    _write(rpc, key_file, "consent.grant", body, as_json)


@consent.command("revoke")
@key_option
@click.option("--grant", required=True, help="The grant id (hex).")
@reason_option
@rpc_option
@json_option
def consent_revoke(key_file: Path, grant: str, reason: str, rpc: str, as_json: bool) -> None:
    """Revoke a consent grant you gave."""
    _write(
        rpc,
        key_file,
        "consent.revoke",
        {"grant": _grant_arg(grant, "--grant"), "reason": reason},
        as_json,
    )


@click.group()
def trial() -> None:
    """Clinical trials: protocol, amendments and results fixed in time."""


@trial.command("register")
@key_option
@click.option("--trial", "trial_id", required=True)
@click.option("--protocol", required=True, help="Protocol document (file) or its SHA-256.")
@click.option("--endpoints", required=True, help="Endpoints document (file) or its SHA-256.")
@click.option("--registry-id", "registry_ids", multiple=True, help="e.g. NCT01234567.")
@click.option("--dataset", "datasets", multiple=True)
@click.option(
    "--investigator",
    "investigators",
    multiple=True,
    help="A member's public key (hex) who works on the trial, besides you (repeatable); "
    "investigators may rely on consent given to the trial's project.",
)
@reason_option
@rpc_option
@json_option
def trial_register(
    key_file: Path,
    trial_id: str,
    protocol: str,
    endpoints: str,
    registry_ids: tuple[str, ...],
    datasets: tuple[str, ...],
    investigators: tuple[str, ...],
    reason: str,
    rpc: str,
    as_json: bool,
) -> None:
    """Register a trial before its data is used."""
    body = {
        "trial": trial_id,
        "registry_ids": list(registry_ids),
        "protocol": _digest_arg(protocol, "--protocol"),
        "endpoints": _digest_arg(endpoints, "--endpoints"),
        "datasets": list(datasets),
        "investigators": [_key_arg(k, "--investigator") for k in investigators],
        "reason": reason,
    }
    _write(rpc, key_file, "trial.register", body, as_json)


@trial.command("amend")
@key_option
@click.option("--trial", "trial_id", required=True)
@click.option("--protocol", default=None)
@click.option("--endpoints", default=None)
@click.option("--add-dataset", "datasets", multiple=True)
@click.option("--add-investigator", "added", multiple=True, help="A member's key (hex).")
@click.option("--remove-investigator", "removed", multiple=True, help="An investigator's key.")
@reason_option
@rpc_option
@json_option
def trial_amend(
    key_file: Path,
    trial_id: str,
    protocol: str | None,
    endpoints: str | None,
    datasets: tuple[str, ...],
    added: tuple[str, ...],
    removed: tuple[str, ...],
    reason: str,
    rpc: str,
    as_json: bool,
) -> None:
    """Amend a trial (flagged in queries if its data was already accessed)."""
    body = {
        "trial": trial_id,
        "protocol": None if protocol is None else _digest_arg(protocol, "--protocol"),
        "endpoints": None if endpoints is None else _digest_arg(endpoints, "--endpoints"),
        "datasets_added": list(datasets),
        "investigators_added": [_key_arg(k, "--add-investigator") for k in added],
        "investigators_removed": [_key_arg(k, "--remove-investigator") for k in removed],
        "reason": reason,
    }
    _write(rpc, key_file, "trial.amend", body, as_json)


@trial.command("result")
@key_option
@click.option("--trial", "trial_id", required=True)
@click.option("--results", required=True, help="Results document (file) or its SHA-256.")
@click.option("--dataset", "datasets", multiple=True, help="Datasets the results used.")
@reason_option
@rpc_option
@json_option
def trial_result(
    key_file: Path,
    trial_id: str,
    results: str,
    datasets: tuple[str, ...],
    reason: str,
    rpc: str,
    as_json: bool,
) -> None:
    """Record a trial's results."""
    body = {
        "trial": trial_id,
        "results": _digest_arg(results, "--results"),
        "datasets": list(datasets),
        "reason": reason,
    }
    _write(rpc, key_file, "trial.result", body, as_json)


@click.group()
def dataset() -> None:
    """Datasets: derivations and what the ledger holds."""


@dataset.command("derive")
@key_option
@click.option("--dataset", "dataset_id", required=True, help="The new dataset's id.")
@click.option("--parent", "parents", multiple=True, required=True)
@click.option("--transformation", required=True, type=click.Choice(TRANSFORMATIONS))
@click.option("--code-version", required=True, help="The code/container (file) or its SHA-256.")
@click.option("--output", required=True, help="The output artefact (file) or its SHA-256.")
@reason_option
@rpc_option
@json_option
def dataset_derive(
    key_file: Path,
    dataset_id: str,
    parents: tuple[str, ...],
    transformation: str,
    code_version: str,
    output: str,
    reason: str,
    rpc: str,
    as_json: bool,
) -> None:
    """Record a derived dataset (lossy copy, segmentation, AI output...) and its parents."""
    body = {
        "dataset": dataset_id,
        "parents": list(parents),
        "transformation": transformation,
        "code_version": _digest_arg(code_version, "--code-version"),
        "output": _digest_arg(output, "--output"),
        "reason": reason,
    }
    _write(rpc, key_file, "dataset.derive", body, as_json)


def _show(rpc: str, path: str, params: dict[str, str | int | None] | None = None) -> None:
    try:
        answer = RpcClient(rpc).get(path, params)
    except RpcError as exc:
        _fail(f"{exc.code}: {exc.message}")
    click.echo(json.dumps(answer, indent=2, sort_keys=True))


@dataset.command("show")
@click.argument("dataset_id")
@rpc_option
def dataset_show(dataset_id: str, rpc: str) -> None:
    """Print what the ledger holds for a dataset (JSON)."""
    _show(rpc, RpcClient.path("v1", "datasets", dataset_id))


@trial.command("show")
@click.argument("trial_id")
@rpc_option
def trial_show(trial_id: str, rpc: str) -> None:
    """Print a trial's timeline (JSON)."""
    _show(rpc, RpcClient.path("v1", "trials", trial_id))


@member.command("show")
@click.argument("member_key")
@rpc_option
def member_show(member_key: str, rpc: str) -> None:
    """Print a member's history (JSON)."""
    _show(rpc, RpcClient.path("v1", "members", member_key))


@click.command()
@click.option("--grantee", required=True, help="Member key (hex).")
@click.option("--dataset", "dataset_id", required=True)
@click.option("--purpose", type=click.Choice(PURPOSES), default=None)
@click.option("--project", default=None)
@rpc_option
def authz(
    grantee: str, dataset_id: str, purpose: str | None, project: str | None, rpc: str
) -> None:
    """May this member use this dataset now? Exit 0 for allow, 1 for deny."""
    try:
        answer = RpcClient(rpc).get(
            "/v1/authz",
            {"grantee": grantee, "dataset": dataset_id, "purpose": purpose, "project": project},
        )
    except RpcError as exc:
        _fail(f"{exc.code}: {exc.message}")
        return
    click.echo(json.dumps(answer, indent=2, sort_keys=True))
    if answer.get("decision") != "allow":
        sys.exit(EXIT_FAILED)


COMMANDS: Final[tuple[click.Command, ...]] = (
    submit,
    verify,
    receipt,
    member,
    access,
    subject,
    consent,
    trial,
    dataset,
    authz,
)
