"""The operators' Prometheus setup, checked by Prometheus itself.

``promtool`` checks the scrape configurations and the alert rules and runs the
rules' unit tests (configs/prometheus/alerts_test.yml); then a real Prometheus
server scrapes a running 4-process network: every node is up, the key series
exist with sane values, the height rises, every dashboard query is valid
PromQL, and killing a node makes ``RadledgerNodeDown`` fire for exactly that
node while the other nodes report it missing its votes.

Needs Debian's ``prometheus`` package (``.ci/run`` installs it when missing).
Where it cannot be installed these tests skip with that message, unless
``RADLEDGER_REQUIRE_PROMETHEUS=1`` (set by ``.ci/run`` once it is installed),
which turns a missing binary into a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from configs.grafana.build_dashboard import dashboard_queries
from node.testnet import ports
from tests.node.test_network_processes import Network, network, wait_for

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "configs" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
DASHBOARD = ROOT / "configs" / "grafana" / "radledger.json"

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
if not (PROMETHEUS and PROMTOOL) and os.environ.get("RADLEDGER_REQUIRE_PROMETHEUS") != "1":
    pytest.skip(
        "Prometheus is not installed (Debian: apt-get install prometheus); "
        ".ci/run installs it, so CI runs these tests",
        allow_module_level=True,
    )

__all__ = ["network"]  # the fixture, imported for the live test


def _promtool(*args: str) -> str:
    assert PROMTOOL, "promtool is required (RADLEDGER_REQUIRE_PROMETHEUS=1)"
    done = subprocess.run(
        [PROMTOOL, *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _alert_blocks(text: str) -> dict[str, str]:
    """Each alert's name and the text of its rule, from alerts.yml."""
    parts = re.split(r"^      - alert: ", text, flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0].strip(): part for part in parts}


def test_alert_rules_and_scrape_configs_pass_promtool() -> None:
    assert "SUCCESS: 13 rules found" in _promtool("check", "rules", "alerts.yml")
    for config in ("prometheus.yml", "prometheus-site.yml"):
        assert "is valid prometheus config file syntax" in _promtool("check", "config", config)


def test_alert_rules_unit_tests_pass() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml")


def test_every_alert_is_unit_tested_firing_and_has_a_runbook() -> None:
    alerts = _alert_blocks(ALERTS.read_text())
    tests = (PROM_DIR / "alerts_test.yml").read_text()
    operations = OPERATIONS.read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in operations.splitlines()
        if line.startswith("#")
    }
    assert len(alerts) == 13
    for name, rule in alerts.items():
        # a firing expectation: the alert name followed by a non-empty exp_alerts list
        firing = re.search(
            rf"alertname: {name}\n\s+exp_alerts:\n\s+- exp_labels", tests, flags=re.MULTILINE
        )
        assert firing, f"{name} is never expected to fire in alerts_test.yml"
        for annotation in ("summary:", "description:", "runbook:"):
            assert annotation in rule, (name, annotation)
        anchor = re.search(r'runbook: "docs/OPERATIONS.md#([a-z0-9-]+)"', rule)
        assert anchor, name
        assert anchor.group(1) in headings, f"{name}: no section #{anchor.group(1)}"


# ------------------------------------------------------------------ a live Prometheus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def values(self, expr: str) -> dict[str, float]:
        """instance -> value of an instant vector."""
        return {s["metric"].get("instance", ""): float(s["value"][1]) for s in self.query(expr)}


def _fast_rules(target: Path) -> None:
    """alerts.yml with the two alerts this test waits for made quick to fire."""
    text = ALERTS.read_text()
    for name in ("RadledgerNodeDown", "RadledgerValidatorMissingVotes"):
        block = _alert_blocks(text)[name]
        text = text.replace(block, re.sub(r"for: \w+", "for: 2s", block, count=1))
    target.write_text(text)


@pytest.fixture
def prometheus(network: Network, tmp_path: Path) -> Iterator[Prometheus]:
    assert PROMETHEUS, "prometheus is required (RADLEDGER_REQUIRE_PROMETHEUS=1)"
    _fast_rules(tmp_path / "alerts.yml")
    targets = ", ".join(f'"127.0.0.1:{ports(network.base, i)[2]}"' for i in range(4))
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        f"  - job_name: radledger\n    static_configs: [{{targets: [{targets}]}}]\n"
    )
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_for(ready, 30, "Prometheus to start")
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _instant(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would."""
    return (
        expr.replace("$node", ".*")
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
    )


def test_a_real_prometheus_scrapes_the_network_and_alerts_on_a_killed_node(
    network: Network, prometheus: Prometheus
) -> None:
    instances = [f"127.0.0.1:{ports(network.base, i)[2]}" for i in range(4)]
    wait_for(
        lambda: prometheus.values('up{job="radledger"}') == dict.fromkeys(instances, 1.0),
        30,
        "every node to be scraped",
    )
    first = prometheus.values("radledger_consensus_height")
    assert sorted(first) == sorted(instances)
    wait_for(
        lambda: all(
            prometheus.values("radledger_consensus_height").get(i, 0) > first[i] for i in instances
        ),
        30,
        "every node's height to rise in Prometheus",
    )
    for expr, expected in [
        ("radledger_consensus_validators", 4.0),
        ("radledger_consensus_quorum", 3.0),
        ("radledger_consensus_reachable_validators", 4.0),
        ("radledger_p2p_peers", 3.0),
        ("radledger_sync_target_height", 0.0),
    ]:
        assert prometheus.values(expr) == dict.fromkeys(instances, expected), expr
    for expr in (
        "process_resident_memory_bytes",
        "radledger_storage_disk_free_bytes",
        "rate(radledger_blocks_committed_total[30s])",
    ):
        got = prometheus.values(expr)
        assert sorted(got) == sorted(instances), expr
        assert min(got.values()) > 0, (expr, got)
    # every query of the Grafana dashboard is valid PromQL against real series
    queries = dashboard_queries(DASHBOARD)
    assert len(queries) >= 20
    for title, expr in queries:
        try:
            prometheus.query(_instant(expr))
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"dashboard panel {title!r}: {expr}: {exc.read()!r}") from exc
    assert prometheus.query('ALERTS{alertstate="firing"}') == []

    network.kill(3)
    victim = instances[3]

    def firing(alert: str) -> list[dict[str, str]]:
        return [
            s["metric"]
            for s in prometheus.query(f'ALERTS{{alertname="{alert}", alertstate="firing"}}')
        ]

    wait_for(lambda: bool(firing("RadledgerNodeDown")), 30, "RadledgerNodeDown to fire")
    assert [a["instance"] for a in firing("RadledgerNodeDown")] == [victim]
    # the three others keep committing and see node3 miss its votes
    wait_for(
        lambda: bool(firing("RadledgerValidatorMissingVotes")),
        90,
        "RadledgerValidatorMissingVotes to fire",
    )
    assert [a["validator"] for a in firing("RadledgerValidatorMissingVotes")] == ["node3"]
    missed = prometheus.values('radledger_consensus_missed_votes_total{validator="node3"}')
    assert sorted(missed) == sorted(instances[:3])
    assert min(missed.values()) > 0
    assert firing("RadledgerPeersBelowQuorum") == []  # 3 of 4 is still a quorum
