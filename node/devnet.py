"""``radledger devnet``: a local network of separate node processes, in the foreground.

Creates the network under ``--home`` on first use (``radledger testnet``),
starts one ``radledger run`` process per validator (each logging to
``<home>/nodeN/node.log``), prints their RPC and metrics URLs and a line of
heights every few seconds, and on Ctrl-C (or SIGTERM) stops them all with
SIGTERM, escalating to SIGKILL only for a process that does not exit in time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Final

import click

from node.story import StoryError, run_story
from node.testnet import GENESIS_FILE, GeneratedNode, create_testnet, ports

STOP_GRACE_S: Final = 10.0
REPORT_EVERY_S: Final = 3.0
STORY_WAIT_S: Final = 60.0


def _node_homes(home: Path) -> list[Path]:
    return sorted(
        (p for p in home.iterdir() if p.is_dir() and (p / "config.toml").exists()),
        key=lambda p: int(p.name.removeprefix("node")) if p.name[4:].isdigit() else 0,
    )


def _height(rpc_port: int) -> str:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{rpc_port}/v1/status", timeout=1
        ) as response:
            status = json.load(response)
    except (OSError, urllib.error.URLError, ValueError):
        return "-"
    view = f" v{status['view']}" if status.get("view") else ""
    return f"{status['height']}{view}"


def _wait_for_blocks(rpc_ports: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        heights = [_height(port) for port in rpc_ports]
        if all(h != "-" and int(h.split()[0]) >= 1 for h in heights):
            return True
        time.sleep(0.5)
    return False


def _tell_story(home: Path, rpc_ports: list[int]) -> None:
    if not _wait_for_blocks(rpc_ports, STORY_WAIT_S):
        click.echo("the network did not start committing blocks; skipping the demonstration")
        return
    click.echo("The network is up. A demonstration of what it is for:")
    try:
        run_story(home, [f"http://127.0.0.1:{port}" for port in rpc_ports], click.echo)
    except (StoryError, OSError) as exc:
        click.echo(f"the demonstration stopped: {exc} (the network keeps running)", err=True)
        return
    click.echo("The network keeps running; heights follow. Ctrl-C stops it.")


def run_devnet(home: Path, validators: int, base_port: int, story: bool = True) -> int:
    if not (home / GENESIS_FILE).exists():
        network = create_testnet(home, validators, base_port=base_port)
        nodes: list[GeneratedNode] = list(network.nodes)
        for line in network.summary():
            click.echo(line)
        homes = [node.home for node in nodes]
    else:
        homes = _node_homes(home)
        click.echo(f"reusing the network in {home} ({len(homes)} nodes)")
    rpc_ports = [ports(base_port, i)[1] for i in range(len(homes))]
    processes: list[subprocess.Popen[bytes]] = []
    for node_home in homes:
        log = (node_home / "node.log").open("ab")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "node", "run", "--home", str(node_home)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    for i, (node_home, port) in enumerate(zip(homes, rpc_ports, strict=True)):
        click.echo(
            f"node{i}: rpc http://127.0.0.1:{port}/v1/status  "
            f"metrics http://127.0.0.1:{port + 1}/metrics  log {node_home / 'node.log'}"
        )
    click.echo("Ctrl-C stops the network.")

    def request_stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds whatever runs (the story, a sleep) to the stop

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    try:
        if story:
            _tell_story(home, rpc_ports)
        while True:
            time.sleep(REPORT_EVERY_S)
            dead = [i for i, p in enumerate(processes) if p.poll() is not None]
            if dead:
                click.echo(
                    f"node{dead[0]} exited (see its node.log); stopping the network", err=True
                )
                exit_code = 1
                break
            heights = "  ".join(f"node{i} {_height(port)}" for i, port in enumerate(rpc_ports))
            click.echo(f"heights: {heights}")
    except KeyboardInterrupt:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping: a second Ctrl-C must not cut it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    click.echo("network stopped")
    return exit_code
