"""Shared helpers of the simulator tests.

``slow`` tests (the 20,000-seed soak) are deselected by pyproject's ``-m "not slow"``;
``make soak`` runs them with ``pytest -m slow``.
"""

from __future__ import annotations

from node.sim import RunResult


def explain(failures: list[RunResult]) -> str:
    """A failure message that names every failing seed and how to replay it."""
    return "\n".join(
        f"seed {r.seed}: {r.first_problem()}\n    reproduce with: {r.reproduce()}" for r in failures
    )
