"""From inspected files to what goes on chain: series manifests, dataset roots, summaries.

Covers imaging.inspect.group_series / summarise and ledger.manifest: leaf
order, RFC 6962 roots (rederived here with hashlib), inclusion proofs, refusal
of repeated SOP Instance UIDs, and the allow-listed summary that refuses
anything that is not a coded value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imaging.inspect import Instance, Problem, group_series, inspect_bytes, inspect_file, summarise
from imaging.scan import scan, walk
from imaging.synthetic import StudySpec, write_study
from ledger import codec
from ledger.errors import DecodeError, EncodeError, ValidationError
from ledger.manifest import (
    SUMMARY_SCHEMA,
    DeidRecord,
    Geometry,
    InstanceLeaf,
    SeriesEntry,
    SeriesSummary,
    check_leaf_order,
    dataset_root,
    instance_proof,
    series_root,
    sort_leaves,
    verify_instance,
)
from tests.imaging.conftest import CT_GEOMETRY, ct, digest, make_instance, save

ROOT = Path(__file__).resolve().parents[2]
#: Some tests write invalid values on purpose; pydicom warns about them.
pytestmark = pytest.mark.filterwarnings("ignore:.*Invalid value for VR")


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(entries: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash, written out from the RFC (section 2.1)."""
    if not entries:
        return _sha(b"")
    if len(entries) == 1:
        return _sha(b"\x00" + entries[0])
    split = 1
    while split * 2 < len(entries):
        split *= 2
    return _sha(b"\x01" + _mth(entries[:split]) + _mth(entries[split:]))


def _instances(paths: list[Path]) -> list[Instance]:
    return [inspect_file(path) for path in paths]


def _leaf(uid: str, tag: str = "") -> InstanceLeaf:
    return InstanceLeaf(uid, digest("p", uid, tag), digest("m", uid, tag), digest("f", uid, tag))


# --------------------------------------------------------------------------- manifests


def test_group_series_builds_sorted_manifests(study: list[Path]) -> None:
    series = group_series(_instances(study))
    assert len(series) == 2
    uids = [s.series_uid for s in series]
    assert uids == sorted(uids, key=lambda u: u.encode("ascii"))
    for one in series:
        sops = [leaf.sop_instance_uid for leaf in one.leaves]
        assert sops == sorted(sops, key=lambda u: u.encode("ascii"))
        assert [i.fingerprint.sop_instance_uid for i in one.instances] == sops
        assert all(i.series_uid == one.series_uid for i in one.instances)
        assert len(one.leaves) == 3
        assert one.root == _mth([leaf.encode() for leaf in one.leaves])
        assert one.root == series_root(one.leaves)
        assert one.entry() == SeriesEntry(one.series_uid, one.root, 3)


def test_manifests_do_not_depend_on_input_order(study: list[Path]) -> None:
    instances = _instances(study)
    shuffled = list(instances)
    random.Random(3).shuffle(shuffled)
    first, second = group_series(instances), group_series(shuffled)
    assert [s.root for s in first] == [s.root for s in second]
    assert [s.summary for s in first] == [s.summary for s in second]
    entries = [s.entry() for s in first]
    assert dataset_root(entries) == dataset_root(entries[::-1])


def test_dataset_root_is_rfc_6962_over_sorted_series_entries(study: list[Path]) -> None:
    entries = [s.entry() for s in group_series(_instances(study))]
    ordered = sorted(entries, key=lambda e: e.series_instance_uid.encode("ascii"))
    assert dataset_root(entries) == _mth([e.encode() for e in ordered])
    decoded = codec.decode(ordered[0].encode())
    assert decoded == {
        "v": 1,
        "series": ordered[0].series_instance_uid,
        "root": ordered[0].root,
        "n": 3,
    }


def test_leaf_is_the_canonical_encoding_of_uid_and_three_digests(study: list[Path]) -> None:
    instance = inspect_file(study[0])
    leaf = instance.fingerprint.leaf()
    decoded = codec.decode(leaf.encode())
    assert decoded == {
        "v": 1,
        "sop": instance.fingerprint.sop_instance_uid,
        "pixel": instance.fingerprint.pixel,
        "meta": instance.fingerprint.meta,
        "file": instance.fingerprint.file,
    }
    assert InstanceLeaf.decode(leaf.encode()) == leaf
    assert leaf.leaf_hash() == _sha(b"\x00" + leaf.encode())


def test_every_instance_has_an_inclusion_proof(study: list[Path]) -> None:
    for one in group_series(_instances(study)):
        size = len(one.leaves)
        for leaf in one.leaves:
            index, proof = instance_proof(one.leaves, leaf.sop_instance_uid)
            assert one.leaves[index] == leaf
            assert verify_instance(leaf, index, size, proof, one.root)
            other = (index + 1) % size
            assert not verify_instance(leaf, other, size, proof, one.root)
            tampered = dataclasses.replace(leaf, file=digest("another file"))
            assert not verify_instance(tampered, index, size, proof, one.root)
        with pytest.raises(KeyError):
            instance_proof(one.leaves, "1.2.3.4.5")


