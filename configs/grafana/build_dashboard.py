"""Build the radledger Grafana dashboard (configs/grafana/radledger.json).

Run ``python configs/grafana/build_dashboard.py > configs/grafana/radledger.json``
after editing this file; tests/ops/test_grafana_dashboard.py checks that the
checked-in JSON is exactly what this script prints, parses it with Grafana's
own dashboard types (grafana-foundation-sdk) and checks every query.

The dashboard is Grafana's JSON model (schemaVersion 39, Grafana 10.4 and
later): import it through Dashboards > New > Import and pick a Prometheus data
source; the ``datasource`` variable can switch it later. Every query filters on
the scrape job ``radledger`` and on the ``node`` variable (the Prometheus
``instance`` label of each node), so it also works against a Prometheus that
scrapes other things. Plain Python, standard library only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

UID = "radledger"
SCHEMA_VERSION = 39
JOB = "radledger"
#: what every panel and query reads from: the ``datasource`` template variable
DATASOURCE: JSON = {"type": "prometheus", "uid": "${datasource}"}
#: matchers of every selector: the radledger scrape job on the chosen nodes
ON_NODES = f'job="{JOB}", instance=~"$node"'
GRID_COLUMNS = 24


def sel(metric: str, *matchers: str) -> str:
    """``metric`` on the chosen nodes, with extra label ``matchers``."""
    return f"{metric}{{{', '.join((ON_NODES, *matchers))}}}"


def quantile(q: float, bucket: str, by: str = "instance", window: str = "5m") -> str:
    """The ``q`` quantile of a histogram over ``window``, per node (and ``by``)."""
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({sel(bucket)}[{window}])))"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "{{instance}}"


def quantiles(bucket: str, by: str = "instance", legend: str = "{{instance}}") -> list[Query]:
    """p50, p90 and p99 of a histogram, one query each."""
    return [Query(quantile(q, bucket, by), f"{legend} p{round(q * 100)}") for q in (0.5, 0.9, 0.99)]


@dataclass
class Panel:
    """One timeseries or stat panel, before layout."""

    kind: str
    title: str
    description: str
    unit: str
    queries: list[Query]
    width: int = 8
    height: int = 8
    defaults: JSON = field(default_factory=dict)
    custom: JSON = field(default_factory=dict)
    overrides: list[JSON] = field(default_factory=list)


def thresholds(*steps: tuple[float | None, str]) -> JSON:
    """Absolute thresholds; the first step's value is None (from minus infinity)."""
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def value_text(mapping: dict[int, tuple[str, str]]) -> list[JSON]:
    """Value mappings: value -> (text, color)."""
    options = {
        str(value): {"text": text, "color": color, "index": index}
        for index, (value, (text, color)) in enumerate(sorted(mapping.items()))
    }
    return [{"type": "value", "options": options}]


def timeseries(
    title: str,
    description: str,
    unit: str,
    queries: list[Query],
    *,
    width: int = 8,
    steps: bool = False,
    min_value: float | None = 0,
    max_value: float | None = None,
    overrides: Sequence[JSON] = (),
) -> Panel:
    """A line graph; ``steps`` draws gauges of whole numbers as steps."""
    defaults: JSON = {}
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    custom: JSON = {
        "drawStyle": "line",
        "lineInterpolation": "stepAfter" if steps else "linear",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
    }
    return Panel(
        "timeseries",
        title,
        description,
        unit,
        queries,
        width=width,
        defaults=defaults,
        custom=custom,
        overrides=list(overrides),
    )


def stat(
    title: str,
    description: str,
    unit: str,
    queries: list[Query],
    *,
    steps: JSON,
    mappings: list[JSON] | None = None,
    width: int = 4,
) -> Panel:
    """A big number per node, coloured by ``steps``."""
    defaults: JSON = {"thresholds": steps, "decimals": 0}
    if mappings:
        defaults["mappings"] = mappings
    return Panel(
        "stat", title, description, unit, queries, width=width, height=4, defaults=defaults
    )


def limit_line(ref_id: str, color: str = "red") -> JSON:
    """Draw query ``ref_id`` (a limit or a threshold) as a dashed line without fill."""
    return {
        "matcher": {"id": "byFrameRefID", "options": ref_id},
        "properties": [
            {"id": "color", "value": {"mode": "fixed", "fixedColor": color}},
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "custom.fillOpacity", "value": 0},
        ],
    }


