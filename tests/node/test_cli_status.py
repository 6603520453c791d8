"""``radledger status`` and its live network view (``--watch``)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from rich.console import Console

from node.cli import cli
from node.cli_status import NodeView, render
from node.testnet import ports
from tests.node.test_network_processes import Network, network, wait_for

__all__ = ["network"]

KEYS = {f"{i:02x}" * 32: f"node{i}" for i in range(4)}


def _view(i: int, height: int, **consensus: object) -> NodeView:
    key = f"{i:02x}" * 32
    status = {
        "height": height,
        "view": 2,
        "primary": "01" * 32,
        "syncing": False,
        "catching_up_to": 0,
        "peers": 3,
        "mempool_txs": 5,
        "validator": key,
    }
    base: dict[str, object] = {
        "phase": "proposed",
        "primary": "node1",
        "proposal": "ab" * 32,
        "prepared": ["node0", "node1"],
        "not_prepared": ["node2", "node3"],
        "committed": [],
        "not_committed": ["node0", "node1", "node2", "node3"],
    }
    base.update(consensus)
    return NodeView(f"http://127.0.0.1:{26601 + 10 * i}", status, base)


def _text(views: list[NodeView]) -> str:
    console = Console(record=True, width=200, force_terminal=False)
    console.print(render(views, KEYS, now=0))
    return console.export_text()


def test_render_shows_one_row_per_node_with_votes_and_problems() -> None:
    views = [
        _view(0, 120),
        _view(1, 120, phase="view-change", view_change_voters=["node1", "node2"]),
        _view(2, 100),  # 20 blocks behind
        NodeView("http://127.0.0.1:26631", error="Connection refused"),
    ]
    text = _text(views)
    lines = {line.split()[1]: line for line in text.splitlines() if line.split()[1:2]}
    assert "node0" in lines
    assert "P 2/4  C 0/4  (waiting: node0, node1, node2, node3)" in lines["node0"]
    assert "view-change" in lines["node1"]
    assert "view change: 2/4" in lines["node1"]
    assert "in sync" in lines["node2"]
    assert "unreachable" in text
    assert "node2: 20 blocks behind the highest node" in text
    assert "http://127.0.0.1:26631: Connection refused" in text


def test_render_of_a_node_between_rounds_and_one_catching_up() -> None:
    idle = _view(0, 7, phase="waiting", proposal=None)
    catching = _view(1, 3)
    catching.status.update(syncing=True, catching_up_to=7)
    text = _text([idle, catching])
    row = next(line for line in text.splitlines() if "node0" in line)
    assert " - " in row  # nobody owes a vote between rounds
    assert "catching up to 7" in text


def test_status_refuses_a_url_that_is_not_http() -> None:
    result = CliRunner().invoke(cli, ["status", "--rpc", "127.0.0.1:26601"])
    assert result.exit_code != 0
    assert "--rpc must be an http(s) URL" in result.output


def test_status_of_an_unreachable_node_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["status", "--rpc", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot read status" in result.output


def test_watch_a_real_network_then_one_node_goes_down(network: Network) -> None:
    rpcs = [f"http://127.0.0.1:{ports(network.base, i)[1]}" for i in range(4)]
    args = ["status", "--watch", "--iterations", "2", "--interval", "0.2"]
    for rpc in rpcs:
        args += ["--rpc", rpc]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for name in ("node0", "node1", "node2", "node3"):
        assert name in result.output
    assert "unreachable" not in result.output

    one = CliRunner().invoke(cli, ["status", "--rpc", rpcs[0]])
    assert one.exit_code == 0, one.output
    assert "chain    radledger-testnet" in one.output

    network.kill(3)
    wait_for(lambda: network.height(3) == -1, 10, "node3 to stop answering")
    lines = CliRunner().invoke(cli, [*args[:1], "--json", *args[1:]])
    assert lines.exit_code == 0, lines.output
    snapshots = [json.loads(line) for line in lines.output.splitlines()]
    assert len(snapshots) == 2
    last = snapshots[-1]["nodes"]
    assert [n["name"] for n in last[:3]] == ["node0", "node1", "node2"]
    assert all(n["status"]["height"] >= 1 for n in last[:3])
    assert last[3]["error"]
    assert last[3]["status"] is None
    once = CliRunner().invoke(cli, ["status", *args[6:]])  # every --rpc, no --watch
    assert once.exit_code == 1  # one node unreachable: a table, and a failing exit
    assert f"{rpcs[3]}: " in once.output
    assert "Ctrl-C" not in once.output
