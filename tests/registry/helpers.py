"""A small in-memory chain for registry tests: state, keys, and body builders."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from ledger import codec
from ledger.keys import SigningKey
from ledger.manifest import (
    SUMMARY_SCHEMA,
    DeidRecord,
    Geometry,
    InstanceLeaf,
    SeriesSummary,
    series_root,
)
from ledger.types import Tx
from registry.app import BlockContext, Registry, TxRejection, Writes
from tests.factories import make_genesis

GENESIS = make_genesis()
ADMIN = [SigningKey(bytes([50 + i]) * 32) for i in range(4)]  # admins of site0..site3
RESEARCHER = SigningKey(b"\x70" * 32)  # enrolled at site0 by the fixture
AUDITOR = SigningKey(b"\x71" * 32)  # enrolled at site0 by the fixture
RESEARCHER1 = SigningKey(b"\x72" * 32)  # enrolled at site1 by the fixture
SUBJECT = SigningKey(b"\x80" * 32)
SUBJECT2 = SigningKey(b"\x81" * 32)
STRANGER = SigningKey(b"\x90" * 32)
T0 = GENESIS.genesis_time_ms + 10_000_000
BLOCK_INTERVAL_MS = 1_000


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class MemoryState:
    """Committed state as a dict; ``items`` in bytewise key order like storage."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(self.data):
            if key.startswith(prefix):
                yield key, self.data[key]

    def apply(self, writes: Writes) -> None:
        for key, value in writes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


class Chain:
    """Executes blocks with a :class:`Registry` and commits their writes to memory."""

    def __init__(self) -> None:
        self.registry = Registry(GENESIS)
        self.state = MemoryState()
        self.height = 0
        self.time_ms = T0
        self.nonces: dict[bytes, int] = {}
        self.history: list[Writes] = []

    def tx(
        self,
        key: SigningKey,
        kind: str,
        body: dict[str, Any],
        *,
        nonce: int | None = None,
        reason: str = "protocol 7 analysis",
        time_ms: int | None = None,
    ) -> Tx:
        if nonce is None:
            nonce = self.nonces.get(key.public_key, 0) + 1
        self.nonces[key.public_key] = max(nonce, self.nonces.get(key.public_key, 0))
        full = {"reason": reason, "time_ms": self.time_ms if time_ms is None else time_ms, **body}
        return Tx.create(key, chain_id=GENESIS.chain_id, kind=kind, nonce=nonce, body=full)

    def next_context(self) -> BlockContext:
        return BlockContext(self.height + 1, self.time_ms + BLOCK_INTERVAL_MS)

    def block(self, txs: Sequence[Tx]) -> list[TxRejection | None]:
        ctx = self.next_context()
        writes, outcome = self.registry.execute(self.state.get, txs, ctx)
        self.height, self.time_ms = ctx.height, ctx.time_ms
        self.state.apply(writes)
        self.history.append(writes)
        return outcome

    def submit(self, key: SigningKey, kind: str, body: dict[str, Any], **kw: Any) -> Tx:
        """Commit one transaction that must be accepted; returns it."""
        tx = self.tx(key, kind, body, **kw)
        outcome = self.block([tx])[0]
        assert outcome is None, f"{kind} refused: {outcome}"
        return tx

    def refuse(
        self, key: SigningKey, kind: str, body: dict[str, Any], code: str, **kw: Any
    ) -> TxRejection:
        """Submit one transaction that must be refused with ``code`` and write nothing."""
        tx = self.tx(key, kind, body, **kw)
        before = dict(self.state.data)
        check = self.registry.check(self.state.get, tx, self.time_ms + BLOCK_INTERVAL_MS)
        outcome = self.block([tx])[0]
        assert outcome is not None, f"{kind} was accepted, expected {code}"
        assert outcome.code == code, outcome
        assert check == outcome, "check() and execute() disagree"
        assert self.state.data == before, "a refused transaction wrote"
        assert len(outcome.message) > 10, "the message should be a sentence"
        return outcome