# --- the panels, row by row ----------------------------------------------------------------

GREEN_RED = thresholds((None, "green"), (1, "red"))

OVERVIEW = [
    stat(
        "Height",
        "Latest committed height of each node. Nodes of one network should agree within a "
        "block or two; one that lags is catching up or cut off.",
        "none",
        [Query(sel("radledger_consensus_height"))],
        steps=thresholds((None, "blue")),
    ),
    stat(
        "Quorum margin",
        "Validators each node can count on now (connected validator peers, plus itself if it "
        "is one) minus the quorum (2f+1). Below 0 no block can commit; 0 means no validator "
        "can be lost without stopping the chain.",
        "none",
        [
            Query(
                f"{sel('radledger_consensus_reachable_validators')}"
                f" - {sel('radledger_consensus_quorum')}"
            )
        ],
        steps=thresholds((None, "red"), (0, "orange"), (1, "green")),
    ),
    stat(
        "In view change",
        "Whether each node is in a PBFT view change now (the leader is being replaced). "
        "Brief ones are normal after a leader restart; a lasting one stalls commits.",
        "none",
        [Query(sel("radledger_consensus_in_view_change"))],
        steps=GREEN_RED,
        mappings=value_text({0: ("no", "green"), 1: ("VIEW CHANGE", "red")}),
    ),
    stat(
        "Catching up to",
        "Height each node is catching up to through block sync; 0 (shown as 'in sync') when "
        "it follows the network live.",
        "none",
        [Query(sel("radledger_sync_target_height"))],
        steps=thresholds((None, "green"), (1, "orange")),
        mappings=value_text({0: ("in sync", "green")}),
    ),
    stat(
        "Byzantine evidence (1h)",
        "Equivocations (a validator signing two different messages for one height and view) "
        "detected by each node in the last hour. Anything above 0 needs investigating.",
        "none",
        [Query(f"sum by (instance) (increase({sel('radledger_byzantine_evidence_total')}[1h]))")],
        steps=GREEN_RED,
    ),
    stat(
        "Firing alerts",
        "Prometheus alerts firing now for the chosen nodes or for the whole network (alerts "
        "without an instance label). The 'Firing alerts' annotation marks them on the graphs.",
        "none",
        [
            Query(
                'count(ALERTS{alertstate="firing", instance=~"$node|"}) or vector(0)',
                "firing",
            )
        ],
        steps=GREEN_RED,
    ),
]

BLOCKS = [
    timeseries(
        "Committed height",
        "Latest committed height (radledger_consensus_height). Flat lines mean no commits: "
        "check the quorum and view-change panels, or whether empty blocks are off and nothing "
        "was submitted.",
        "none",
        [Query(sel("radledger_consensus_height"))],
        width=12,
        steps=True,
        min_value=None,
    ),
    timeseries(
        "Blocks committed per second",
        "Blocks committed per second over 1 minute (radledger_blocks_committed_total).",
        "suffix: blocks/s",
        [Query(f"rate({sel('radledger_blocks_committed_total')}[1m])")],
        width=12,
    ),
    timeseries(
        "Block interval (p50, p90, p99)",
        "Time between consecutive commits, quantiles over 5 minutes "
        "(radledger_block_interval_seconds). No data while no block commits.",
        "s",
        quantiles("radledger_block_interval_seconds_bucket"),
        width=12,
    ),
    timeseries(
        "Transaction commit latency (p50, p90, p99)",
        "From a transaction's admission to this node's mempool to its commit, quantiles over "
        "5 minutes (radledger_tx_commit_latency_seconds).",
        "s",
        quantiles("radledger_tx_commit_latency_seconds_bucket"),
        width=12,
    ),
]

