"""``radledger status``: one node's state, or a live view of the whole network.

For operators without Grafana: ``radledger status --watch --rpc URL ...`` polls
every node's ``/v1/status`` and ``/v1/consensus`` and redraws one row per node
(height, view, phase, primary, votes for the current round, peers, mempool,
sync), marking a node that does not answer and a node behind the others.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from node.client import DEFAULT_RPC, RpcClient, RpcError

#: A node more than this many blocks below the highest one is shown as behind.
BEHIND_BLOCKS = 3


@dataclass(frozen=True, slots=True)
class NodeView:
    """What one node's RPC answered (or why it did not)."""

    url: str
    status: dict[str, Any] = field(default_factory=dict)
    consensus: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _get(rpc: str, path: str, timeout_s: float) -> dict[str, Any]:
    body = RpcClient(rpc, timeout_s=timeout_s).get(path)
    if not isinstance(body, dict):
        raise RpcError(0, "not_a_node", f"{rpc}{path} did not answer a JSON object")
    return body


def check_url(rpc: str) -> str:
    if not rpc.startswith(("http://", "https://")):
        raise click.ClickException(f"--rpc must be an http(s) URL, got {rpc!r}")
    return rpc.rstrip("/")


def fetch(rpc: str, timeout_s: float = 2.0) -> NodeView:
    try:
        status = _get(rpc, "/v1/status", timeout_s)
        consensus = _get(rpc, "/v1/consensus", timeout_s)
    except RpcError as exc:
        return NodeView(rpc, error=exc.message)
    return NodeView(rpc, status, consensus)


def _names(views: list[NodeView], timeout_s: float = 2.0) -> dict[str, str]:
    """Validator key (hex) -> name, from the first node that answers."""
    for view in views:
        if view.error is None:
            try:
                body = _get(view.url, "/v1/validators", timeout_s)
                return {v["validator_key"]: v["name"] for v in body["validators"]}
            except (RpcError, KeyError, TypeError):
                continue
    return {}


def _votes(consensus: dict[str, Any]) -> str:
    prepared = consensus.get("prepared", [])
    committed = consensus.get("committed", [])
    everyone = len(prepared) + len(consensus.get("not_prepared", []))
    if consensus.get("phase") == "view-change":
        return f"view change: {len(consensus.get('view_change_voters', []))}/{everyone}"
    if consensus.get("proposal") is None:
        return "-"
    missing = consensus.get("not_committed", []) if prepared else consensus.get("not_prepared")
    text = f"P {len(prepared)}/{everyone}  C {len(committed)}/{everyone}"
    return f"{text}  (waiting: {', '.join(missing)})" if missing else text


def render(
    views: list[NodeView], names: dict[str, str], now: float | None = None, *, live: bool = True
) -> Group:
    """The table ``--watch`` redraws: one row per node, problems in colour."""
    table = Table(title="radledger network", title_justify="left", expand=False)
    for column in ("node", "height", "view", "phase", "primary", "votes (this round)"):
        table.add_column(column, justify="right" if column in ("height", "view") else "left")
    for column in ("peers", "mempool", "sync"):
        table.add_column(column, justify="right" if column != "sync" else "left")
    top = max((v.status.get("height", 0) for v in views if v.error is None), default=0)
    problems = []
    for view in views:
        if view.error is not None:
            table.add_row(Text(view.url, style="bold red"), Text("unreachable", style="red"))
            problems.append(f"{view.url}: {view.error}")
            continue
        s, c = view.status, view.consensus
        name = names.get(s.get("validator", ""), view.url)
        height = int(s.get("height", 0))
        behind = top - height > BEHIND_BLOCKS
        syncing = bool(s.get("syncing"))
        phase = str(c.get("phase", "?"))
        table.add_row(
            Text(name, style="bold"),
            Text(str(height), style="yellow" if behind else ""),
            str(s.get("view", "?")),
            Text(phase, style="yellow" if phase == "view-change" else ""),
            str(c.get("primary", s.get("primary", "?")))[:16],
            _votes(c),
            str(s.get("peers", "?")),
            str(s.get("mempool_txs", "?")),
            Text(
                f"catching up to {s.get('catching_up_to')}" if syncing else "in sync",
                style="yellow" if syncing else "green",
            ),
        )
        if behind:
            problems.append(f"{name}: {top - height} blocks behind the highest node")
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    footer = Text(f"updated {stamp}" + ("; Ctrl-C stops" if live else ""), style="dim")
    lines = [Text(p, style="red") for p in problems]
    return Group(table, *lines, footer)