# --------------------------------------------------------------------------- imaging bodies


def leaf(n: int, prefix: str = "1.2.826.0.1.3680043.2") -> InstanceLeaf:
    return InstanceLeaf(
        sop_instance_uid=f"{prefix}.{n:06d}",
        pixel=digest(f"pixel {prefix} {n}"),
        meta=digest(f"meta {prefix} {n}"),
        file=digest(f"file {prefix} {n}"),
    )


def leaves(count: int, start: int = 0, prefix: str = "1.2.826.0.1.3680043.2") -> list[InstanceLeaf]:
    return [leaf(n, prefix) for n in range(start, start + count)]


def summary(instances: int) -> SeriesSummary:
    return SeriesSummary(
        modality="CT",
        body_part="CHEST",
        sop_classes=("1.2.840.10008.5.1.4.1.1.2",),
        instances=instances,
        frames=instances,
        geometry=(Geometry(512, 512, 1, 16, 12, "MONOCHROME2"),),
        lossy=False,
        deid=DeidRecord(True, ("113100",), ()),
    )


def leaf_value(item: InstanceLeaf) -> codec.Value:
    return codec.decode(item.encode())


def summary_value(value: SeriesSummary) -> codec.Value:
    return codec.decode(SUMMARY_SCHEMA.encode(value))