THROUGHPUT = [
    timeseries(
        "Transactions committed per second",
        "Transactions committed per second over 1 minute (radledger_txs_committed_total).",
        "suffix: tx/s",
        [Query(f"rate({sel('radledger_txs_committed_total')}[1m])")],
    ),
    timeseries(
        "Transactions per block (p50, p90, p99)",
        "Transactions in each committed block, quantiles over 5 minutes (radledger_block_txs).",
        "none",
        quantiles("radledger_block_txs_bucket"),
    ),
    timeseries(
        "Block size (p50, p90, p99)",
        "Encoded size of committed blocks, quantiles over 5 minutes (radledger_block_size_bytes).",
        "bytes",
        quantiles("radledger_block_size_bytes_bucket"),
    ),
    timeseries(
        "Mempool rejections by reason",
        "Transactions refused at admission per second over 5 minutes, by reason "
        "(radledger_mempool_rejected_txs_total). A full mempool shows as backpressure here.",
        "suffix: tx/s",
        [
            Query(
                "sum by (instance, reason) "
                f"(rate({sel('radledger_mempool_rejected_txs_total')}[5m]))",
                "{{instance}} {{reason}}",
            )
        ],
    ),
    timeseries(
        "Mempool transactions vs limit",
        "Transactions waiting in the mempool (radledger_mempool_txs) against its limit "
        "([mempool] max_txs, radledger_mempool_max_txs, dashed).",
        "none",
        [
            Query(sel("radledger_mempool_txs"), "{{instance}} in mempool"),
            Query(sel("radledger_mempool_max_txs"), "{{instance}} limit"),
        ],
        overrides=[limit_line("B")],
    ),
    timeseries(
        "Mempool bytes vs limit",
        "Bytes of transactions in the mempool (radledger_mempool_bytes) against its limit "
        "([mempool] max_bytes, radledger_mempool_max_bytes, dashed).",
        "bytes",
        [
            Query(sel("radledger_mempool_bytes"), "{{instance}} in mempool"),
            Query(sel("radledger_mempool_max_bytes"), "{{instance}} limit"),
        ],
        overrides=[limit_line("B")],
    ),
]

CONSENSUS = [
    timeseries(
        "View",
        "Current PBFT view of each node (radledger_consensus_view). It rises with every view "
        "change; nodes of one network should agree.",
        "none",
        [Query(sel("radledger_consensus_view"))],
        steps=True,
        min_value=None,
    ),
    timeseries(
        "View changes (5m)",
        "Views entered in the last 5 minutes (radledger_consensus_view_changes_total). "
        "Repeated view changes mean leaders fail or are unreachable.",
        "none",
        [Query(f"increase({sel('radledger_consensus_view_changes_total')}[5m])")],
    ),
    timeseries(
        "View change in progress",
        "1 while the node is in a view change (radledger_consensus_in_view_change).",
        "bool_yes_no",
        [Query(sel("radledger_consensus_in_view_change"))],
        steps=True,
        max_value=1,
    ),
    timeseries(
        "Rounds per height (p50, p90, p99)",
        "Views a height took to commit, quantiles over 5 minutes "
        "(radledger_consensus_rounds_per_height); 1 means no view change was needed.",
        "none",
        quantiles("radledger_consensus_rounds_per_height_bucket"),
    ),
    timeseries(
        "Byzantine evidence per hour",
        "Equivocations detected in the last hour (radledger_byzantine_evidence_total).",
        "none",
        [Query(f"increase({sel('radledger_byzantine_evidence_total')}[1h])")],
        width=16,
    ),
]

VOTES = [
    timeseries(
        "Missed votes per validator (5m)",
        "Heights committed in the last 5 minutes without a vote or proposal from the "
        "validator, as each node saw it (radledger_consensus_missed_votes_total; a node "
        "reports every validator but itself). Every node reporting one validator: that "
        "validator is down or slow; a single node reporting it: the link between the two.",
        "none",
        [
            Query(
                "sum by (instance, validator) "
                f"(increase({sel('radledger_consensus_missed_votes_total')}[5m]))",
                "{{validator}} seen by {{instance}}",
            )
        ],
    ),
    timeseries(
        "Heights since each validator's last vote",
        "The node's height minus the highest height the validator voted for, as seen by that "
        "node (radledger_consensus_validator_last_vote_height). 0 or 1 is live; a rising line "
        "is a validator that stopped voting (its last vote height is 0 until it votes after "
        "the node started).",
        "none",
        [
            Query(
                f"{sel('radledger_consensus_height')} - on(instance) group_right "
                f"{sel('radledger_consensus_validator_last_vote_height')}",
                "{{validator}} seen by {{instance}}",
            )
        ],
    ),
    timeseries(
        "Validators missing a vote for the current height",
        "Validators whose vote for the height in progress has not arrived yet "
        "(radledger_consensus_validators_missing_votes). Above f for long, no block commits.",
        "none",
        [Query(sel("radledger_consensus_validators_missing_votes"))],
        steps=True,
    ),
]

