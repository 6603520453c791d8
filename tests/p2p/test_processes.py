"""Real OS processes talking over 127.0.0.1: a full mesh, a crash, a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.p2p.helpers import free_ports

ROOT = Path(__file__).resolve().parents[2]


class Proc:
    """One ``tests.p2p.peer_process`` child and the events it printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, index: int, ports: list[int]) -> Proc:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.p2p.peer_process",
            str(index),
            *map(str, ports),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.events.append(json.loads(line))

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    def count(self, event: str, **fields: Any) -> int:
        return sum(
            1
            for e in self.events
            if e["event"] == event and all(e.get(k) == v for k, v in fields.items())
        )

    async def wait_for(
        self, event: str, n: int = 1, timeout_s: float = 20.0, **fields: Any
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count(event, **fields) < n:
            if time.monotonic() > deadline or self.process.returncode is not None:
                raise AssertionError(f"no {n} x {event} {fields}; got {self.events}")
            await asyncio.sleep(0.02)

    async def quit(self) -> int:
        await self.send("quit")
        code = await asyncio.wait_for(self.process.wait(), 10)
        await self._reader
        return code

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)


@pytest.mark.parametrize("n", [2, 4])
async def test_processes_mesh_crash_and_reconnect(n: int) -> None:
    ports = free_ports(n)
    procs = [await Proc.start(i, ports) for i in range(n)]
    try:
        for proc in procs:
            await proc.wait_for("up", n - 1)
        # Every node's vote reaches every other node; a transaction floods.
        for i, proc in enumerate(procs):
            await proc.send(f"vote {i + 1}")
        for i, proc in enumerate(procs):
            for j in range(n):
                if j != i:
                    await proc.wait_for("consensus", sender=j, height=j + 1)
        await procs[-1].send("tx 7")
        for proc in procs[:-1]:
            await proc.wait_for("tx", nonce=7)

        # Crash the last node (no goodbye), then start it again on the same port.
        procs[-1].kill()
        await procs[-1].process.wait()
        for proc in procs[:-1]:
            await proc.wait_for("down", peer=n - 1)
        procs[-1] = await Proc.start(n - 1, ports)
        await procs[-1].wait_for("up", n - 1)
        for proc in procs[:-1]:
            await proc.wait_for("up", 2, peer=n - 1)

        await procs[0].send("vote 42")
        await procs[-1].wait_for("consensus", sender=0, height=42)
        await procs[-1].send("stats")
        await procs[-1].wait_for("stats")
        stats = next(e for e in procs[-1].events if e["event"] == "stats")
        assert stats["connected"] == n - 1
        assert stats["refused"] == {}
        for proc in procs:
            assert await proc.quit() == 0
            assert proc.count("stopped") == 1
    finally:
        for proc in procs:
            proc.kill()
