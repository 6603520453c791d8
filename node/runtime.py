"""The node runtime: one consensus replica, its effects carried out in order.

Inputs (verified peer messages, timers, built and executed blocks) go through
one queue; a single worker task feeds them to ``Replica.step`` and executes
the returned effects strictly in order. That order is the safety contract:
a ``Persist`` (fsynced by storage) happens before any later send of the same
step is handed to the peer layer, and a block commit is one atomic LevelDB
write. Work that takes time (building a proposal, executing a block) runs
here too and answers through the queue, so the replica never sees effects
out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final, assert_never

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
    TimerKind,
    ValidateBlock,
    WorkPending,
)
from consensus.replica import Replica
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from ledger.keys import SigningKey
from ledger.messages import BlockResponse, Message, NewView, Proposal
from ledger.types import Block, CommitCertificate, DuplicateVoteEvidence, Tx, Vote
from node import app
from node.mempool import Mempool, MempoolLimits, Rejected
from node.metrics import Gauges, NodeMetrics, ValidatorParticipation
from node.participation import Participation
from p2p import ConsensusMessage, PeerConfig, PeerInfo, PeerNetwork, SyncMessage
from p2p.network import CONSENSUS_TYPES, SYNC_TYPES
from storage import LevelDBStore, StorageError

log = logging.getLogger("radledger.node")

#: Blocks served per catch-up response.
SERVE_BLOCKS_MAX: Final = 16
#: Pending equivocation evidence kept for the next proposals.
MAX_PENDING_EVIDENCE: Final = 64
#: Event-stream subscribers, and events buffered per subscriber before it is closed as slow.
MAX_SUBSCRIBERS: Final = 100
SUBSCRIBER_BUFFER_EVENTS: Final = 256
#: Executed-but-uncommitted write sets kept (one per proposal seen at a height).
MAX_CACHED_WRITE_SETS: Final = 64
#: How long a transaction from another validator's node waits before this node
#: relays it to the other validators (only if it is still pending by then).
DEFAULT_RELAY_DELAY_MS: Final = 2_000


@dataclass(frozen=True, slots=True)
class BlockPolicy:
    """When the primary proposes. Units are in the names."""

    max_batch_delay_ms: int = 50
    empty_block_interval_ms: int = 1_000
    #: False: propose only when transactions wait, and let replicas time out
    #: only while work is pending (``ReplicaConfig.wait_for_work``).
    create_empty_blocks: bool = True
    #: The most transactions this node puts in a block it proposes (the genesis
    #: ``max_block_txs`` is what a valid block may hold; this keeps blocks small
    #: enough to validate well within the view timeout when the pool is full).
    max_block_txs: int = 1_000


class Subscription:
    """A bounded buffer of committed blocks for one event-stream client.

    When the client falls ``SUBSCRIBER_BUFFER_EVENTS`` blocks behind, the
    buffer stops taking blocks and ``overflowed_at`` records the first height
    it missed, so the stream can close with a reason that says where to resume:
    never silent loss.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Block] = asyncio.Queue(SUBSCRIBER_BUFFER_EVENTS)
        self.overflowed_at: int | None = None

    def offer(self, block: Block) -> None:
        if self.overflowed_at is not None:
            return
        try:
            self.queue.put_nowait(block)
        except asyncio.QueueFull:
            self.overflowed_at = block.height


class FatalError(Exception):
    """The node cannot continue safely (diverged state, a refused signature)."""


