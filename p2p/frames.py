"""Plaintext framing inside one encrypted websocket frame.

A frame's plaintext is a batch of one or more messages, each::

    kind (1 byte) || length (4 bytes, big-endian) || payload (length bytes)

Small messages are batched into one frame (one AEAD operation, one websocket
message) to amortise per-frame costs; a large message travels alone. Each
kind has its own size limit, and the whole plaintext has one too (the
websocket message limit, ``p2p.config.Limits.max_frame_bytes``); anything
else (unknown kind, oversized or truncated item, empty batch) is a
:class:`FrameError`, and the peer that sent it is penalised.

The payloads are canonical encodings of ledger objects: ``CONSENSUS`` a
``ledger.messages`` message, ``TX`` a transaction. Decoding and validating
them is the receiving side's next step (see ``p2p.network``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Final

from ledger.types import MAX_BLOCK_BYTES, MAX_TX_BYTES

_HEADER_BYTES: Final = 5


class Kind(IntEnum):
    """What a framed payload is. Never renumber."""

    CONSENSUS = 1  # votes, proposals, view changes, checkpoints (small but urgent)
    TX = 2  # transaction gossip
    SYNC = 3  # block requests and responses (large, not urgent)


#: Default per-kind payload limits, in bytes.
DEFAULT_MAX_BYTES: Final[Mapping[Kind, int]] = {
    Kind.CONSENSUS: 2 * MAX_BLOCK_BYTES,  # a proposal or NEW-VIEW carries a block
    Kind.TX: MAX_TX_BYTES,
    Kind.SYNC: 2 * MAX_BLOCK_BYTES,
}


class FrameError(Exception):
    """A frame's plaintext is not a well-formed batch."""


def encode_batch(items: Iterable[tuple[Kind, bytes]]) -> bytes:
    parts: list[bytes] = []
    for kind, payload in items:
        parts.append(bytes((int(kind),)))
        parts.append(len(payload).to_bytes(4, "big"))
        parts.append(payload)
    if not parts:
        raise FrameError("a frame carries at least one message")
    return b"".join(parts)


def decode_batch(
    data: bytes, max_bytes: Mapping[Kind, int] = DEFAULT_MAX_BYTES
) -> list[tuple[Kind, bytes]]:
    items: list[tuple[Kind, bytes]] = []
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        if len(data) - pos < _HEADER_BYTES:
            raise FrameError("truncated message header")
        try:
            kind = Kind(data[pos])
        except ValueError:
            raise FrameError(f"unknown message kind {data[pos]}") from None
        length = int.from_bytes(view[pos + 1 : pos + _HEADER_BYTES], "big")
        if length > max_bytes[kind]:
            raise FrameError(f"{kind.name} message of {length} bytes exceeds {max_bytes[kind]}")
        start = pos + _HEADER_BYTES
        if start + length > len(data):
            raise FrameError("message runs past the end of the frame")
        items.append((kind, bytes(view[start : start + length])))
        pos = start + length
    if not items:
        raise FrameError("empty frame")
    return items