PEERS = [
    timeseries(
        "Connected peers",
        "Peers each node is connected to (radledger_p2p_peers).",
        "none",
        [Query(sel("radledger_p2p_peers"))],
        steps=True,
    ),
    timeseries(
        "Reachable validators vs quorum",
        "Validators each node can count on now (radledger_consensus_reachable_validators) "
        "against the quorum 2f+1 (radledger_consensus_quorum, red dashed) and the number of "
        "validators n (radledger_consensus_validators, grey dashed). Below the quorum, no "
        "block can commit.",
        "none",
        [
            Query(sel("radledger_consensus_reachable_validators"), "{{instance}} reachable"),
            Query(sel("radledger_consensus_quorum"), "{{instance}} quorum"),
            Query(sel("radledger_consensus_validators"), "{{instance}} validators"),
        ],
        steps=True,
        overrides=[limit_line("B"), limit_line("C", "gray")],
    ),
    timeseries(
        "Peers banned now",
        "Peers this node refuses to talk to for now (radledger_p2p_peers_banned).",
        "none",
        [Query(sel("radledger_p2p_peers_banned"))],
        steps=True,
    ),
    timeseries(
        "Bytes sent by message type",
        "Payload bytes sent per second over 1 minute, by message type "
        "(radledger_p2p_sent_bytes_total).",
        "Bps",
        [Query(f"rate({sel('radledger_p2p_sent_bytes_total')}[1m])", "{{instance}} {{type}}")],
    ),
    timeseries(
        "Bytes received by message type",
        "Payload bytes received per second over 1 minute, by message type "
        "(radledger_p2p_received_bytes_total).",
        "Bps",
        [
            Query(
                f"rate({sel('radledger_p2p_received_bytes_total')}[1m])",
                "{{instance}} {{type}}",
            )
        ],
    ),
    timeseries(
        "Messages sent by type",
        "Messages sent per second over 1 minute, by type (radledger_p2p_messages_sent_total).",
        "mps",
        [
            Query(
                f"rate({sel('radledger_p2p_messages_sent_total')}[1m])",
                "{{instance}} {{type}}",
            )
        ],
    ),
    timeseries(
        "Outgoing queue depth by kind",
        "Messages queued for sending, summed over peers, by kind "
        "(radledger_p2p_queue_messages). A queue that keeps growing is a slow or stuck peer.",
        "none",
        [
            Query(
                f"sum by (instance, kind) ({sel('radledger_p2p_queue_messages')})",
                "{{instance}} {{kind}}",
            )
        ],
    ),
    timeseries(
        "Dropped messages by kind and reason",
        "Messages dropped per second over 5 minutes, by kind and reason "
        "(radledger_p2p_dropped_messages_total).",
        "mps",
        [
            Query(
                "sum by (instance, kind, reason) "
                f"(rate({sel('radledger_p2p_dropped_messages_total')}[5m]))",
                "{{instance}} {{kind}} {{reason}}",
            )
        ],
    ),
    timeseries(
        "Handshake failures by reason",
        "Refused peer handshakes per second over 5 minutes, by reason "
        "(radledger_p2p_handshake_failures_total): wrong network, unknown key, bad signature.",
        "suffix: /s",
        [
            Query(
                "sum by (instance, reason) "
                f"(rate({sel('radledger_p2p_handshake_failures_total')}[5m]))",
                "{{instance}} {{reason}}",
            )
        ],
    ),
]

