"""Randomized runs: a fault phase, then a healed phase that must reach the target height.

:func:`run` is one seed, :func:`run_many` a range of them. A run fails if the checker
recorded any violation, or if after healing some honest replica did not reach the target
height within ``SimOptions.liveness_bound_ms`` with the same blocks and state roots as the
others. A failing seed replays bit for bit: see :meth:`RunResult.reproduce`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from node.sim.app import TxPool
from node.sim.transcript import short
from node.sim.world import SimOptions, Simulation

__all__ = ["RunResult", "RunSummary", "reproduce_command", "run", "run_many"]


def reproduce_command(seed: int, *, validators: int, byzantine: int | None, heights: int) -> str:
    byz = "" if byzantine is None else f" --byzantine {byzantine}"
    return f"radledger sim --seeds {seed}-{seed} --validators {validators}{byz} --heights {heights}"


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one seed did. ``violations`` are the checker's messages, in order."""

    seed: int
    validators: int
    byzantine: tuple[int, ...]
    behaviours: tuple[str, ...]
    target_height: int
    #: Committed height of each validator (Byzantine ones included), by index.
    committed_heights: tuple[int, ...]
    view_changes: int
    max_view: int
    messages_delivered: int
    messages_dropped: int
    boundary_rejected: int
    evidence_reported: int
    crashes: int
    steps: int
    sim_time_ms: int
    heal_time_ms: int
    violations: tuple[str, ...]
    violation_count: int
    liveness_ok: bool
    liveness_detail: str
    transcript_digest: str
    transcript: tuple[str, ...] = ()
    byzantine_requested: int | None = None
    step_ns: int = 0
    verify_ns: int = 0

    @property
    def ok(self) -> bool:
        return self.violation_count == 0 and self.liveness_ok

    @property
    def honest_min_height(self) -> int:
        byz = set(self.byzantine)
        return min(h for i, h in enumerate(self.committed_heights) if i not in byz)

    def reproduce(self) -> str:
        return reproduce_command(
            self.seed,
            validators=self.validators,
            byzantine=self.byzantine_requested,
            heights=self.target_height,
        )

    def first_problem(self) -> str:
        if self.violations:
            return self.violations[0]
        if not self.liveness_ok:
            return f"liveness: {self.liveness_detail}"
        return ""


def run(
    seed: int,
    *,
    validators: int = 4,
    byzantine: int | None = None,
    heights: int = 8,
    options: SimOptions | None = None,
    keep_transcript: bool = False,
    pool: TxPool | None = None,
    byzantine_nodes: Sequence[int] | None = None,
) -> RunResult:
    """One randomized run (see the module docstring). Deterministic in all its arguments."""
    if heights < 1:
        raise ValueError("heights must be at least 1")
    options = options if options is not None else SimOptions()
    sim = Simulation.create(
        seed,
        validators=validators,
        byzantine=byzantine,
        options=options,
        pool=pool,
        keep_transcript=keep_transcript,
        byzantine_nodes=byzantine_nodes,
    )
    rng = sim.fault_rng
    fault_end = rng.randint(options.min_fault_ms, max(options.min_fault_ms, options.max_fault_ms))
    almost = max(0, heights - options.heal_heights)
    honest = sim.honest_nodes()

    def near_target() -> bool:
        return any(sim.committed(node) >= almost for node in honest) and almost > 0

    def all_reached() -> bool:
        return all(sim.committed(node) >= heights for node in honest)

    sim.start()
    sim.start_faults()
    sim.note(f"FAULTS until t={fault_end}ms or h={almost}")
    sim.run_until(near_target, fault_end)
    if not sim.budget_exhausted():
        sim.heal()
    deadline = sim.now + options.liveness_bound_ms
    reached = not sim.budget_exhausted() and sim.run_until(all_reached, deadline)
    detail = ""
    if reached:
        _final_checks(sim, heights)
    elif sim.budget_exhausted():
        detail = f"step budget of {options.max_steps} exhausted at t={sim.now}ms; " + "; ".join(
            sim.describe_node(node) for node in honest
        )
    else:
        detail = (
            f"not all honest replicas reached height {heights} within "
            f"{options.liveness_bound_ms}ms of healing at t={sim.heal_time_ms}ms: "
            + "; ".join(sim.describe_node(node) for node in honest)
        )
    stats = sim.network.stats
    return RunResult(
        seed=seed,
        validators=validators,
        byzantine=sim.byzantine,
        behaviours=tuple(
            f"v{node.index}:{'+'.join(sorted(node.adversary.behaviours))}"
            for node in sim.nodes
            if node.adversary is not None
        ),
        target_height=heights,
        committed_heights=tuple(sim.committed(node) for node in sim.nodes),
        view_changes=sim.view_changes,
        max_view=sim.max_view,
        messages_delivered=stats.delivered,
        messages_dropped=stats.dropped,
        boundary_rejected=stats.rejected,
        evidence_reported=sum(node.evidence for node in honest),
        crashes=sim.crashes,
        steps=sim.steps,
        sim_time_ms=sim.now,
        heal_time_ms=sim.heal_time_ms if sim.heal_time_ms is not None else sim.now,
        violations=tuple(sim.checker.violations),
        violation_count=sim.checker.violation_count,
        liveness_ok=reached,
        liveness_detail=detail,
        transcript_digest=sim.transcript.digest(),
        transcript=tuple(sim.transcript.lines),
        byzantine_requested=byzantine,
        step_ns=sim.step_ns,
        verify_ns=sim.verify_ns,
    )


