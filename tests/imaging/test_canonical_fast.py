"""The fast route of the canonical form (reading common elements straight from their
bytes) gives exactly what pydicom's conversion gives, on every file we can find."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from imaging import canonical
from imaging.errors import ImagingError
from imaging.fingerprint import read_dataset
from imaging.synthetic import StudySpec, instance

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd test files


def _readable(path: Path) -> bool:
    try:
        read_dataset(path.read_bytes())
    except ImagingError:
        return False
    return True


def _bundled_files() -> list[Path]:
    """pydicom's bundled files that are Part 10 files the fingerprint reads."""
    anchor = get_testdata_file("MR_small.dcm", download=False)
    assert anchor is not None
    folder = Path(str(anchor)).parent
    names = sorted(name for name in os.listdir(folder) if name.endswith(".dcm"))
    return [folder / name for name in names if _readable(folder / name)]


def _both_routes(data: bytes) -> tuple[bytes, bytes]:
    """canonical_meta with and without the fast route, each on a fresh parse."""
    fast = canonical.canonical_meta(read_dataset(data))
    canonical.FAST_PATH = False
    try:
        slow = canonical.canonical_meta(read_dataset(data))
    finally:
        canonical.FAST_PATH = True
    return fast, slow


@pytest.mark.parametrize("path", _bundled_files(), ids=lambda p: p.name)
def test_every_bundled_file_gives_the_same_canonical_form(path: Path) -> None:
    fast, slow = _both_routes(path.read_bytes())
    assert fast == slow


def _variants() -> Iterator[tuple[str, Dataset]]:
    base = instance(StudySpec(rows=8, columns=8), 0, 0)
    yield "synthetic", base
    utf8 = instance(StudySpec(rows=8, columns=8), 0, 1)
    utf8.SpecificCharacterSet = "ISO_IR 192"
    utf8.InstitutionName = "Hôpital Saint-Éloi ✓"
    utf8.StudyDescription = "Thorax \\ Abdomen "
    yield "utf-8 text and a multi-value", utf8
    latin = instance(StudySpec(rows=8, columns=8), 0, 2)
    latin.SpecificCharacterSet = "ISO_IR 100"
    latin.InstitutionName = "Universitätsklinikum"
    latin.ImageComments = "  leading spaces are kept in LT  "
    yield "latin-1 text and LT padding", latin
    odd = instance(StudySpec(rows=8, columns=8), 0, 3)
    odd.ImageType = ["ORIGINAL", "", "AXIAL"]
    odd.AcquisitionDate = ""
    odd.SpacingBetweenSlices = "1.0"
    odd.add_new(0x00181150, "IS", None)  # zero-length IS
    odd.add_new(0x0018995A, "FL", [0.5, -1.25])  # multi-valued float
    odd.add_new(0x00189087, "FD", 1e-9)
    odd.add_new(0x00280106, "SS", -12)
    yield "empty and numeric values", odd
    iso2022 = instance(StudySpec(rows=8, columns=8), 0, 4)
    iso2022.SpecificCharacterSet = ["ISO 2022 IR 6", "ISO 2022 IR 87"]
    iso2022.InstitutionName = "Yamada"
    yield "ISO 2022 (falls back to pydicom)", iso2022


@pytest.mark.parametrize(("name", "ds"), list(_variants()), ids=[n for n, _ in _variants()])
def test_synthetic_variants_give_the_same_canonical_form(
    name: str, ds: Dataset, tmp_path: Path
) -> None:
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    fast, slow = _both_routes(path.read_bytes())
    assert fast == slow, name