SYNC_STORAGE = [
    timeseries(
        "Catch-up target height (0 = in sync)",
        "Height each node is catching up to through block sync "
        "(radledger_sync_target_height); 0 while it follows the network live.",
        "none",
        [Query(sel("radledger_sync_target_height"))],
        width=6,
        steps=True,
    ),
    timeseries(
        "Blocks applied by catch-up",
        "Blocks applied per second through block sync over 1 minute (radledger_sync_blocks_total).",
        "suffix: blocks/s",
        [Query(f"rate({sel('radledger_sync_blocks_total')}[1m])")],
        width=6,
    ),
    timeseries(
        "Storage commit duration (p50, p99)",
        "Time to commit a block to LevelDB (one fsynced batch), quantiles over 5 minutes "
        "(radledger_storage_commit_duration_seconds). A slow disk shows here first.",
        "s",
        [
            Query(quantile(q, "radledger_storage_commit_duration_seconds_bucket"), legend)
            for q, legend in ((0.5, "{{instance}} p50"), (0.99, "{{instance}} p99"))
        ],
        width=6,
    ),
    timeseries(
        "Disk free",
        "Share of the data directory's filesystem free to the node "
        "(radledger_storage_disk_free_bytes / radledger_storage_disk_size_bytes).",
        "percentunit",
        [
            Query(
                f"{sel('radledger_storage_disk_free_bytes')}"
                f" / {sel('radledger_storage_disk_size_bytes')}"
            )
        ],
        width=6,
        max_value=1,
    ),
]

_RPC = "radledger_rpc_requests_total"
_RPC_ALL = f"sum by (instance) (rate({sel(_RPC)}[5m]))"


def _error_ratio(status: str) -> str:
    """Share of RPC requests answered with ``status`` (0 when none, not absent)."""
    errors = f"sum by (instance) (rate({sel(_RPC, f'status=~{json.dumps(status)}')}[5m]))"
    return f"({errors} or {_RPC_ALL} * 0) / {_RPC_ALL}"


RPC = [
    timeseries(
        "RPC requests by route and status",
        "RPC requests per second over 1 minute, by route and HTTP status "
        "(radledger_rpc_requests_total).",
        "reqps",
        [Query(f"rate({sel(_RPC)}[1m])", "{{instance}} {{route}} {{status}}")],
    ),
    timeseries(
        "RPC error ratio",
        "Share of RPC requests over 5 minutes answered with a 4xx or 5xx status, and with a "
        "5xx status alone (radledger_rpc_requests_total). 4xx includes refused transactions; "
        "5xx is the node failing.",
        "percentunit",
        [
            Query(_error_ratio("4..|5.."), "{{instance}} 4xx and 5xx"),
            Query(_error_ratio("5.."), "{{instance}} 5xx"),
        ],
        max_value=1,
    ),
    timeseries(
        "RPC latency by route (p50, p99)",
        "RPC request duration by route, quantiles over 5 minutes "
        "(radledger_rpc_request_duration_seconds).",
        "s",
        [
            Query(
                quantile(q, "radledger_rpc_request_duration_seconds_bucket", "instance, route"),
                f"{{{{instance}}}} {{{{route}}}} {name}",
            )
            for q, name in ((0.5, "p50"), (0.99, "p99"))
        ],
    ),
]

PROCESS = [
    timeseries(
        "CPU",
        "CPU time used per second over 1 minute (process_cpu_seconds_total): 100% is one "
        "core fully busy.",
        "percentunit",
        [Query(f"rate({sel('process_cpu_seconds_total')}[1m])")],
        width=6,
    ),
    timeseries(
        "Resident memory",
        "Resident set size of each node's process (process_resident_memory_bytes).",
        "bytes",
        [Query(sel("process_resident_memory_bytes"))],
        width=6,
    ),
    timeseries(
        "Open file descriptors",
        "File descriptors each node's process holds open (process_open_fds): sockets, "
        "LevelDB files, logs.",
        "none",
        [Query(sel("process_open_fds"))],
        width=6,
    ),
    timeseries(
        "Python GC collections by generation",
        "Garbage collections per second over 1 minute, by generation "
        "(python_gc_collections_total). Frequent generation-2 collections cost latency.",
        "suffix: /s",
        [
            Query(
                f"rate({sel('python_gc_collections_total')}[1m])",
                "{{instance}} gen {{generation}}",
            )
        ],
        width=6,
    ),
]

ROWS: list[tuple[str, list[Panel]]] = [
    ("Overview", OVERVIEW),
    ("Blocks and commit latency", BLOCKS),
    ("Transactions and mempool", THROUGHPUT),
    ("Consensus: views and evidence", CONSENSUS),
    ("Votes per validator", VOTES),
    ("Peers and quorum", PEERS),
    ("Sync and storage", SYNC_STORAGE),
    ("RPC", RPC),
    ("Process", PROCESS),
]


