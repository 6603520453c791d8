"""One pysyncobj (Raft) node for bench.throughput's side-by-side ratio.

Started 4 times (separate processes, 127.0.0.1). Each node replicates the same
payloads the radledger run used. The node that wins the election drives the
load from inside the process (as pysyncobj's own benchmarks do): it keeps a
window of replicated calls in flight and counts the committed ones (the
callback fires once a majority has the entry) for ``--duration`` seconds, then
writes ``{"committed": n, "seconds": s}`` to ``--out``. No signatures, no
fsync: that is what this baseline is.

Usage: python -m bench.raft_peer --self HOST:PORT --partner HOST:PORT ...
       --payload-bytes B --duration S --out FILE
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated

WINDOW = 2000


class Log(SyncObj):  # type: ignore[misc]
    def __init__(self, me: str, partners: list[str]) -> None:
        super().__init__(me, partners, SyncObjConf(appendEntriesUseBatch=True))
        self.entries = 0
        self.bytes = 0

    @replicated  # type: ignore[untyped-decorator]
    def append(self, payload: bytes) -> int:
        self.entries += 1
        self.bytes += len(payload)
        return self.entries


def drive(node: Log, payload: bytes, duration: float) -> dict[str, Any]:
    committed = 0
    in_flight = threading.Semaphore(WINDOW)
    lock = threading.Lock()

    def done(result: Any, error: Any) -> None:
        nonlocal committed
        if error == 0:  # FAIL_REASON.SUCCESS
            with lock:
                committed += 1
        in_flight.release()

    start = time.monotonic()
    while time.monotonic() - start < duration:
        if in_flight.acquire(timeout=0.1):
            node.append(payload, callback=done)
    seconds = time.monotonic() - start
    time.sleep(1.0)  # let the last window settle; counted only if inside the window
    return {"committed": committed, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self", dest="me", required=True)
    parser.add_argument("--partner", action="append", required=True)
    parser.add_argument("--payload-bytes", type=int, default=400)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--linger", type=float, default=30.0)
    args = parser.parse_args()
    node = Log(args.me, args.partner)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and node._getLeader() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    if node._isLeader():
        result = drive(node, b"x" * args.payload_bytes, args.duration)
        args.out.write_text(json.dumps(result))
    else:
        time.sleep(args.linger)  # serve the leader until the harness stops us
    node.destroy()


if __name__ == "__main__":
    main()
