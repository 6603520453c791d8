"""The devnet's opening story: what radledger is for, shown on a fresh network.

A synthetic, de-identified CT study is generated, registered through one node,
verified against the ledger through another, and a receipt fetched from a
third is checked offline against nothing but the genesis file. Each step
prints one line a newcomer understands. The same library calls as the
``submit`` / ``verify`` / ``receipt`` commands, so the story is also a smoke
test of them.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from imaging.deid import GatePolicy
from imaging.inspect import Instance, Problem, group_series
from imaging.scan import scan, walk
from imaging.synthetic import StudySpec, write_study
from ledger.genesis import Genesis
from ledger.keys import load_key_file
from ledger.manifest import INSTANCE_LEAF_SCHEMA
from ledger.receipt import Receipt, all_passed, verify
from node.client import Nonces, RpcClient, RpcError, sign
from node.researcher import Registered, compare, register_bodies
from node.testnet import ADMIN_KEY_FILE, GENESIS_FILE

STUDY: Final = StudySpec(seed=2026, series=2, instances=60, rows=128, columns=128)
#: How long another node may take to reach the height node0 committed the study at.
SYNC_WAIT_S: Final = 30.0
_POLL_S: Final = 0.2


class StoryError(Exception):
    """A step of the story failed; the message says which and why."""


def wait_for_height(
    read_height: Callable[[], int],
    height: int,
    what: str,
    timeout_s: float = SYNC_WAIT_S,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Wait until ``read_height()`` is at least ``height``; :class:`StoryError` after ``timeout_s``.

    Another node commits the same block a moment after the one that answered
    the submission, so reading through it at once could miss the study.
    ``read_height`` may raise :class:`RpcError` (the node is briefly busy): it is
    retried until the deadline. Returns the height reached.
    """
    deadline = clock() + timeout_s
    seen: int | None = None
    while True:
        with contextlib.suppress(RpcError):
            seen = read_height()
        if seen is not None and seen >= height:
            return seen
        if clock() >= deadline:
            at = "did not answer" if seen is None else f"is at height {seen}"
            raise StoryError(
                f"{what} did not reach height {height} within {timeout_s:.0f} s ({at})"
            )
        sleep(_POLL_S)


def _height_of(client: RpcClient) -> Callable[[], int]:
    return lambda: int(client.status()["height"])


def run_story(home: Path, rpc_urls: list[str], say: Callable[[str], None]) -> None:
    """Register, verify and prove a synthetic study on the running devnet at ``home``."""
    if len(rpc_urls) < 3:
        raise StoryError("the story needs three nodes")
    dataset = time.strftime("demo-ct-%Y%m%d-%H%M%S")
    folder = home / "demo" / dataset
    write_study(folder, STUDY)
    say(
        f"1/5 wrote a synthetic, de-identified CT study: {STUDY.series} series, "
        f"{STUDY.series * STUDY.instances} images, in {folder}"
    )

    files = walk([folder])
    results = list(scan(files, GatePolicy(), jobs=1))
    instances = [r for r in results if isinstance(r, Instance)]
    problems = [r for r in results if isinstance(r, Problem)]
    if problems or any(not i.gate.passed for i in instances):
        raise StoryError("the synthetic study did not pass fingerprinting and the gate")
    series_list = group_series(instances)
    say(
        f"2/5 fingerprinted {len(instances)} images (pixels, attributes, file) and checked "
        "they are de-identified; only digests and a coded summary will go on chain"
    )

    registrar = RpcClient(rpc_urls[0])
    key = load_key_file(home / "node0" / ADMIN_KEY_FILE)
    try:
        status = registrar.status()
        nonces = Nonces()
        heights = []
        for series in series_list:
            for body in register_bodies(
                dataset,
                series,
                reason="devnet demonstration: baseline registration",
                time_ms=int(time.time() * 1000),
                max_tx_bytes=int(status.get("max_tx_bytes", 32 * 1024)),
            ):
                tx = sign(key, str(status["chain_id"]), "dataset.register", body, nonces)
                heights.append(registrar.submit(tx)["height"])
    except RpcError as exc:
        raise StoryError(f"registration through node0 failed: {exc.message}") from None
    say(
        f"3/5 registered dataset {dataset} through node0 (signed by site0's admin): "
        f"{len(heights)} transactions, committed by consensus at heights "
        f"{min(heights)}-{max(heights)}"
    )

    committed = max(heights)
    checker = RpcClient(rpc_urls[1])
    wait_for_height(_height_of(checker), committed, "node1")
    try:
        info = checker.get(RpcClient.path("v1", "datasets", dataset))
        registered: list[Registered] = []
        for series_info in info["series"]:
            uid = series_info["uid"]
            answer = checker.get(RpcClient.path("v1", "datasets", dataset, "series", uid, "leaves"))
            registered.extend(
                Registered(INSTANCE_LEAF_SCHEMA.from_json(raw), uid) for raw in answer["leaves"]
            )
    except RpcError as exc:
        raise StoryError(f"reading the dataset from node1 failed: {exc.message}") from None
    outcomes = compare(instances, registered)
    matches = sum(o.ok for o in outcomes)
    if matches != len(outcomes):
        raise StoryError(f"only {matches} of {len(outcomes)} images matched through node1")
    say(
        f"4/5 verified all {matches} images against the ledger through node1: every pixel "
        "and attribute digest matches what node0 registered"
    )

    prover = RpcClient(rpc_urls[2])
    wait_for_height(_height_of(prover), committed, "node2")
    try:
        receipt_json = prover.get(
            RpcClient.path("v1", "receipts", dataset),
            {"instance": instances[0].fingerprint.sop_instance_uid},
        )
    except RpcError as exc:
        raise StoryError(f"fetching a receipt from node2 failed: {exc.message}") from None
    receipt_path = home / "demo" / f"{dataset}.receipt.json"
    receipt_path.write_text(json.dumps(receipt_json, indent=2, sort_keys=True) + "\n")
    receipt = Receipt.from_json(json.loads(receipt_path.read_text()))
    steps = verify(receipt, Genesis.load(home / GENESIS_FILE))
    if not all_passed(steps):
        failed = next(s for s in steps if not s.ok)
        raise StoryError(f"the receipt did not verify: {failed.name}: {failed.detail}")
    say(
        f"5/5 wrote a receipt from node2 to {receipt_path} and verified it offline, with only "
        f"the genesis file: {len(steps)} checks passed (signatures, Merkle proofs, 2f+1 commit "
        f"certificates). Try: radledger receipt verify {receipt_path} "
        f"--genesis {home / GENESIS_FILE}"
    )