# --- JSON model --------------------------------------------------------------------------


def _targets(queries: list[Query]) -> list[JSON]:
    return [
        {
            "datasource": DATASOURCE,
            "refId": chr(ord("A") + i),
            "expr": q.expr,
            "legendFormat": q.legend,
            "range": True,
            "editorMode": "code",
        }
        for i, q in enumerate(queries)
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> JSON:
    defaults: JSON = {"unit": panel.unit, **panel.defaults}
    options: JSON
    if panel.kind == "stat":
        defaults.setdefault("color", {"mode": "thresholds"})
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "value_and_name",
            "wideLayout": True,
            "showPercentChange": False,
        }
    else:
        defaults.setdefault("color", {"mode": "palette-classic"})
        defaults.setdefault("thresholds", thresholds((None, "green")))
        defaults["custom"] = panel.custom
        options = {
            "legend": {
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
                "calcs": [],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": panel.overrides},
        "options": options,
        "targets": _targets(panel.queries),
    }


def _layout(rows: list[tuple[str, list[Panel]]]) -> list[JSON]:
    """Rows one under the other; panels left to right, wrapping at 24 columns."""
    out: list[JSON] = []
    y = 0
    for title, panels in rows:
        out.append(
            {
                "id": len(out) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x = line_height = 0
        for panel in panels:
            if x + panel.width > GRID_COLUMNS:
                x, y, line_height = 0, y + line_height, 0
            out.append(_panel_json(panel, len(out) + 1, x, y))
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return out


def _templating() -> JSON:
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "multi": False,
                "includeAll": False,
                "options": [],
            },
            {
                "name": "node",
                "label": "Node",
                "description": "Nodes to show: the Prometheus instance label of each node.",
                "type": "query",
                "datasource": DATASOURCE,
                "query": "label_values(radledger_consensus_height, instance)",
                "hide": 0,
                "refresh": 2,
                "regex": "",
                "sort": 1,
                "multi": True,
                "includeAll": True,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "options": [],
            },
        ]
    }


def _annotations() -> JSON:
    return {
        "list": [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "target": {"limit": 100, "matchAny": False, "tags": [], "type": "dashboard"},
                "type": "dashboard",
            },
            {
                # Prometheus annotation: expr, step, titleFormat, textFormat, tagKeys and
                # useValueForTime are the fields of Grafana's Prometheus annotation editor
                "name": "Firing alerts",
                "datasource": DATASOURCE,
                "enable": True,
                "hide": False,
                "iconColor": "red",
                "expr": 'ALERTS{alertstate="firing", instance=~"$node|"}',
                "step": "60s",
                "titleFormat": "{{alertname}}",
                "textFormat": "{{instance}}",
                "tagKeys": "alertname,severity",
                "useValueForTime": False,
            },
        ]
    }


def dashboard() -> JSON:
    """The whole dashboard, as Grafana's JSON model."""
    return {
        "uid": UID,
        "title": "radledger",
        "description": "radledger nodes: consensus, votes, peers, mempool, sync, storage, RPC "
        "and process health, per node.",
        "tags": ["radledger", "pbft", "blockchain"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [],
        "annotations": _annotations(),
        "templating": _templating(),
        "panels": _layout(ROWS),
    }


def render() -> str:
    """The dashboard JSON exactly as it is checked in."""
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def dashboard_queries(path: str | Path) -> list[tuple[str, str]]:
    """Every PromQL query of the dashboard JSON at ``path``, as (panel title, expr).

    Panel targets first, in panel order, then Prometheus annotations (titled
    ``annotation: NAME``). The ``node`` variable's ``label_values(...)`` is not
    PromQL and is left out. Queries still hold Grafana's ``$node`` variable.
    """
    model = json.loads(Path(path).read_text(encoding="utf-8"))
    out: list[tuple[str, str]] = []
    for panel in model.get("panels", []):
        out.extend((panel["title"], t["expr"]) for t in panel.get("targets", []) if "expr" in t)
    for annotation in model.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            out.append((f"annotation: {annotation['name']}", annotation["expr"]))
    return out


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
