"""The PBFT consensus core: a pure state machine, no I/O.

``Replica.step(event, now_ms) -> list[Effect]`` is the only mutator; see
:mod:`consensus.events` for the inputs and effects and docs/CONSENSUS.md for
the protocol. This package imports only ``ledger`` and the standard library,
and never a clock, randomness, sockets or disk (tests/test_architecture.py).
"""