def _final_checks(sim: Simulation, target: int) -> None:
    """Every honest replica holds the same blocks (hence roots) up to ``target``, its store
    is internally consistent, and its state root is the one its last header names."""
    checker = sim.checker
    checker.at(sim.steps, sim.now)
    honest = sim.honest_nodes()
    chains = {node.public_key: sim.chain(node, target) for node in honest}
    checker.check_agreed_prefix(chains, target)
    reference = honest[0]
    for node in honest:
        if chains[node.public_key] != chains[reference.public_key]:
            checker.violation(
                "liveness",
                f"{node.name} and {reference.name} hold different chains up to h={target}",
            )
        store = node.store
        top = store.latest_height()
        header = store.header(top)
        if header is not None and store.state_root() != header.state_root:
            checker.violation(
                "state",
                f"{node.name}'s state root {short(store.state_root())} differs from "
                f"h={top}'s header root {short(header.state_root)}",
            )
        try:
            store.check_consistency()
        except Exception as exc:
            checker.violation("state", f"{node.name}'s store fails its audit: {exc}")
    roots = set()
    for node in honest:
        header = node.store.header(target)
        if header is not None:
            roots.add(header.state_root)
    if len(roots) > 1:
        checker.violation("liveness", f"honest state roots at h={target} differ")


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Totals over a set of seeds; ``failures`` holds every failing result."""

    seeds_run: int
    heights_committed: int
    view_changes: int
    violations: int
    liveness_failures: int
    evidence_reported: int
    crashes: int
    messages_delivered: int
    wall_seconds: float
    failures: tuple[RunResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def seeds_per_second(self) -> float:
        return self.seeds_run / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def first_failure(self) -> RunResult | None:
        return self.failures[0] if self.failures else None

    def line(self) -> str:
        return (
            f"{self.seeds_run} seeds: {self.heights_committed} heights committed, "
            f"{self.view_changes} view changes, {self.evidence_reported} evidence, "
            f"{self.crashes} crashes, {self.violations} violations, "
            f"{self.liveness_failures} liveness failures "
            f"({self.wall_seconds:.1f}s, {self.seeds_per_second:.1f} seeds/s)"
        )


def run_many(
    seeds: Iterable[int],
    *,
    validators: int = 4,
    byzantine: int | None = None,
    heights: int = 8,
    options: SimOptions | None = None,
    stop_on_failure: bool = False,
    on_result: Callable[[RunResult], None] | None = None,
) -> RunSummary:
    """Run every seed; collect totals and the failing results (``on_result`` sees each)."""
    began = time.perf_counter()
    count = heights_total = view_changes = violations = liveness = evidence = crashes = 0
    delivered = 0
    failures: list[RunResult] = []
    for seed in seeds:
        result = run(
            seed, validators=validators, byzantine=byzantine, heights=heights, options=options
        )
        if on_result is not None:
            on_result(result)
        count += 1
        heights_total += result.honest_min_height
        view_changes += result.view_changes
        violations += result.violation_count
        liveness += 0 if result.liveness_ok else 1
        evidence += result.evidence_reported
        crashes += result.crashes
        delivered += result.messages_delivered
        if not result.ok:
            failures.append(result)
            if stop_on_failure:
                break
    return RunSummary(
        seeds_run=count,
        heights_committed=heights_total,
        view_changes=view_changes,
        violations=violations,
        liveness_failures=liveness,
        evidence_reported=evidence,
        crashes=crashes,
        messages_delivered=delivered,
        wall_seconds=time.perf_counter() - began,
        failures=tuple(failures),
    )
