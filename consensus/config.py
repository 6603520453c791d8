"""Static configuration of a replica: who the validators are, who we are, the limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ledger.genesis import Genesis
from ledger.keys import SigningKey
from ledger.types import max_faulty, quorum_size

#: Safety-record phases (the ``phase`` of ``ledger.types.SafetyRecord``). Never renumber.
PHASE_PROPOSE: Final = 0
PHASE_PREPARE: Final = 1
PHASE_COMMIT: Final = 2
PHASE_VIEW_CHANGE: Final = 3
PHASE_NEW_VIEW: Final = 4
PHASE_CHECKPOINT: Final = 5


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on everything the replica buffers. Units are in the names."""

    #: Messages for heights up to this far ahead are buffered; later ones dropped.
    future_window_heights: int = 8
    #: View changes for views up to this far ahead of ours are kept.
    max_view_ahead: int = 64
    #: Buffered future messages per peer.
    max_buffered_per_peer: int = 256
    #: Blocks asked for in one catch-up request.
    catch_up_batch_blocks: int = 32
    #: Longest a view (or view-change) timeout may grow to by doubling.
    max_view_timeout_ms: int = 120_000
    #: How often a replica announces its committed height.
    status_interval_ms: int = 2_000


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Everything a replica needs that does not change while it runs."""

    chain_id: str
    genesis_hash: bytes
    genesis_time_ms: int
    validators: tuple[bytes, ...]
    key: SigningKey
    view_timeout_ms: int = 2_000
    checkpoint_interval: int = 100
    max_clock_skew_ms: int = 5_000
    limits: Limits = Limits()
    #: When True the progress timer runs only while the node reports pending work
    #: (``WorkPending``) or a proposal is in flight: an idle network needs no empty
    #: blocks to keep backups from suspecting an idle primary (PBFT §4.4's rule:
    #: a backup starts its timer when it has a pending request).
    wait_for_work: bool = False

    def __post_init__(self) -> None:
        if len(self.validators) < 4:
            raise ValueError("a BFT replica needs at least 4 validators")
        if len(set(self.validators)) != len(self.validators):
            raise ValueError("validator keys must be unique")

    @classmethod
    def from_genesis(
        cls,
        genesis: Genesis,
        key: SigningKey,
        limits: Limits = Limits(),
        *,
        wait_for_work: bool = False,
    ) -> ReplicaConfig:
        return cls(
            chain_id=genesis.chain_id,
            genesis_hash=genesis.hash,
            genesis_time_ms=genesis.genesis_time_ms,
            validators=genesis.validator_keys,
            key=key,
            view_timeout_ms=genesis.params.view_timeout_ms,
            checkpoint_interval=genesis.params.checkpoint_interval,
            max_clock_skew_ms=genesis.params.max_clock_skew_ms,
            limits=limits,
            wait_for_work=wait_for_work,
        )

    @property
    def n(self) -> int:
        return len(self.validators)

    @property
    def f(self) -> int:
        return max_faulty(self.n)

    @property
    def quorum(self) -> int:
        return quorum_size(self.n)

    def primary(self, view: int) -> bytes:
        return self.validators[view % self.n]
