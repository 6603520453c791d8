"""The Grafana dashboard (configs/grafana/radledger.json), checked without Grafana.

The schema check uses Grafana's own dashboard types: grafana-foundation-sdk is
generated from the schemas Grafana itself validates dashboards against. Its
``Dashboard.from_json`` is lenient (unknown keys are dropped, values are not
type-checked), so the test makes it strict: every value of the parsed
dashboard must have the type its generated class declares (enums and literals
included), and serialising it again must give back every key and value of the
file, so a misspelt or unknown key anywhere (panel options and field config
included) fails. Then the checks Grafana does not do: unique panel ids, a
non-overlapping 24-column layout, the ``${datasource}`` and ``$node`` variables
on every panel and query, only the metric names listed here, each of which
node/metrics.py exports, and every query valid PromQL (``promtool``, where
installed; tests/ops/test_prometheus.py runs them against a live Prometheus).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import prometheus, stat, timeseries, units
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, RowPanel

from configs.grafana.build_dashboard import dashboard_queries
from node.metrics import Gauges, NodeMetrics, ValidatorParticipation
from p2p import NetworkStats

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "configs" / "grafana" / "build_dashboard.py"
DASHBOARD = ROOT / "configs" / "grafana" / "radledger.json"
MODEL: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
PANELS: list[dict[str, Any]] = [p for p in MODEL["panels"] if p["type"] != "row"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NODE_FILTER = 'instance=~"$node"'

#: Every series the dashboard may query, as a node exports it (counters with
#: ``_total``, histograms by their ``_bucket`` series), and Prometheus's ALERTS.
KNOWN_METRICS = frozenset(
    {
        "radledger_consensus_height",
        "radledger_blocks_committed_total",
        "radledger_block_interval_seconds_bucket",
        "radledger_tx_commit_latency_seconds_bucket",
        "radledger_txs_committed_total",
        "radledger_block_txs_bucket",
        "radledger_block_size_bytes_bucket",
        "radledger_mempool_rejected_txs_total",
        "radledger_consensus_view",
        "radledger_consensus_view_changes_total",
        "radledger_consensus_in_view_change",
        "radledger_consensus_rounds_per_height_bucket",
        "radledger_consensus_missed_votes_total",
        "radledger_consensus_validator_last_vote_height",
        "radledger_consensus_validators_missing_votes",
        "radledger_p2p_peers",
        "radledger_consensus_reachable_validators",
        "radledger_consensus_quorum",
        "radledger_consensus_validators",
        "radledger_p2p_sent_bytes_total",
        "radledger_p2p_received_bytes_total",
        "radledger_p2p_messages_sent_total",
        "radledger_p2p_queue_messages",
        "radledger_p2p_dropped_messages_total",
        "radledger_p2p_peers_banned",
        "radledger_p2p_handshake_failures_total",
        "radledger_mempool_txs",
        "radledger_mempool_max_txs",
        "radledger_mempool_bytes",
        "radledger_mempool_max_bytes",
        "radledger_sync_target_height",
        "radledger_sync_blocks_total",
        "radledger_byzantine_evidence_total",
        "radledger_storage_commit_duration_seconds_bucket",
        "radledger_storage_disk_free_bytes",
        "radledger_storage_disk_size_bytes",
        "radledger_rpc_requests_total",
        "radledger_rpc_request_duration_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_gc_collections_total",
        "ALERTS",
    }
)

#: Fields of a Prometheus annotation (Grafana's Prometheus annotation editor) that
#: the SDK's generic AnnotationQuery does not model, with their types.
PROMETHEUS_ANNOTATION_FIELDS = {
    "step": str,
    "titleFormat": str,
    "textFormat": str,
    "tagKeys": str,
    "useValueForTime": bool,
}

PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan"}
)


def _parse() -> Dashboard:
    register_default_plugins()
    return Dashboard.from_json(MODEL)


def _round_trip(dashboard: Dashboard) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    return out


def _queries() -> Iterator[tuple[str, str]]:
    """(where, expr) of every PromQL query in the file: panel targets and annotations."""
    for panel in PANELS:
        for target in panel["targets"]:
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in MODEL["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


# --- the generator -------------------------------------------------------------------------


def test_the_checked_in_json_is_what_the_script_prints() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == DASHBOARD.read_text(encoding="utf-8"), (
        "configs/grafana/radledger.json is stale: run "
        "`python configs/grafana/build_dashboard.py > configs/grafana/radledger.json`"
    )


def test_dashboard_queries_lists_every_query_with_its_panel_title() -> None:
    expected = [(p["title"], t["expr"]) for p in PANELS for t in p["targets"]]
    expected += [
        (f"annotation: {a['name']}", a["expr"]) for a in MODEL["annotations"]["list"] if "expr" in a
    ]
    assert dashboard_queries(DASHBOARD) == expected
    assert len(expected) >= 40


# --- Grafana's schema (grafana-foundation-sdk) ---------------------------------------------


def _is_model(value: object) -> bool:
    return type(value).__module__.startswith("grafana_foundation_sdk.models.")


def _type_errors(value: object, hint: Any, path: str) -> Iterator[str]:
    """Where ``value`` (parsed by the SDK) is not of the type ``hint`` the SDK declares."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [arm for arm in args if arm is not type(None)]
        if value is None and len(arms) < len(args):
            return
        # Optional[X], or a union of classes of which value is one: that type's own errors
        classes = [arm for arm in arms if isinstance(arm, type) and isinstance(value, arm)]
        if _is_model(value) and len(classes) == 1:
            arms = classes
        if len(arms) == 1:
            yield from _type_errors(value, arms[0], path)
            return
        errors = [list(_type_errors(value, arm, path)) for arm in arms]
        if all(errors):
            yield f"{path}: {value!r} is none of {hint}: " + "; ".join(e[0] for e in errors)
        return
    if origin is typing.Literal:
        if value not in args:
            yield f"{path}: {value!r} is not one of {args}"
        return
    if origin is list:
        if not isinstance(value, list):
            yield f"{path}: {value!r} is not a list"
            return
        for i, item in enumerate(value):
            yield from _type_errors(item, args[0], f"{path}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            yield f"{path}: {value!r} is not an object"
            return
        for key, item in value.items():
            yield from _type_errors(item, args[1], f"{path}.{key}")
        return
    if hint is typing.Any or hint is object:
        if _is_model(value):  # panel options and custom field config: the panel's own types
            yield from _model_errors(value, path)
        return
    if hint is type(None):
        if value is not None:
            yield f"{path}: {value!r} is not null"
        return
    assert isinstance(hint, type), f"{path}: unexpected type hint {hint!r}"
    if issubclass(hint, enum.Enum):
        if value not in {member.value for member in hint}:
            yield f"{path}: {value!r} is not a {hint.__name__} ({[m.value for m in hint]})"
    elif hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int if hint is int else (int, float)):
            yield f"{path}: {value!r} is not {hint.__name__}"
    elif hint is cogvariants.Dataquery:
        if isinstance(value, UnknownDataquery) or not isinstance(value, hint):
            yield f"{path}: {value!r} is a query of no known data source type"
        else:
            yield from _model_errors(value, path)
    elif not isinstance(value, hint):
        yield f"{path}: {value!r} is not {hint.__name__}"
    elif _is_model(value):
        yield from _model_errors(value, path)


