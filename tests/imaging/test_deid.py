"""The de-identification gate (imaging.deid): which files may be registered, and why not.

Files are written and read back (explicit VR little endian unless a test says
otherwise), so the gate sees datasets exactly as the command line does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging import deid
from imaging.deid import GatePolicy, GateResult, UnknownCheckError
from imaging.fingerprint import read_dataset
from imaging.inspect import inspect_bytes, inspect_file, summarise
from ledger.manifest import GATE_CHECKS, SUMMARY_SCHEMA
from tests.imaging.conftest import bundled, bundled_bytes, ct, encode, save

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # rtdose.dcm's UIDs


def _gate(ds: Dataset, policy: GatePolicy = GatePolicy()) -> GateResult:  # noqa: B008
    return inspect_bytes(save(ds), policy=policy).gate


def _checks(result: GateResult) -> list[str]:
    return [failure.check for failure in result.failures]


def _code(value: str, scheme: str = "DCM") -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = "De-identification option"
    return item


def _add_private(ds: Dataset, count: int = 1) -> None:
    block = ds.private_block(0x0011, "RADLEDGER TEST", create=True)
    for offset in range(count):
        block.add_new(0x01 + offset, "LO", f"value {offset}")


# --------------------------------------------------------------------------- passing


def test_synthetic_study_passes(study: list[Path]) -> None:
    for path in study:
        result = inspect_file(path).gate
        assert result.passed, result.explain()
        assert result.identity_removed
        assert result.codes == ("113100",)
        assert result.failures == result.waived == ()
        assert result.explain() == ""


def test_free_text_method_satisfies_the_method_check() -> None:
    ds = ct(method_codes=())
    ds.DeidentificationMethod = "in-house de-identifier v2, basic profile"
    assert _gate(ds).passed


def test_clean_pixel_option_allows_burned_in_annotation() -> None:
    result = _gate(ct(burned_in="YES", method_codes=("113100", "113101")))
    assert result.passed
    assert result.codes == ("113100", "113101")


def test_retain_safe_private_option_allows_private_elements() -> None:
    ds = ct(method_codes=("113100", "113111"))
    _add_private(ds)
    assert _gate(ds).passed


def test_burned_in_is_not_asked_of_instances_without_pixels() -> None:
    ds = ct(burned_in="")
    del ds.PixelData
    assert deid.check(ds).passed


# --------------------------------------------------------------------------- refused


def test_693_j2ki_claims_identity_removed_but_names_no_method() -> None:
    result = inspect_file(bundled("693_J2KI.dcm")).gate
    assert result.identity_removed
    assert not result.passed
    assert "method" in _checks(result)
    assert "identity-removed" not in _checks(result)
    reason = next(f.reason for f in result.failures if f.check == "method")
    assert "(0012,0063)" in reason
    assert "113100" in reason


def test_mr_small_is_refused_because_identity_is_not_removed() -> None:
    result = inspect_bytes(bundled_bytes("MR_small.dcm")).gate
    assert not result.passed
    assert not result.identity_removed
    assert _checks(result)[:2] == ["identity-removed", "method"]
    assert "absent" in result.failures[0].reason
    assert "identity-removed: Patient Identity Removed (0012,0062) is absent" in result.explain()


def test_identity_removed_no_is_refused_with_the_value() -> None:
    result = _gate(ct(identity_removed=False))
    assert _checks(result) == ["identity-removed"]
    assert "'NO'" in result.failures[0].reason


def test_missing_method_is_refused() -> None:
    assert _checks(_gate(ct(method_codes=()))) == ["method"]


def test_method_codes_must_be_dcm_codes_of_cid_7050() -> None:
    ds = ct(method_codes=())
    ds.DeidentificationMethodCodeSequence = Sequence(
        [_code("113100", scheme="99LOCAL"), _code("999999"), _code("113105"), _code("113105")]
    )
    result = _gate(ds)
    assert result.codes == ("113105",)
    assert _checks(result) == ["method"]


@pytest.mark.parametrize(("value", "shown"), [("YES", "'YES'"), ("", "absent")])
def test_burned_in_annotation_must_be_no(value: str, shown: str) -> None:
    result = _gate(ct(burned_in=value))
    assert _checks(result) == ["burned-in"]
    assert shown in result.failures[0].reason
    assert "113101" in result.failures[0].reason


def test_private_elements_are_refused_and_named() -> None:
    ds = ct()
    _add_private(ds, count=4)
    result = _gate(ds)
    assert _checks(result) == ["private-tags"]
    reason = result.failures[0].reason
    assert "(0011,0010)" in reason
    assert "and 2 more" in reason
    assert "113111" in reason


def test_private_elements_inside_sequences_are_refused() -> None:
    ds = ct()
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    _add_private(item)
    ds.ReferencedImageSequence = Sequence([item])
    assert _checks(_gate(ds)) == ["private-tags"]


def test_original_attributes_sequence_is_refused() -> None:
    ds = ct()
    kept = Dataset()
    kept.PatientName = "REAL^NAME"
    ds.OriginalAttributesSequence = Sequence([kept])
    result = _gate(ds)
    assert _checks(result) == ["original-attributes"]
    assert "(0400,0561)" in result.failures[0].reason


def test_nested_original_attributes_sequence_is_refused() -> None:
    ds = ct()
    kept = Dataset()
    kept.PatientID = "12345"
    item = Dataset()
    item.OriginalAttributesSequence = Sequence([kept])
    ds.ReferencedImageSequence = Sequence([item])
    assert _checks(_gate(ds)) == ["original-attributes"]


@pytest.mark.parametrize("keyword", ["DigitalSignaturesSequence", "MACParametersSequence"])
def test_signatures_are_refused(keyword: str) -> None:
    ds = ct()
    item = Dataset()
    item.MACIDNumber = 1
    setattr(ds, keyword, Sequence([item]))
    assert _checks(_gate(ds)) == ["signatures"]


def test_retained_uids_are_refused() -> None:
    """PS3.15 E.3.9: with the Retain UIDs option the original UIDs stay in the file."""
    result = _gate(ct(method_codes=("113100", "113110")))
    assert _checks(result) == ["retained-uids"]
    assert "113110" in result.failures[0].reason
    # Only the DCM code counts, as for every other option.
    ds = ct()
    ds.DeidentificationMethodCodeSequence.append(_code("113110", "99LOCAL"))
    assert _gate(ds).passed


def test_relaxed_retained_uids_are_recorded_in_the_summary() -> None:
    instance = inspect_bytes(
        save(ct(method_codes=("113100", "113110"))), policy=GatePolicy.relaxing(["retained-uids"])
    )
    assert instance.gate.passed
    assert [w.check for w in instance.gate.waived] == ["retained-uids"]
    summary = summarise([instance])
    assert summary.deid.relaxed == ("retained-uids",)
    assert summary.deid.codes == ("113100", "113110")
    assert SUMMARY_SCHEMA.decode(SUMMARY_SCHEMA.encode(summary)) == summary


def test_every_failed_check_is_reported() -> None:
    ds = ct(identity_removed=False, method_codes=("113110",), burned_in="YES")
    _add_private(ds)
    kept = Dataset()
    kept.PatientName = "REAL^NAME"
    ds.OriginalAttributesSequence = Sequence([kept])
    signature = Dataset()
    signature.MACIDNumber = 1
    ds.DigitalSignaturesSequence = Sequence([signature])
    result = _gate(ds)
    assert _checks(result) == list(GATE_CHECKS)
    assert result.explain().count("; ") == len(GATE_CHECKS) - 1


# --------------------------------------------------------------------------- policy


def test_relaxing_a_check_records_it_as_waived() -> None:
    policy = GatePolicy.relaxing(["burned-in"])
    result = _gate(ct(burned_in="YES"), policy)
    assert result.passed
    assert [w.check for w in result.waived] == ["burned-in"]
    assert "YES" in result.waived[0].reason
    # A relaxed check that did not fail is not recorded.
    assert _gate(ct(), policy).waived == ()


def test_relaxing_one_check_does_not_relax_the_others() -> None:
    ds = ct(burned_in="YES")
    _add_private(ds)
    result = _gate(ds, GatePolicy.relaxing(["burned-in"]))
    assert _checks(result) == ["private-tags"]
    assert [w.check for w in result.waived] == ["burned-in"]


def test_693_j2ki_passes_only_when_its_failures_are_relaxed() -> None:
    policy = GatePolicy.relaxing(["method", "burned-in"])
    result = inspect_file(bundled("693_J2KI.dcm"), policy).gate
    assert result.passed
    assert sorted(w.check for w in result.waived) == ["burned-in", "method"]


def test_every_named_check_can_be_relaxed() -> None:
    assert GatePolicy.relaxing(GATE_CHECKS).relaxed == frozenset(GATE_CHECKS)
    assert GatePolicy.relaxing([]).relaxed == frozenset()


def test_unknown_check_names_are_refused() -> None:
    with pytest.raises(UnknownCheckError) as caught:
        GatePolicy.relaxing(["burned-in", "pixels-look-fine"])
    assert isinstance(caught.value, ValueError)
    assert "pixels-look-fine" in str(caught.value)
    assert "burned-in" in str(caught.value)  # the message lists the real checks


def test_gate_does_not_change_the_dataset_it_checks() -> None:
    ds = ct(burned_in="YES")
    _add_private(ds)
    before = copy.deepcopy(ds)
    deid.check(ds, GatePolicy.relaxing(["burned-in"]))
    assert ds == before


# --------------------------------------------------------------------------- implicit VR


@pytest.mark.parametrize(
    ("source", "passes"),
    [("synthetic", True), ("MR_small_implicit.dcm", False), ("rtdose.dcm", False)],
)
def test_gate_checks_implicit_vr_files(source: str, passes: bool) -> None:
    data = encode(ct(), "implicit") if source == "synthetic" else bundled_bytes(source)
    result = deid.check(read_dataset(data))
    assert result.passed is passes
    if not passes:
        assert "identity-removed" in _checks(result)
    assert inspect_bytes(data).gate.passed is passes
