"""Crash consistency: SIGKILL a committing process at random moments, then audit the store.

Each iteration starts ``tests/storage/crash_child.py`` on the store, lets it commit blocks
(it prints each height only after ``commit_block`` returned, i.e. after the fsynced batch),
kills it with SIGKILL after a random delay, reopens the store and requires that

* ``check_consistency()`` passes (no torn block, index, write set or height pointer);
* the latest height is at least the last height the child acknowledged, and never
  lower than after the previous kill;
* the latest block, its certificate, its transaction index entries, its state writes and
  the COMMIT vote recorded before it are all present and exactly as the child built them.

Sometimes the kill comes before the first acknowledgement, during start-up or LevelDB's
log recovery. The run is seeded: the seed is printed, and ``RADLEDGER_SEED=<seed>`` replays
the same sequence of delays (the kill points themselves depend on the OS scheduler). The
store is replaced every ``KILLS_PER_STORE`` kills so the audits stay short.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from storage import LevelDBStore, open_store
from tests.storage.crash_child import (
    CHAIN_ID,
    COMMIT_PHASE,
    GENESIS_HASH,
    certificate_for,
    txs_for,
    writes_for,
)

ROOT: Final = Path(__file__).resolve().parents[2]
KILLS: Final = 50
KILLS_PER_STORE: Final = 10
EARLY_KILL_CHANCE: Final = 0.2
#: Delay between the first acknowledged commit and the kill, in seconds.
KILL_DELAY_S: Final = (0.05, 0.4)
#: Delay between starting the child and an early kill, in seconds.
EARLY_KILL_DELAY_S: Final = (0.0, 0.15)
READ_TIMEOUT_S: Final = 30.0


class LineReader:
    """Lines from a child's unbuffered stdout, with a timeout (a hung child fails the test)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self._fd = process.stdout.fileno()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self._buffer = b""
        self.eof = False

    def read_line(self, timeout_s: float) -> str | None:
        """The next complete line, or ``None`` at end of file."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise TimeoutError(f"no output from the child within {timeout_s} s")
            chunk = os.read(self._fd, 65536)
            self.eof = not chunk
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def rest(self) -> list[str]:
        """All remaining complete lines, up to end of file (call after the child is dead)."""
        lines = []
        while (line := self.read_line(READ_TIMEOUT_S)) is not None:
            lines.append(line)
        return lines

    def close(self) -> None:
        self._selector.close()


def _acked_heights(lines: list[str]) -> list[int]:
    return [int(line) for line in lines if not line.startswith("ready")]


def _check_latest_block(store: LevelDBStore, height: int) -> None:
    block = store.block(height)
    assert block is not None
    assert list(block.txs) == txs_for(height)
    cert = store.certificate(height)
    assert cert == certificate_for(block)
    for index, tx in enumerate(block.txs):
        assert store.tx_location(tx.hash) == (height, index)
        assert store.tx(tx.hash) == tx
    writes = writes_for(height)
    assert store.write_set(height) == dict(sorted(writes.items()))
    for key, value in writes.items():
        assert store.get(key) == value
    vote = store.safety.get(height, 0, COMMIT_PHASE)
    assert vote is not None
    assert vote.digest == block.hash


def _stderr(child: subprocess.Popen[bytes]) -> bytes:
    """What a dead child wrote to stderr (its traceback, if it failed)."""
    if child.poll() is None:
        child.kill()
        child.wait()
    return child.stderr.read() if child.stderr is not None else b""


def _run_child(path: Path, rng: random.Random) -> tuple[list[int], bool]:
    """Start the child, kill it at a random moment; return (acknowledged heights, early?)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_child", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    reader = LineReader(child)
    lines: list[str] = []
    early = rng.random() < EARLY_KILL_CHANCE
    try:
        if early:
            time.sleep(rng.uniform(*EARLY_KILL_DELAY_S))
        else:
            while not _acked_heights(lines):
                line = reader.read_line(READ_TIMEOUT_S)
                if line is None:
                    raise AssertionError(f"child exited early: {_stderr(child)!r}")
                lines.append(line)
            time.sleep(rng.uniform(*KILL_DELAY_S))
        child.send_signal(signal.SIGKILL)
        returncode = child.wait(timeout=READ_TIMEOUT_S)
        lines.extend(reader.rest())
        assert returncode == -signal.SIGKILL, f"child died by itself: {_stderr(child)!r}"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        reader.close()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    heights = _acked_heights(lines)
    assert heights == sorted(heights)
    return heights, early


def test_sigkill_never_loses_an_acknowledged_block(tmp_path: Path) -> None:
    seed = int(os.environ.get("RADLEDGER_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash test: seed={seed} (replay with RADLEDGER_SEED={seed})")
    rng = random.Random(seed)
    floor = 0
    path = tmp_path
    mid_run_kills = 0
    for kill in range(KILLS):
        if kill % KILLS_PER_STORE == 0:
            path = tmp_path / f"store-{kill // KILLS_PER_STORE}"
            open_store(path, chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, create=True).close()
            floor = 0
        acked, early = _run_child(path, rng)
        acknowledged = max(acked, default=0)
        context = f"seed={seed}, kill {kill}, acknowledged {acknowledged}, previous {floor}"
        with open_store(path, chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH) as store:
            latest = store.check_consistency()
            assert latest >= acknowledged, context
            assert latest >= floor, context
            if latest:
                _check_latest_block(store, latest)
        mid_run_kills += not early
        floor = latest
    assert mid_run_kills >= KILLS // 2