def test_a_sop_instance_uid_twice_in_one_series_is_refused(study: list[Path]) -> None:
    instances = _instances(study)
    with pytest.raises(ValidationError, match="appears twice"):
        group_series([*instances, instances[0]])
    leaves = [_leaf("1.2.3"), _leaf("1.2.3", "re-encoded copy")]
    with pytest.raises(ValidationError, match="appears twice"):
        sort_leaves(leaves)
    with pytest.raises(ValidationError, match="appears twice"):
        series_root(leaves)


def test_leaves_must_be_in_bytewise_uid_order() -> None:
    # "1.10" < "1.9" as bytes, though 10 > 9 as numbers.
    leaves = sort_leaves([_leaf("1.9"), _leaf("1.10"), _leaf("1.2")])
    assert [leaf.sop_instance_uid for leaf in leaves] == ["1.10", "1.2", "1.9"]
    check_leaf_order(leaves)
    with pytest.raises(ValidationError, match="sorted"):
        check_leaf_order(leaves[::-1])
    with pytest.raises(ValidationError, match="sorted"):
        series_root(leaves[::-1])
    assert series_root(leaves) == _mth([leaf.encode() for leaf in leaves])
    assert series_root([]) == _sha(b"")


def test_a_series_twice_in_a_dataset_is_refused() -> None:
    entry = SeriesEntry("1.2.3", digest("root"), 1)
    with pytest.raises(ValidationError, match="twice"):
        dataset_root([entry, dataclasses.replace(entry, root=digest("other root"))])


def test_an_instance_without_series_uid_is_refused() -> None:
    orphan = make_instance("1.2.3.4", "")
    with pytest.raises(ValueError, match="Series Instance UID"):
        group_series([orphan])


@pytest.mark.parametrize(
    ("uid", "pixel", "size"),
    [
        ("1.2.x", b"\x00" * 32, 32),
        ("", b"\x00" * 32, 32),
        ("1." + "2" * 70, b"\x00" * 32, 32),
        ("1.2.3", b"\x00" * 31, 32),
        ("1.2.3", b"\x00" * 32, 33),
    ],
    ids=["letters", "empty", "too-long", "short-pixel", "long-meta"],
)
def test_invalid_leaves_are_refused(uid: str, pixel: bytes, size: int) -> None:
    with pytest.raises(ValidationError):
        InstanceLeaf(uid, pixel, b"\x00" * size, b"\x00" * 32)


def test_leaf_without_pixel_digest_and_wrong_version() -> None:
    leaf = InstanceLeaf("1.2.3", None, b"\x01" * 32, b"\x02" * 32)
    assert InstanceLeaf.decode(leaf.encode()).pixel is None
    with pytest.raises(ValidationError, match="version"):
        InstanceLeaf("1.2.3", None, b"\x01" * 32, b"\x02" * 32, version=2)


def test_a_parallel_scan_gives_the_same_results_in_the_same_order(tmp_path: Path) -> None:
    write_study(tmp_path / "study", StudySpec(seed=11, series=2, instances=5, rows=16, columns=16))
    bad = tmp_path / "study" / "s01" / "i0003.dcm"
    bad.write_bytes(bad.read_bytes()[:700])  # one truncated file in the middle
    paths = walk([tmp_path / "study"])
    assert len(paths) == 10
    assert paths == sorted(paths)
    serial = list(scan(paths, jobs=1))
    parallel = list(scan(paths, jobs=2))
    assert parallel == serial
    assert [r.path for r in parallel] == paths
    problems = [r for r in parallel if isinstance(r, Problem)]
    assert [(p.path, p.code) for p in problems] == [(str(bad), "truncated")]
    good = [r for r in parallel if isinstance(r, Instance)]
    assert [s.root for s in group_series(good)] == [
        s.root for s in group_series(r for r in serial if isinstance(r, Instance))
    ]


# --------------------------------------------------------------------------- summaries


def test_summary_of_a_synthetic_series(study: list[Path]) -> None:
    summary = group_series(_instances(study))[0].summary
    assert summary == SeriesSummary(
        modality="CT",
        body_part="CHEST",
        sop_classes=("1.2.840.10008.5.1.4.1.1.2",),
        instances=3,
        frames=3,
        geometry=(Geometry(16, 16, 1, 16, 12, "MONOCHROME2"),),
        lossy=False,
        deid=DeidRecord(identity_removed=True, codes=("113100",), relaxed=()),
    )
    assert SUMMARY_SCHEMA.decode(SUMMARY_SCHEMA.encode(summary)) == summary