def _model_errors(obj: object, path: str) -> Iterator[str]:
    for name, hint in typing.get_type_hints(type(obj)).items():
        yield from _type_errors(getattr(obj, name), hint, f"{path}.{name}")


def _lost(source: Any, again: Any, path: str = "") -> Iterator[str]:
    """Keys and values of ``source`` that ``again`` does not have."""
    if isinstance(source, dict):
        if not isinstance(again, dict):
            yield f"{path}: became {again!r}"
            return
        for key, value in source.items():
            if key not in again:
                yield f"{path}.{key}: unknown to Grafana's schema, dropped"
            else:
                yield from _lost(value, again[key], f"{path}.{key}")
    elif isinstance(source, list):
        if not isinstance(again, list) or len(again) != len(source):
            yield f"{path}: became {again!r}"
            return
        for i, (a, b) in enumerate(zip(source, again, strict=True)):
            yield from _lost(a, b, f"{path}[{i}]")
    elif source != again or type(source) is not type(again):
        yield f"{path}: {source!r} became {again!r}"


def test_grafana_schema_parses_the_dashboard_with_every_value_of_its_declared_type() -> None:
    dashboard = _parse()
    assert list(_model_errors(dashboard, "dashboard")) == []
    assert dashboard.uid == "radledger"
    assert dashboard.title == "radledger"
    assert 39 <= dashboard.schema_version <= 41
    assert dashboard.panels is not None
    for panel in dashboard.panels:
        if isinstance(panel, RowPanel):
            assert panel.panels == []  # expanded rows: their panels follow them at top level
            continue
        # each panel's options, field config and queries were parsed by its plugin's types
        assert isinstance(panel.options, stat.Options | timeseries.Options), panel.title
        assert panel.targets, panel.title
        assert all(isinstance(t, prometheus.Dataquery) for t in panel.targets), panel.title
        if panel.type_val == "timeseries":
            assert panel.field_config is not None
            assert isinstance(panel.field_config.defaults.custom, timeseries.FieldConfig)


