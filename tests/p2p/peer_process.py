"""A peer-network node in its own OS process, driven over stdin/stdout (for tests).

Run: ``python -m tests.p2p.peer_process INDEX PORT [PORT ...]`` from the
repository root. The node is member INDEX of a test network whose members
listen on the given ports on 127.0.0.1 (keys are derived from the index as in
``tests.p2p.helpers.make_members``) and dials every other member.

Commands on stdin, one per line: ``vote HEIGHT`` (broadcast a vote), ``tx
NONCE`` (gossip a transaction), ``stats`` and ``quit``. Events on stdout, one
JSON object per line: ``ready``, ``up``, ``down``, ``consensus``, ``tx``,
``stats``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from ledger.keys import SigningKey
from ledger.types import Tx, Vote
from p2p.network import ConsensusMessage, PeerInfo, PeerNetwork, SyncMessage
from tests.p2p.helpers import Member, config_for, tx, vote


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Printer:
    """A PeerHandler that reports every delivery on stdout."""

    def __init__(self, names: dict[bytes, int]) -> None:
        self.names = names

    def on_consensus(self, sender: bytes, message: ConsensusMessage) -> None:
        height = message.height if isinstance(message, Vote) else None
        emit("consensus", sender=self.names.get(sender), height=height)

    def on_tx(self, sender: bytes, transaction: Tx) -> None:
        emit("tx", sender=self.names.get(sender), nonce=transaction.nonce)

    def on_sync(self, sender: PeerInfo, message: SyncMessage) -> None:
        emit("sync", sender=self.names.get(sender.node_key), type=type(message).__name__)

    def on_peer_connected(self, peer: PeerInfo) -> None:
        emit("up", peer=self.names.get(peer.node_key))

    def on_peer_disconnected(self, peer: PeerInfo) -> None:
        emit("down", peer=self.names.get(peer.node_key))


async def main(index: int, ports: list[int]) -> None:
    members = [
        Member(SigningKey(bytes([i + 1]) * 32), SigningKey(bytes([i + 101]) * 32), port)
        for i, port in enumerate(ports)
    ]
    names = {m.node.public_key: i for i, m in enumerate(members)}
    names.update({m.validator.public_key: i for i, m in enumerate(members)})
    net = PeerNetwork(config_for(members, index), Printer(names))
    await net.start()
    emit("ready", index=index, port=net.listen_port)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := (await reader.readline()).decode().split():
            match line:
                case ["vote", height]:
                    emit("sent", count=net.broadcast_consensus(vote(members[index], int(height))))
                case ["tx", nonce]:
                    emit("sent", count=net.gossip_tx(tx(int(nonce))))
                case ["stats"]:
                    stats = net.stats()
                    emit(
                        "stats",
                        connected=stats.peers_connected,
                        received=dict(stats.messages_received),
                        refused=dict(stats.handshake_failures),
                    )
                case ["quit"]:
                    break
                case _:
                    emit("error", line=line)
    finally:
        await net.stop()
    emit("stopped")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
