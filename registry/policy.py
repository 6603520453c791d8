"""Who may use a dataset under which consent: one decision for the rules and for authz.

``access.log`` (registry/rules.py) refuses what these functions refuse, and
``authz`` (registry/queries.py) denies exactly the same, so an archive that
asks the ledger before releasing data gets the answer the ledger itself would
give when the access is logged. The callers only differ in *when* they judge
(committed state now, or replayed at a past height); the judgement is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry.kinds import AUDIT_PURPOSE, Grantee
from registry.records import GrantRecord

__all__ = ["Use", "consent_refusal", "grantee_matches", "role_refusal"]


@dataclass(frozen=True, slots=True)
class Use:
    """An intended use of a dataset, as judged at one moment.

    ``role`` and ``sites`` are the key's standing then (a site admin has role
    ``admin`` and its sites). ``purpose`` ``None`` asks about any purpose
    (authz only: an access always has one). ``project`` is the trial the use
    is for; ``investigator`` says whether the key is then an active
    investigator of that trial, and the dataset one of its datasets: only
    then may it rely on a grant to the project.
    """

    key: bytes
    role: str
    sites: Sequence[str]
    purpose: str | None
    project: str | None = None
    investigator: bool = False


def role_refusal(use: Use) -> str | None:
    """Why the key's role rules the use out, or ``None``.

    An auditor may use data only for purpose ``audit``; a use that names no
    purpose is not an audit, so it is refused too.
    """
    if use.role == "auditor" and use.purpose != AUDIT_PURPOSE:
        asked = "no purpose" if use.purpose is None else f"purpose {use.purpose}"
        return f"an auditor may only use data for purpose {AUDIT_PURPOSE}, not for {asked}"
    return None


def grantee_matches(grantee: Grantee, use: Use) -> bool:
    """Whether a grant to ``grantee`` is for this key: itself, its site, or its project."""
    if grantee.kind == "member":
        return grantee.id == use.key.hex()
    if grantee.kind == "site":
        return grantee.id in use.sites
    return grantee.kind == "project" and grantee.id == use.project and use.investigator


def consent_refusal(grant: GrantRecord, use: Use) -> tuple[str, str] | None:
    """``(code, message)`` if ``grant`` is not for this use's grantee or purpose, else ``None``.

    Whether the grant is active and covers the dataset is judged by the caller,
    at its moment (now for a transaction, a past height for a query).
    """
    what = f"consent grant {grant.id.hex()}"
    grantee = grant.grantee
    if not grantee_matches(grantee, use):
        if grantee.kind == "project" and grantee.id == use.project:
            return (
                "grant_not_for_grantee",
                f"{what} is for project {grantee.id}, and the signer is not an active "
                f"investigator of trial {grantee.id}",
            )
        return (
            "grant_not_for_grantee",
            f"{what} is for {grantee.kind} {grantee.id}, not for this signer, "
            "its site or the trial it names",
        )
    if use.purpose is not None and grant.purpose != use.purpose:
        return (
            "consent_purpose_mismatch",
            f"{what} is for purpose {grant.purpose}, the access is for {use.purpose}",
        )
    return None