def test_grafana_schema_round_trip_keeps_every_key_and_value() -> None:
    again = _round_trip(_parse())
    source = json.loads(json.dumps(MODEL))
    for annotation in source["annotations"]["list"]:
        if annotation["datasource"]["type"] == "prometheus":
            for key, kind in PROMETHEUS_ANNOTATION_FIELDS.items():
                assert isinstance(annotation.pop(key, ""), kind), key
    assert list(_lost(source, again)) == []
    # spelled out: panels, their types, positions and queries, and the variables
    shape = [
        (p["id"], p["type"], p["title"], p["gridPos"], [t["expr"] for t in p.get("targets", [])])
        for p in MODEL["panels"]
    ]
    assert shape == [
        (p["id"], p["type"], p["title"], p["gridPos"], [t["expr"] for t in p.get("targets", [])])
        for p in again["panels"]
    ]
    for ours, theirs in zip(MODEL["templating"]["list"], again["templating"]["list"], strict=True):
        assert {k: theirs[k] for k in ours} == ours


def test_the_schema_check_catches_a_misspelt_key_and_a_wrong_type() -> None:
    register_default_plugins()
    panel = json.loads(json.dumps(PANELS[-1]))
    panel["gridpos"] = panel.pop("gridPos")
    panel["options"]["legend"]["placement"] = "top"
    panel["fieldConfig"]["defaults"]["custom"]["lineWidht"] = 2
    parsed = Panel.from_json(panel)
    again = json.loads(json.dumps(parsed, cls=JSONEncoder))
    lost = list(_lost(panel, again))
    assert ".gridpos: unknown to Grafana's schema, dropped" in lost
    assert ".fieldConfig.defaults.custom.lineWidht: unknown to Grafana's schema, dropped" in lost
    errors = list(_model_errors(parsed, "panel"))
    assert len(errors) == 1
    assert "panel.options.legend.placement: 'top' is not a LegendPlacement" in errors[0]


def test_units_are_grafana_units() -> None:
    known = {v for k, v in vars(units).items() if not k.startswith("_") and isinstance(v, str)}
    for panel in PANELS:
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit in known or unit.startswith("suffix:"), (panel["title"], unit)


# --- layout --------------------------------------------------------------------------------


def test_panel_ids_are_unique() -> None:
    ids = [p["id"] for p in MODEL["panels"]]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) and i > 0 for i in ids)


def test_panels_fit_24_columns_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in MODEL["panels"]:
        pos = panel["gridPos"]
        x, y, w, h = pos["x"], pos["y"], pos["w"], pos["h"]
        assert min(w, h) >= 1, panel["title"]
        assert min(x, y) >= 0, panel["title"]
        assert x + w <= 24, panel["title"]
        if panel["type"] == "row":
            assert (x, w, h) == (0, 24, 1), panel["title"]
            assert panel["collapsed"] is False
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            assert cell not in taken, f"{panel['title']!r} overlaps {taken[cell]!r} at {cell}"
            taken[cell] = panel["title"]
    # in reading order, so each row owns the panels that follow it
    order = [(p["gridPos"]["y"], p["gridPos"]["x"]) for p in MODEL["panels"]]
    assert order == sorted(order)
    assert MODEL["panels"][0]["type"] == "row"


def test_every_panel_is_a_titled_described_timeseries_or_stat_with_a_unit() -> None:
    assert len(PANELS) >= 40
    for panel in PANELS:
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["title"].strip(), panel
        assert len(panel["description"]) >= 20, panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
    titles = [p["title"] for p in PANELS]
    assert len(titles) == len(set(titles)), "titles name the panels in test failures"


# --- variables and data source -------------------------------------------------------------


