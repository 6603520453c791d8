"""The discrete-event simulation: nodes, clock, event queue, effect execution, faults.

One :class:`Simulation` holds ``n`` simulated nodes. Each is a
:class:`~consensus.replica.Replica`, a :class:`~storage.MemoryStore` (its durable disk) and
an :class:`~node.sim.app.App`; a Byzantine node adds an
:class:`~node.sim.byzantine.Adversary` between its replica and the network. Time is an
integer number of milliseconds since the start of the run; the queue orders events by
(time, sequence number), so a run is a pure function of its seed. Every random choice
comes from a generator derived from the one ``random.Random(seed)`` in
:meth:`Simulation.create`, in a fixed order.

Effects are carried out exactly as the node runtime must: in order, a ``Persist`` durable
(recorded in the store) before any later send of the same step. A crash can strike between
two steps or in the middle of a step's effects (after any prefix of them): either is a
moment a real process can die at, and the store keeps exactly what was written.
"""

from __future__ import annotations

import functools
import heapq
import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, assert_never

from consensus.config import Limits, ReplicaConfig
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
)
from consensus.replica import Replica
from ledger.errors import LedgerError
from ledger.genesis import ConsensusParams, Genesis, Site, Validator
from ledger.keys import SigningKey
from ledger.messages import MAX_BLOCKS_PER_RESPONSE, BlockResponse, Message
from ledger.types import Block, CommitCertificate, Vote, VoteKind, max_faulty, sha256
from node.sim.app import SIM_CHAIN_ID, App, TxPool, default_pool
from node.sim.byzantine import Adversary, Behaviour, choose_behaviours
from node.sim.checks import Checker, SignatureCache
from node.sim.network import RELIABLE, Boundary, LinkProfile, Network, signatures_in
from node.sim.transcript import Transcript, describe, short
from storage import MemoryStore, SafetyViolation, StorageError

__all__ = ["GENESIS_TIME_MS", "SimNode", "SimOptions", "Simulation"]

#: The simulated chain's genesis time (2026-01-01T00:00:00Z); run time 0 is one second later.
GENESIS_TIME_MS: Final = 1_767_225_600_000
START_OFFSET_MS: Final = 1_000


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Knobs of a run. Times are simulated milliseconds."""

    #: Consensus parameters the simulated chain's genesis carries.
    view_timeout_ms: int = 500
    checkpoint_interval: int = 4
    max_clock_skew_ms: int = 5_000
    #: Replica limits (short, so back-off and catch-up batching are exercised).
    max_view_timeout_ms: int = 8_000
    status_interval_ms: int = 1_000
    catch_up_batch_blocks: int = 4
    #: Application: most transactions per block; execution delay range.
    max_txs_per_block: int = 3
    min_app_delay_ms: int = 1
    max_app_delay_ms: int = 5
    #: Each node's clock is off by up to this much (either way).
    clock_skew_ms: int = 50
    #: Fault phase length range; it also ends once an honest replica is ``heal_heights``
    #: short of the target, so that the healed network always has heights to decide.
    min_fault_ms: int = 500
    max_fault_ms: int = 6_000
    heal_heights: int = 2
    crashes: bool = True
    partitions: bool = True
    weather: bool = True
    #: After healing, every honest replica must reach the target within this long.
    liveness_bound_ms: int = 60_000
    #: Hard cap on replica steps in one run (a message storm is a liveness failure).
    max_steps: int = 400_000
    max_in_flight_per_link: int = 512
    #: Send every message through encode_message/decode_message.
    wire: bool = False
    #: Force these behaviours on every Byzantine node (default: chosen per seed).
    behaviours: tuple[Behaviour, ...] | None = None
    healed_profile: LinkProfile = RELIABLE
    #: Measure CPU time inside Replica.step and verify_message (benchmarks).
    profile: bool = False
    #: Application: verify transaction signatures when executing.
    verify_txs: bool = True
    #: Application: fill every block with the next ``max_txs_per_block`` pool transactions.
    sequential_txs: bool = False


# --------------------------------------------------------------------------- events


@dataclass(slots=True)
class _Delivery:
    src: int
    dst: int
    message: Message
    garbage: bool


@dataclass(slots=True)
class _Timer:
    node: int
    kind: TimerKind
    token: int
    incarnation: int
    ident: int


@dataclass(slots=True)
class _AppReply:
    node: int
    incarnation: int
    input: Input


@dataclass(slots=True)
class _Control:
    label: str
    action: Callable[[], None]


_Event = _Delivery | _Timer | _AppReply | _Control


@dataclass(slots=True)
class SimNode:
    """One simulated validator: what survives a crash is ``store`` (and its identity)."""

    index: int
    name: str
    key: SigningKey
    public_key: bytes
    config: ReplicaConfig
    store: MemoryStore
    app: App
    app_rng: random.Random
    skew_ms: int
    adversary: Adversary | None = None
    replica: Replica | None = None
    up: bool = False
    incarnation: int = 0
    timers: dict[TimerKind, int] = field(default_factory=dict)
    crash_armed: bool = False
    view: int = -1
    in_view_change: bool = False
    max_view: int = 0
    evidence: int = 0
    #: Height of the latest COMMIT vote this node signed and sent (0: none yet).
    last_commit_vote: int = 0
    #: Highest ``PruneSafety`` height carried out on this node's store.
    pruned_below: int = 0

    @property
    def honest(self) -> bool:
        return self.adversary is None


def _generator(parent: random.Random) -> random.Random:
    """A generator seeded from ``parent``: sub-seeds derive from the run's one root."""
    return random.Random(parent.getrandbits(64))  # noqa: S311 - reproducible, not crypto


