"""The attribute reader's fast route (values read straight from their bytes) gives
exactly what pydicom's conversion gives, and whole inspections agree either way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from imaging import attributes
from imaging.errors import ImagingError
from imaging.fingerprint import read_dataset
from imaging.inspect import inspect_bytes
from imaging.synthetic import StudySpec, instance
from tests.imaging.test_canonical_fast import _bundled_files

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd test files


def _slow(read: object, *args: object) -> object:
    attributes.FAST_PATH = False
    try:
        return read(*args)  # type: ignore[operator]
    finally:
        attributes.FAST_PATH = True


def _top_level_keywords(data: bytes) -> list[str]:
    """Every public top-level element of the file that has a keyword, plus the ones
    the fingerprint, gate and summary read (present or not)."""
    ds = read_dataset(data)
    present = [keyword_for_tag(int(tag)) for tag in ds.keys()]  # noqa: SIM118
    used = [
        "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
        "PixelRepresentation", "SOPInstanceUID", "PhotometricInterpretation",
        "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "Modality",
        "BodyPartExamined", "LossyImageCompression", "PatientIdentityRemoved",
        "BurnedInAnnotation", "NumberOfFrames",
    ]  # fmt: skip
    # repeating groups (overlays, curves) have keywords no tag can be made from
    return sorted({k for k in present if k and tag_for_keyword(k) is not None} | set(used))


def _same(data: bytes, keyword: str, read: object) -> None:
    try:
        slow = _slow(read, read_dataset(data), keyword, "absent")
    except Exception as exc:  # pydicom refuses the value: the fast route must not invent one
        with pytest.raises(type(exc)):
            read(read_dataset(data), keyword, "absent")  # type: ignore[operator]
        return
    fast = read(read_dataset(data), keyword, "absent")  # type: ignore[operator]
    assert fast == slow, keyword
    assert str(fast) == str(slow), keyword
    # the same type, except a plain str where pydicom gives a UID (a str subclass)
    assert type(fast) is type(slow) or (type(fast) is str and isinstance(slow, str)), keyword


def _check_file(data: bytes) -> int:
    covered = 0
    for keyword in _top_level_keywords(data):
        _same(data, keyword, attributes.text)
        _same(data, keyword, attributes.uint)
        raw: object = read_dataset(data).get_item(keyword)
        if isinstance(raw, RawDataElement) and (
            attributes.ascii_value(read_dataset(data), int(raw.tag)) is not None
            or attributes.uint_value(read_dataset(data), int(raw.tag)) is not None
        ):
            covered += 1
    return covered


def _inspections(data: bytes) -> tuple[object, object]:
    def inspect() -> object:
        try:
            return inspect_bytes(data)
        except ImagingError as exc:
            return (type(exc).__name__, exc.message)

    return inspect(), _slow(inspect)


@pytest.mark.parametrize("path", _bundled_files(), ids=lambda p: p.name)
def test_every_bundled_file_reads_the_same_either_way(path: Path) -> None:
    data = path.read_bytes()
    _check_file(data)
    fast, slow = _inspections(data)
    assert fast == slow


def _variants() -> Iterator[tuple[str, Dataset]]:
    base = instance(StudySpec(rows=8, columns=8), 0, 0)
    yield "synthetic", base
    odd = instance(StudySpec(rows=8, columns=8), 0, 1)
    odd.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]  # several values: pydicom's route
    odd.Modality = "CT "  # padded code string
    odd.BurnedInAnnotation = ""  # empty: pydicom's route
    odd.add_new(0x00280002, "US", 1)
    odd.add_new(0x00281050, "DS", "40")
    yield "multi-valued, padded and empty values", odd
    uid_padded = instance(StudySpec(rows=8, columns=8), 0, 2)
    uid_padded.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # odd length: NUL padded on disk
    yield "a UID padded with NUL", uid_padded


@pytest.mark.parametrize(("name", "ds"), list(_variants()), ids=[n for n, _ in _variants()])
def test_synthetic_variants_read_the_same_either_way(
    name: str, ds: Dataset, tmp_path: Path
) -> None:
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert _check_file(data) >= 10, name  # the fast route is really taken
    fast, slow = _inspections(data)
    assert fast == slow, name
