"""The simulator's safety checker: what must hold after every step of every run.

The simulator calls the ``on_*`` hooks as things happen (every message an honest node
emits, every commit, every piece of evidence, every stable checkpoint) and the per-step
invariants after each ``Replica.step``; :meth:`Checker.check_final` runs once the healed
network has had its chance. Each violation is a string naming the step, the simulated
time, the nodes and the hashes involved, so a failing seed explains itself.

Checked:

* **agreement**: no two honest replicas commit different blocks at one height (the first
  commit per height is remembered globally, and every later one is compared with it);
* **validity**: a committed block's proposer is ``validators[header.view mod n]`` and the
  block executes, on the committing node's state, to its header's state root; the store
  accepts the commit;
* **certificates**: every commit certificate names its block and carries a quorum of
  distinct validators' valid COMMIT signatures;
* **no double signing**: every signed object an honest node emits (votes, the votes inside
  certificates it forwards, view changes, NEW-VIEWs, checkpoints) is keyed by its slot, and
  two different digests for one slot are a violation, across restarts too;
* **persist before you speak**: when an honest node sends a message it signed, its store
  already holds the safety record of that slot with that digest (unless pruned);
* **evidence** from an honest node verifies and accuses a Byzantine validator;
* **stable checkpoints** carry a quorum of valid signatures on the agreed block and root;
* per step: a replica's committed height equals its store's, and its view never goes back
  within one incarnation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, assert_never

from consensus.config import (
    PHASE_CHECKPOINT,
    PHASE_COMMIT,
    PHASE_NEW_VIEW,
    PHASE_PREPARE,
    PHASE_PROPOSE,
    PHASE_VIEW_CHANGE,
)
from consensus.events import StableCheckpoint
from ledger.errors import LedgerError
from ledger.messages import (
    BlockRequest,
    BlockResponse,
    Checkpoint,
    Message,
    NewView,
    Proposal,
    Status,
    ViewChange,
)
from ledger.types import (
    Block,
    CommitCertificate,
    DuplicateVoteEvidence,
    QuorumCertificate,
    SafetyRecord,
    Vote,
    VoteKind,
    quorum_size,
)
from node.sim.transcript import short

__all__ = ["MAX_RECORDED_VIOLATIONS", "Checker", "RecordLookup", "SignatureCache", "signed_slots"]

#: Violations kept verbatim per run; the rest are only counted.
MAX_RECORDED_VIOLATIONS: Final = 50
#: Entries of the verified-signature cache before it is cleared.
SIGNATURE_CACHE_ENTRIES: Final = 200_000


class SignatureCache:
    """Votes whose signatures are known to verify, keyed by everything the signature covers.

    Shared between the network boundary (which verifies every vote it lets through) and the
    checker (which re-checks every certificate), so a signature is verified once.
    """

    def __init__(self, chain_id: str) -> None:
        self._chain_id = chain_id
        self._good: set[tuple[int, int, int, bytes, bytes, bytes]] = set()
        self.verifications = 0

    def add(self, vote: Vote) -> None:
        if len(self._good) >= SIGNATURE_CACHE_ENTRIES:
            self._good.clear()
        self._good.add(
            (int(vote.kind), vote.height, vote.view, vote.block_hash, vote.validator, vote.sig)
        )

    def valid(self, vote: Vote) -> bool:
        key = (int(vote.kind), vote.height, vote.view, vote.block_hash, vote.validator, vote.sig)
        if key in self._good:
            return True
        if vote.chain_id != self._chain_id:
            return False
        self.verifications += 1
        if not vote.verify_signature():
            return False
        self.add(vote)
        return True


_VOTE_PHASES: Final = {
    VoteKind.PROPOSE: PHASE_PROPOSE,
    VoteKind.PREPARE: PHASE_PREPARE,
    VoteKind.COMMIT: PHASE_COMMIT,
}

#: ``safety.get(height, view, phase)`` of a store.
RecordLookup = Callable[[int, int, int], SafetyRecord | None]


def signed_slots(signer: bytes, message: Message) -> list[tuple[int, int, int, bytes, str]]:
    """The safety slots ``(height, view, phase, digest, what)`` that sending ``message``
    uses for what ``signer`` itself signed in it (forwarded signatures are not its own)."""
    slots: list[tuple[int, int, int, bytes, str]] = []

    def vote(v: Vote) -> None:
        if v.validator == signer:
            what = f"{v.kind.name} h={v.height} v={v.view}"
            slots.append((v.height, v.view, _VOTE_PHASES[v.kind], v.block_hash, what))

    match message:
        case Vote():
            vote(message)
        case Proposal():
            vote(message.vote)
        case ViewChange():
            if message.validator == signer:
                height = message.committed_height + 1
                what = f"VIEW-CHANGE h={height} to v={message.new_view}"
                slots.append((height, message.new_view, PHASE_VIEW_CHANGE, message.digest, what))
        case NewView():
            if message.validator == signer:
                height = message.proposal.height
                what = f"NEW-VIEW h={height} v={message.view}"
                slots.append((height, message.view, PHASE_NEW_VIEW, message.digest, what))
            vote(message.proposal)
        case Checkpoint():
            if message.validator == signer:
                what = f"CHECKPOINT h={message.height}"
                slots.append((message.height, 0, PHASE_CHECKPOINT, message.digest, what))
        case Status() | BlockRequest() | BlockResponse():
            pass
        case _:
            assert_never(message)
    return slots


@dataclass(frozen=True, slots=True)
class _Signed:
    digest: bytes
    step: int
    time_ms: int


class Checker:
    """Collects violations of the simulator's invariants (see the module docstring)."""

    def __init__(
        self,
        *,
        chain_id: str,
        genesis_hash: bytes,
        validators: Sequence[bytes],
        honest: Iterable[bytes],
        names: Mapping[bytes, str],
        signatures: SignatureCache | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.validators: Final = tuple(validators)
        self._members: Final = frozenset(self.validators)
        self.honest: Final = frozenset(honest)
        self.names = names
        self.quorum: Final = quorum_size(len(self.validators))
        self.signatures = signatures if signatures is not None else SignatureCache(chain_id)
        self.violations: list[str] = []
        self.violation_count = 0
        self.step = 0
        self.time_ms = 0
        #: height -> (block hash, node name, step) of the first honest commit
        self.first_commit: dict[int, tuple[bytes, str, int]] = {}
        self._roots: dict[int, bytes] = {}
        self._signed: dict[tuple[object, ...], _Signed] = {}
        self._conflicts: set[tuple[tuple[object, ...], bytes]] = set()
        self._stable: dict[int, tuple[bytes, bytes, str]] = {}
        self.evidence_seen = 0
        self.commits_checked = 0

    # ------------------------------------------------------------------ plumbing

    def at(self, step: int, time_ms: int) -> None:
        """Set the step and time that violations found from now on are reported with."""
        self.step = step
        self.time_ms = time_ms

    def name(self, key: bytes) -> str:
        return self.names.get(key, short(key))

    def violation(self, kind: str, message: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_RECORDED_VIOLATIONS:
            self.violations.append(f"step {self.step} t={self.time_ms}ms: {kind}: {message}")

    @property
    def ok(self) -> bool:
        return self.violation_count == 0

    # ------------------------------------------------------------------ double signing

    def on_emit(self, emitter: bytes, message: Message) -> None:
        """An honest node hands ``message`` to the network: record what it signed."""
        if emitter not in self.honest:
            return
        match message:
            case Vote():
                self._vote(emitter, message)
            case Proposal():
                self._vote(emitter, message.vote)
            case ViewChange():
                self._view_change(emitter, message)
            case NewView():
                if message.validator == emitter:
                    self._slot(
                        ("NEW-VIEW", emitter, message.proposal.height, message.view),
                        message.digest,
                        f"NEW-VIEW h={message.proposal.height} v={message.view}",
                    )
                self._vote(emitter, message.proposal)
                for vc in message.view_changes:
                    self._view_change(emitter, vc)
            case Checkpoint():
                if message.validator == emitter:
                    self._slot(
                        ("CHECKPOINT", emitter, message.height),
                        message.digest,
                        f"CHECKPOINT h={message.height}",
                    )
            case Status():
                self._certificate_votes(emitter, message.committed)
            case BlockRequest():
                pass
            case BlockResponse():
                for cert in message.certificates:
                    self._certificate_votes(emitter, cert)
            case _:
                assert_never(message)

    def check_persisted(
        self, emitter: bytes, message: Message, lookup: RecordLookup, pruned_below: int
    ) -> None:
        """An honest node sends ``message``: what it signed must already be on its disk."""
        if emitter not in self.honest:
            return
        for height, view, phase, digest, what in signed_slots(emitter, message):
            if height < pruned_below:
                continue
            record = lookup(height, view, phase)
            if record is None or record.digest != digest:
                held = "no record" if record is None else f"a record of {short(record.digest)}"
                self.violation(
                    "persist-before-send",
                    f"{self.name(emitter)} sends {what} for {short(digest)} while its store "
                    f"holds {held} for that slot",
                )

    def _vote(self, emitter: bytes, vote: Vote) -> None:
        if vote.validator != emitter:
            return  # forwarded (e.g. the echo of the primary's PROPOSE)
        self._slot(
            ("VOTE", emitter, int(vote.kind), vote.height, vote.view),
            vote.block_hash,
            f"{vote.kind.name} h={vote.height} v={vote.view}",
        )

    def _view_change(self, emitter: bytes, vc: ViewChange) -> None:
        if vc.validator != emitter:
            return
        height = vc.committed_height + 1
        self._slot(
            ("VIEW-CHANGE", emitter, height, vc.new_view),
            vc.digest,
            f"VIEW-CHANGE h={height} to v={vc.new_view}",
        )
        self._certificate_votes(emitter, vc.committed)
        self._certificate_votes(emitter, vc.prepared)

    def _certificate_votes(self, emitter: bytes, cert: QuorumCertificate | None) -> None:
        if cert is None:
            return
        for signature in cert.signatures:
            if signature.validator == emitter:
                self._slot(
                    ("VOTE", emitter, int(cert.KIND), cert.height, cert.view),
                    cert.block_hash,
                    f"{cert.KIND.name} h={cert.height} v={cert.view}",
                )

    def _slot(self, key: tuple[object, ...], digest: bytes, what: str) -> None:
        previous = self._signed.get(key)
        if previous is None:
            self._signed[key] = _Signed(digest, self.step, self.time_ms)
            return
        if previous.digest != digest and (key, digest) not in self._conflicts:
            self._conflicts.add((key, digest))
            signer = key[1]
            assert isinstance(signer, bytes)
            self.violation(
                "double-sign",
                f"honest {self.name(signer)} signed {what} for {short(digest)}, but signed "
                f"{short(previous.digest)} for the same slot at step {previous.step} "
                f"(t={previous.time_ms}ms)",
            )

    def signed_slots(self) -> int:
        return len(self._signed)

    # ------------------------------------------------------------------ commits

    def certificate_problem(self, cert: CommitCertificate, block: Block) -> str | None:
        """Why ``cert`` is not a valid commit certificate for ``block``, or ``None``."""
        if cert.chain_id != self.chain_id:
            return f"certificate for chain {cert.chain_id!r}"
        if (cert.height, cert.block_hash) != (block.height, block.hash):
            return (
                f"certificate names h={cert.height} {short(cert.block_hash)}, "
                f"not h={block.height} {short(block.hash)}"
            )
        signers = [s.validator for s in cert.signatures]
        if len(set(signers)) != len(signers):
            return "certificate repeats a signer"
        for vote in cert.votes():
            if vote.validator not in self._members:
                return f"certificate signer {short(vote.validator)} is not a validator"
            if not self.signatures.valid(vote):
                return f"certificate signature of {self.name(vote.validator)} does not verify"
        if len(signers) < self.quorum:
            return f"certificate has {len(signers)} signers, a quorum is {self.quorum}"
        return None

    def on_commit(
        self,
        node: bytes,
        block: Block,
        cert: CommitCertificate,
        *,
        executed_root: bytes | None,
        execution_problem: str,
    ) -> None:
        """An honest node is told to commit ``block``; ``executed_root`` is what its
        execution of the block produced (``None`` if execution failed)."""
        self.commits_checked += 1
        who = self.name(node)
        header = block.header
        height = header.height
        problem = self.certificate_problem(cert, block)
        if problem is not None:
            self.violation(
                "certificate", f"{who} commits h={height} {short(block.hash)}: {problem}"
            )
        expected = self.validators[header.view % len(self.validators)]
        if header.proposer != expected:
            self.violation(
                "validity",
                f"{who} commits h={height} {short(block.hash)} proposed by "
                f"{self.name(header.proposer)}, but the primary of view {header.view} is "
                f"{self.name(expected)}",
            )
        if executed_root != header.state_root:
            self.violation(
                "validity",
                f"{who} commits h={height} {short(block.hash)} which does not execute to its "
                f"state root: {execution_problem or 'root differs'}",
            )
        first = self.first_commit.get(height)
        if first is None:
            self.first_commit[height] = (block.hash, who, self.step)
            self._roots[height] = header.state_root
            previous = self.first_commit.get(height - 1)
            parent = self.genesis_hash if height == 1 else (previous[0] if previous else None)
            if parent is not None and header.prev_hash != parent:
                self.violation(
                    "agreement",
                    f"{who} commits h={height} {short(block.hash)} whose parent "
                    f"{short(header.prev_hash)} is not the committed h={height - 1} "
                    f"{short(parent)}",
                )
            stable = self._stable.get(height)
            if stable is not None:
                self._compare_checkpoint(height, stable)
        elif first[0] != block.hash:
            self.violation(
                "agreement",
                f"{who} commits h={height} {short(block.hash)}, but {first[1]} committed "
                f"{short(first[0])} at that height (step {first[2]})",
            )

    def on_store_error(self, node: bytes, block: Block, error: str) -> None:
        self.violation(
            "validity",
            f"{self.name(node)}'s store refused block h={block.height} {short(block.hash)}: "
            f"{error}",
        )

    # ------------------------------------------------------------------ evidence, checkpoints

    def on_evidence(self, node: bytes, evidence: DuplicateVoteEvidence) -> None:
        self.evidence_seen += 1
        accused = evidence.vote_a.validator
        what = f"{evidence.vote_a.kind.name} h={evidence.vote_a.height} v={evidence.vote_a.view}"
        try:
            evidence.verify(self.validators)
        except LedgerError as exc:
            self.violation("evidence", f"{self.name(node)} reported invalid evidence: {exc}")
            return
        if accused in self.honest:
            self.violation(
                "evidence",
                f"{self.name(node)} holds valid evidence that honest {self.name(accused)} "
                f"double-signed {what}",
            )

    def on_stable_checkpoint(self, node: bytes, effect: StableCheckpoint) -> None:
        who = self.name(node)
        signers = [s.validator for s in effect.signatures]
        if len(set(signers)) != len(signers) or len(signers) < self.quorum:
            self.violation(
                "checkpoint",
                f"{who}: stable checkpoint h={effect.height} has {len(set(signers))} "
                f"distinct signers, a quorum is {self.quorum}",
            )
        for signature in effect.signatures:
            checkpoint = Checkpoint(
                self.chain_id,
                effect.height,
                effect.block_hash,
                effect.state_root,
                signature.validator,
                signature.sig,
            )
            try:
                checkpoint.verify(self.chain_id, self.validators)
            except LedgerError as exc:
                self.violation("checkpoint", f"{who}: stable checkpoint h={effect.height}: {exc}")
                return
        stable = (effect.block_hash, effect.state_root, who)
        self._stable.setdefault(effect.height, stable)
        if effect.height in self.first_commit:
            self._compare_checkpoint(effect.height, stable)

    def _compare_checkpoint(self, height: int, stable: tuple[bytes, bytes, str]) -> None:
        block_hash, root, who = stable
        committed = self.first_commit[height][0]
        if (block_hash, root) != (committed, self._roots[height]):
            self.violation(
                "checkpoint",
                f"{who}: stable checkpoint h={height} names {short(block_hash)} root "
                f"{short(root)}, but {short(committed)} root {short(self._roots[height])} "
                f"was committed",
            )

    # ------------------------------------------------------------------ per step

    def after_step(
        self,
        node: bytes,
        *,
        committed_height: int,
        store_height: int,
        view: int,
        previous_view: int,
    ) -> None:
        who = self.name(node)
        if committed_height != store_height:
            self.violation(
                "state",
                f"{who}: replica reports committed height {committed_height}, its store holds "
                f"{store_height}",
            )
        if view < previous_view:
            self.violation("state", f"{who}: view went back from {previous_view} to {view}")

    def check_agreed_prefix(self, chains: Mapping[bytes, Sequence[bytes]], target: int) -> None:
        """Final check: every honest chain agrees with the first commits up to ``target``."""
        for node, hashes in chains.items():
            for height, block_hash in enumerate(hashes[:target], start=1):
                first = self.first_commit.get(height)
                if first is not None and first[0] != block_hash:
                    self.violation(
                        "agreement",
                        f"{self.name(node)} holds h={height} {short(block_hash)}, but "
                        f"{short(first[0])} was committed",
                    )

    def __repr__(self) -> str:
        return f"Checker(violations={self.violation_count}, heights={len(self.first_commit)})"
