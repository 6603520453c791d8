"""The research registry: the application state machine every validator runs.

* :mod:`registry.app`: :class:`Registry` (``check`` for the mempool,
  ``execute`` for blocks), :class:`BlockContext`, :class:`TxRejection`;
* :mod:`registry.kinds`: the transaction kinds and their strict body schemas;
* :mod:`registry.rules`: who may do what, and the rejection codes;
* :mod:`registry.policy`: the consent decision ``access.log`` and ``authz`` share;
* :mod:`registry.records` and :mod:`registry.state`: what is kept, under which keys;
* :mod:`registry.queries`: read-only answers for researchers, auditors, archives.

Imports only ``ledger`` and the standard library; no clock, randomness or I/O.
docs/REGISTRY.md is the reference.
"""

from __future__ import annotations

from registry.app import BlockContext, Registry, StateReader, TxRejection, Writes
from registry.errors import InvalidQuery, NotFound, RegistryError
from registry.kinds import KINDS, PURPOSES, TRANSFORMATIONS
from registry.rules import REJECTION_CODES

__all__ = [
    "KINDS",
    "PURPOSES",
    "REJECTION_CODES",
    "TRANSFORMATIONS",
    "BlockContext",
    "InvalidQuery",
    "NotFound",
    "Registry",
    "RegistryError",
    "StateReader",
    "TxRejection",
    "Writes",
]
