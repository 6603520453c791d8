"""What the researcher commands compute: parts of a registration, and verification verdicts.

Every DICOM file here is synthetic (imaging.synthetic) and fingerprinted with
``inspect_file``; variants are made with pydicom from those files: a changed
pixel, a changed attribute, both, a lossless RLE re-encoding, and a lossy copy
that names its source in the Source Image Sequence.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, BasicTextSRStorage, RLELossless

from imaging import synthetic
from imaging.inspect import Instance, Series, group_series, inspect_file
from ledger import codec
from ledger.genesis import Genesis
from ledger.keys import SigningKey
from ledger.receipt import RECEIPT_FORMAT, RECEIPT_VERSION, Receipt, TxProof
from ledger.types import MAX_TX_BYTES, Block, CommitCertificate, Tx, Vote, VoteKind
from node.researcher import (
    Outcome,
    Registered,
    Verdict,
    compare,
    part_sizes,
    register_bodies,
    registered_from_receipt,
    subject_commitment,
    summary_counts,
)
from registry.kinds import DatasetRegister, parse_body
from tests.factories import make_genesis

GENESIS: Final = make_genesis(4)
VALIDATORS: Final = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
RESEARCHER: Final = SigningKey(b"\x70" * 32)
DATASET: Final = "ct-2026"
#: The longest id and reason a body may carry, so the parts are checked at their largest.
LONGEST_ID: Final = "d" * 64
LONGEST_REASON: Final = "r" * 512


def _series(folder: Path, *, seed: int, instances: int, size: int = 8) -> tuple[list[Path], Series]:
    spec = synthetic.StudySpec(seed=seed, instances=instances, rows=size, columns=size)
    paths = synthetic.write_study(folder, spec)
    (series,) = group_series(inspect_file(p) for p in paths)
    return paths, series


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Series:
    """200 instances: several parts even at the default 32 KiB limit."""
    return _series(tmp_path_factory.mktemp("large"), seed=41, instances=200)[1]


def _tx(body: dict[str, Any]) -> Tx:
    """The transaction a body travels in, with the largest nonce (the longest encoding)."""
    return Tx.create(
        RESEARCHER,
        chain_id=GENESIS.chain_id,
        kind="dataset.register",
        nonce=2**64 - 1,
        body=body,
    )


def _bodies(series: Series, max_tx_bytes: int, **extra: Any) -> list[dict[str, Any]]:
    return register_bodies(
        LONGEST_ID,
        series,
        reason=LONGEST_REASON,
        time_ms=2**53,
        max_tx_bytes=max_tx_bytes,
        supersedes=LONGEST_ID,
        **extra,
    )


# --------------------------------------------------------------------------- parts


@pytest.mark.parametrize("max_tx_bytes", [8 * 1024, 32 * 1024, MAX_TX_BYTES])
def test_every_part_fits_in_a_transaction(large: Series, max_tx_bytes: int) -> None:
    bodies = _bodies(large, max_tx_bytes)
    sizes = [len(_tx(body).encode()) for body in bodies]
    assert max(sizes) <= max_tx_bytes, sizes
    if max_tx_bytes < MAX_TX_BYTES:
        assert len(bodies) > 1, "the study must be large enough to need several parts"


def test_parts_fit_a_small_limit_when_one_leaf_fits(large: Series) -> None:
    max_tx_bytes = 1024
    one = register_bodies(
        DATASET, large, reason="baseline", time_ms=2**41, max_tx_bytes=MAX_TX_BYTES
    )[0]
    one["leaves"] = one["leaves"][:1]
    assert len(_tx(one).encode()) <= max_tx_bytes  # a registration part of one leaf fits
    bodies = register_bodies(
        DATASET, large, reason="baseline", time_ms=2**41, max_tx_bytes=max_tx_bytes
    )
    assert max(len(_tx(body).encode()) for body in bodies) <= max_tx_bytes


def test_parts_concatenate_to_every_leaf_in_manifest_order(large: Series) -> None:
    bodies = _bodies(large, 8 * 1024)
    joined = list(itertools.chain.from_iterable(body["leaves"] for body in bodies))
    assert joined == [codec.decode(leaf.encode()) for leaf in large.leaves]
    assert [body["part"] for body in bodies] == list(range(len(bodies)))
    assert {body["parts"] for body in bodies} == {len(bodies)}
    assert sum(len(body["leaves"]) for body in bodies) == len(large.leaves)


def test_every_part_declares_the_series_and_only_part_0_its_summary(large: Series) -> None:
    bodies = _bodies(large, 8 * 1024)
    for body in bodies:
        assert body["series"] == large.series_uid
        assert body["series_root"] == large.root
        assert body["instances"] == len(large.leaves)
        assert body["reason"] == LONGEST_REASON
    assert [body["summary"] is not None for body in bodies] == [True] + [False] * (len(bodies) - 1)
    assert [body["supersedes"] for body in bodies] == [LONGEST_ID] + [None] * (len(bodies) - 1)


def test_every_part_is_a_well_formed_register_body(large: Series) -> None:
    for body in _bodies(large, 8 * 1024):
        parsed = parse_body(_tx(body))
        assert isinstance(parsed, DatasetRegister)
        assert parsed.series == large.series_uid


@pytest.mark.parametrize("first_part", [0, 1, 7])
def test_first_part_resumes_where_a_registration_stopped(large: Series, first_part: int) -> None:
    everything = _bodies(large, 3 * 1024)
    assert len(everything) > 7
    assert _bodies(large, 3 * 1024, first_part=first_part) == everything[first_part:]


def test_resuming_past_the_last_part_registers_nothing(large: Series) -> None:
    parts = len(_bodies(large, 8 * 1024))
    assert _bodies(large, 8 * 1024, first_part=parts) == []


def test_part_sizes_of_nothing_and_of_one_leaf(large: Series) -> None:
    assert part_sizes([], 8 * 1024) == [0]
    assert part_sizes(large.leaves[:1], 8 * 1024) == [1]
    assert sum(part_sizes(large.leaves, 8 * 1024)) == len(large.leaves)


# --------------------------------------------------------------------------- verdicts


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Series]:
    """Four registered 16 x 16 instances of one series."""
    return _series(tmp_path_factory.mktemp("study"), seed=43, instances=4, size=16)


@pytest.fixture(scope="module")
def registered(study: tuple[list[Path], Series]) -> list[Registered]:
    _, series = study
    return [Registered(leaf, series.series_uid) for leaf in series.leaves]


def _variant(source: Path, target: Path, change: Callable[[Dataset], None]) -> Instance:
    """``source`` read with pydicom, changed, saved as ``target`` and fingerprinted."""
    ds = pydicom.dcmread(source)
    change(ds)
    ds.save_as(target, enforce_file_format=True)
    return inspect_file(target)


def _edit_pixel(ds: Dataset) -> None:
    values = np.frombuffer(ds.PixelData, dtype="<i2").copy()
    values[len(values) // 2] += 1
    ds.PixelData = values.tobytes()


def _edit_header(ds: Dataset) -> None:
    ds.SliceThickness = "2.5"


def _edit_both(ds: Dataset) -> None:
    _edit_pixel(ds)
    _edit_header(ds)


def _rle(ds: Dataset) -> None:
    ds.compress(RLELossless, generate_instance_uid=False)


def _lossy_copy(*, lossy: str = "01", source: str | None = None) -> Callable[[Dataset], None]:
    """A copy under a new SOP Instance UID that says it was derived from ``source``."""

    def change(ds: Dataset) -> None:
        origin = source or str(ds.SOPInstanceUID)
        new_uid = UID(synthetic.uid_from("lossy copy of", origin, lossy))
        ds.SOPInstanceUID = new_uid
        ds.file_meta.MediaStorageSOPInstanceUID = new_uid
        ds.LossyImageCompression = lossy
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = origin
        ds.SourceImageSequence = Sequence([item])

    return change


def _only(outcomes: list[Outcome], path: Path) -> Outcome:
    (outcome,) = [o for o in outcomes if o.path == str(path)]
    return outcome


def test_the_registered_files_all_match(
    study: tuple[list[Path], Series], registered: list[Registered]
) -> None:
    paths, _ = study
    outcomes = compare([inspect_file(p) for p in paths], registered)
    assert [o.verdict for o in outcomes] == [Verdict.MATCH] * len(paths)
    assert {o.detail for o in outcomes} == {"identical file"}
    assert all(o.ok for o in outcomes)


@pytest.mark.parametrize(
    ("change", "verdict", "detail"),
    [
        (_edit_pixel, Verdict.PIXELS_CHANGED, "pixel values differ"),
        (_edit_header, Verdict.HEADER_CHANGED, "an attribute value differs"),
        (_edit_both, Verdict.BOTH_CHANGED, "pixels and attributes differ"),
        (_rle, Verdict.MATCH, "same pixels and attributes (re-encoded losslessly)"),
    ],
    ids=["pixels", "header", "both", "rle"],
)
def test_a_changed_copy_gets_exactly_its_verdict(
    study: tuple[list[Path], Series],
    registered: list[Registered],
    tmp_path: Path,
    change: Callable[[Dataset], None],
    verdict: Verdict,
    detail: str,
) -> None:
    paths, _ = study
    target = tmp_path / "changed.dcm"
    variant = _variant(paths[1], target, change)
    others = [inspect_file(p) for p in paths if p != paths[1]]
    outcomes = compare([variant, *others], registered)
    outcome = _only(outcomes, target)
    assert outcome.verdict is verdict
    assert outcome.detail == detail
    assert outcome.sop_instance_uid == inspect_file(paths[1]).fingerprint.sop_instance_uid
    assert outcome.ok is (verdict is Verdict.MATCH)
    assert [o.verdict for o in outcomes if o is not outcome] == [Verdict.MATCH] * len(others)


def test_an_rle_copy_is_a_different_file_with_the_same_image(
    study: tuple[list[Path], Series], tmp_path: Path
) -> None:
    paths, _ = study
    original = inspect_file(paths[0])
    copy = _variant(paths[0], tmp_path / "rle.dcm", _rle)
    assert copy.transfer_syntax == RLELossless
    assert copy.fingerprint.file != original.fingerprint.file
    assert (copy.fingerprint.pixel, copy.fingerprint.meta) == (
        original.fingerprint.pixel,
        original.fingerprint.meta,
    )


def test_a_lossy_copy_of_a_registered_instance_is_derived(
    study: tuple[list[Path], Series], registered: list[Registered], tmp_path: Path
) -> None:
    paths, _ = study
    source = inspect_file(paths[2]).fingerprint.sop_instance_uid
    target = tmp_path / "lossy.dcm"
    copy = _variant(paths[2], target, _lossy_copy())
    assert copy.lossy
    assert copy.source_uids == (source,)
    outcome = _only(compare([copy], registered), target)
    assert outcome.verdict is Verdict.DERIVED
    assert outcome.sop_instance_uid == copy.fingerprint.sop_instance_uid != source
    assert source in outcome.detail
    assert "dataset.derive" in outcome.detail
    assert not outcome.ok


@pytest.mark.parametrize(
    "change",
    [
        _lossy_copy(lossy="00"),  # derived, but says it is not lossy
        _lossy_copy(source="1.2.3.4.5"),  # lossy, but from something not registered
    ],
    ids=["not-lossy", "unregistered-source"],
)
def test_a_derived_file_that_is_not_a_lossy_copy_of_ours_is_not_registered(
    study: tuple[list[Path], Series],
    registered: list[Registered],
    tmp_path: Path,
    change: Callable[[Dataset], None],
) -> None:
    paths, _ = study
    target = tmp_path / "copy.dcm"
    outcome = _only(compare([_variant(paths[2], target, change)], registered), target)
    assert outcome.verdict is Verdict.NOT_REGISTERED


def test_an_unrelated_file_is_not_registered(
    study: tuple[list[Path], Series], registered: list[Registered], tmp_path: Path
) -> None:
    paths, _ = study
    stranger_paths, _ = _series(tmp_path / "other", seed=99, instances=1)
    stranger = inspect_file(stranger_paths[0])
    outcomes = compare([stranger, *(inspect_file(p) for p in paths)], registered)
    assert outcomes[0].verdict is Verdict.NOT_REGISTERED
    assert outcomes[0].path == str(stranger_paths[0])
    assert outcomes[0].detail == "not in this dataset"
    assert [o.verdict for o in outcomes[1:]] == [Verdict.MATCH] * len(paths)


def test_a_registered_instance_without_a_file_is_missing(
    study: tuple[list[Path], Series], registered: list[Registered]
) -> None:
    paths, series = study
    present = [inspect_file(p) for p in paths[1:]]
    absent = inspect_file(paths[0]).fingerprint.sop_instance_uid
    outcomes = compare(present, registered)
    assert [o.verdict for o in outcomes] == [Verdict.MATCH] * 3 + [Verdict.MISSING]
    missing = outcomes[-1]
    assert missing.sop_instance_uid == absent
    assert missing.path is None
    assert series.series_uid in missing.detail


def test_with_no_files_everything_is_missing_in_uid_order(registered: list[Registered]) -> None:
    outcomes = compare([], registered)
    assert [o.verdict for o in outcomes] == [Verdict.MISSING] * len(registered)
    assert [o.sop_instance_uid for o in outcomes] == sorted(
        r.leaf.sop_instance_uid for r in registered
    )


def test_summary_counts_every_verdict_even_absent_ones(
    study: tuple[list[Path], Series], registered: list[Registered], tmp_path: Path
) -> None:
    paths, _ = study
    files = [
        _variant(paths[0], tmp_path / "pixels.dcm", _edit_pixel),
        _variant(paths[1], tmp_path / "lossy.dcm", _lossy_copy()),
        inspect_file(paths[2]),
    ]
    counts = summary_counts(compare(files, registered))
    assert counts == {
        "match": 1,
        "pixels changed": 1,
        "header changed": 0,
        "pixels and header changed": 0,
        "missing": 2,  # paths[1] (only a lossy copy of it is here) and paths[3]
        "not registered": 0,
        "derived": 1,
    }


def test_an_outcome_as_json() -> None:
    outcome = Outcome(Verdict.MISSING, "1.2.3", None, "registered in series 1.2 but no file has it")
    assert outcome.to_json() == {
        "verdict": "missing",
        "sop_instance_uid": "1.2.3",
        "path": None,
        "detail": "registered in series 1.2 but no file has it",
    }


# --------------------------------------------------------------------------- from a receipt


def _proof(tx: Tx, height: int) -> TxProof:
    """``tx`` alone in a block certified by 3 of the 4 validators of ``GENESIS``."""
    block = Block.build(
        chain_id=GENESIS.chain_id,
        height=height,
        view=0,
        prev_hash=bytes(32),
        time_ms=GENESIS.genesis_time_ms + height,
        proposer=VALIDATORS[0].public_key,
        state_root=bytes(32),
        txs=[tx],
    )
    votes = [
        Vote.create(
            key,
            chain_id=GENESIS.chain_id,
            kind=VoteKind.COMMIT,
            height=height,
            view=0,
            block_hash=block.hash,
        )
        for key in VALIDATORS[:3]
    ]
    return TxProof(
        tx,
        0,
        1,
        tuple(block.tx_inclusion_proof(0)),
        block.header,
        CommitCertificate.from_votes(votes),
    )


def _receipt(*txs: Tx, genesis: Genesis = GENESIS) -> Receipt:
    return Receipt(
        RECEIPT_FORMAT,
        RECEIPT_VERSION,
        genesis.chain_id,
        genesis.hash,
        DATASET,
        tuple(_proof(tx, height) for height, tx in enumerate(txs, start=1)),
        None,
    )


def _signed(kind: str, body: dict[str, Any], nonce: int) -> Tx:
    return Tx.create(RESEARCHER, chain_id=GENESIS.chain_id, kind=kind, nonce=nonce, body=body)


def _register_txs(series: Series, max_tx_bytes: int, first_nonce: int = 1) -> list[Tx]:
    bodies = register_bodies(
        DATASET,
        series,
        reason="baseline",
        time_ms=GENESIS.genesis_time_ms,
        max_tx_bytes=max_tx_bytes,
    )
    return [
        _signed("dataset.register", body, nonce)
        for nonce, body in enumerate(bodies, start=first_nonce)
    ]


def test_the_registered_leaves_are_read_from_every_register_part(large: Series) -> None:
    txs = _register_txs(large, 8 * 1024)
    assert len(txs) > 2
    registered = registered_from_receipt(_receipt(*txs))
    assert [r.leaf for r in registered] == list(large.leaves)
    assert {r.series for r in registered} == {large.series_uid}


def test_other_transactions_in_a_receipt_carry_no_leaves(
    study: tuple[list[Path], Series],
) -> None:
    _, series = study
    derive = _signed(
        "dataset.derive",
        {
            "dataset": DATASET,
            "parents": ["ct-2025"],
            "transformation": "lossy-compression",
            "code_version": bytes(32),
            "output": bytes(32),
            "reason": "a JPEG copy for teaching",
            "time_ms": GENESIS.genesis_time_ms,
        },
        1,
    )
    assert registered_from_receipt(_receipt(derive)) == []
    (register,) = _register_txs(series, 32 * 1024, first_nonce=2)
    registered = registered_from_receipt(_receipt(derive, register))
    assert [r.leaf for r in registered] == list(series.leaves)


def test_leaves_from_a_receipt_verify_the_files_they_came_from(
    study: tuple[list[Path], Series],
) -> None:
    paths, series = study
    registered = registered_from_receipt(_receipt(*_register_txs(series, 32 * 1024)))
    outcomes = compare([inspect_file(p) for p in paths], registered)
    assert summary_counts(outcomes)["match"] == len(paths) == len(outcomes)


def test_a_series_the_receipt_does_not_show_complete_is_not_required(
    study: tuple[list[Path], Series], large: Series
) -> None:
    paths, complete = study
    unfinished = _register_txs(large, 8 * 1024)[0]  # part 0 of many: it created the dataset
    (whole,) = _register_txs(complete, 32 * 1024, first_nonce=100)
    registered = registered_from_receipt(_receipt(unfinished, whole))
    outcomes = compare([inspect_file(p) for p in paths], registered)
    assert [o.verdict for o in outcomes] == [Verdict.MATCH] * len(paths)


def test_an_instance_without_pixel_data_verifies_by_meta_and_file(
    study: tuple[list[Path], Series], tmp_path: Path
) -> None:
    """Structured reports and the like have no pixel digest on either side; they match."""
    paths, _ = study

    def drop_pixels(ds: Dataset) -> None:
        """Turn the CT into a Basic Text SR: a SOP class with no image."""
        for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored"):
            delattr(ds, keyword)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage

    bare = _variant(paths[0], tmp_path / "no-pixels.dcm", drop_pixels)
    assert bare.fingerprint.pixel is None
    registered = [Registered(bare.fingerprint.leaf(), bare.series_uid)]
    (outcome,) = compare([bare], registered)
    assert outcome.verdict is Verdict.MATCH
    edited = _variant(tmp_path / "no-pixels.dcm", tmp_path / "edited.dcm", _edit_header)
    (outcome,) = compare([edited], registered)
    assert outcome.verdict is Verdict.HEADER_CHANGED


def test_a_limit_too_small_for_one_instance_is_a_clear_error(large: Series) -> None:
    with pytest.raises(ValueError, match="cannot hold even one instance"):
        _bodies(large, 1024)


# --------------------------------------------------------------------------- subject commitment


def test_the_subject_commitment_is_sha256_of_the_secret_then_the_pseudonym() -> None:
    secret = bytes(range(32))
    expected = hashlib.sha256(secret + b"PSN-0042").digest()
    assert subject_commitment(secret, "PSN-0042") == expected
    assert (
        subject_commitment(secret, "Ünal-7") == hashlib.sha256(secret + "Ünal-7".encode()).digest()
    )


@pytest.mark.parametrize("length", [0, 1, 16, 31, 33, 64])
def test_a_site_secret_must_be_exactly_32_bytes(length: int) -> None:
    with pytest.raises(ValueError, match=f"holds {length} bytes; .* exactly 32 random bytes"):
        subject_commitment(b"\x07" * length, "PSN-0042")


def test_a_fixed_length_secret_keeps_the_split_unambiguous() -> None:
    """With no separator, a 33-byte secret and a shorter pseudonym would collide with a
    32-byte secret and a longer one; refusing every length but 32 rules that out."""
    secret = b"\x07" * 32
    shifted = secret + b"P"
    assert hashlib.sha256(shifted + b"SN-0042").digest() == subject_commitment(secret, "PSN-0042")
    with pytest.raises(ValueError):
        subject_commitment(shifted, "SN-0042")
