"""A failure the node cannot work around halts consensus visibly, never silently.

Found by the disk-full fault scenario (tests/faults/test_disk_faults.py): a
prepared certificate that could not be written raised out of the worker task,
which died while the process, its RPC and its health check went on as if the
node were voting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from consensus.events import PruneSafety, WorkPending
from node.daemon import load_home, open_data
from node.runtime import FatalError, NodeRuntime
from node.testnet import create_testnet
from p2p import PeerConfig
from storage import StorageError


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeRuntime]:
    network = create_testnet(tmp_path / "net", 4, base_port=47100)
    home = load_home(network.nodes[0].home)
    store = open_data(home)
    yield NodeRuntime(
        genesis=home.genesis,
        validator_key=home.validator_key,
        store=store,
        peer_config=PeerConfig.from_genesis(home.genesis, home.node_key, listen_port=0),
    )
    store.close()


def _failing(path: str) -> Callable[..., Any]:
    def fail(*_: object, **__: object) -> None:
        raise StorageError(path, "I/O error: No space left on device", "free some space")

    return fail


def test_a_safety_write_that_fails_is_a_fatal_error(
    node: NodeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.store.safety, "prune_below", _failing(node.store.path))
    with pytest.raises(FatalError, match="cannot prune the safety record"):
        node._execute(PruneSafety(below_height=1))


async def test_any_unexpected_error_in_the_worker_halts_consensus(
    node: NodeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> list[object]:
        raise RuntimeError("a defect")

    monkeypatch.setattr(node.replica, "step", broken)
    worker = asyncio.get_running_loop().create_task(node._run())
    node.submit(WorkPending(True))
    await asyncio.wait_for(worker, 5)  # the worker ends instead of dying silently
    assert node.fatal is not None
    assert "internal error: RuntimeError: a defect" in str(node.fatal)