def test_summary_combines_instances_conservatively() -> None:
    other = Geometry(32, 32, 1, 16, 12, "MONOCHROME2")
    instances = [
        make_instance("1.2.3.1", "1.2.3", codes=("113100", "113101"), waived=("burned-in",)),
        make_instance("1.2.3.2", "1.2.3", codes=("113100",), lossy=True, geometry=other),
        make_instance(
            "1.2.3.3",
            "1.2.3",
            codes=("113100", "113111"),
            waived=("private-tags", "burned-in"),
            modality="MR",
            frames=4,
        ),
        make_instance("1.2.3.4", "1.2.3", geometry=None, frames=0),
    ]
    summary = summarise(instances)
    assert summary.modality == ""  # mixed: no single modality claimed
    assert summary.body_part == "CHEST"
    assert summary.instances == 4
    assert summary.frames == 6
    assert summary.geometry == (CT_GEOMETRY, other)
    assert summary.lossy is True
    assert summary.deid == DeidRecord(
        identity_removed=True, codes=("113100",), relaxed=("burned-in", "private-tags")
    )


def test_free_text_never_reaches_the_summary() -> None:
    ds = ct()
    ds.BodyPartExamined = "Left knee of J. Doe"
    ds.Modality = "ct"  # not a code string as stored: left out, not upper-cased
    instance = inspect_bytes(save(ds))
    assert instance.body_part == ""
    assert instance.modality == ""
    summary = summarise([instance])
    assert (summary.modality, summary.body_part) == ("", "")


@pytest.mark.filterwarnings("ignore:The value length")
@pytest.mark.parametrize(
    "value",
    ["John Smith", "Jones", "Chest", "chest", "CHEST, LEFT", "A" * 17, "CT\\MR", "JOHN\tSMITH"],
)
def test_only_values_that_are_code_strings_as_stored_reach_the_summary(value: str) -> None:
    """A name upper-cases into a valid code string, so nothing is upper-cased: a value
    that is not upper case, digits, space and underscore (at most 16) is left out."""
    ds = ct()
    ds.BodyPartExamined = value
    ds.Modality = value
    summary = summarise([inspect_bytes(save(ds))])
    assert (summary.modality, summary.body_part) == ("", "")


def test_a_code_string_with_its_dicom_padding_reaches_the_summary() -> None:
    ds = ct()
    ds.BodyPartExamined = "CHEST "
    ds.Modality = "CT"
    summary = summarise([inspect_bytes(save(ds))])
    assert (summary.modality, summary.body_part) == ("CT", "CHEST")


def _summary(**changes: object) -> SeriesSummary:
    summary = summarise([make_instance("1.2.3.1", "1.2.3")])
    return dataclasses.replace(summary, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("modality",), "Chest CT, J. Doe"),
        (("body_part",), "left knee"),
        (("geometry", 0, "pi"), "mono (J. Doe)"),
    ],
    ids=["modality", "body-part", "photometric"],
)
def test_the_chain_decoder_refuses_non_code_values(path: tuple[object, ...], value: str) -> None:
    """Bytes built by hand (not through the records, which refuse them) are refused too."""
    raw = codec.decode(SUMMARY_SCHEMA.encode(_summary()))
    assert isinstance(raw, dict)
    target: Any = raw
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(DecodeError):
        SUMMARY_SCHEMA.decode(codec.encode(raw))


def test_the_summary_refuses_uids_and_codes_that_are_not_codes() -> None:
    with pytest.raises(ValidationError):
        _summary(sop_classes=("CT image storage",))
    with pytest.raises(ValidationError):
        _summary(sop_classes=("1.2.3", "1.2.3"))
    with pytest.raises(ValidationError):
        DeidRecord(identity_removed=True, codes=("113101", "113100"), relaxed=())
    with pytest.raises(ValidationError):
        DeidRecord(identity_removed=True, codes=(), relaxed=("looked-fine",))


@pytest.mark.parametrize(
    "changes",
    [{"modality": "Chest CT, J. Doe"}, {"body_part": "left knee"}],
    ids=["modality", "body-part"],
)
def test_a_summary_with_free_text_cannot_be_built_or_encoded(changes: dict[str, object]) -> None:
    with pytest.raises((ValidationError, EncodeError)):
        SUMMARY_SCHEMA.encode(_summary(**changes))


def test_a_geometry_with_free_text_cannot_be_built() -> None:
    with pytest.raises(ValidationError):
        Geometry(16, 16, 1, 16, 12, "mono (J. Doe)")


_HASH_ORDER_SCRIPT = """
from imaging.inspect import summarise
from ledger.manifest import Geometry
from tests.imaging.conftest import make_instance

a = make_instance("1.2.3.1", "1.2.3", geometry=Geometry(16, 16, 1, 16, 12, "MONOCHROME2"))
b = make_instance("1.2.3.2", "1.2.3", geometry=Geometry(16, 16, 1, 16, 16, "MONOCHROME2"))
print([g.bits_stored for g in summarise([a, b]).geometry])
"""


def test_summary_geometry_order_does_not_depend_on_the_hash_seed() -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _HASH_ORDER_SCRIPT],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in range(6)
    ]
    outputs = {run.communicate(timeout=60)[0].strip() for run in runs}
    assert all(run.returncode == 0 for run in runs)
    assert outputs == {"[12, 16]"}
