"""A deterministic simulator for the consensus core (``radledger sim``).

Several :class:`~consensus.replica.Replica` instances, each with a
:class:`~storage.MemoryStore` and a tiny application, run in one process on a simulated
clock over a simulated network with delay, loss, duplication, reordering and partitions;
honest nodes crash and restart, up to f validators are Byzantine, and a checker verifies
agreement, validity, certificates and the double-sign guard after every step. After the
faults heal, every honest replica must reach the target height. Everything derives from
one seed, and a failing seed replays bit for bit.

Entry points: :func:`run` (one seed), :func:`run_many` (a range), :class:`Simulation`
(scripted scenarios, see :mod:`node.sim.stories`).
"""

from node.sim.byzantine import Behaviour
from node.sim.checks import Checker, SignatureCache
from node.sim.network import RELIABLE, LinkProfile
from node.sim.runner import RunResult, RunSummary, reproduce_command, run, run_many
from node.sim.world import SimOptions, Simulation

__all__ = [
    "RELIABLE",
    "Behaviour",
    "Checker",
    "LinkProfile",
    "RunResult",
    "RunSummary",
    "SignatureCache",
    "SimOptions",
    "Simulation",
    "reproduce_command",
    "run",
    "run_many",
]
