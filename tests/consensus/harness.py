"""A minimal, reliable, in-order cluster for unit tests of the replica.

Not the simulator (node/sim/ has faults, crashes and Byzantine nodes): this
only wires n replicas to MemoryStores and a toy executor so a unit test can
drive the normal case and look at effects step by step.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from consensus.config import ReplicaConfig
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
    ValidateBlock,
)
from consensus.replica import Replica
from ledger.keys import SigningKey
from ledger.messages import BlockResponse, Message, verify_message
from ledger.types import Block, Vote, VoteKind, sha256
from storage import MemoryStore

CHAIN = "radledger-unit"
GENESIS_HASH = sha256(b"unit genesis")
GENESIS_TIME_MS = 1_000
KEYS = tuple(SigningKey(sha256(b"unit validator %d" % i)) for i in range(4))
VALIDATORS = tuple(k.public_key for k in KEYS)


def config(index: int, n: int = 4) -> ReplicaConfig:
    keys = KEYS if n == 4 else tuple(SigningKey(sha256(b"unit validator %d" % i)) for i in range(n))
    return ReplicaConfig(
        chain_id=CHAIN,
        genesis_hash=GENESIS_HASH,
        genesis_time_ms=GENESIS_TIME_MS,
        validators=tuple(k.public_key for k in keys),
        key=keys[index],
        view_timeout_ms=1_000,
        checkpoint_interval=5,
    )


def writes_for(block: Block) -> dict[bytes, bytes | None]:
    """The toy application: every block records its height (blocks here carry no txs)."""
    return {b"height": b"%d" % block.height}


@dataclass
class Node:
    replica: Replica
    store: MemoryStore
    effects: list[Effect] = field(default_factory=list)
    timers: dict[object, tuple[int, int]] = field(default_factory=dict)
    evidence: list[ReportEvidence] = field(default_factory=list)


class Cluster:
    """n replicas, instant reliable delivery in FIFO order, manual clock."""

    def __init__(self, n: int = 4) -> None:
        self.now = GENESIS_TIME_MS + 1
        self.nodes = [
            Node(Replica(config(i, n)), MemoryStore(chain_id=CHAIN, genesis_hash=GENESIS_HASH))
            for i in range(n)
        ]
        self.validators = self.nodes[0].replica.config.validators
        self.queue: deque[tuple[int, int, Input]] = deque()  # (to, from, input)
        self.down: set[int] = set()

    def start(self, index: int | None = None) -> None:
        for i in [index] if index is not None else range(len(self.nodes)):
            node = self.nodes[i]
            h = node.store.latest_height()
            event = Start(
                node.store.header(h) if h else None,
                node.store.certificate(h) if h else None,
                tuple(node.store.safety.records_since(0)),
                node.store.safety.load_prepared(),
            )
            self.apply(i, event)

    def restart(self, index: int) -> None:
        node = self.nodes[index]
        self.nodes[index] = Node(Replica(node.replica.config), node.store)
        self.start(index)

    def apply(self, index: int, event: Input) -> list[Effect]:
        node = self.nodes[index]
        effects = node.replica.step(event, self.now)
        node.effects.extend(effects)
        for effect in effects:
            self.execute(index, effect)
        return effects

    def deliver_to(self, to: int, sender: int, message: Message) -> None:
        verify_message(message, CHAIN, self.validators)
        self.queue.append((to, sender, MessageIn(self.validators[sender], message)))

    def execute(self, index: int, effect: Effect) -> None:
        node = self.nodes[index]
        match effect:
            case Persist(record=record):
                node.store.safety.record(record)
            case PersistPrepared(certificate=cert, block=block):
                node.store.safety.save_prepared(cert, block)
            case Broadcast(message=message):
                for other in range(len(self.nodes)):
                    if other != index:
                        self.deliver_to(other, index, message)
            case Send(to=to, message=message):
                self.deliver_to(self.validators.index(to), index, message)
            case SetTimer(kind=kind, token=token, deadline_ms=deadline):
                node.timers[kind] = (token, deadline)
            case RequestProposal(height=height, view=view, prev_hash=prev, min_time_ms=t):
                writes: dict[bytes, bytes | None] = {b"height": b"%d" % height}
                block = Block.build(
                    chain_id=CHAIN,
                    height=height,
                    view=view,
                    prev_hash=prev,
                    time_ms=max(t, self.now),
                    proposer=self.validators[index],
                    state_root=node.store.prospective_root(writes),
                )
                self.queue.append((index, index, ProposalReady(block)))
            case ValidateBlock(block=block):
                ok = node.store.prospective_root(writes_for(block)) == block.header.state_root
                self.queue.append((index, index, BlockValidated(block.hash, ok)))
            case CommitBlock(block=block, certificate=cert):
                cert.verify(CHAIN, self.validators)
                node.store.commit_block(block, cert, writes_for(block))
            case ServeBlocks(to=to, from_height=start, count=count):
                heights = range(start, start + count)
                blocks = tuple(b for h in heights if (b := node.store.block(h)) is not None)
                certs = tuple(c for h in heights if (c := node.store.certificate(h)) is not None)
                self.deliver_to(
                    self.validators.index(to), index, BlockResponse(CHAIN, blocks, certs)
                )
            case ReportEvidence():
                node.evidence.append(effect)
            case StableCheckpoint() | PruneSafety():
                pass

    def run(self, max_events: int = 100_000, until_height: int | None = None) -> int:
        """Deliver queued events; stop early once every live node reaches ``until_height``."""
        handled = 0
        while self.queue and handled < max_events:
            if until_height is not None and all(
                node.store.latest_height() >= until_height
                for i, node in enumerate(self.nodes)
                if i not in self.down
            ):
                break
            to, _, event = self.queue.popleft()
            if to not in self.down:
                self.apply(to, event)
            handled += 1
        return handled

    def run_dropping_commit_votes(self, max_events: int = 200) -> None:
        """Deliver everything except COMMIT votes: replicas prepare but cannot commit."""
        for _ in range(max_events):
            if not self.queue:
                return
            to, _sender, event = self.queue.popleft()
            message = getattr(event, "message", None)
            if isinstance(message, Vote) and message.kind == VoteKind.COMMIT:
                continue
            self.apply(to, event)

    def fire_timers(self, advance_ms: int) -> None:
        self.now += advance_ms
        for i, node in enumerate(self.nodes):
            if i in self.down:
                continue
            for kind, (token, deadline) in list(node.timers.items()):
                if deadline <= self.now:
                    del node.timers[kind]
                    self.apply(i, TimerFired(kind, token))  # type: ignore[arg-type]

    def heights(self) -> list[int]:
        return [node.store.latest_height() for node in self.nodes]
