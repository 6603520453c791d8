"""Human-readable, deterministic one-line descriptions of what happens in a run.

A transcript line looks like ``t=120ms v1 -> v2 PREPARE h=1 v=0 3f2a1b2c``: simulated time
since the start of the run, then what happened. Hashes are shown as their first 8 hex
digits. Nothing in a line depends on object identity, dict order of unhashed keys, or the
process's hash seed, so the digest of a transcript identifies a run bit for bit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import assert_never

from ledger.messages import (
    BlockRequest,
    BlockResponse,
    Checkpoint,
    Message,
    NewView,
    Proposal,
    Status,
    ViewChange,
)
from ledger.types import Vote

__all__ = ["Transcript", "describe", "short"]


def short(digest: bytes) -> str:
    """The first 8 hex digits of a hash."""
    return digest[:4].hex()


def _signer(names: Mapping[bytes, str], key: bytes, sender: bytes | None) -> str:
    if sender is not None and key == sender:
        return ""
    return f" by {names.get(key, short(key))}"


def describe(message: Message, names: Mapping[bytes, str], sender: bytes | None = None) -> str:
    """``PREPARE h=1 v=0 3f2a1b2c``-style summary; names the signer if it is not ``sender``."""
    match message:
        case Proposal(vote=vote, block=block):
            origin = "" if block.header.view == vote.view else f" (block v={block.header.view})"
            return (
                f"PRE-PREPARE h={vote.height} v={vote.view} {short(vote.block_hash)} "
                f"txs={len(block.txs)}{origin}{_signer(names, vote.validator, sender)}"
            )
        case Vote():
            return (
                f"{message.kind.name} h={message.height} v={message.view} "
                f"{short(message.block_hash)}{_signer(names, message.validator, sender)}"
            )
        case ViewChange():
            prepared = (
                "-"
                if message.prepared is None
                else f"h={message.prepared.height}@v{message.prepared.view}:"
                f"{short(message.prepared.block_hash)}"
            )
            return (
                f"VIEW-CHANGE to v={message.new_view} committed={message.committed_height} "
                f"prepared={prepared}{_signer(names, message.validator, sender)}"
            )
        case NewView():
            attached = message.block
            origin = (
                ""
                if attached is None or attached.header.view == message.view
                else f" (block v={attached.header.view})"
            )
            return (
                f"NEW-VIEW v={message.view} h={message.proposal.height} "
                f"{short(message.proposal.block_hash)} vcs={len(message.view_changes)}{origin}"
                f"{_signer(names, message.validator, sender)}"
            )
        case Checkpoint():
            return (
                f"CHECKPOINT h={message.height} {short(message.block_hash)}"
                f"{_signer(names, message.validator, sender)}"
            )
        case Status():
            return f"STATUS committed={message.committed_height}"
        case BlockRequest():
            return f"BLOCK-REQUEST from={message.from_height} count={message.count}"
        case BlockResponse():
            if not message.blocks:
                return "BLOCK-RESPONSE empty"
            return f"BLOCK-RESPONSE h={message.blocks[0].height}..{message.blocks[-1].height}"
        case _:
            assert_never(message)


class Transcript:
    """Lines of a run, hashed as they come; kept only when ``keep`` (golden tests, debugging)."""

    def __init__(self, *, keep: bool) -> None:
        self._keep = keep
        self._hash = hashlib.sha256()
        self.lines: list[str] = []
        self.count = 0

    def add(self, time_ms: int, text: str) -> None:
        line = f"t={time_ms}ms {text}"
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.count += 1
        if self._keep:
            self.lines.append(line)

    def digest(self) -> str:
        return self._hash.hexdigest()
