"""The PBFT replica: one height at a time, execute-then-agree, sans-I/O.

``Replica.step(event, now_ms)`` is the only mutator. It never reads a clock,
draws randomness, or touches sockets or disk: time arrives as ``now_ms``, and
everything the replica wants done comes back as effects (see
:mod:`consensus.events`). docs/CONSENSUS.md states the protocol; the comments
here say which rule each branch implements.

Per height ``h`` in view ``v``:

1. the primary (``validators[v mod n]``) asks the node for a block
   (``RequestProposal``), signs a PROPOSE vote and broadcasts the PRE-PREPARE;
2. a replica checks the block's header (height, parent, proposer, time),
   asks the node to execute it (``ValidateBlock``), echoes the primary's
   PROPOSE vote to everyone (so an equivocating primary is caught), and on a
   valid result broadcasts PREPARE;
3. 2f+1 matching PREPAREs make the block prepared: the replica durably saves
   the prepared certificate, then broadcasts COMMIT;
4. 2f+1 matching COMMITs commit the block (``CommitBlock`` with the
   certificate), and the replica moves to ``h+1`` in the same view.

Before any signature leaves, the replica records (height, view, phase,
digest) with a ``Persist`` effect placed ahead of the send, and it refuses to
sign a different digest for a slot it has recorded, including records
restored after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import assert_never

from consensus.config import (
    PHASE_CHECKPOINT,
    PHASE_COMMIT,
    PHASE_NEW_VIEW,
    PHASE_PREPARE,
    PHASE_PROPOSE,
    PHASE_VIEW_CHANGE,
    ReplicaConfig,
)
from consensus.events import (
    BlockValidated,
    Broadcast,
    CommitBlock,
    Effect,
    Input,
    MessageIn,
    Persist,
    PersistPrepared,
    ProposalReady,
    PruneSafety,
    ReportEvidence,
    RequestProposal,
    Send,
    ServeBlocks,
    SetTimer,
    StableCheckpoint,
    Start,
    TimerFired,
    TimerKind,
    ValidateBlock,
    WorkPending,
)
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
    BlockHeader,
    CommitCertificate,
    DuplicateVoteEvidence,
    PreparedCertificate,
    SafetyRecord,
    ValidatorSignature,
    Vote,
    VoteKind,
)

_MAX_BACKOFF_DOUBLINGS = 16


@dataclass(frozen=True, slots=True)
class ReplicaSnapshot:
    """A read-only view of the replica for operators (``/v1/consensus``) and tests."""

    height: int
    view: int
    in_view_change: bool
    view_change_target: int
    committed_height: int
    primary: bytes
    proposal_hash: bytes | None
    prepared: bool
    prepare_voters: tuple[bytes, ...]
    commit_voters: tuple[bytes, ...]
    view_change_voters: tuple[bytes, ...]
    catching_up_to: int
    refused_signatures: int
    evidence_reported: int
    stable_checkpoint: int


@dataclass(slots=True)
class _Round:
    """What the replica knows about the height it is deciding. Reset on commit."""

    proposals: dict[int, Proposal] = field(default_factory=dict)  # view -> accepted proposal
    validity: dict[bytes, bool | None] = field(default_factory=dict)  # hash -> None = pending
    blocks: dict[bytes, Block] = field(default_factory=dict)
    prepares: dict[tuple[int, bytes], dict[bytes, Vote]] = field(default_factory=dict)
    commits: dict[tuple[int, bytes], dict[bytes, Vote]] = field(default_factory=dict)
    seen: dict[tuple[bytes, int, int], Vote] = field(default_factory=dict)
    reported: set[tuple[bytes, int, int]] = field(default_factory=set)
    sent_prepare: set[int] = field(default_factory=set)  # views in which we sent PREPARE
    sent_commit: set[int] = field(default_factory=set)  # views in which we sent COMMIT
    awaiting_proposal: bool = False  # the primary asked the node for a block
    #: Phases (PREPARE sent, prepared) that restarted this height's progress timer.
    extended: set[tuple[int, int]] = field(default_factory=set)


class Replica:
    """One validator's PBFT state machine. See the module docstring."""

    def __init__(self, config: ReplicaConfig) -> None:
        self._c = config
        self._me = config.key.public_key
        self._started = False
        # chain position
        self._height = 1
        self._last_header: BlockHeader | None = None
        self._last_cert: CommitCertificate | None = None
        # view
        self._view = 0
        self._in_vc = False
        self._vc_target = 0
        self._failed_views = 0
        self._view_changes: dict[int, dict[bytes, ViewChange]] = {}
        self._vc_timer_armed = False
        self._new_view_sent: set[int] = set()
        self._pending_new_view: NewView | None = None  # accepted, waiting for our height
        self._last_new_view: NewView | None = None  # the one that started our view
        # the round at the current height
        self._round = _Round()
        self._prepared: tuple[PreparedCertificate, Block] | None = None
        # safety: slot -> digest of everything we signed (restored on restart)
        self._signed: dict[tuple[int, int, int], bytes] = {}
        self._view_floor = 0
        self._refused = 0
        # future messages and catch-up
        self._future: dict[int, list[tuple[bytes, Message]]] = {}
        self._buffered_per_peer: dict[bytes, int] = {}
        self._sync_target = 0
        self._sync_peer: bytes | None = None
        self._status_sent_to: dict[bytes, int] = {}
        # checkpoints
        self._checkpoints: dict[int, dict[bytes, Checkpoint]] = {}
        self._stable_checkpoint = 0
        self._evidence_reported = 0
        # timer tokens: a fired timer whose token is not current is stale
        self._tokens: dict[TimerKind, int] = dict.fromkeys(TimerKind, 0)
        self._work_pending = not config.wait_for_work
        self._progress_armed = False
        self._now = 0

    # ------------------------------------------------------------------ public

    @property
    def config(self) -> ReplicaConfig:
        return self._c

    def step(self, event: Input, now_ms: int) -> list[Effect]:
        """Apply one input at time ``now_ms``; return the effects to carry out in order."""
        self._now = max(self._now, now_ms)
        out: list[Effect] = []
        if not self._started and not isinstance(event, Start):
            return out
        match event:
            case Start():
                self._on_start(event, out)
            case MessageIn(sender=sender, message=message):
                self._on_message(sender, message, out)
            case TimerFired(kind=kind, token=token):
                if token == self._tokens[kind]:
                    self._on_timer(kind, out)
            case ProposalReady(block=block):
                self._on_proposal_ready(block, out)
            case BlockValidated(block_hash=block_hash, valid=valid):
                self._on_validated(block_hash, valid, out)
            case WorkPending(pending=pending):
                self._work_pending = pending or not self._c.wait_for_work
                if self._work_pending:
                    self._arm_progress(out)
            case _:
                assert_never(event)
        return out

    @property
    def view(self) -> int:
        """The current view (cheap: the node reads it after every input)."""
        return self._view

    def snapshot(self) -> ReplicaSnapshot:
        r = self._round
        proposal = r.proposals.get(self._view)
        key = (self._view, proposal.vote.block_hash) if proposal else None
        return ReplicaSnapshot(
            height=self._height,
            view=self._view,
            in_view_change=self._in_vc,
            view_change_target=self._vc_target,
            committed_height=self._height - 1,
            primary=self._c.primary(self._view),
            proposal_hash=proposal.vote.block_hash if proposal else None,
            prepared=self._prepared is not None and self._prepared[0].height == self._height,
            prepare_voters=tuple(sorted(r.prepares.get(key, {}))) if key else (),
            commit_voters=tuple(sorted(r.commits.get(key, {}))) if key else (),
            view_change_voters=tuple(sorted(self._view_changes.get(self._vc_target, {}))),
            catching_up_to=self._sync_target,
            refused_signatures=self._refused,
            evidence_reported=self._evidence_reported,
            stable_checkpoint=self._stable_checkpoint,
        )

    # ------------------------------------------------------------------ start

    def _on_start(self, event: Start, out: list[Effect]) -> None:
        if self._started:
            return
        self._started = True
        self._last_header = event.last_header
        self._last_cert = event.last_certificate
        self._height = 1 if event.last_header is None else event.last_header.height + 1
        self._view = 0 if event.last_certificate is None else event.last_certificate.view
        vc_view = -1
        entered = self._view  # the highest view we are known to have worked in
        for record in event.records:
            self._signed[record.slot] = record.digest
            if record.phase == PHASE_VIEW_CHANGE:
                # A view we asked to leave stays left, whatever height we asked at.
                vc_view = max(vc_view, record.view)
            elif record.height >= self._height:
                entered = max(entered, record.view)
        if event.prepared is not None and event.prepared[0].height == self._height:
            self._prepared = event.prepared
            entered = max(entered, event.prepared[0].view)
        self._view_floor = max(vc_view, 0)
        self._view = entered
        if vc_view > entered:
            # We had asked to move to vc_view and never worked in it: resume that view
            # change (the same VIEW-CHANGE if we can rebuild it, else a later view).
            self._start_view_change(vc_view, out)
        else:
            self._enter_height(out)
        self._schedule_status(out)
        out.append(Broadcast(Status(self._c.chain_id, self._last_cert)))

    # ------------------------------------------------------------------ timers

    def _set_timer(self, kind: TimerKind, delay_ms: int, out: list[Effect]) -> None:
        self._tokens[kind] += 1
        out.append(SetTimer(kind, self._tokens[kind], self._now + delay_ms))

    def _cancel_timer(self, kind: TimerKind) -> None:
        self._tokens[kind] += 1

    def _timeout_ms(self) -> int:
        doublings = min(self._failed_views, _MAX_BACKOFF_DOUBLINGS)
        return min(self._c.view_timeout_ms << doublings, self._c.limits.max_view_timeout_ms)

    def _schedule_status(self, out: list[Effect]) -> None:
        self._set_timer(TimerKind.STATUS, self._c.limits.status_interval_ms, out)

    def _on_timer(self, kind: TimerKind, out: list[Effect]) -> None:
        if kind is TimerKind.PROGRESS:
            if not self._in_vc:
                self._start_view_change(self._view + 1, out)
        elif kind is TimerKind.VIEW_CHANGE:
            if self._in_vc:
                self._start_view_change(self._vc_target + 1, out)
        elif kind is TimerKind.CATCH_UP:
            self._sync_peer = None
            self._continue_sync(out)
        elif kind is TimerKind.STATUS:
            out.append(Broadcast(Status(self._c.chain_id, self._last_cert)))
            if self._in_vc:
                # Retransmit our VIEW-CHANGE (PBFT does too): one lost during a
                # partition must not leave the new primary short of a quorum forever.
                mine = self._view_changes.get(self._vc_target, {}).get(self._me)
                if mine is not None:
                    out.append(Broadcast(mine))
            self._schedule_status(out)
        else:
            assert_never(kind)

    # ------------------------------------------------------------------ signing guard

    def _guard(self, height: int, view: int, phase: int, digest: bytes, out: list[Effect]) -> bool:
        """Record what we are about to sign; False if it conflicts with a past signature.

        The ``Persist`` goes into ``out`` before the caller appends the send, so
        the runtime makes it durable before the message can leave.
        """
        slot = (height, view, phase)
        recorded = self._signed.get(slot)
        if recorded is not None:
            if recorded != digest:
                self._refused += 1
                return False
            return True
        self._signed[slot] = digest
        out.append(Persist(SafetyRecord(height=height, view=view, phase=phase, digest=digest)))
        return True

    # ------------------------------------------------------------------ heights

    def _prev_hash(self) -> bytes:
        return self._c.genesis_hash if self._last_header is None else self._last_header.hash

    def _prev_time_ms(self) -> int:
        return self._c.genesis_time_ms if self._last_header is None else self._last_header.time_ms

    def _arm_progress(self, out: list[Effect]) -> None:
        """Start this height's progress timer, once (see ``wait_for_work``)."""
        if self._progress_armed or self._in_vc:
            return
        self._progress_armed = True
        self._set_timer(TimerKind.PROGRESS, self._timeout_ms(), out)

    def _extend_progress(self, view: int, phase: int, out: list[Effect]) -> None:
        """The height just made progress the primary alone cannot fake: restart its timer.

        A valid proposal (we PREPARE) and a prepared certificate (we COMMIT) each
        restart the progress timer once per view, so a height that advances slowly
        under load (votes queued behind work) is not abandoned for a view change that
        would only start it over with another, equally loaded, primary. A primary
        that stalls can delay a height by at most three timeouts (no proposal; then
        only the backups' votes are missing, which no primary controls).
        """
        r = self._round
        if (view, phase) in r.extended or self._in_vc or not self._progress_armed:
            return
        r.extended.add((view, phase))
        self._set_timer(TimerKind.PROGRESS, self._timeout_ms(), out)

    def _enter_height(self, out: list[Effect]) -> None:
        """Start work on ``self._height`` in ``self._view`` (normal case)."""
        self._progress_armed = False
        if self._work_pending:
            self._arm_progress(out)
        else:
            self._cancel_timer(TimerKind.PROGRESS)
        if self._c.primary(self._view) == self._me and not self._in_vc:
            self._request_proposal(self._view, out)
        pending = self._pending_new_view
        if pending is not None and pending.proposal.height == self._height:
            self._pending_new_view = None
            proposal = pending.as_proposal()
            if proposal is not None:
                self._accept_proposal(proposal, out)
        for sender, message in self._future.pop(self._height, []):
            self._buffered_per_peer[sender] = self._buffered_per_peer.get(sender, 1) - 1
            self._on_message(sender, message, out)

    def _request_proposal(self, view: int, out: list[Effect]) -> None:
        if self._round.awaiting_proposal or view in self._round.proposals:
            return
        if (self._height, view, PHASE_PROPOSE) in self._signed:
            return  # proposed before a restart; we cannot rebuild the same block
        self._round.awaiting_proposal = True
        out.append(
            RequestProposal(
                height=self._height,
                view=view,
                prev_hash=self._prev_hash(),
                min_time_ms=self._prev_time_ms() + 1,
            )
        )

    def _on_proposal_ready(self, block: Block, out: list[Effect]) -> None:
        r = self._round
        if not r.awaiting_proposal:
            return
        r.awaiting_proposal = False
        if block.height != self._height or block.header.prev_hash != self._prev_hash():
            return  # stale: the chain moved while the node was building it
        if self._in_vc:
            self._finish_new_view(self._vc_target, block, out)
            return
        view = self._view
        if self._c.primary(view) != self._me or block.header.view != view:
            return
        if not self._guard(self._height, view, PHASE_PROPOSE, block.hash, out):
            return
        proposal = Proposal.create(self._c.key, view=view, block=block)
        out.append(Broadcast(proposal))
        r.validity[block.hash] = True  # the node executed it to build it
        self._accept_proposal(proposal, out)

    def _commit(self, block: Block, cert: CommitCertificate, out: list[Effect]) -> None:
        """Commit the block at our height and reset the round (callers then ``_resume``)."""
        out.append(CommitBlock(block, cert))
        self._last_header = block.header
        self._last_cert = cert
        self._height = block.height + 1
        # A quorum committed in a later view: that view is established.
        if cert.view > self._view and cert.view >= self._view_floor:
            self._view = cert.view
        if self._in_vc and cert.view >= self._vc_target:
            self._view = cert.view
            self._in_vc = False
            self._cancel_timer(TimerKind.VIEW_CHANGE)
        self._failed_views = 0
        self._round = _Round()
        if self._prepared is not None and self._prepared[0].height < self._height:
            self._prepared = None
        self._view_changes = {
            v: {k: vc for k, vc in vcs.items() if vc.committed_height >= self._height - 1}
            for v, vcs in self._view_changes.items()
            if v > self._view
        }
        for slot in [s for s in self._signed if s[0] < self._height - 1]:
            del self._signed[slot]
        for h in [h for h in self._future if h < self._height]:
            for sender, _ in self._future.pop(h):
                self._buffered_per_peer[sender] = self._buffered_per_peer.get(sender, 1) - 1
        if self._c.checkpoint_interval and block.height % self._c.checkpoint_interval == 0:
            self._send_checkpoint(block.header, out)

    def _resume(self, out: list[Effect]) -> None:
        """After commits: keep syncing, finish a view change, or start the next height."""
        if self._sync_target >= self._height:
            self._continue_sync(out)
            return
        self._sync_target = 0
        self._sync_peer = None
        self._cancel_timer(TimerKind.CATCH_UP)
        if self._in_vc:
            self._refresh_view_change(out)
            self._try_new_view(self._vc_target, out)
            return
        self._enter_height(out)

    def _refresh_view_change(self, out: list[Effect]) -> None:
        """We committed more while changing views: re-announce our view change with
        the new committed height, so the new primary does not plan from stale data."""
        target = self._vc_target
        mine = self._view_changes.get(target, {}).get(self._me)
        if mine is not None and mine.committed_height >= self._height - 1:
            return
        vc = ViewChange.create(
            self._c.key,
            chain_id=self._c.chain_id,
            new_view=target,
            committed=self._last_cert,
            prepared=None,
            block=None,
        )
        if self._guard(self._height, target, PHASE_VIEW_CHANGE, vc.digest, out):
            out.append(Broadcast(vc))
            self._view_changes.setdefault(target, {})[self._me] = vc

    # ------------------------------------------------------------------ messages

    def _on_message(self, sender: bytes, message: Message, out: list[Effect]) -> None:
        if sender not in self._c.validators:
            return
        match message:
            case Proposal():
                if self._route(sender, message.height, message, out):
                    self._on_proposal(sender, message, out)
            case Vote():
                if self._route(sender, message.height, message, out):
                    self._on_vote(message, out)
            case ViewChange():
                self._on_view_change(message, out)
            case NewView():
                self._on_new_view(sender, message, out)
            case Checkpoint():
                self._on_checkpoint(message, out)
            case Status():
                self._learn_committed(message.committed, sender, out)
            case BlockRequest():
                last = self._height - 1
                if message.from_height <= last:
                    count = min(message.count, last - message.from_height + 1)
                    out.append(ServeBlocks(sender, message.from_height, count))
            case BlockResponse():
                self._on_blocks(sender, message, out)
            case _:
                assert_never(message)

    def _route(self, sender: bytes, height: int, message: Message, out: list[Effect]) -> bool:
        """True if the message is for our height; buffer future ones, answer stale ones."""
        if height == self._height:
            return True
        if height < self._height:
            # The sender is behind: tell it once per height of theirs.
            # (A late vote for the height we just committed is not news.)
            if height < self._height - 1 and self._status_sent_to.get(sender) != height:
                self._status_sent_to[sender] = height
                out.append(Send(sender, Status(self._c.chain_id, self._last_cert)))
            return False
        limits = self._c.limits
        if height - self._height > limits.future_window_heights:
            return False
        if self._buffered_per_peer.get(sender, 0) >= limits.max_buffered_per_peer:
            return False
        self._buffered_per_peer[sender] = self._buffered_per_peer.get(sender, 0) + 1
        self._future.setdefault(height, []).append((sender, message))
        return False

    # ---- PRE-PREPARE

    def _on_proposal(self, sender: bytes, proposal: Proposal, out: list[Effect]) -> None:
        self._observe(proposal.vote, out)
        if proposal.view != self._view or self._in_vc:
            return  # proposals outside our current view arrive via NEW-VIEW only
        if sender != proposal.sender or proposal.sender != self._c.primary(proposal.view):
            return
        if proposal.block.header.view != proposal.view:
            return  # a re-proposal is legitimate only inside a NEW-VIEW
        self._accept_proposal(proposal, out)

    def _header_ok(self, header: BlockHeader) -> bool:
        return (
            header.chain_id == self._c.chain_id
            and header.height == self._height
            and header.prev_hash == self._prev_hash()
            and header.proposer == self._c.primary(header.view)
            and self._prev_time_ms() < header.time_ms <= self._now + self._c.max_clock_skew_ms
        )

    def _accept_proposal(self, proposal: Proposal, out: list[Effect]) -> None:
        """Take the primary's proposal for (height, view): check, execute, echo."""
        r = self._round
        view = proposal.view
        existing = r.proposals.get(view)
        if existing is not None:
            return  # one proposal per view; a conflicting one is evidence via _observe
        block = proposal.block
        if not self._header_ok(block.header):
            if view == self._view and not self._in_vc:
                self._start_view_change(self._view + 1, out)  # invalid proposal
            return
        r.proposals[view] = proposal
        r.blocks[block.hash] = block
        self._arm_progress(out)  # a proposal in flight must commit in time
        if proposal.sender != self._me:
            out.append(Broadcast(proposal.vote))  # echo: exposes an equivocating primary
        if block.hash not in r.validity:
            r.validity[block.hash] = None
            out.append(ValidateBlock(block))
        self._advance(out)

    def _on_validated(self, block_hash: bytes, valid: bool, out: list[Effect]) -> None:
        r = self._round
        if block_hash not in r.validity or r.validity[block_hash] is not None:
            return
        r.validity[block_hash] = valid
        if not valid:
            proposal = r.proposals.get(self._view)
            if proposal is not None and proposal.vote.block_hash == block_hash and not self._in_vc:
                self._start_view_change(self._view + 1, out)
            return
        self._advance(out)

    # ---- PREPARE / COMMIT

    def _in_window(self, view: int) -> bool:
        ahead = self._c.limits.max_view_ahead
        return self._view - ahead <= view <= self._view + ahead

    def _observe(self, vote: Vote, out: list[Effect]) -> bool:
        """Remember the first vote per (signer, kind, view) and report a conflicting
        one once. True if ``vote`` is that first vote (or a duplicate of it): only
        those are tallied, so a Byzantine signer cannot grow our state by voting
        for ever new hashes."""
        if vote.height != self._height or not self._in_window(vote.view):
            return False
        key = (vote.validator, int(vote.kind), vote.view)
        r = self._round
        seen = r.seen.get(key)
        if seen is None:
            r.seen[key] = vote
            return True
        if seen.block_hash == vote.block_hash:
            return True
        if key not in r.reported:
            r.reported.add(key)
            self._evidence_reported += 1
            out.append(ReportEvidence(DuplicateVoteEvidence.of(seen, vote)))
            if (
                vote.kind == VoteKind.PROPOSE
                and vote.view == self._view
                and vote.validator == self._c.primary(self._view)
                and not self._in_vc
            ):
                self._start_view_change(self._view + 1, out)  # equivocating primary
        return False

    def _on_vote(self, vote: Vote, out: list[Effect]) -> None:
        if not self._observe(vote, out):
            return
        r = self._round
        key = (vote.view, vote.block_hash)
        if vote.kind == VoteKind.PREPARE:
            r.prepares.setdefault(key, {})[vote.validator] = vote
        elif vote.kind == VoteKind.COMMIT:
            r.commits.setdefault(key, {})[vote.validator] = vote
        self._advance(out)

    def _advance(self, out: list[Effect]) -> None:
        """Take every step the current knowledge allows (prepare, commit, decide)."""
        r = self._round
        height = self._height
        # Decide: a quorum of COMMITs for a block we have and executed, in any view.
        for (_, block_hash), votes in list(r.commits.items()):
            if len(votes) < self._c.quorum:
                continue
            cert = CommitCertificate.from_votes(votes.values())
            if r.validity.get(block_hash) is True:
                self._commit(r.blocks[block_hash], cert, out)
                self._resume(out)
                return
            if block_hash not in r.blocks:
                # Committed by a quorum but we never saw the block: fetch it.
                helper = next(v for v in sorted(votes) if v != self._me)
                self._learn_committed(cert, helper, out)
        if self._in_vc:
            return
        view = self._view
        if view < self._view_floor:
            return
        proposal = r.proposals.get(view)
        if proposal is None:
            return
        block_hash = proposal.vote.block_hash
        if r.validity.get(block_hash) is not True:
            return
        # PREPARE once the block executed to its header.
        if self._guard(height, view, PHASE_PREPARE, block_hash, out):
            if view not in r.sent_prepare:
                r.sent_prepare.add(view)
                self._cast(VoteKind.PREPARE, view, block_hash, r.prepares, out)
                self._extend_progress(view, PHASE_PREPARE, out)
        else:
            return
        # Prepared: save the certificate durably, then COMMIT.
        prepares = r.prepares.get((view, block_hash), {})
        if len(prepares) < self._c.quorum or view in r.sent_commit:
            return
        if not self._guard(height, view, PHASE_COMMIT, block_hash, out):
            return
        certificate = PreparedCertificate.from_votes(prepares.values())
        block = r.blocks[block_hash]
        if self._prepared is None or self._prepared[0].view <= view:
            self._prepared = (certificate, block)
            out.append(PersistPrepared(certificate, block))  # durable before the COMMIT
        r.sent_commit.add(view)
        self._cast(VoteKind.COMMIT, view, block_hash, r.commits, out)
        self._extend_progress(view, PHASE_COMMIT, out)
        self._advance(out)

    def _cast(
        self,
        kind: VoteKind,
        view: int,
        block_hash: bytes,
        tally: dict[tuple[int, bytes], dict[bytes, Vote]],
        out: list[Effect],
    ) -> None:
        """Sign and broadcast our vote (its slot is already persisted) and count it."""
        vote = Vote.create(
            self._c.key,
            chain_id=self._c.chain_id,
            kind=kind,
            height=self._height,
            view=view,
            block_hash=block_hash,
        )
        out.append(Broadcast(vote))
        tally.setdefault((view, block_hash), {})[self._me] = vote

    # ------------------------------------------------------------------ view change

    def _start_view_change(self, target: int, out: list[Effect]) -> None:
        """Leave the current view for ``target`` (or later, if a record forbids ``target``)."""
        if target <= self._view or (self._in_vc and target <= self._vc_target):
            return
        prepared = (
            self._prepared if self._prepared and self._prepared[0].height == self._height else None
        )
        if prepared is not None:
            target = max(target, prepared[0].view + 1)
        for candidate in range(target, target + self._c.limits.max_view_ahead):
            vc = ViewChange.create(
                self._c.key,
                chain_id=self._c.chain_id,
                new_view=candidate,
                committed=self._last_cert,
                prepared=prepared[0] if prepared else None,
                block=prepared[1] if prepared else None,
            )
            if self._guard(self._height, candidate, PHASE_VIEW_CHANGE, vc.digest, out):
                break
        else:
            return
        self._in_vc = True
        self._vc_target = candidate
        self._view_floor = max(self._view_floor, candidate)
        self._round.awaiting_proposal = False
        self._cancel_timer(TimerKind.PROGRESS)
        self._cancel_timer(TimerKind.VIEW_CHANGE)
        self._vc_timer_armed = False
        self._failed_views += 1
        out.append(Broadcast(vc))
        self._view_changes.setdefault(candidate, {})[self._me] = vc
        self._arm_view_change_timer(out)
        self._try_new_view(candidate, out)

    def _arm_view_change_timer(self, out: list[Effect]) -> None:
        """PBFT's rule, counted over later views too: wait for NEW-VIEW on a timer
        only once 2f+1 replicas (us included) ask for our target view or a later one.
        A replica alone in a view change waits without a timer, so it cannot run
        ahead of the others view after view; the others, once they are a quorum at
        or beyond our target, time out towards it (or the f+1 rule pulls them)."""
        if not self._in_vc or self._vc_timer_armed:
            return
        asking = {
            sender
            for view, vcs in self._view_changes.items()
            if view >= self._vc_target
            for sender in vcs
        }
        if len(asking) < self._c.quorum:
            return
        self._vc_timer_armed = True
        self._set_timer(TimerKind.VIEW_CHANGE, self._timeout_ms(), out)

    def _on_view_change(self, vc: ViewChange, out: list[Effect]) -> None:
        if vc.validator == self._me:
            return  # our own, replayed to us by someone
        nv = self._last_new_view
        if (
            vc.new_view == self._view
            and not self._in_vc
            and nv is not None
            and nv.view == self._view
        ):
            # It still asks for the view we are in: it missed the NEW-VIEW. Resend it.
            out.append(Send(vc.validator, nv))
            return
        if vc.new_view <= self._view or vc.new_view > self._view + self._c.limits.max_view_ahead:
            return
        if vc.committed_height >= self._height:
            self._learn_committed(vc.committed, vc.validator, out)
        votes = self._view_changes.setdefault(vc.new_view, {})
        previous = votes.get(vc.validator)
        if previous is None or previous.committed_height <= vc.committed_height:
            votes[vc.validator] = vc
        if vc.new_view >= self._vc_target:
            self._arm_view_change_timer(out)
        # f+1 others want a view later than ours: join the smallest such view (PBFT 4.5.2).
        current = self._vc_target if self._in_vc else self._view
        later = [
            v for v, vcs in self._view_changes.items() if v > current and vcs.keys() - {self._me}
        ]
        senders = {k for v in later for k in self._view_changes[v] if k != self._me}
        if len(senders) >= self._c.f + 1:
            self._start_view_change(min(later), out)
        self._try_new_view(vc.new_view, out)

    @staticmethod
    def _choose(view_changes: Iterable[ViewChange]) -> tuple[int, PreparedCertificate | None]:
        """The NEW-VIEW rule: the height after the highest committed one, and the
        highest-view prepared certificate for that height (if any)."""
        vcs = list(view_changes)
        base = max(vc.committed_height for vc in vcs)
        best: PreparedCertificate | None = None
        for vc in vcs:
            p = vc.prepared
            if p is not None and p.height == base + 1 and (best is None or p.view > best.view):
                best = p
        return base + 1, best

    def _try_new_view(self, view: int, out: list[Effect]) -> None:
        """As the primary of ``view``, send NEW-VIEW once 2f+1 view changes are in."""
        if self._c.primary(view) != self._me or view in self._new_view_sent:
            return
        if not (self._in_vc and self._vc_target == view):
            return
        vcs = self._view_changes.get(view, {})
        if len(vcs) < self._c.quorum:
            return
        height, chosen = self._choose(vcs.values())
        if height > self._height:
            # Others committed more than we have: catch up first, then come back.
            best = max(vcs.values(), key=lambda vc: vc.committed_height)
            self._learn_committed(best.committed, best.validator, out)
            return
        if height < self._height:
            return  # our own view change reports more; wait for it to count
        if chosen is not None:
            block = self._find_block(chosen, vcs.values())
            if block is None:
                return
            self._finish_new_view(view, block, out)
        elif not self._round.awaiting_proposal:
            self._round.awaiting_proposal = True
            out.append(
                RequestProposal(
                    height=self._height,
                    view=view,
                    prev_hash=self._prev_hash(),
                    min_time_ms=self._prev_time_ms() + 1,
                )
            )

    def _find_block(self, chosen: PreparedCertificate, vcs: Iterable[ViewChange]) -> Block | None:
        if self._prepared is not None and self._prepared[0].block_hash == chosen.block_hash:
            return self._prepared[1]
        known = self._round.blocks.get(chosen.block_hash)
        if known is not None:
            return known
        return next(
            (vc.block for vc in vcs if vc.block is not None and vc.block.hash == chosen.block_hash),
            None,
        )

    def _finish_new_view(self, view: int, block: Block, out: list[Effect]) -> None:
        if view in self._new_view_sent or self._vc_target != view or not self._in_vc:
            return
        vcs = list(self._view_changes.get(view, {}).values())
        if len(vcs) < self._c.quorum:
            return
        height, chosen = self._choose(vcs)
        if height != self._height or block.height != height:
            return
        if chosen is not None and chosen.block_hash != block.hash:
            return
        if chosen is None and block.header.view != view:
            return
        if not self._guard(height, view, PHASE_PROPOSE, block.hash, out):
            return
        new_view = NewView.create(
            self._c.key, chain_id=self._c.chain_id, view=view, view_changes=vcs, block=block
        )
        if not self._guard(height, view, PHASE_NEW_VIEW, new_view.digest, out):
            return
        self._new_view_sent.add(view)
        self._last_new_view = new_view
        out.append(Broadcast(new_view))
        if chosen is None:
            self._round.validity[block.hash] = True  # the node just built and executed it
        self._enter_view(view, out)
        proposal = new_view.as_proposal()
        assert proposal is not None
        self._accept_proposal(proposal, out)

    def _on_new_view(self, sender: bytes, nv: NewView, out: list[Effect]) -> None:
        view = nv.view
        if view < self._view or (view == self._view and not self._in_vc):
            return
        if nv.validator != self._c.primary(view):
            return  # signed by the primary (checked at the boundary); any validator may relay
        vcs = nv.view_changes
        if len(vcs) < self._c.quorum:
            return
        height, chosen = self._choose(vcs)
        if nv.proposal.height != height:
            return
        if chosen is not None and nv.proposal.block_hash != chosen.block_hash:
            return  # the primary did not re-propose what a quorum may have prepared
        if nv.block is None:
            return
        if chosen is None and nv.block.header.view != view:
            return
        if self._in_vc and self._vc_target > view:
            return  # we already moved past this view
        self._view_floor = max(self._view_floor, view)
        self._enter_view(view, out)
        # Relay it once: a primary that shows NEW-VIEW to only some replicas must not
        # leave the others waiting in the view change (they would have no timer).
        out.append(Broadcast(nv))
        self._last_new_view = nv
        proposal = nv.as_proposal()
        assert proposal is not None
        if height == self._height:
            self._observe(proposal.vote, out)
            self._accept_proposal(proposal, out)
        elif height > self._height:
            self._pending_new_view = nv
            best = max(vcs, key=lambda vc: vc.committed_height)
            self._learn_committed(best.committed, sender, out)

    def _enter_view(self, view: int, out: list[Effect]) -> None:
        self._view = view
        self._in_vc = False
        self._vc_target = view
        self._cancel_timer(TimerKind.VIEW_CHANGE)
        self._progress_armed = False
        self._arm_progress(out)  # a view change means work was pending
        self._view_changes = {v: vcs for v, vcs in self._view_changes.items() if v > view}
        out.append(Broadcast(Status(self._c.chain_id, self._last_cert)))

    # ------------------------------------------------------------------ checkpoints

    def _send_checkpoint(self, header: BlockHeader, out: list[Effect]) -> None:
        checkpoint = Checkpoint.create(
            self._c.key,
            chain_id=self._c.chain_id,
            height=header.height,
            block_hash=header.hash,
            state_root=header.state_root,
        )
        if self._guard(header.height, 0, PHASE_CHECKPOINT, checkpoint.digest, out):
            out.append(Broadcast(checkpoint))
            self._on_checkpoint(checkpoint, out)

    def _on_checkpoint(self, checkpoint: Checkpoint, out: list[Effect]) -> None:
        height = checkpoint.height
        interval = self._c.checkpoint_interval
        if height <= self._stable_checkpoint or height % interval:
            return
        if height > self._height + interval * 2:
            return  # too far ahead to keep
        votes = self._checkpoints.setdefault(height, {})
        votes[checkpoint.validator] = checkpoint
        matching = [
            c
            for c in votes.values()
            if (c.block_hash, c.state_root) == (checkpoint.block_hash, checkpoint.state_root)
        ]
        if len(matching) < self._c.quorum:
            return
        self._stable_checkpoint = height
        signatures = tuple(
            ValidatorSignature(c.validator, c.sig)
            for c in sorted(matching, key=lambda c: c.validator)
        )
        out.append(
            StableCheckpoint(height, checkpoint.block_hash, checkpoint.state_root, signatures)
        )
        # Records of heights we have not committed may still guard a vote: keep them.
        out.append(PruneSafety(min(height, self._height - 1)))
        self._checkpoints = {h: v for h, v in self._checkpoints.items() if h > height}

    # ------------------------------------------------------------------ catch-up

    def _learn_committed(
        self, cert: CommitCertificate | None, peer: bytes, out: list[Effect]
    ) -> None:
        """A certificate proves ``cert.height`` is committed: sync if we lack it."""
        if cert is None or cert.height < self._height:
            return
        self._sync_target = max(self._sync_target, cert.height)
        if self._sync_peer is None:
            self._sync_peer = peer
            self._continue_sync(out)

    def _continue_sync(self, out: list[Effect]) -> None:
        if self._sync_target < self._height:
            self._sync_target = 0
            self._sync_peer = None
            self._cancel_timer(TimerKind.CATCH_UP)
            return
        peer = self._sync_peer
        if peer is None:
            others = [v for v in self._c.validators if v != self._me]
            peer = others[(self._height + self._tokens[TimerKind.CATCH_UP]) % len(others)]
            self._sync_peer = peer
        count = min(self._c.limits.catch_up_batch_blocks, self._sync_target - self._height + 1)
        out.append(Send(peer, BlockRequest(self._c.chain_id, self._height, count)))
        self._set_timer(TimerKind.CATCH_UP, self._c.view_timeout_ms, out)

    def _on_blocks(self, sender: bytes, response: BlockResponse, out: list[Effect]) -> None:
        """Apply certified blocks that extend our chain (certificates were verified
        against the validator set at the boundary), then resume."""
        committed = False
        for block, cert in zip(response.blocks, response.certificates, strict=True):
            if block.height != self._height:
                continue
            if block.header.prev_hash != self._prev_hash():
                break
            self._sync_target = max(self._sync_target, block.height)
            self._commit(block, cert, out)
            committed = True
        if committed:
            self._sync_peer = sender
            self._resume(out)


__all__ = ["Replica", "ReplicaSnapshot"]
