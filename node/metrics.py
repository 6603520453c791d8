"""Prometheus metrics (namespace ``radledger_``), one registry per node.

Counters and histograms are updated where things happen; gauges that mirror
state (height, view, mempool, peers) are read at scrape time by a collector,
so scraping costs nothing between scrapes and can never disagree with the
node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from p2p import NetworkStats

NAMESPACE = "radledger"


@dataclass(frozen=True, slots=True)
class Gauges:
    """State read at scrape time."""

    height: int
    view: int
    in_view_change: bool
    catching_up_to: int
    mempool_txs: int
    mempool_bytes: int
    peers: int
    validators_missing_votes: int
    mempool_max_txs: int
    mempool_max_bytes: int
    validators: int
    quorum: int
    #: validators this node can count on for a quorum now: connected validator
    #: peers, plus itself if it is a validator
    reachable_validators: int
    disk_free_bytes: int
    disk_size_bytes: int
    #: seconds between empty blocks when idle (0: no empty blocks, an idle chain stays still)
    empty_block_interval_s: float


@dataclass(frozen=True, slots=True)
class ValidatorParticipation:
    """One validator's part in consensus, as this node saw it since it started."""

    name: str
    missed_heights: int
    last_vote_height: int


class _PeerCollector(Collector):
    """The peer layer's own counters (it keeps them; we only export them)."""

    def __init__(self, read: Callable[[], NetworkStats]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        s = self._read()
        for name, doc, values in (
            ("p2p_messages_sent", "Messages sent, by type.", s.messages_sent),
            ("p2p_messages_received", "Messages received, by type.", s.messages_received),
            ("p2p_sent_bytes", "Payload bytes sent, by type.", s.bytes_sent),
            ("p2p_received_bytes", "Payload bytes received, by type.", s.bytes_received),
        ):
            family = CounterMetricFamily(f"{NAMESPACE}_{name}", doc, labels=["type"])
            for label, value in sorted(values.items()):
                family.add_metric([label], value)
            yield family
        failures = CounterMetricFamily(
            f"{NAMESPACE}_p2p_handshake_failures",
            "Refused handshakes, by reason.",
            labels=["reason"],
        )
        for reason, value in sorted(s.handshake_failures.items()):
            failures.add_metric([reason], value)
        yield failures
        drops = CounterMetricFamily(
            f"{NAMESPACE}_p2p_dropped_messages",
            "Messages dropped, by kind and reason.",
            labels=["kind", "reason"],
        )
        for (kind, reason), value in sorted(s.drops.items()):
            drops.add_metric([kind, reason], value)
        yield drops
        yield CounterMetricFamily(f"{NAMESPACE}_p2p_bans", "Peers banned.", value=s.bans)
        yield GaugeMetricFamily(
            f"{NAMESPACE}_p2p_peers_banned", "Peers banned now.", value=s.peers_banned
        )
        depth = GaugeMetricFamily(
            f"{NAMESPACE}_p2p_queue_messages", "Queued outgoing messages, by kind.", labels=["kind"]
        )
        totals: dict[str, int] = {}
        for peer in s.peers:
            for kind, value in peer.queue_msgs.items():
                totals[kind] = totals.get(kind, 0) + value
        for kind, value in sorted(totals.items()):
            depth.add_metric([kind], value)
        yield depth


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], Gauges]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        g = self._read()
        values = {
            "consensus_height": ("Latest committed height.", g.height),
            "consensus_view": ("Current PBFT view.", g.view),
            "consensus_in_view_change": ("1 while a view change is under way.", g.in_view_change),
            "consensus_validators_missing_votes": (
                "Validators whose vote for the current height has not arrived.",
                g.validators_missing_votes,
            ),
            "sync_target_height": ("Height being caught up to (0: in sync).", g.catching_up_to),
            "mempool_txs": ("Transactions in the mempool.", g.mempool_txs),
            "mempool_bytes": ("Bytes of transactions in the mempool.", g.mempool_bytes),
            "p2p_peers": ("Connected peers.", g.peers),
            "mempool_max_txs": (
                "The mempool's limit on transactions ([mempool] max_txs).",
                g.mempool_max_txs,
            ),
            "mempool_max_bytes": (
                "The mempool's limit on bytes ([mempool] max_bytes).",
                g.mempool_max_bytes,
            ),
            "consensus_validators": ("Validators in the genesis (n).", g.validators),
            "consensus_quorum": ("Votes a block needs (2f+1).", g.quorum),
            "consensus_reachable_validators": (
                "Validators this node can count on now: connected validator peers, "
                "plus itself if it is one. Below the quorum, no block can commit.",
                g.reachable_validators,
            ),
            "consensus_empty_block_interval_seconds": (
                "Seconds between empty blocks on an idle network; 0 when this node creates "
                "none ([consensus] create_empty_blocks = false), so its height stays still "
                "while nothing is submitted.",
                g.empty_block_interval_s,
            ),
            "storage_disk_free_bytes": (
                "Bytes free to this process on the filesystem of the data directory.",
                g.disk_free_bytes,
            ),
            "storage_disk_size_bytes": (
                "Size of the filesystem holding the data directory.",
                g.disk_size_bytes,
            ),
        }
        for name, (doc, value) in values.items():
            yield GaugeMetricFamily(f"{NAMESPACE}_{name}", doc, value=float(value))