def _where(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"


def make_genesis(keys: Sequence[SigningKey], options: SimOptions) -> Genesis:
    """A genesis for the simulated chain with these validator keys."""
    sites = tuple(
        Site(f"site{i}", f"Simulated site {i}", sha256(b"sim site admin %d" % i))
        for i in range(len(keys))
    )
    validators = tuple(
        Validator(
            name=f"v{i}",
            site_id=f"site{i}",
            validator_key=key.public_key,
            node_key=sha256(b"sim node key " + key.public_key),
            address=f"10.0.0.{i + 1}:26656",
        )
        for i, key in enumerate(keys)
    )
    params = ConsensusParams(
        view_timeout_ms=options.view_timeout_ms,
        checkpoint_interval=options.checkpoint_interval,
        max_clock_skew_ms=options.max_clock_skew_ms,
    )
    return Genesis(1, SIM_CHAIN_ID, GENESIS_TIME_MS, validators, sites, params)


class Simulation:
    """A simulated cluster. Build with :meth:`create`; drive with :meth:`start`,
    :meth:`at` and :meth:`run_until`, or let :meth:`run_random` do a whole randomized run."""

    def __init__(
        self,
        *,
        seed: int,
        keys: Sequence[SigningKey],
        byzantine: dict[int, frozenset[Behaviour]],
        options: SimOptions,
        rng: random.Random,
        pool: TxPool,
        keep_transcript: bool,
    ) -> None:
        self.seed = seed
        self.options = options
        self.n = len(keys)
        self.genesis = make_genesis(keys, options)
        self.chain_id = self.genesis.chain_id
        self.validators = self.genesis.validator_keys
        limits = Limits(
            max_view_timeout_ms=options.max_view_timeout_ms,
            status_interval_ms=options.status_interval_ms,
            catch_up_batch_blocks=options.catch_up_batch_blocks,
        )
        # Sub-generators, drawn in a fixed order from the one root generator.
        self.network = Network(
            self.n,
            _generator(rng),
            max_in_flight_per_link=options.max_in_flight_per_link,
        )
        self.fault_rng = _generator(rng)
        self.nodes: list[SimNode] = []
        for i, key in enumerate(keys):
            app_rng = _generator(rng)
            skew = rng.randint(-options.clock_skew_ms, options.clock_skew_ms)
            store = MemoryStore(
                chain_id=self.chain_id, genesis_hash=self.genesis.hash, name=f"v{i}"
            )
            app = App(
                store,
                proposer=key.public_key,
                pool=pool,
                rng=app_rng,
                max_txs=options.max_txs_per_block,
                sequential=options.sequential_txs,
                verify_txs=options.verify_txs,
            )
            node = SimNode(
                index=i,
                name=f"v{i}",
                key=key,
                public_key=key.public_key,
                config=ReplicaConfig.from_genesis(self.genesis, key, limits),
                store=store,
                app=app,
                app_rng=app_rng,
                skew_ms=skew,
            )
            if i in byzantine:
                node.adversary = Adversary(
                    index=i,
                    key=key,
                    chain_id=self.chain_id,
                    n=self.n,
                    behaviours=byzantine[i],
                    rng=_generator(rng),
                    app=app,
                )
            self.nodes.append(node)
        self.byzantine = tuple(sorted(byzantine))
        self.names = {node.public_key: node.name for node in self.nodes}
        self._index = {node.public_key: node.index for node in self.nodes}
        self.signatures = SignatureCache(self.chain_id)
        self.checker = Checker(
            chain_id=self.chain_id,
            genesis_hash=self.genesis.hash,
            validators=self.validators,
            honest=[node.public_key for node in self.nodes if node.honest],
            names=self.names,
            signatures=self.signatures,
        )
        self.boundary = Boundary(self.chain_id, self.validators, self.signatures, wire=options.wire)
        self.transcript = Transcript(keep=keep_transcript)
        self.now = 0
        self.steps = 0
        self.crashes = 0
        self.view_changes = 0
        self.max_view = 0
        self.healed = False
        self.heal_time_ms: int | None = None
        self.step_ns = 0
        self.verify_ns = 0
        self._queue: list[tuple[int, int, _Event]] = []
        self._seq = 0
        self._timer_ids = 0
        self._budget_exhausted = False

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        seed: int,
        *,
        validators: int = 4,
        byzantine: int | None = None,
        options: SimOptions = SimOptions(),
        pool: TxPool | None = None,
        keep_transcript: bool = False,
        byzantine_nodes: Sequence[int] | None = None,
    ) -> Simulation:
        """Everything about the run derives from ``random.Random(seed)``.

        ``byzantine`` is how many validators are Byzantine (at most f); ``None`` lets the
        seed choose 0..f. ``byzantine_nodes`` names them instead (by index).
        """
        if validators < 4:
            raise ValueError("the simulator needs at least 4 validators")
        f = max_faulty(validators)
        rng = random.Random(seed)  # noqa: S311 - the root of a reproducible run, not crypto
        keys = [SigningKey(rng.randbytes(32)) for _ in range(validators)]
        count = rng.randint(0, f) if byzantine is None else byzantine
        chosen = sorted(rng.sample(range(validators), min(count, validators)))
        if byzantine_nodes is not None:
            chosen = sorted(set(byzantine_nodes))
            count = len(chosen)
            if any(not 0 <= i < validators for i in chosen):
                raise ValueError(f"byzantine_nodes must be indices below {validators}")
        if not 0 <= count <= f:
            raise ValueError(f"{validators} validators tolerate at most {f} Byzantine, not {count}")
        behaviours: dict[int, frozenset[Behaviour]] = {}
        for index in chosen:
            pick = choose_behaviours(_generator(rng))
            behaviours[index] = frozenset(options.behaviours) if options.behaviours else pick
        return cls(
            seed=seed,
            keys=keys,
            byzantine=behaviours,
            options=options,
            rng=_generator(rng),
            pool=pool if pool is not None else default_pool(SIM_CHAIN_ID),
            keep_transcript=keep_transcript,
        )

    # ------------------------------------------------------------------ queue

    def _push(self, at_ms: int, event: _Event) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(at_ms, self.now), self._seq, event))

    def at(self, at_ms: int, label: str, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``at_ms`` (scripted faults, checks)."""
        self._push(at_ms, _Control(label, action))

    def note(self, text: str) -> None:
        self.transcript.add(self.now, text)

    def start(self) -> None:
        """Start every node at time 0 (from its empty store)."""
        for node in self.nodes:
            self.at(
                0, f"start {node.name}", functools.partial(self.restart, node.index, first=True)
            )

    def run_until(self, stop: Callable[[], bool], until_ms: int) -> bool:
        """Process events up to ``until_ms``; True as soon as ``stop()`` holds."""
        if stop():
            return True
        queue = self._queue
        max_steps = self.options.max_steps
        while queue and queue[0][0] <= until_ms:
            when, _, event = heapq.heappop(queue)
            self.now = when
            self._dispatch(event)
            if stop():
                return True
            if self.steps >= max_steps:
                self._budget_exhausted = True
                return False
        self.now = max(self.now, until_ms)
        return stop()

    def _dispatch(self, event: _Event) -> None:
        match event:
            case _Delivery():
                self._deliver(event)
            case _Timer():
                node = self.nodes[event.node]
                if (
                    node.up
                    and node.incarnation == event.incarnation
                    and node.timers.get(event.kind) == event.ident
                ):
                    del node.timers[event.kind]
                    self._step(node, TimerFired(event.kind, event.token))
            case _AppReply():
                node = self.nodes[event.node]
                if node.up and node.incarnation == event.incarnation:
                    self._step(node, event.input)
            case _Control():
                event.action()
            case _:
                assert_never(event)

    # ------------------------------------------------------------------ nodes

    def local_time(self, node: SimNode) -> int:
        return GENESIS_TIME_MS + START_OFFSET_MS + self.now + node.skew_ms

    def crash(self, index: int, *, mid_step: bool = False) -> None:
        """The node's process dies: everything but its store is gone."""
        node = self.nodes[index]
        if not node.up:
            return
        node.up = False
        node.replica = None
        node.incarnation += 1
        node.timers.clear()
        node.crash_armed = False
        self.crashes += 1
        self.note(f"{node.name} CRASH{' (mid-step)' if mid_step else ''}")

    def restart(self, index: int, *, first: bool = False) -> None:
        """A new process: a fresh Replica started from what the store kept."""
        node = self.nodes[index]
        if node.up:
            return
        node.up = True
        node.replica = Replica(node.config)
        node.view = -1
        store = node.store
        height = store.latest_height()
        records = tuple(store.safety.records_since(0))
        start = Start(
            store.header(height),
            store.certificate(height),
            records,
            store.safety.load_prepared(),
        )
        if not first:
            self.note(f"{node.name} RESTART at height {height} with {len(records)} records")
        self._step(node, start)

    def _step(self, node: SimNode, event: Input) -> None:
        replica = node.replica
        assert replica is not None
        self.steps += 1
        self.checker.at(self.steps, self.now)
        now = self.local_time(node)
        try:
            if self.options.profile:
                began = time.process_time_ns()
                effects = replica.step(event, now)
                self.step_ns += time.process_time_ns() - began
            else:
                effects = replica.step(event, now)
        except Exception as exc:
            self.checker.violation(
                "exception",
                f"{node.name}'s Replica.step({type(event).__name__}) raised "
                f"{type(exc).__name__}: {exc} [{_where(exc)}]",
            )
            self.crash(node.index)
            return
        self._execute(node, effects)
        if node.up and node.replica is replica:
            self._after_step(node, replica)

    def _after_step(self, node: SimNode, replica: Replica) -> None:
        snap = replica.snapshot()
        if node.honest:
            self.checker.after_step(
                node.public_key,
                committed_height=snap.committed_height,
                store_height=node.store.latest_height(),
                view=snap.view,
                previous_view=node.view,
            )
        if node.view >= 0 and snap.view > node.view:
            self.note(f"{node.name} enters view {snap.view}")
        if snap.in_view_change and not node.in_view_change and node.view >= 0:
            self.note(f"{node.name} starts a view change from view {snap.view}")
        if snap.view > node.max_view:
            node.max_view = snap.view
            if node.honest:
                self.view_changes += 1
                self.max_view = max(self.max_view, snap.view)
        node.view = snap.view
        node.in_view_change = snap.in_view_change

    # ------------------------------------------------------------------ effects

    def _execute(self, node: SimNode, effects: list[Effect]) -> None:
        crash_at = len(effects) + 1
        if node.crash_armed:
            crash_at = self.fault_rng.randint(0, len(effects))
        for position, effect in enumerate(effects):
            if position == crash_at:
                break
            if not self._apply(node, effect):
                break
        if crash_at <= len(effects):
            self.crash(node.index, mid_step=True)

    def _apply(self, node: SimNode, effect: Effect) -> bool:
        """Carry out one effect; False stops the rest of the step's effects."""
        store = node.store
        match effect:
            case Persist(record=record):
                try:
                    store.safety.record(record)
                except SafetyViolation as exc:
                    if node.honest:
                        self.checker.violation(
                            "safety-record", f"{node.name} tried to sign over a record: {exc}"
                        )
                    return False
            case PersistPrepared(certificate=certificate, block=block):
                store.safety.save_prepared(certificate, block)
            case Broadcast(message=message):
                others = [i for i in range(self.n) if i != node.index]
                self._send(node, message, others)
            case Send(to=to, message=message):
                dst = self._index.get(to)
                if dst is None or dst == node.index:
                    if node.honest:
                        self.checker.violation(
                            "effect", f"{node.name} sends to {short(to)}, not another validator"
                        )
                else:
                    self._send(node, message, [dst])
            case SetTimer(kind=kind, token=token, deadline_ms=deadline_ms):
                self._timer_ids += 1
                node.timers[kind] = self._timer_ids
                when = deadline_ms - (GENESIS_TIME_MS + START_OFFSET_MS + node.skew_ms)
                self._push(when, _Timer(node.index, kind, token, node.incarnation, self._timer_ids))
            case RequestProposal():
                block = node.app.build(
                    height=effect.height,
                    view=effect.view,
                    prev_hash=effect.prev_hash,
                    time_ms=max(self.local_time(node), effect.min_time_ms),
                )
                self._reply(node, ProposalReady(block))
            case ValidateBlock(block=block):
                execution = node.app.execute(block)
                self._reply(node, BlockValidated(block.hash, execution.valid, execution.reason))
            case CommitBlock(block=block, certificate=certificate):
                self._commit(node, block, certificate)
            case ServeBlocks(to=to, from_height=from_height, count=count):
                self._serve(node, to, from_height, count)
            case ReportEvidence(evidence=evidence):
                node.evidence += 1
                accused = self.names.get(evidence.vote_a.validator, "?")
                self.note(
                    f"{node.name} EVIDENCE against {accused} ({evidence.vote_a.kind.name} "
                    f"h={evidence.vote_a.height} v={evidence.vote_a.view})"
                )
                if node.honest:
                    self.checker.on_evidence(node.public_key, evidence)
            case StableCheckpoint():
                if node.honest:
                    self.checker.on_stable_checkpoint(node.public_key, effect)
            case PruneSafety(below_height=below):
                store.safety.prune_below(below)
                node.pruned_below = max(node.pruned_below, below)
            case _:
                assert_never(effect)
        return True

    def _reply(self, node: SimNode, event: Input) -> None:
        options = self.options
        delay = node.app_rng.randint(options.min_app_delay_ms, options.max_app_delay_ms)
        self._push(self.now + delay, _AppReply(node.index, node.incarnation, event))

    def _commit(self, node: SimNode, block: Block, certificate: CommitCertificate) -> None:
        execution = node.app.execute(block)
        if node.honest:
            self.checker.on_commit(
                node.public_key,
                block,
                certificate,
                executed_root=execution.root,
                execution_problem=execution.reason,
            )
        try:
            node.store.commit_block(block, certificate, execution.writes)
        except StorageError as exc:
            if node.honest:
                self.checker.on_store_error(node.public_key, block, str(exc))
            return
        origin = "" if block.header.view == certificate.view else f" (block v={block.header.view})"
        self.note(
            f"{node.name} COMMIT h={block.height} v={certificate.view} {short(block.hash)} "
            f"txs={len(block.txs)}{origin}"
        )

    def _serve(self, node: SimNode, to: bytes, from_height: int, count: int) -> None:
        blocks: list[Block] = []
        certificates: list[CommitCertificate] = []
        for height in range(from_height, from_height + min(count, MAX_BLOCKS_PER_RESPONSE)):
            block = node.store.block(height)
            certificate = node.store.certificate(height)
            if block is None or certificate is None:
                break
            blocks.append(block)
            certificates.append(certificate)
        dst = self._index.get(to)
        if blocks and dst is not None and dst != node.index:
            response = BlockResponse(self.chain_id, tuple(blocks), tuple(certificates))
            self._send(node, response, [dst])

    # ------------------------------------------------------------------ network

    def _send(self, node: SimNode, message: Message, destinations: list[int]) -> None:
        if (
            isinstance(message, Vote)
            and message.kind == VoteKind.COMMIT
            and message.validator == node.public_key
        ):
            node.last_commit_vote = max(node.last_commit_vote, message.height)
        if node.honest:
            self.checker.on_emit(node.public_key, message)
            self.checker.check_persisted(
                node.public_key, message, node.store.safety.get, node.pruned_below
            )
            outgoing = [(d, message, False) for d in destinations]
        else:
            assert node.adversary is not None
            assert node.replica is not None
            height = node.store.latest_height()
            outgoing = node.adversary.outgoing(
                message,
                destinations,
                view=node.replica.snapshot().view,
                last_certificate=node.store.certificate(height),
            )
        for dst, original, garbage in outgoing:
            try:
                sent = self.boundary.on_wire(original)
            except LedgerError as exc:
                if node.honest:
                    self.checker.violation(
                        "wire",
                        f"{node.name}'s {describe(original, self.names)} does not "
                        f"survive encode/decode: {exc}",
                    )
                continue
            for delay in self.network.plan(node.index, dst, original):
                self._push(self.now + delay, _Delivery(node.index, dst, sent, garbage))

    def _deliver(self, event: _Delivery) -> None:
        self.network.arrived(event.src, event.dst)
        node = self.nodes[event.dst]
        stats = self.network.stats
        if not node.up:
            stats.to_down_node += 1
            return
        source = self.nodes[event.src]
        message = event.message
        if self.options.profile:
            began = time.process_time_ns()
            problem = self.boundary.check(message)
            self.verify_ns += time.process_time_ns() - began
        else:
            problem = self.boundary.check(message)
        if problem is not None:
            stats.rejected += 1
            if source.honest and not event.garbage:
                self.checker.at(self.steps, self.now)
                self.checker.violation(
                    "boundary",
                    f"{node.name} rejects {source.name}'s {describe(message, self.names)}: "
                    f"{problem}",
                )
            return
        if event.garbage:
            self.checker.at(self.steps, self.now)
            self.checker.violation(
                "boundary",
                f"corrupted {describe(message, self.names)} from {source.name} passed "
                "verify_message",
            )
        stats.delivered += 1
        stats.signatures_delivered += signatures_in(message)
        self.transcript.add(
            self.now,
            f"{source.name} -> {node.name} {describe(message, self.names, source.public_key)}",
        )
        if node.adversary is not None:
            node.adversary.observe(message)
        self._step(node, MessageIn(source.public_key, message))

    # ------------------------------------------------------------------ queries

    def honest_nodes(self) -> list[SimNode]:
        return [node for node in self.nodes if node.honest]

    def committed(self, node: SimNode) -> int:
        return node.store.latest_height()

    def budget_exhausted(self) -> bool:
        return self._budget_exhausted

    def chain(self, node: SimNode, upto: int) -> list[bytes]:
        hashes = []
        for height in range(1, upto + 1):
            block_hash = node.store.block_hash(height)
            if block_hash is None:
                break
            hashes.append(block_hash)
        return hashes

    def describe_node(self, node: SimNode) -> str:
        if node.replica is None:
            return f"{node.name}: down at height {self.committed(node)}"
        snap = node.replica.snapshot()
        state = " in view change" if snap.in_view_change else ""
        return (
            f"{node.name}: committed {snap.committed_height}, view {snap.view}{state}, "
            f"primary {self.names.get(snap.primary, '?')}"
        )

    # ------------------------------------------------------------------ random faults

    def heal(self) -> None:
        """End the fault phase: reliable links, no partitions, every honest node up."""
        self.healed = True
        self.heal_time_ms = self.now
        self.network.heal()
        self.network.profile = self.options.healed_profile
        self.note("HEAL: network reliable, all honest nodes up")
        for node in self.nodes:
            node.crash_armed = False
        for node in self.nodes:
            if node.honest and not node.up:
                self.restart(node.index)

    def start_faults(self) -> None:
        """Schedule the random fault driver (it stops by itself once healed)."""
        self.at(0, "faults", self._fault_tick)

    def _fault_tick(self) -> None:
        if self.healed:
            return
        rng = self.fault_rng
        options = self.options
        actions: list[tuple[str, float]] = [("nothing", 1.0)]
        if options.crashes:
            actions += [("crash", 2.0), ("restart", 2.0)]
        if options.partitions:
            actions += [("partition", 1.5), ("one-way", 1.0), ("reconnect", 2.0)]
        if options.weather:
            actions += [("weather", 1.5)]
        names, weights = zip(*actions, strict=True)
        action = rng.choices(names, weights)[0]
        if action == "crash":
            self._random_crash(rng)
        elif action == "restart":
            down = [node.index for node in self.nodes if node.honest and not node.up]
            if down:
                self.restart(rng.choice(down))
        elif action == "partition":
            order = list(range(self.n))
            rng.shuffle(order)
            cut = rng.randint(1, self.n - 1)
            groups = (sorted(order[:cut]), sorted(order[cut:]))
            self.network.partition(groups)
            self.note(
                "PARTITION "
                + " | ".join("{" + ",".join(f"v{i}" for i in group) + "}" for group in groups)
            )
        elif action == "one-way":
            pairs = [(a, b) for a in range(self.n) for b in range(self.n) if a != b]
            links = sorted(rng.sample(pairs, rng.randint(1, self.n)))
            self.network.cut(links)
            self.note("CUT " + " ".join(f"v{a}->v{b}" for a, b in links))
        elif action == "reconnect":
            self.network.heal()
            self.note("RECONNECT all links")
        elif action == "weather":
            profile = LinkProfile(
                min_delay_ms=1,
                max_delay_ms=rng.choice((10, 30, 80, 200)),
                loss=rng.choice((0.0, 0.02, 0.1, 0.3)),
                duplicate=rng.choice((0.0, 0.05, 0.2)),
                slow=rng.choice((0.0, 0.05, 0.2)),
                slow_max_ms=rng.choice((100, 500, 1500)),
            )
            self.network.profile = profile
            self.note(
                f"WEATHER delay<={profile.max_delay_ms}ms loss={profile.loss} "
                f"dup={profile.duplicate} slow={profile.slow}"
            )
        self.at(self.now + rng.randint(100, 800), "faults", self._fault_tick)

    def _random_crash(self, rng: random.Random) -> None:
        up = [node.index for node in self.nodes if node.honest and node.up]
        if not up:
            return
        index = rng.choice(up)
        if rng.random() < 0.3:
            self.nodes[index].crash_armed = True
        else:
            self.crash(index)
        if rng.random() < 0.7:
            self.at(self.now + rng.randint(50, 3_000), "restart", lambda: self._late_restart(index))

    def _late_restart(self, index: int) -> None:
        if not self.healed and not self.nodes[index].up:
            self.restart(index)