def snapshot_json(views: list[NodeView], names: dict[str, str]) -> str:
    return json.dumps(
        {
            "time": round(time.time(), 3),
            "nodes": [
                {
                    "rpc": v.url,
                    "name": names.get(v.status.get("validator", "")),
                    "error": v.error,
                    "status": v.status or None,
                    "consensus": v.consensus or None,
                }
                for v in views
            ],
        },
        sort_keys=True,
    )


def print_one(view: NodeView) -> None:
    """The single-node summary of plain ``radledger status``."""
    if view.error is not None:
        raise click.ClickException(f"{view.url}: cannot read status: {view.error}")
    s = view.status
    sync = f"catching up to {s['catching_up_to']}" if s["syncing"] else "in sync"
    current = f"{s['view']} (view change under way)" if s["in_view_change"] else str(s["view"])
    click.echo(f"chain    {s['chain_id']}")
    click.echo(f"height   {s['height']}  ({s['latest_block_hash'] or '-'})")
    click.echo(f"view     {current}, primary {s['primary'][:16]}")
    click.echo(f"peers    {s['peers']}")
    click.echo(f"sync     {sync}")
    click.echo(f"mempool  {s['mempool_txs']} txs")


def run_watch(rpcs: list[str], *, interval_s: float, iterations: int | None, as_json: bool) -> None:
    """Redraw (or print JSON lines) every ``interval_s`` until Ctrl-C or ``iterations``."""
    names: dict[str, str] = {}
    console = Console()
    done = 0
    if as_json:
        while iterations is None or done < iterations:
            views = [fetch(rpc) for rpc in rpcs]
            names = names or _names(views)
            click.echo(snapshot_json(views, names))
            done += 1
            if iterations is None or done < iterations:
                time.sleep(interval_s)
        return
    with Live(console=console, auto_refresh=False) as live:
        while iterations is None or done < iterations:
            views = [fetch(rpc) for rpc in rpcs]
            names = names or _names(views)
            live.update(render(views, names), refresh=True)
            done += 1
            if iterations is None or done < iterations:
                time.sleep(interval_s)


@click.command()
@click.option(
    "--rpc",
    "rpcs",
    multiple=True,
    default=(DEFAULT_RPC,),
    show_default=True,
    help="A node's RPC URL; repeat it to watch several nodes.",
)
@click.option("--watch", is_flag=True, help="A live view of every --rpc node, redrawn.")
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between redraws with --watch.",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=None,
    help="With --watch: stop after this many redraws (default: until Ctrl-C).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON (one line per redraw with --watch).")
def status(
    rpcs: tuple[str, ...], watch: bool, interval_s: float, iterations: int | None, as_json: bool
) -> None:
    """Height, view, primary, votes, peers, sync state and mempool of nodes."""
    urls = [check_url(rpc) for rpc in rpcs]
    if watch:
        with contextlib.suppress(KeyboardInterrupt):
            run_watch(urls, interval_s=interval_s, iterations=iterations, as_json=as_json)
        return
    views = [fetch(url, timeout_s=5) for url in urls]
    if as_json:
        click.echo(snapshot_json(views, _names(views)))
        if any(v.error for v in views):
            raise SystemExit(1)
        return
    if len(views) == 1:
        print_one(views[0])
        return
    Console().print(render(views, _names(views), live=False))
    if any(v.error for v in views):
        raise SystemExit(1)


__all__ = ["NodeView", "fetch", "render", "run_watch", "snapshot_json", "status"]