class _ParticipationCollector(Collector):
    def __init__(self, read: Callable[[], list[ValidatorParticipation]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        rows = self._read()
        missed = CounterMetricFamily(
            f"{NAMESPACE}_consensus_missed_votes",
            "Heights this node committed live with no vote or proposal from the validator "
            "(settled when the next height commits).",
            labels=["validator"],
        )
        last = GaugeMetricFamily(
            f"{NAMESPACE}_consensus_validator_last_vote_height",
            "Highest height the validator voted for, as seen here (0: none since start).",
            labels=["validator"],
        )
        for row in rows:
            missed.add_metric([row.name], row.missed_heights)
            last.add_metric([row.name], row.last_vote_height)
        yield missed
        yield last


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The standard process_* (CPU, memory, open files), python_info and
        # python_gc_* series, as every Prometheus client exports them.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.blocks_committed = Counter(
            "blocks_committed", "Blocks committed.", namespace=NAMESPACE, registry=r
        )
        self.txs_committed = Counter(
            "txs_committed", "Transactions committed.", namespace=NAMESPACE, registry=r
        )
        self.view_changes = Counter(
            "consensus_view_changes",
            "Views entered after the first.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.evidence = Counter(
            "byzantine_evidence", "Equivocations detected.", namespace=NAMESPACE, registry=r
        )
        self.blocks_synced = Counter(
            "sync_blocks", "Blocks applied through catch-up.", namespace=NAMESPACE, registry=r
        )
        self.txs_rejected = Counter(
            "mempool_rejected_txs",
            "Transactions refused at admission, by reason.",
            ["reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.rpc_requests = Counter(
            "rpc_requests",
            "RPC requests by route and status.",
            ["route", "status"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "rpc_request_duration_seconds",
            "RPC latency.",
            ["route"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.block_interval = Histogram(
            "block_interval_seconds",
            "Time between consecutive commits.",
            namespace=NAMESPACE,
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
        )
        self.commit_seconds = Histogram(
            "storage_commit_duration_seconds",
            "LevelDB block commit (one fsynced batch).",
            namespace=NAMESPACE,
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )
        self.commit_latency = Histogram(
            "tx_commit_latency_seconds",
            "From admission to this node's mempool to commit.",
            namespace=NAMESPACE,
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
        )
        self.rounds_per_height = Histogram(
            "consensus_rounds_per_height",
            "Views a height took to commit (1: no view change).",
            namespace=NAMESPACE,
            registry=r,
            buckets=(1, 2, 3, 5, 10),
        )
        self.block_bytes = Histogram(
            "block_size_bytes",
            "Encoded size of committed blocks.",
            namespace=NAMESPACE,
            registry=r,
            buckets=(1_024, 16_384, 131_072, 1_048_576, 8_388_608, 33_554_432),
        )
        self.block_txs = Histogram(
            "block_txs",
            "Transactions per committed block.",
            namespace=NAMESPACE,
            registry=r,
            buckets=(0, 1, 10, 100, 1000, 5000),
        )

    def watch(
        self,
        read: Callable[[], Gauges],
        peers: Callable[[], NetworkStats],
        participation: Callable[[], list[ValidatorParticipation]],
    ) -> None:
        self.registry.register(_StateCollector(read))
        self.registry.register(_PeerCollector(peers))
        self.registry.register(_ParticipationCollector(participation))
