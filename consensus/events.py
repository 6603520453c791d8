"""What goes into a :class:`~consensus.replica.Replica` and what comes out.

``Replica.step(event, now_ms)`` takes one :data:`Input` and the current time
(a value: the core never reads a clock) and returns a list of :data:`Effect`
for the caller to carry out **in order**. The order is a contract: a
:class:`Persist` or :class:`PersistPrepared` must be durable before any later :class:`Send` /
:class:`Broadcast` of the same list is handed to the network, because the
message depends on it (the double-sign guard).

Messages handed in with :class:`MessageIn` must already be decoded and
verified with ``ledger.messages.verify_message`` (signatures, nested
certificates, attachments): the peer layer does that at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from ledger.messages import Message
from ledger.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    DuplicateVoteEvidence,
    PreparedCertificate,
    SafetyRecord,
    ValidatorSignature,
)


class TimerKind(Enum):
    """The replica's timers. Setting one replaces the pending timer of that kind."""

    #: No commit at this height within the view timeout: start a view change.
    PROGRESS = "progress"
    #: No NEW-VIEW within the view-change timeout: try the next view.
    VIEW_CHANGE = "view_change"
    #: A catch-up request went unanswered: ask another peer.
    CATCH_UP = "catch_up"
    #: Periodic status broadcast, so lagging peers learn they are behind.
    STATUS = "status"


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Start:
    """Begin (or resume after a restart) from what storage holds.

    ``last_header`` / ``last_certificate`` are the latest committed block's
    (both ``None`` on a fresh chain); ``records`` are all the safety records the
    SafetyStore kept (``records_since(0)``: a view change at an older height
    still forbids returning to the view it left), so the replica never signs
    against them; ``prepared`` is
    what :class:`PersistPrepared` last saved.
    """

    last_header: BlockHeader | None
    last_certificate: CommitCertificate | None
    records: tuple[SafetyRecord, ...] = ()
    prepared: tuple[PreparedCertificate, Block] | None = None


@dataclass(frozen=True, slots=True)
class MessageIn:
    """A verified message from the peer whose validator key is ``sender``."""

    sender: bytes
    message: Message


@dataclass(frozen=True, slots=True)
class TimerFired:
    kind: TimerKind
    token: int


@dataclass(frozen=True, slots=True)
class ProposalReady:
    """The block the replica asked for with :class:`RequestProposal`, executed."""

    block: Block


@dataclass(frozen=True, slots=True)
class BlockValidated:
    """The outcome of :class:`ValidateBlock`: did execution reproduce the header?"""

    block_hash: bytes
    valid: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WorkPending:
    """Whether the node holds transactions waiting to be committed.

    Only consulted with ``ReplicaConfig.wait_for_work``: then the progress timer
    runs while work is pending (or a proposal is in flight), and an idle network
    makes no blocks and no view changes.
    """

    pending: bool


Input: TypeAlias = Start | MessageIn | TimerFired | ProposalReady | BlockValidated | WorkPending


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Persist:
    """Durably record what this replica is about to sign (fsync before continuing)."""

    record: SafetyRecord


@dataclass(frozen=True, slots=True)
class PersistPrepared:
    """Durably keep the prepared certificate and block (fsync before continuing).

    Emitted before the COMMIT that depends on it, so a replica that restarts can
    still prove in its view changes what it had prepared.
    """

    certificate: PreparedCertificate
    block: Block


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every other validator."""

    message: Message


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to the validator ``to``."""

    to: bytes
    message: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire ``TimerFired(kind, token)`` at ``deadline_ms`` (replacing any pending one)."""

    kind: TimerKind
    token: int
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class RequestProposal:
    """Build and execute a block to propose; answer with :class:`ProposalReady`.

    The block must have this height, view, ``prev_hash`` and the replica as
    proposer, a time of at least ``min_time_ms``, and the post-execution
    state root in its header.
    """

    height: int
    view: int
    prev_hash: bytes
    min_time_ms: int


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    """Execute ``block`` on the committed state; answer with :class:`BlockValidated`."""

    block: Block


@dataclass(frozen=True, slots=True)
class CommitBlock:
    """Commit ``block`` with its certificate (one atomic, durable write)."""

    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class ServeBlocks:
    """Send committed blocks ``from_height``.. (at most ``count``) to ``to``."""

    to: bytes
    from_height: int
    count: int


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    """A validator signed two conflicting messages; record it on chain."""

    evidence: DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class StableCheckpoint:
    """2f+1 validators signed the same state at ``height``."""

    height: int
    block_hash: bytes
    state_root: bytes
    signatures: tuple[ValidatorSignature, ...]


@dataclass(frozen=True, slots=True)
class PruneSafety:
    """Safety records below ``height`` can never matter again; delete them."""

    below_height: int


Effect: TypeAlias = (
    Persist
    | PersistPrepared
    | Broadcast
    | Send
    | SetTimer
    | RequestProposal
    | ValidateBlock
    | CommitBlock
    | ServeBlocks
    | ReportEvidence
    | StableCheckpoint
    | PruneSafety
)
