"""The de-identification gate: what a file must show before it may be registered.

The gate reads the markers a de-identifier writes (PS3.15 Annex E, PS3.3 C.7.1.1)
and refuses files that do not claim de-identification or that carry what the
Basic profile removes. It cannot prove de-identification (no tool can: PS3.15 E.1
says so); it stops the obvious mistakes before anything reaches the chain.

Checks (names are stable; a site's policy may relax named checks, and the
relaxation is recorded on chain with the registration):

``identity-removed``
    Patient Identity Removed (0012,0062) is ``YES``.
``method``
    De-identification Method (0012,0063) is present, or code 113100 (Basic
    Application Confidentiality Profile) is in (0012,0064). PS3.3 makes one of
    them required when (0012,0062) is YES; pydicom's ``693_J2KI.dcm`` has neither.
``burned-in``
    For images: Burned In Annotation (0028,0301) is ``NO``, or code 113101
    (Clean Pixel Data) is listed. Absent means unknown, and unknown is refused.
``private-tags``
    No private data elements anywhere, unless 113111 (Retain Safe Private).
``original-attributes``
    No Original Attributes Sequence (0400,0561), which keeps the values a
    de-identifier replaced.
``signatures``
    No Digital Signatures Sequence (FFFA,FFFA) or MAC Parameters Sequence
    (4FFE,0001): signatures over identifying data cannot survive de-identification.
``retained-uids``
    Code 113110 (Retain UIDs Option) is not listed: with it the de-identifier
    kept the original Study, Series and SOP Instance UIDs, which would then go
    on chain in the manifests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from imaging import attributes
from ledger.manifest import DEID_CODE_PATTERN, GATE_CHECKS

CODE_BASIC: Final = "113100"
CODE_CLEAN_PIXEL: Final = "113101"
CODE_RETAIN_UIDS: Final = "113110"
CODE_RETAIN_SAFE_PRIVATE: Final = "113111"

_ORIGINAL_ATTRIBUTES: Final = 0x04000561
_SIGNATURE_TAGS: Final = frozenset({0xFFFAFFFA, 0x4FFE0001})
_PIXEL_TAGS: Final = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_MAX_DEPTH: Final = 16


class UnknownCheckError(ValueError):
    """A policy names a check the gate does not have."""


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """Which checks a site has decided to waive (recorded on chain when used)."""

    relaxed: frozenset[str] = frozenset()

    @classmethod
    def relaxing(cls, names: Iterable[str]) -> GatePolicy:
        wanted = frozenset(names)
        unknown = wanted - set(GATE_CHECKS)
        if unknown:
            raise UnknownCheckError(
                f"unknown gate checks {sorted(unknown)}; the checks are {', '.join(GATE_CHECKS)}"
            )
        return cls(wanted)


@dataclass(frozen=True, slots=True)
class Failure:
    check: str
    reason: str


@dataclass(frozen=True, slots=True)
class GateResult:
    """The verdict on one file.

    ``failures`` are the checks that failed and were not relaxed (the file is
    refused if there is any); ``waived`` are failed checks the policy relaxed.
    """

    identity_removed: bool
    codes: tuple[str, ...]
    failures: tuple[Failure, ...] = ()
    waived: tuple[Failure, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    def explain(self) -> str:
        return "; ".join(f"{f.check}: {f.reason}" for f in self.failures)


def method_codes(ds: Dataset) -> tuple[str, ...]:
    """CID 7050 code values listed in (0012,0064), sorted and distinct."""
    import re  # noqa: PLC0415

    pattern = re.compile(DEID_CODE_PATTERN)
    codes: set[str] = set()
    for item in _sequence(ds, 0x00120064):
        value = str(item.get("CodeValue", "") or "").strip()
        scheme = str(item.get("CodingSchemeDesignator", "") or "").strip()
        if scheme == "DCM" and pattern.fullmatch(value):
            codes.add(value)
    return tuple(sorted(codes))


def check(ds: Dataset, policy: GatePolicy = GatePolicy()) -> GateResult:
    codes = method_codes(ds)
    removed = _text(ds, 0x00120062).upper() == "YES"
    failed: list[Failure] = []
    if not removed:
        value = _text(ds, 0x00120062)
        failed.append(
            Failure(
                "identity-removed",
                "Patient Identity Removed (0012,0062) is "
                + (f"{value!r}" if value else "absent")
                + ", not YES",
            )
        )
    if not _text(ds, 0x00120063) and CODE_BASIC not in codes:
        failed.append(
            Failure(
                "method",
                "no De-identification Method (0012,0063) and no code 113100 in (0012,0064)",
            )
        )
    if any(tag in ds for tag in _PIXEL_TAGS) and CODE_CLEAN_PIXEL not in codes:
        burned = _text(ds, 0x00280301).upper()
        if burned != "NO":
            failed.append(
                Failure(
                    "burned-in",
                    "Burned In Annotation (0028,0301) is "
                    + (f"{burned!r}" if burned else "absent")
                    + " and Clean Pixel Data (113101) is not listed",
                )
            )
    walked = list(_walk(ds, 0))
    if CODE_RETAIN_SAFE_PRIVATE not in codes:
        private = [tag for tag in walked if tag >> 16 & 1]
        if private:
            shown = ", ".join(str(BaseTag(t)) for t in private[:3])
            more = f" and {len(private) - 3} more" if len(private) > 3 else ""
            failed.append(
                Failure(
                    "private-tags",
                    f"private elements {shown}{more} remain and Retain Safe Private "
                    "(113111) is not listed",
                )
            )
    tags = set(walked)
    if _ORIGINAL_ATTRIBUTES in tags:
        failed.append(
            Failure(
                "original-attributes",
                "an Original Attributes Sequence (0400,0561) keeps replaced values",
            )
        )
    if tags & _SIGNATURE_TAGS:
        failed.append(
            Failure("signatures", "digital signatures or MAC parameters remain (FFFA / 4FFE)")
        )
    if CODE_RETAIN_UIDS in codes:
        failed.append(
            Failure(
                "retained-uids",
                "Retain UIDs (113110) is listed: the original UIDs would go on chain",
            )
        )
    return GateResult(
        identity_removed=removed,
        codes=codes,
        failures=tuple(f for f in failed if f.check not in policy.relaxed),
        waived=tuple(f for f in failed if f.check in policy.relaxed),
    )


def _text(ds: Dataset, tag: int) -> str:
    fast = attributes.ascii_value(ds, tag)
    if fast is not None:
        return fast.strip(" \x00")
    if tag not in ds:
        return ""
    try:
        value = ds[tag].value
    except Exception:
        return ""
    return "" if value is None else str(value).strip(" \x00")


def _sequence(ds: Dataset, tag: int) -> list[Dataset]:
    if tag not in ds:
        return []
    try:
        value = ds[tag].value
    except Exception:
        return []
    return [item for item in (value or []) if isinstance(item, Dataset)]


def _walk(ds: Dataset, depth: int) -> Iterator[int]:
    """Every tag in ``ds`` and in its sequence items, depth first.

    Only sequences are converted: the VR comes from the file (explicit VR) or
    the data dictionary (implicit VR), so the common elements are never decoded.
    """
    if depth > _MAX_DEPTH:
        return
    for tag in list(ds.keys()):
        yield int(tag)
        if not _may_be_sequence(ds, tag):
            continue
        try:
            elem = ds[tag]
        except Exception:  # noqa: S112  (an unreadable value holds no items)
            continue
        if elem.VR == "SQ":
            for item in elem.value or ():
                if isinstance(item, Dataset):
                    yield from _walk(item, depth + 1)


def _may_be_sequence(ds: Dataset, tag: BaseTag) -> bool:
    raw: object = ds.get_item(tag)
    if not isinstance(raw, RawDataElement):
        return getattr(raw, "VR", None) == "SQ"
    if raw.VR is not None and raw.VR != "UN":
        return bool(raw.VR == "SQ")
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:  # private or unknown: a sequence if it holds items
        return raw.length == 0xFFFFFFFF or (raw.value or b"")[:4] == b"\xfe\xff\x00\xe0"