def register_bodies(
    dataset: str,
    series: str,
    all_leaves: Sequence[InstanceLeaf],
    parts: int = 1,
    *,
    supersedes: str | None = None,
    root: bytes | None = None,
) -> list[dict[str, Any]]:
    """The ``dataset.register`` bodies of a series split into ``parts`` (near) equal parts."""
    root = series_root(all_leaves) if root is None else root
    size = -(-len(all_leaves) // parts)
    bodies = []
    for part in range(parts):
        chunk = all_leaves[part * size : (part + 1) * size]
        bodies.append(
            {
                "dataset": dataset,
                "series": series,
                "part": part,
                "parts": parts,
                "leaves": [leaf_value(item) for item in chunk],
                "series_root": root,
                "instances": len(all_leaves),
                "summary": summary_value(summary(len(all_leaves))) if part == 0 else None,
                "supersedes": supersedes if part == 0 else None,
            }
        )
    return bodies


def derive_body(
    dataset: str, parents: Sequence[str], transformation: str = "segmentation"
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "parents": list(parents),
        "transformation": transformation,
        "code_version": digest("container sha"),
        "output": digest(f"output {dataset}"),
    }


def access_body(
    dataset: str,
    purpose: str = "research",
    consent: bytes | None = None,
    trial: str | None = None,
) -> dict[str, Any]:
    return {"dataset": dataset, "purpose": purpose, "consent": consent, "trial": trial}


def link_body(
    subject: SigningKey, site: str, datasets: Sequence[str], secret: str = "s0"
) -> dict[str, Any]:
    return {
        "subject": subject.public_key,
        "site": site,
        "commitment": digest(f"{secret}|{subject.public_key.hex()}"),
        "datasets": list(datasets),
    }


def grant_body(
    kind: str,
    ident: str,
    site: str = "site0",
    datasets: Sequence[str] | None = None,
    purpose: str = "research",
    expires_ms: int | None = None,
) -> dict[str, Any]:
    return {
        "grantee": {"kind": kind, "id": ident},
        "scope": {"site": site, "datasets": None if datasets is None else list(datasets)},
        "purpose": purpose,
        "expires_ms": expires_ms,
    }


def trial_body(
    trial: str,
    datasets: Sequence[str] = (),
    registry_ids: Sequence[str] = ("NCT01234567",),
    investigators: Sequence[SigningKey] = (),
) -> dict[str, Any]:
    return {
        "trial": trial,
        "registry_ids": list(registry_ids),
        "protocol": digest(f"protocol {trial}"),
        "endpoints": digest(f"endpoints {trial}"),
        "datasets": list(datasets),
        "investigators": [key.public_key for key in investigators],
    }


def amend_body(
    trial: str,
    protocol: bytes | None = None,
    endpoints: bytes | None = None,
    datasets_added: Sequence[str] = (),
    investigators_added: Sequence[SigningKey] = (),
    investigators_removed: Sequence[SigningKey] = (),
) -> dict[str, Any]:
    return {
        "trial": trial,
        "protocol": protocol,
        "endpoints": endpoints,
        "datasets_added": list(datasets_added),
        "investigators_added": [key.public_key for key in investigators_added],
        "investigators_removed": [key.public_key for key in investigators_removed],
    }


def result_body(trial: str, datasets: Sequence[str] = ()) -> dict[str, Any]:
    return {"trial": trial, "results": digest(f"results {trial}"), "datasets": list(datasets)}


def enroll_body(member: SigningKey, site: str, role: str = "researcher") -> dict[str, Any]:
    return {"member": member.public_key, "site": site, "role": role}


def populated_chain() -> Chain:
    """Members enrolled, dataset ``ds0`` (site0, one 4-instance series), SUBJECT linked to it."""
    chain = Chain()
    chain.submit(ADMIN[0], "member.enroll", enroll_body(RESEARCHER, "site0"))
    chain.submit(ADMIN[0], "member.enroll", enroll_body(AUDITOR, "site0", "auditor"))
    chain.submit(ADMIN[1], "member.enroll", enroll_body(RESEARCHER1, "site1"))
    for body in register_bodies("ds0", "1.2.3.1", leaves(4)):
        chain.submit(RESEARCHER, "dataset.register", body)
    chain.submit(ADMIN[0], "subject.link", link_body(SUBJECT, "site0", ["ds0"]))
    return chain


def run_scenario(chain: Chain) -> None:
    """A mixed workload touching every kind (some refused), in single and multi-tx blocks."""
    chain.submit(ADMIN[0], "member.enroll", enroll_body(RESEARCHER, "site0"))
    chain.submit(ADMIN[0], "member.enroll", enroll_body(AUDITOR, "site0", "auditor"))
    chain.submit(ADMIN[1], "member.enroll", enroll_body(RESEARCHER1, "site1"))
    big = leaves(9, prefix="1.5")
    for body in register_bodies("ct", "1.5.0", big, parts=3):
        chain.submit(RESEARCHER, "dataset.register", body)
    chain.submit(RESEARCHER1, "dataset.register", register_bodies("mr", "1.6.0", leaves(3))[0])
    chain.submit(RESEARCHER, "dataset.derive", derive_body("seg", ["ct", "mr"]))
    chain.submit(ADMIN[0], "subject.link", link_body(SUBJECT, "site0", ["ct", "seg"]))
    chain.submit(ADMIN[0], "subject.link", link_body(SUBJECT2, "site0", ["ct"]))
    grant = chain.submit(SUBJECT, "consent.grant", grant_body("site", "site0")).hash
    chain.submit(RESEARCHER, "trial.register", trial_body("T1", ["ct"]))
    chain.block(
        [
            chain.tx(RESEARCHER, "access.log", access_body("ct", consent=grant, trial="T1")),
            chain.tx(AUDITOR, "access.log", access_body("ct", "research")),  # refused
            chain.tx(RESEARCHER, "trial.amend", amend_body("T1", protocol=digest("v2"))),
            chain.tx(SUBJECT, "consent.revoke", {"grant": grant}),
            chain.tx(RESEARCHER, "access.log", access_body("ct", consent=grant)),  # refused
            chain.tx(RESEARCHER, "trial.result", result_body("T1", ["ct", "seg"])),
        ]
    )
    chain.submit(
        RESEARCHER, "dataset.register", register_bodies("ct2", "1.5.0", big, supersedes="ct")[0]
    )
    chain.submit(ADMIN[0], "member.revoke", {"member": RESEARCHER.public_key})
    chain.block([chain.tx(RESEARCHER, "access.log", access_body("ct"))])  # refused