def test_template_variables() -> None:
    variables = {v["name"]: v for v in MODEL["templating"]["list"]}
    assert set(variables) == {"datasource", "node"}
    datasource = variables["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    node = variables["node"]
    assert node["type"] == "query"
    assert node["datasource"] == DATASOURCE
    assert node["query"] == "label_values(radledger_consensus_height, instance)"
    assert node["multi"] is True
    assert node["includeAll"] is True
    assert "allValue" not in node  # All matches the listed nodes only, not every target


def test_every_panel_and_query_reads_the_datasource_variable() -> None:
    for panel in PANELS:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    prometheus_annotations = [
        a for a in MODEL["annotations"]["list"] if a["datasource"]["type"] == "prometheus"
    ]
    assert [a["datasource"] for a in prometheus_annotations] == [DATASOURCE]


def test_every_target_has_a_ref_id_and_an_expr() -> None:
    for panel in PANELS:
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert all(ref_ids), panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("legendFormat"), panel["title"]


# --- the queries ---------------------------------------------------------------------------


def _selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Each ``metric{matchers}`` of ``expr``: (metric, {label: (operator, value)})."""
    out = []
    for name, body in re.findall(r'([A-Za-z_:][\w:]*)\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}', expr):
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', body)
        out.append((name, {label: (op, value) for label, op, value in matchers}))
    return out


def _bare_identifiers(expr: str) -> list[str]:
    """Identifiers that are no function, keyword, label list or selector: bare metrics."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"[A-Za-z_:][\w:]*\{[^}]*\}", " SELECTOR ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    return [
        m.group(1)
        for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", s)
        if not m.group(2) and m.group(1) not in PROMQL_KEYWORDS | {"SELECTOR"}
    ]


def test_the_selector_parsing_of_these_tests() -> None:
    expr = (
        'sum by (instance) (rate(a_total{job="radledger", instance=~"$node", s=~"4..|5.."}[5m]))'
        ' - on(instance) group_right b{instance=~"$node"} or vector(0) + up'
    )
    assert _selectors(expr) == [
        (
            "a_total",
            {"job": ("=", "radledger"), "instance": ("=~", "$node"), "s": ("=~", "4..|5..")},
        ),
        ("b", {"instance": ("=~", "$node")}),
    ]
    assert _bare_identifiers(expr) == ["up"]


@pytest.mark.parametrize(("where", "expr"), list(_queries()))
def test_query_reads_known_metrics_of_the_chosen_nodes(where: str, expr: str) -> None:
    assert _bare_identifiers(expr) == [], f"{where}: every metric needs {{{NODE_FILTER}}}"
    selectors = _selectors(expr)
    assert selectors, where
    for metric, matchers in selectors:
        assert metric in KNOWN_METRICS, f"{where}: unknown metric {metric}"
        if metric == "ALERTS":
            # alerts of the chosen nodes, and the network's own (no instance label)
            assert matchers["instance"] == ("=~", "$node|"), where
            assert matchers["alertstate"] == ("=", "firing"), where
        else:
            assert matchers["instance"] == ("=~", "$node"), f"{where}: {metric}"
            assert matchers["job"] == ("=", "radledger"), f"{where}: {metric}"
    assert set(re.findall(r"\$\{?(\w+)", expr)) == {"node"}, where


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """``promtool`` parses each query as a recording rule: a syntax check without a server."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("RADLEDGER_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("promtool is required (RADLEDGER_REQUIRE_PROMETHEUS=1)")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    queries = list(_queries())
    rules = tmp_path / "dashboard.yml"
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(queries):
        # a JSON string is a YAML double-quoted scalar; "$node" is a valid regex as it is
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(expr)}"]
    rules.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run(
        [promtool, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout


def test_every_known_metric_is_on_the_dashboard() -> None:
    used = {metric for _, expr in _queries() for metric, _ in _selectors(expr)}
    assert used == KNOWN_METRICS


def _zero(hint: Any) -> object:
    origin = typing.get_origin(hint) or hint
    if origin is tuple:
        return ()
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return {}
    return "v" if origin is str else 0


def test_the_known_metrics_are_what_a_node_exports() -> None:
    """A metric renamed in node/metrics.py must be renamed on the dashboard too."""

    def zeros(cls: type[Any]) -> Any:
        hints = typing.get_type_hints(cls)
        return cls(**{f.name: _zero(hints[f.name]) for f in dataclasses.fields(cls)})

    metrics = NodeMetrics()
    metrics.watch(
        lambda: zeros(Gauges), lambda: zeros(NetworkStats), lambda: [zeros(ValidatorParticipation)]
    )
    exported: set[str] = set()
    for family in metrics.registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        exported.update(family.name + s for s in suffixes.get(family.type, [""]))
    assert KNOWN_METRICS - {"ALERTS"} <= exported, sorted(KNOWN_METRICS - {"ALERTS"} - exported)