class NodeRuntime:
    def __init__(
        self,
        *,
        genesis: Genesis,
        validator_key: SigningKey,
        store: LevelDBStore,
        peer_config: PeerConfig,
        mempool_limits: MempoolLimits | None = None,
        policy: BlockPolicy | None = None,
        relay_delay_ms: int = DEFAULT_RELAY_DELAY_MS,
    ) -> None:
        self.genesis = genesis
        self._relay_delay_s = relay_delay_ms / 1000
        #: (monotonic deadline, tx hash, origin node) of transactions that arrived from
        #: a validator's node, relayed to the other validators only if still pending then
        self._relay: deque[tuple[float, bytes, bytes]] = deque()
        self._relay_max = (mempool_limits or MempoolLimits()).max_txs
        self._validator_nodes = frozenset(peer_config.validators)  # their node keys
        self.store = store
        self.policy = policy or BlockPolicy()
        self.replica = Replica(
            ReplicaConfig.from_genesis(
                genesis, validator_key, wait_for_work=not self.policy.create_empty_blocks
            )
        )
        self.registry = app.Registry(genesis)
        # Committed state's decoded records, shared by admission and execution
        # until the next commit (then replaced).
        self._view = self.registry.view(store.get)
        self._mempool_limits = mempool_limits or MempoolLimits()
        self.mempool = Mempool(
            genesis.chain_id,
            self._mempool_limits,
            store.get,
            # A client's transaction is checked against every registry rule, so it
            # learns at once why it is refused; one gossiped by a validator that did
            # that already gets the envelope checks only (its rules run again when
            # a block executes, and a transaction that fails then leaves the pool).
            admission=lambda tx, from_peer: self.registry.check(
                store.get, tx, self.now_ms(), self._view, envelope_only=from_peer
            ),
        )
        # A proposal's transactions are normally pending here already: reuse them
        # (decoded, signature checked, body parsed) instead of decoding them again.
        self.network = PeerNetwork(peer_config, _Handler(self), known_tx=self.mempool.get)
        self.metrics = NodeMetrics()
        self._last_commit_s = 0.0
        self._height_view = 0  # the view the current height started in
        self.fatal: FatalError | None = None
        self._validators = genesis.validator_keys
        self._me = validator_key.public_key
        self._names = {v.validator_key: v.name for v in genesis.validators}
        self._queue: asyncio.Queue[Input] = asyncio.Queue()
        self._timers: dict[TimerKind, asyncio.TimerHandle] = {}
        #: block hash -> (height, write set) of executed blocks not committed yet
        self._writes: dict[bytes, tuple[int, app.Writes]] = {}
        self._evidence: dict[bytes, DuplicateVoteEvidence] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._commit_waiters: dict[bytes, list[asyncio.Future[tuple[int, int]]]] = {}
        self._tx_arrived = asyncio.Event()
        self._stopped = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._last_view = 0
        self._subscribers: set[Subscription] = set()
        #: validator key -> (monotonic seconds, description) of its last consensus message
        self.last_seen: dict[bytes, tuple[float, str]] = {}
        self.participation = Participation(
            self._validators, self._me, committed=store.latest_height()
        )
        # last: collecting reads the fields above
        self.metrics.watch(self._gauges, self.network.stats, self._participation)

    # ------------------------------------------------------------------ lifecycle

    @staticmethod
    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    async def start(self) -> None:
        height = self.store.latest_height()
        start = Start(
            self.store.header(height) if height else None,
            self.store.certificate(height) if height else None,
            tuple(self.store.safety.records_since(0)),
            self.store.safety.load_prepared(),
        )
        await self.network.start()
        self._worker = asyncio.create_task(self._run(), name="radledger-consensus")
        if self._relay_delay_s > 0:
            self._spawn(self._relay_loop())
        self.submit(start)

    async def stop(self) -> None:
        self._stopped.set()
        for handle in self._timers.values():
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await self.network.stop()

    def submit(self, event: Input) -> None:
        if not self._stopped.is_set():
            self._queue.put_nowait(event)

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                effects = self.replica.step(event, self.now_ms())
                for effect in effects:
                    self._execute(effect)
            except FatalError as exc:
                self.fatal = exc
                log.critical("stopping consensus: %s", exc)
                self._stopped.set()
                return
            except Exception as exc:
                # Anything else is a defect; the effects after it did not run, so
                # going on could break the persist-before-send order. Halt visibly
                # (health 503, exit status 1) instead of leaving a dead worker.
                self.fatal = FatalError(f"internal error: {type(exc).__name__}: {exc}")
                log.critical("stopping consensus: %s", self.fatal, exc_info=exc)
                self._stopped.set()
                return
            view = self.replica.view
            if view != self._last_view:
                self.metrics.view_changes.inc()
                log.warning(
                    "view %d -> %d at height %d (primary now validator %s)",
                    self._last_view,
                    view,
                    self.store.latest_height() + 1,
                    self.replica.config.primary(view).hex()[:16],
                )
                self._last_view = view

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ effects

    def _execute(self, effect: Effect) -> None:
        match effect:
            case Persist(record=record):
                try:
                    self.store.safety.record(record)  # fsynced before anything else
                except StorageError as exc:
                    raise FatalError(f"cannot persist a safety record: {exc}") from exc
            case PersistPrepared(certificate=cert, block=block):
                try:
                    self.store.safety.save_prepared(cert, block)  # fsynced, like Persist
                except StorageError as exc:
                    raise FatalError(f"cannot persist a prepared certificate: {exc}") from exc
            case Broadcast(message=message):
                self._broadcast(message)
            case Send(to=to, message=message):
                self._send(to, message)
            case SetTimer(kind=kind, token=token, deadline_ms=deadline):
                old = self._timers.pop(kind, None)
                if old is not None:
                    old.cancel()
                delay = max(0, deadline - self.now_ms()) / 1000
                loop = asyncio.get_running_loop()
                self._timers[kind] = loop.call_later(delay, self.submit, TimerFired(kind, token))
            case RequestProposal():
                self._spawn(self._propose(effect))
            case ValidateBlock(block=block):
                self.submit(self._validate(block))
            case CommitBlock(block=block, certificate=cert):
                self._commit(block, cert)
            case ServeBlocks(to=to, from_height=start, count=count):
                self._serve(to, start, count)
            case ReportEvidence(evidence=evidence):
                self.metrics.evidence.inc()
                if len(self._evidence) < MAX_PENDING_EVIDENCE:
                    self._evidence[evidence.hash] = evidence
                log.warning(
                    "evidence: validator %s signed conflicting votes",
                    evidence.vote_a.validator.hex()[:16],
                )
            case StableCheckpoint(height=height):
                log.info("stable checkpoint at height %d", height)
            case PruneSafety(below_height=below):
                try:
                    self.store.safety.prune_below(below)
                except StorageError as exc:
                    raise FatalError(f"cannot prune the safety record: {exc}") from exc
            case _:
                assert_never(effect)

    def _broadcast(self, message: Message) -> None:
        if isinstance(message, CONSENSUS_TYPES):
            self.network.broadcast_consensus(message)
            return
        for validator in self._validators:
            if validator != self._me:
                self._send(validator, message)

    def _send(self, to: bytes, message: Message) -> None:
        if isinstance(message, CONSENSUS_TYPES):
            self.network.send_consensus(to, message)
        elif isinstance(message, SYNC_TYPES):
            self.network.send_sync(to, message)

    # ------------------------------------------------------------------ blocks

    async def _propose(self, request: RequestProposal) -> None:
        """Wait for transactions (at most the empty-block interval), then build."""
        policy = self.policy
        if len(self.mempool) == 0:
            self._tx_arrived.clear()
            wait_s = policy.empty_block_interval_ms / 1000 if policy.create_empty_blocks else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tx_arrived.wait(), wait_s)
        if len(self.mempool):
            await asyncio.sleep(policy.max_batch_delay_ms / 1000)
        params = self.genesis.params
        txs = self.mempool.reap(
            min(params.max_block_txs, policy.max_block_txs), params.max_block_bytes - 64 * 1024
        )
        context = app.BlockContext(request.height, max(request.min_time_ms, self.now_ms()))
        writes, outcome = self.registry.execute(self.store.get, txs, context, self._view)
        refused = [(tx, r) for tx, r in zip(txs, outcome, strict=True) if r is not None]
        if refused:
            # Admitted against older state, invalid now (e.g. two conflicting
            # registrations): they can never commit, so they leave the pool.
            for tx, rejection in refused:
                log.info("dropping tx %s: %s", tx.hash.hex(), rejection.message)
                self.metrics.txs_rejected.labels(rejection.code).inc()
            self.mempool.drop([tx for tx, _ in refused])
            txs = [tx for tx, r in zip(txs, outcome, strict=True) if r is None]
            writes, _ = self.registry.execute(self.store.get, txs, context, self._view)
        evidence = list(self._evidence.values())
        block = Block.build(
            chain_id=self.genesis.chain_id,
            height=request.height,
            view=request.view,
            prev_hash=request.prev_hash,
            time_ms=context.time_ms,
            proposer=self._me,
            state_root=self.store.prospective_root(writes),
            txs=txs,
            evidence=evidence,
        )
        self._remember_writes(block.hash, block.height, writes)
        self.submit(ProposalReady(block))

    def _remember_writes(self, block_hash: bytes, height: int, writes: app.Writes) -> None:
        self._writes[block_hash] = (height, writes)
        while len(self._writes) > MAX_CACHED_WRITE_SETS:
            self._writes.pop(next(iter(self._writes)))

    def _forget_writes_through(self, height: int) -> None:
        """Drop the write sets of blocks at ``height`` or below: other proposals for a
        committed height (views that changed) can never commit, and a block's write set
        can be megabytes."""
        for stale in [h for h, (at, _) in self._writes.items() if at <= height]:
            del self._writes[stale]

    def _validate(self, block: Block) -> BlockValidated:
        """Execute-then-agree: re-execute and compare with the header."""
        for tx in block.txs:
            if not self.mempool.signature_ok(tx):
                return BlockValidated(block.hash, False, f"tx {tx.hash.hex()} has a bad signature")
        for evidence in block.evidence:
            try:
                evidence.verify(self._validators)
            except LedgerError as exc:
                return BlockValidated(block.hash, False, f"invalid evidence: {exc}")
        writes, outcome = self.registry.execute(
            self.store.get, block.txs, app.context_of(block), self._view
        )
        bad = next((r for r in outcome if r is not None), None)
        if bad is not None:
            return BlockValidated(block.hash, False, bad.message)
        if self.store.prospective_root(writes) != block.header.state_root:
            return BlockValidated(block.hash, False, "state root differs from execution")
        self._remember_writes(block.hash, block.height, writes)
        return BlockValidated(block.hash, True)

    def _commit(self, block: Block, cert: CommitCertificate) -> None:
        cached = self._writes.pop(block.hash, None)
        self._forget_writes_through(block.height)
        writes = None if cached is None else cached[1]
        synced = writes is None
        if writes is None:  # a block learnt through catch-up: execute it now
            writes, outcome = self.registry.execute(
                self.store.get, block.txs, app.context_of(block)
            )
            if any(r is not None for r in outcome):
                raise FatalError(f"certified block {block.height} does not execute here")
        started = time.perf_counter()
        try:
            self.store.commit_block(block, cert, writes)
        except StorageError as exc:
            raise FatalError(f"cannot commit block {block.height}: {exc}") from exc
        self._view = self.registry.view(self.store.get)  # committed state changed
        m = self.metrics
        m.commit_seconds.observe(time.perf_counter() - started)
        now = time.monotonic()
        if self._last_commit_s:
            m.block_interval.observe(now - self._last_commit_s)
        self._last_commit_s = now
        m.blocks_committed.inc()
        m.txs_committed.inc(len(block.txs))
        m.block_txs.observe(len(block.txs))
        m.block_bytes.observe(
            len(block.header.encode()) + sum(len(tx.encode()) for tx in block.txs)
        )
        if synced:
            m.blocks_synced.inc()
        self.participation.committed(block.height, live=not synced)
        m.rounds_per_height.observe(max(1, cert.view - self._height_view + 1))
        self._height_view = cert.view
        for tx in block.txs:
            admitted = self.mempool.admitted_at(tx.hash)
            if admitted is not None:
                m.commit_latency.observe(now - admitted)
        for evidence in block.evidence:
            self._evidence.pop(evidence.hash, None)
        self.mempool.on_commit(list(block.txs))
        self.submit(WorkPending(len(self.mempool) > 0))
        for index, tx in enumerate(block.txs):
            for waiter in self._commit_waiters.pop(tx.hash, []):
                if not waiter.done():
                    waiter.set_result((block.height, index))
        for subscription in list(self._subscribers):
            subscription.offer(block)

    def subscribe(self) -> Subscription:
        """Receive every block committed from now on (see :class:`Subscription`)."""
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            raise Rejected(
                "too_many_subscribers", "the event stream is at capacity", retry_after_s=5
            )
        subscription = Subscription()
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def _serve(self, to: bytes, start: int, count: int) -> None:
        blocks: list[Block] = []
        certs = []
        for height in range(start, start + min(count, SERVE_BLOCKS_MAX)):
            block = self.store.block(height)
            cert = self.store.certificate(height)
            if block is None or cert is None:
                break
            blocks.append(block)
            certs.append(cert)
        if blocks:
            self.network.send_sync(
                to, BlockResponse(self.genesis.chain_id, tuple(blocks), tuple(certs))
            )

    def _gauges(self) -> Gauges:
        snap = self.replica.snapshot()
        # Only meaningful while a proposal is on the table; between blocks nobody owes a vote.
        voted = (
            set(snap.prepare_voters) | set(snap.commit_voters)
            if snap.proposal_hash is not None
            else set(self._validators)
        )
        peers = self.network.connected_peers()
        disk = shutil.disk_usage(self.store.path)
        return Gauges(
            height=self.store.latest_height(),
            view=snap.view,
            in_view_change=snap.in_view_change,
            catching_up_to=snap.catching_up_to,
            mempool_txs=len(self.mempool),
            mempool_bytes=self.mempool.size_bytes,
            peers=len(peers),
            validators_missing_votes=len(set(self._validators) - voted),
            mempool_max_txs=self._mempool_limits.max_txs,
            mempool_max_bytes=self._mempool_limits.max_bytes,
            validators=len(self._validators),
            quorum=self.genesis.quorum,
            reachable_validators=len(
                {p.validator_key for p in peers if p.validator_key in self._validators}
                | ({self._me} & set(self._validators))
            ),
            disk_free_bytes=disk.free,
            disk_size_bytes=disk.total,
            empty_block_interval_s=(
                self.policy.empty_block_interval_ms / 1000
                if self.policy.create_empty_blocks
                else 0.0
            ),
        )

    def _participation(self) -> list[ValidatorParticipation]:
        p = self.participation
        # Not this node's own validator: its votes never come back to it, and the
        # alert asks every *other* node whether a validator is silent.
        return [
            ValidatorParticipation(
                self._names.get(key, key.hex()[:16]), p.missed[key], p.last_vote_height[key]
            )
            for key in p.validators
            if key != self._me
        ]

    # ------------------------------------------------------------------ clients

    def admit(self, tx: Tx, origin: bytes | None = None) -> None:
        """Admit a transaction (raises ``mempool.Rejected``) and gossip it on."""
        try:
            self.mempool.add(tx, from_peer=origin is not None)
        except Rejected as exc:
            self.metrics.txs_rejected.labels(exc.code).inc()
            raise
        if len(self.mempool) == 1:
            self.submit(WorkPending(True))  # the pool was empty: work is now pending
        self._tx_arrived.set()
        if origin is None or origin not in self._validator_nodes or self._relay_delay_s <= 0:
            # A client's transaction (or one a non-validator node relayed) goes to every
            # peer at once: that is the one send that reaches every validator.
            self.network.gossip_tx(tx, origin=origin)
            return
        # From a validator's node, which sent it to every validator itself: pass it on to
        # non-validator peers now, and to the validators only if it is still pending
        # after the relay delay (a link of the origin's was down). In a healthy mesh
        # this saves sending each transaction across every link twice more.
        self.network.gossip_tx(tx, origin=origin, validators=False)
        self._relay.append((time.monotonic() + self._relay_delay_s, tx.hash, origin))
        while len(self._relay) > self._relay_max:
            self._relay.popleft()

    def relay_due(self, now_s: float) -> int:
        """Relay to the validators what arrived from a validator's node before
        ``now_s - relay delay`` and is still pending; how many were relayed."""
        relayed = 0
        queue = self._relay
        while queue and queue[0][0] <= now_s:
            _, tx_hash, origin = queue.popleft()
            tx = self.mempool.get(tx_hash)
            if tx is not None:
                self.network.gossip_tx(tx, origin=origin)
                relayed += 1
        return relayed

    async def _relay_loop(self) -> None:
        interval_s = max(0.05, self._relay_delay_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            self.relay_due(time.monotonic())

    async def wait_for_commit(self, tx_hash: bytes, timeout_s: float) -> tuple[int, int] | None:
        location = self.store.tx_location(tx_hash)
        if location is not None:
            return location
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._commit_waiters.setdefault(tx_hash, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._commit_waiters.get(tx_hash)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._commit_waiters[tx_hash]


class _Handler:
    """The peer layer's callbacks, turned into replica inputs and mempool calls."""

    def __init__(self, node: NodeRuntime) -> None:
        self._node = node

    def on_consensus(self, sender: bytes, message: ConsensusMessage) -> None:
        height = getattr(message, "height", None)
        view = getattr(message, "view", None)
        kind = getattr(message, "kind", None)
        label = type(message).__name__ if kind is None else kind.name
        where = "" if height is None else f" h={height}" + ("" if view is None else f" v={view}")
        self._node.last_seen[sender] = (time.monotonic(), label + where)
        participation = self._node.participation
        match message:
            case Vote():
                participation.heard(message.validator, message.height)
            case Proposal(vote=vote) | NewView(proposal=vote):
                participation.heard(vote.validator, vote.height)
            case _:
                pass
        self._node.submit(MessageIn(sender, message))

    def on_tx(self, sender: bytes, tx: Tx) -> None:
        self._node.mempool.mark_verified(tx)  # verified at the boundary (p2p)
        with contextlib.suppress(Rejected):
            self._node.admit(tx, origin=sender)

    def on_sync(self, sender: PeerInfo, message: SyncMessage) -> None:
        if sender.validator_key is not None:
            self._node.submit(MessageIn(sender.validator_key, message))

    def on_peer_connected(self, peer: PeerInfo) -> None:
        log.info("peer connected: %s", peer.node_key.hex()[:16])

    def on_peer_disconnected(self, peer: PeerInfo) -> None:
        log.info("peer disconnected: %s", peer.node_key.hex()[:16])


__all__ = ["BlockPolicy", "FatalError", "NodeRuntime"]
