"""The canonical dataset behind the ``meta`` digest (imaging.canonical).

What legitimately varies with the encoding (transfer syntax, VR explicitness,
byte order, padding, number forms, group lengths, signatures, the pixel
module's encoding descriptors) must not change ``meta``; any other change of
an attribute value must.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian

from imaging.canonical import canonical_meta, excluded
from imaging.errors import MalformedError
from imaging.fingerprint import fingerprint_bytes, meta_digest, read_dataset
from ledger import codec
from tests.imaging.conftest import bundled_bytes, ct, encode, save, swap_words

# Some tests store padded values on purpose; pydicom warns about them.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")


def _map(ds: Dataset) -> dict[str, Any]:
    ds.set_original_encoding(False, True)
    decoded = codec.decode(canonical_meta(ds))
    assert isinstance(decoded, dict)
    return decoded


def _meta(data: bytes) -> bytes:
    return fingerprint_bytes(data).meta


def _with(**attributes: Any) -> Dataset:
    ds = ct()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


# --------------------------------------------------------------------------- what is left out


@pytest.mark.parametrize(
    ("tag", "left_out"),
    [
        (0x00080000, True),  # group length
        (0x00100000, True),
        (0x00020010, True),  # file meta: transfer syntax
        (0x00040000 | 0x1130, True),  # below group 0008
        (0x00080001, True),  # Length to End
        (0x7FE00010, True),  # Pixel Data
        (0x7FE00001, True),  # Extended Offset Table
        (0xFFFCFFFC, True),  # Data Set Trailing Padding
        (0xFFFAFFFA, True),  # Digital Signatures Sequence
        (0x4FFE0001, True),  # MAC Parameters Sequence
        (0x00280004, True),  # Photometric Interpretation
        (0x00280006, True),  # Planar Configuration
        (0x00080018, False),  # SOP Instance UID
        (0x00080005, False),  # Specific Character Set
        (0x00280010, False),  # Rows
        (0x00280301, False),  # Burned In Annotation
        (0x00291010, False),  # a private element
        (0x4FFE0002, False),
    ],
)
def test_excluded_elements(tag: int, left_out: bool) -> None:
    assert excluded(tag) is left_out


def test_encoding_dependent_elements_do_not_change_meta() -> None:
    plain = ct()
    noisy = copy.deepcopy(plain)
    noisy.add_new(0x00080001, "UL", 12345)  # Length to End
    noisy.add_new(0xFFFCFFFC, "OB", b"\x00" * 32)  # trailing padding
    item = Dataset()
    item.MACIDNumber = 1
    noisy.MACParametersSequence = Sequence([item])
    signature = Dataset()
    signature.MACIDNumber = 1
    signature.Signature = b"\x01\x02\x03\x04"
    noisy.DigitalSignaturesSequence = Sequence([signature])
    assert _meta(save(noisy)) == _meta(save(plain))


def test_photometric_interpretation_is_bound_by_pixel_not_meta() -> None:
    mono2 = ct()
    mono1 = copy.deepcopy(mono2)
    mono1.PhotometricInterpretation = "MONOCHROME1"
    a, b = fingerprint_bytes(save(mono2)), fingerprint_bytes(save(mono1))
    assert a.meta == b.meta
    assert a.pixel != b.pixel  # inverted display: a different image


# --------------------------------------------------------------------------- value forms


def test_small_dataset_maps_to_the_documented_forms() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4\x00"
    ds.Modality = " CT "
    ds.ImageType = ["ORIGINAL ", "PRIMARY"]
    ds.SliceThickness = "1.50"
    ds.PixelSpacing = ["100", "-0.0"]
    ds.InstanceNumber = "0012"
    ds.PatientName = "DOE^JANE^^=^^"
    ds.PatientComments = "  leading spaces matter  "
    ds.Rows = 2
    ds.RecommendedDisplayFrameRateInFloat = 1.5
    ds.DiffusionBValue = 1.5
    ds.SelectorATValue = 0x00100010
    ds.EncapsulatedDocument = b"\x01\x02\x03\x04"
    ds.StudyDate = ""
    item = Dataset()
    item.CodeValue = "113100 "
    ds.DeidentificationMethodCodeSequence = Sequence([item])
    assert _map(ds) == {
        "00080008": ["ORIGINAL", "PRIMARY"],
        "00080018": ["1.2.3.4"],
        "00080020": [""],  # empty text: see test_empty_values
        "00080060": ["CT"],
        "00089459": [bytes.fromhex("3fc00000")],  # FL, IEEE 754 big-endian
        "00100010": ["DOE^JANE"],
        "00104000": ["  leading spaces matter"],
        "00120064": [{"00080100": ["113100"]}],
        "00180050": [[15, -1]],
        "00189087": [bytes.fromhex("3ff8000000000000")],  # FD
        "00200013": [12],
        "00280010": [2],
        "00280030": [[1, 2], [0, 0]],
        "00420011": [b"\x01\x02\x03\x04"],
        "00720060": [0x00100010],
    }


def test_empty_values() -> None:
    """Zero-length text is one empty string, a zero-length number no value at all.

    This is what the code computes and what MR_small's regression vector (which
    has a dozen empty Type 2 attributes) depends on. docs/FINGERPRINT.md says
    every zero-length element maps to ``[]``: the document and the code disagree
    for text, and a reimplementation from the document gets a different meta.
    """
    ds = ct()
    ds.StudyDate = ""
    ds.PatientComments = ""
    ds.SliceThickness = None
    ds.InstanceNumber = None
    for syntax in ("explicit", "implicit", "big-endian"):
        decoded = codec.decode(canonical_meta(read_dataset(encode(ds, syntax))))
        assert isinstance(decoded, dict)
        assert decoded["00080020"] == decoded["00104000"] == [""]
        assert decoded["00180050"] == decoded["00200013"] == []


@pytest.mark.parametrize(
    "form", ["1.5", "1.50", "15E-1", "+1.5", " 1.5", "1.5 ", "0.15e1", "150E-2"]
)
def test_decimal_string_forms_give_the_same_meta(form: str) -> None:
    assert _meta(save(_with(SliceThickness=form))) == _meta(save(_with(SliceThickness="1.5")))


@pytest.mark.parametrize("other", ["1.6", "-1.5", "15", "0.15"])
def test_different_decimal_values_give_different_meta(other: str) -> None:
    assert _meta(save(_with(SliceThickness=other))) != _meta(save(_with(SliceThickness="1.5")))


@pytest.mark.parametrize("form", ["12", " 12", "+12", "012", "12 "])
def test_integer_string_forms_give_the_same_meta(form: str) -> None:
    assert _meta(save(_with(InstanceNumber=form))) == _meta(save(_with(InstanceNumber="12")))


@pytest.mark.parametrize(
    ("keyword", "padded", "plain"),
    [
        ("Modality", " CT", "CT"),
        ("BodyPartExamined", "CHEST ", "CHEST"),
        ("PatientID", " SYN-000001 ", "SYN-000001"),
        ("PatientName", "SYNTHETIC^0001^^", "SYNTHETIC^0001"),
        ("PatientName", "SYNTHETIC^0001^^=^", "SYNTHETIC^0001"),
        ("PatientComments", "note   ", "note"),
        ("StudyDate", "20000101 ", "20000101"),
    ],
)
def test_insignificant_padding_is_normalised(keyword: str, padded: str, plain: str) -> None:
    assert _meta(save(_with(**{keyword: padded}))) == _meta(save(_with(**{keyword: plain})))


def test_significant_leading_spaces_of_free_text_are_kept() -> None:
    assert _meta(save(_with(PatientComments="  note"))) != _meta(
        save(_with(PatientComments="note"))
    )


def test_sequence_item_order_is_significant() -> None:
    ds = ct(method_codes=("113100", "113101"))
    swapped = copy.deepcopy(ds)
    items = list(swapped.DeidentificationMethodCodeSequence)
    swapped.DeidentificationMethodCodeSequence = Sequence(items[::-1])
    assert _meta(save(swapped)) != _meta(save(ds))


def test_ambiguous_vr_resolves_the_same_in_every_encoding() -> None:
    ds = _with(SmallestImagePixelValue=-1024, LargestImagePixelValue=2047)
    metas = {_meta(encode(ds, s)) for s in ("explicit", "implicit", "big-endian", "deflated")}
    assert len(metas) == 1
    decoded = codec.decode(canonical_meta(read_dataset(encode(ds, "implicit"))))
    assert isinstance(decoded, dict)
    assert decoded["00280106"] == [-1024]


def test_binary_words_of_a_big_endian_file_are_swapped_back() -> None:
    words = bytes(range(1, 17))
    little = _with(RedPaletteColorLookupTableData=words, EncapsulatedDocument=b"\x01\x02\x03")
    big = copy.deepcopy(little)
    big.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    big.PixelData = swap_words(big.PixelData, 2)
    big.RedPaletteColorLookupTableData = swap_words(words, 2)  # the same OW words, big-endian
    assert _meta(save(big, little=False)) == _meta(save(little))
    big.RedPaletteColorLookupTableData = words  # now different words
    assert _meta(save(big, little=False)) != _meta(save(little))


def test_sequences_nested_deeper_than_16_are_malformed() -> None:
    ds = ct()
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(18):
        outer = Dataset()
        outer.ReferencedImageSequence = Sequence([inner])
        inner = outer
    ds.ReferencedImageSequence = inner.ReferencedImageSequence
    with pytest.raises(MalformedError) as caught:
        fingerprint_bytes(save(ds))
    assert caught.value.code == "malformed"


# --------------------------------------------------------------------------- private elements


def _with_private(vr: str, value: object) -> Dataset:
    ds = ct()
    block = ds.private_block(0x0029, "RADLEDGER TEST", create=True)
    block.add_new(0x01, vr, value)
    return ds


PRIVATE_VALUES = [
    ("LO", "some text"),
    ("US", 513),
    ("UL", 70000),
    ("FL", 1.5),
    ("OB", b"\x01\x02\x03\x04"),
]


@pytest.mark.parametrize(("vr", "value"), PRIVATE_VALUES, ids=[v for v, _ in PRIVATE_VALUES])
def test_private_elements_hash_the_same_in_implicit_and_explicit_vr(vr: str, value: object) -> None:
    ds = _with_private(vr, value)
    explicit, implicit = _meta(encode(ds, "explicit")), _meta(encode(ds, "implicit"))
    assert explicit == implicit
    assert explicit != _meta(save(ct()))  # the private element is hashed


@pytest.mark.parametrize(("vr", "value"), PRIVATE_VALUES, ids=[v for v, _ in PRIVATE_VALUES])
def test_a_private_value_change_changes_meta(vr: str, value: object) -> None:
    changed: object = {"LO": "other text", "US": 514, "UL": 70001, "FL": 2.5}.get(vr, b"\x01\x02")
    assert _meta(save(_with_private(vr, value))) != _meta(save(_with_private(vr, changed)))


@pytest.mark.parametrize(("vr", "value"), [("US", 513), ("FL", 1.5)], ids=["US", "FL"])
def test_private_numbers_hash_the_same_in_big_endian(vr: str, value: object) -> None:
    ds = _with_private(vr, value)
    assert _meta(encode(ds, "big-endian")) == _meta(encode(ds, "explicit"))


def test_private_sequences_hash_the_same_in_implicit_and_explicit_vr() -> None:
    ds = ct()
    item = Dataset()
    item.PatientComments = "inside a private sequence"
    ds.private_block(0x0029, "RADLEDGER TEST", create=True).add_new(0x04, "SQ", Sequence([item]))
    assert _meta(encode(ds, "implicit")) == _meta(encode(ds, "explicit"))


def test_meta_digest_does_not_depend_on_elements_read_before() -> None:
    ds = read_dataset(bundled_bytes("JPEG2000.dcm"))  # carries private elements
    before = meta_digest(ds)
    for _ in ds.iterall():  # what any reader of the dataset does
        pass
    assert meta_digest(ds) == before
