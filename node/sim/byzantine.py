"""Byzantine validators: an honest replica inside, a liar at the network edge.

A Byzantine node runs the same :class:`~consensus.replica.Replica` and application as an
honest one (so it knows the chain and can build validly executed blocks), but every message
it sends passes through an :class:`Adversary`, which signs whatever it likes with the
node's own key. It cannot forge another validator's signature or its own network identity.
The behaviours, chosen per node by the run's seed:

* ``equivocate``: as primary, a different (validly executed) block to each half of the peers,
  in PRE-PREPAREs and in NEW-VIEWs (where a fresh block may also break the re-proposal rule);
* ``conflicting-votes``: PREPARE / COMMIT / CHECKPOINT for different digests to different peers;
* ``unknown-votes``: extra votes for block hashes nobody proposed, at this and later heights;
* ``replay``: old messages (its own and others') from earlier views and heights, re-sent;
* ``garbage``: corrupted signatures, which the peer boundary must drop;
* ``silent``: sends nothing at all;
* ``selective``: ignores a fixed set of victims;
* ``view-change-spam``: VIEW-CHANGEs for random later views.
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Sequence
from enum import StrEnum
from typing import Final, assert_never

from ledger.keys import SigningKey
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
    ValidatorSignature,
    Vote,
    VoteKind,
)
from node.sim.app import App

__all__ = ["Adversary", "Behaviour", "Outgoing", "choose_behaviours"]

#: Messages remembered for replay.
REPLAY_BUFFER_MESSAGES: Final = 64
P_EQUIVOCATE: Final = 0.8
P_CONFLICT: Final = 0.7
P_UNKNOWN: Final = 0.3
P_REPLAY: Final = 0.25
P_GARBAGE: Final = 0.25
P_VIEW_CHANGE_SPAM: Final = 0.1


class Behaviour(StrEnum):
    EQUIVOCATE = "equivocate"
    CONFLICTING_VOTES = "conflicting-votes"
    UNKNOWN_VOTES = "unknown-votes"
    REPLAY = "replay"
    GARBAGE = "garbage"
    SILENT = "silent"
    SELECTIVE = "selective"
    VIEW_CHANGE_SPAM = "view-change-spam"


#: (destination index, message, deliberately corrupted?)
Outgoing = tuple[int, Message, bool]


def choose_behaviours(rng: random.Random) -> frozenset[Behaviour]:
    """One to three behaviours; ``silent`` only ever alone (it would mask the others)."""
    if rng.random() < 0.1:
        return frozenset({Behaviour.SILENT})
    active = [b for b in Behaviour if b is not Behaviour.SILENT]
    return frozenset(rng.sample(active, rng.randint(1, 3)))


def _flip(sig: bytes) -> bytes:
    return bytes([sig[0] ^ 0x5A]) + sig[1:]


def _corrupt_certificate(cert: CommitCertificate) -> CommitCertificate:
    first = cert.signatures[0]
    signatures = (ValidatorSignature(first.validator, _flip(first.sig)), *cert.signatures[1:])
    return dataclasses.replace(cert, signatures=signatures)


def corrupt(message: Message) -> Message:
    """The same message with one signature broken (or, if unsigned, the wrong chain)."""
    match message:
        case Vote():
            return dataclasses.replace(message, sig=_flip(message.sig))
        case Proposal():
            return Proposal(
                dataclasses.replace(message.vote, sig=_flip(message.vote.sig)), message.block
            )
        case ViewChange() | NewView() | Checkpoint():
            return dataclasses.replace(message, sig=_flip(message.sig))
        case Status():
            if message.committed is None:
                return Status("radledger-other", None)
            return Status(message.chain_id, _corrupt_certificate(message.committed))
        case BlockResponse():
            if not message.certificates:
                return BlockResponse("radledger-other", (), ())
            return BlockResponse(
                message.chain_id,
                message.blocks,
                (_corrupt_certificate(message.certificates[0]), *message.certificates[1:]),
            )
        case BlockRequest():
            return BlockRequest("radledger-other", message.from_height, message.count)
        case _:
            assert_never(message)


class Adversary:
    """Transforms what a Byzantine node's replica sends (see the module docstring)."""

    def __init__(
        self,
        *,
        index: int,
        key: SigningKey,
        chain_id: str,
        n: int,
        behaviours: frozenset[Behaviour],
        rng: random.Random,
        app: App,
    ) -> None:
        self.index = index
        self.key = key
        self.public_key = key.public_key
        self.chain_id = chain_id
        self.n = n
        self.behaviours = behaviours
        self._rng = rng
        self._app = app
        self._history: deque[Message] = deque(maxlen=REPLAY_BUFFER_MESSAGES)
        others = [i for i in range(n) if i != index]
        self.victims: frozenset[int] = frozenset(rng.sample(others, rng.randint(1, len(others))))
        self._alternatives: dict[int, bytes] = {}  # height -> hash of our alternative block
        self.equivocations = 0
        self.garbage_sent = 0

    def observe(self, message: Message) -> None:
        """A message the node received (material for replays)."""
        if Behaviour.REPLAY in self.behaviours:
            self._history.append(message)

    def outgoing(
        self,
        message: Message,
        destinations: Sequence[int],
        *,
        view: int,
        last_certificate: CommitCertificate | None,
    ) -> list[Outgoing]:
        """What actually leaves instead of ``message`` to ``destinations``."""
        b = self.behaviours
        rng = self._rng
        if Behaviour.SILENT in b:
            return []
        if Behaviour.REPLAY in b:
            self._history.append(message)
        out = self._split(message, list(destinations))
        if Behaviour.UNKNOWN_VOTES in b and isinstance(message, Vote) and rng.random() < P_UNKNOWN:
            out.append((rng.choice(destinations), self._unknown_vote(message), False))
        if Behaviour.REPLAY in b and self._history and rng.random() < P_REPLAY:
            out.append((rng.choice(destinations), rng.choice(self._history), False))
        if Behaviour.VIEW_CHANGE_SPAM in b and rng.random() < P_VIEW_CHANGE_SPAM:
            spam = ViewChange.create(
                self.key,
                chain_id=self.chain_id,
                new_view=view + rng.randint(1, 4),
                committed=last_certificate,
                prepared=None,
                block=None,
            )
            out.extend((d, spam, False) for d in destinations)
        if Behaviour.SELECTIVE in b:
            out = [o for o in out if o[0] not in self.victims]
        if Behaviour.GARBAGE in b:
            out = [
                (d, corrupt(m), True) if rng.random() < P_GARBAGE else (d, m, g) for d, m, g in out
            ]
            self.garbage_sent += sum(1 for o in out if o[2])
        return out

    # ------------------------------------------------------------------ equivocation

    def _split(self, message: Message, destinations: list[int]) -> list[Outgoing]:
        """Send ``message`` to some destinations and a conflicting twin to the others."""
        twin = self._twin(message)
        if twin is None or len(destinations) < 2:
            return [(d, message, False) for d in destinations]
        self._rng.shuffle(destinations)
        cut = self._rng.randint(1, len(destinations) - 1)
        self.equivocations += 1
        return [(d, message, False) for d in destinations[:cut]] + [
            (d, twin, False) for d in destinations[cut:]
        ]

    def _twin(self, message: Message) -> Message | None:
        b = self.behaviours
        rng = self._rng
        me = self.public_key
        if isinstance(message, Proposal):
            if Behaviour.EQUIVOCATE in b and message.sender == me and rng.random() < P_EQUIVOCATE:
                alternative = self._alternative(message.block, message.view)
                return Proposal.create(self.key, view=message.view, block=alternative)
        elif isinstance(message, NewView):
            if (
                Behaviour.EQUIVOCATE in b
                and message.block is not None
                and rng.random() < P_EQUIVOCATE
            ):
                alternative = self._alternative(message.block, message.view)
                return NewView.create(
                    self.key,
                    chain_id=self.chain_id,
                    view=message.view,
                    view_changes=message.view_changes,
                    block=alternative,
                )
        elif isinstance(message, Vote):
            if (
                Behaviour.CONFLICTING_VOTES in b
                and message.validator == me
                and message.kind in (VoteKind.PREPARE, VoteKind.COMMIT)
                and rng.random() < P_CONFLICT
            ):
                other = self._alternatives.get(message.height, rng.randbytes(32))
                if other == message.block_hash:
                    other = rng.randbytes(32)
                return Vote.create(
                    self.key,
                    chain_id=self.chain_id,
                    kind=message.kind,
                    height=message.height,
                    view=message.view,
                    block_hash=other,
                )
        elif (
            isinstance(message, Checkpoint)
            and Behaviour.CONFLICTING_VOTES in b
            and message.validator == me
            and rng.random() < P_CONFLICT
        ):
            return Checkpoint.create(
                self.key,
                chain_id=self.chain_id,
                height=message.height,
                block_hash=message.block_hash,
                state_root=rng.randbytes(32),
            )
        return None

    def _alternative(self, block: Block, view: int) -> Block:
        """A different block for the same slot, executed on our own state (so it is valid
        whenever our store is at the block's parent)."""
        header = block.header
        alternative = self._app.build(
            height=header.height,
            view=view,
            prev_hash=header.prev_hash,
            time_ms=header.time_ms + 1 + self._rng.randrange(3),
            exclude=frozenset(tx.hash for tx in block.txs),
        )
        self._alternatives[header.height] = alternative.hash
        return alternative

    def _unknown_vote(self, vote: Vote) -> Vote:
        rng = self._rng
        return Vote.create(
            self.key,
            chain_id=self.chain_id,
            kind=rng.choice((VoteKind.PREPARE, VoteKind.COMMIT)),
            height=vote.height + rng.choice((0, 0, 0, 1, 2, 3)),
            view=vote.view + rng.choice((0, 0, 1, 2)),
            block_hash=rng.randbytes(32),
        )
