"""Consensus wire messages and their self-contained verification.

Defined here, in the shared model, so that the peer layer can decode and fully
verify a message (every signature, every nested certificate, every
attachment's hash) before the consensus core sees it, without importing
``consensus/``. ``verify(chain_id, validators)`` raises
:class:`SignatureError` or :class:`ValidationError` with a reason; what it
cannot check (whose turn it is to propose, whether a NEW-VIEW chose the right
block) needs consensus state and is checked by the replica.

On the wire every message is the canonical encoding of ``[type, body]``
(:func:`encode_message` / :func:`decode_message`).

* ``Proposal`` (PRE-PREPARE): the primary's PROPOSE vote plus the block.
* ``Vote`` (PREPARE / COMMIT): see ``ledger.types``.
* ``ViewChange``: a replica's request to move to ``new_view``, with proof of its
  latest committed height and its prepared certificate for the next height;
  the prepared block rides along unsigned (verified by hash) so the new
  primary can re-propose it.
* ``NewView``: 2f+1 view changes (without their blocks) and the new primary's
  PROPOSE vote for the block it chose, with that block attached.
* ``Checkpoint``: a validator's signature on (height, block hash, state root).
* ``Status``, ``BlockRequest``, ``BlockResponse``: catch-up; unsigned, because
  everything they carry is proven by commit certificates.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from ledger import codec
from ledger.errors import DecodeError, SignatureError, ValidationError
from ledger.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, verify
from ledger.schema import Array, Bytes, FieldSpec, Nested, Optional, Schema, Text, UInt
from ledger.types import (
    BLOCK_SCHEMA,
    CERT_SCHEMA,
    CHAIN_ID_PATTERN,
    HASH_BYTES,
    MAX_BLOCK_BYTES,
    MAX_VALIDATORS,
    PREPARED_CERT_SCHEMA,
    VOTE_SCHEMA,
    Block,
    CommitCertificate,
    PreparedCertificate,
    Tx,
    Vote,
    VoteKind,
    quorum_size,
    sha256,
)


class MessageDomain:
    """Signature domain tags of consensus messages (votes use ``Domain.VOTE``)."""

    VIEW_CHANGE: Final = b"radledger/view-change/v1"
    NEW_VIEW: Final = b"radledger/new-view/v1"
    CHECKPOINT: Final = b"radledger/checkpoint/v1"


#: Most blocks one BlockResponse may carry.
MAX_BLOCKS_PER_RESPONSE: Final = 64

_CHAIN = Text(64, CHAIN_ID_PATTERN)
_KEY = Bytes(size=PUBLIC_KEY_BYTES)
_SIG = Bytes(size=SIGNATURE_BYTES)
_HASH = Bytes(size=HASH_BYTES)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValidationError(message)


def _member(validator: bytes, validators: Sequence[bytes], what: str) -> None:
    if validator not in validators:
        raise SignatureError(f"{what}: {validator.hex()[:16]} is not a validator")


# --------------------------------------------------------------------------- proposal


@dataclass(frozen=True, slots=True)
class Proposal:
    """PRE-PREPARE: the primary's signed PROPOSE vote for ``block`` in ``vote.view``.

    ``vote.view`` may be later than ``block.header.view`` when a block prepared
    in an earlier view is re-proposed after a view change.
    """

    vote: Vote
    block: Block

    def __post_init__(self) -> None:
        _require(self.vote.kind == VoteKind.PROPOSE, "a proposal carries a PROPOSE vote")
        _require(self.vote.block_hash == self.block.hash, "proposal vote names another block")
        _require(self.vote.height == self.block.height, "proposal vote is for another height")
        _require(self.vote.chain_id == self.block.header.chain_id, "proposal for another chain")
        _require(self.vote.view >= self.block.header.view, "proposal view precedes the block's")

    @classmethod
    def create(cls, key: SigningKey, *, view: int, block: Block) -> Proposal:
        vote = Vote.create(
            key,
            chain_id=block.header.chain_id,
            kind=VoteKind.PROPOSE,
            height=block.height,
            view=view,
            block_hash=block.hash,
        )
        return cls(vote, block)

    @property
    def view(self) -> int:
        return self.vote.view

    @property
    def height(self) -> int:
        return self.vote.height

    @property
    def sender(self) -> bytes:
        return self.vote.validator

    def verify(self, chain_id: str, validators: Sequence[bytes]) -> None:
        _require(self.vote.chain_id == chain_id, f"proposal for chain {self.vote.chain_id!r}")
        _member(self.vote.validator, validators, "proposal")
        if not self.vote.verify_signature():
            raise SignatureError("proposal signature does not verify")


# --------------------------------------------------------------------------- view change


@dataclass(frozen=True, slots=True)
class ViewChange:
    """VIEW-CHANGE to ``new_view``.

    ``committed`` proves the sender's latest committed height (``None`` before
    block 1); ``prepared`` is its highest prepared certificate for the next
    height, if any; ``block`` is that prepared block (not signed; checked by
    hash), or ``None``.
    """

    chain_id: str
    new_view: int
    validator: bytes
    committed: CommitCertificate | None
    prepared: PreparedCertificate | None
    block: Block | None
    sig: bytes

    def __post_init__(self) -> None:
        _require(self.new_view >= 1, "a view change targets view 1 or later")
        _require(len(self.validator) == PUBLIC_KEY_BYTES, "validator must be 32 bytes")
        _require(len(self.sig) == SIGNATURE_BYTES, "sig must be 64 bytes")
        if self.prepared is not None:
            _require(
                self.prepared.height == self.committed_height + 1,
                "the prepared certificate must be for the height after the committed one",
            )
            _require(self.prepared.view < self.new_view, "prepared in a view not before new_view")
        if self.block is not None:
            _require(self.prepared is not None, "a block rides only with a prepared certificate")
            assert self.prepared is not None
            _require(self.block.hash == self.prepared.block_hash, "attached block is not prepared")

    @property
    def committed_height(self) -> int:
        return 0 if self.committed is None else self.committed.height

    @classmethod
    def create(
        cls,
        key: SigningKey,
        *,
        chain_id: str,
        new_view: int,
        committed: CommitCertificate | None,
        prepared: PreparedCertificate | None,
        block: Block | None,
    ) -> ViewChange:
        unsigned = cls(
            chain_id, new_view, key.public_key, committed, prepared, block, bytes(SIGNATURE_BYTES)
        )
        sig = key.sign(MessageDomain.VIEW_CHANGE, unsigned.unsigned_bytes())
        return dataclasses.replace(unsigned, sig=sig)

    def unsigned_bytes(self) -> bytes:
        return _VIEW_CHANGE_UNSIGNED.encode(self)

    @property
    def digest(self) -> bytes:
        """What the sender's safety record pins for its VIEW-CHANGE slot."""
        return sha256(self.unsigned_bytes())

    def without_block(self) -> ViewChange:
        return self if self.block is None else dataclasses.replace(self, block=None)

    def verify(self, chain_id: str, validators: Sequence[bytes]) -> None:
        _require(self.chain_id == chain_id, f"view change for chain {self.chain_id!r}")
        _member(self.validator, validators, "view change")
        if not verify(self.validator, MessageDomain.VIEW_CHANGE, self.unsigned_bytes(), self.sig):
            raise SignatureError("view change signature does not verify")
        if self.committed is not None:
            self.committed.verify(chain_id, validators)
        if self.prepared is not None:
            self.prepared.verify(chain_id, validators)


# --------------------------------------------------------------------------- new view


@dataclass(frozen=True, slots=True)
class NewView:
    """NEW-VIEW from the primary of ``view``: its proof and its first proposal."""

    chain_id: str
    view: int
    validator: bytes
    view_changes: tuple[ViewChange, ...]
    proposal: Vote
    block: Block | None
    sig: bytes

    def __post_init__(self) -> None:
        _require(all(vc.block is None for vc in self.view_changes), "view changes go bare")
        _require(all(vc.new_view == self.view for vc in self.view_changes), "mixed views")
        senders = [vc.validator for vc in self.view_changes]
        _require(len(set(senders)) == len(senders), "one view change per validator")
        _require(self.proposal.kind == VoteKind.PROPOSE, "NEW-VIEW carries a PROPOSE vote")
        _require(self.proposal.view == self.view, "NEW-VIEW proposal is for another view")
        _require(self.proposal.validator == self.validator, "NEW-VIEW proposal by another signer")
        if self.block is not None:
            _require(self.block.hash == self.proposal.block_hash, "attached block not proposed")
            _require(self.block.height == self.proposal.height, "attached block height differs")

    @classmethod
    def create(
        cls,
        key: SigningKey,
        *,
        chain_id: str,
        view: int,
        view_changes: Sequence[ViewChange],
        block: Block,
    ) -> NewView:
        proposal = Proposal.create(key, view=view, block=block).vote
        bare = tuple(
            sorted((vc.without_block() for vc in view_changes), key=lambda vc: vc.validator)
        )
        unsigned = cls(
            chain_id, view, key.public_key, bare, proposal, block, bytes(SIGNATURE_BYTES)
        )
        sig = key.sign(MessageDomain.NEW_VIEW, unsigned.unsigned_bytes())
        return dataclasses.replace(unsigned, sig=sig)

    def unsigned_bytes(self) -> bytes:
        return _NEW_VIEW_UNSIGNED.encode(self)

    @property
    def digest(self) -> bytes:
        return sha256(self.unsigned_bytes())

    def as_proposal(self) -> Proposal | None:
        """The PRE-PREPARE this NEW-VIEW carries, when its block is attached."""
        return None if self.block is None else Proposal(self.proposal, self.block)

    def verify(self, chain_id: str, validators: Sequence[bytes]) -> None:
        _require(self.chain_id == chain_id, f"NEW-VIEW for chain {self.chain_id!r}")
        _member(self.validator, validators, "NEW-VIEW")
        if not verify(self.validator, MessageDomain.NEW_VIEW, self.unsigned_bytes(), self.sig):
            raise SignatureError("NEW-VIEW signature does not verify")
        if not self.proposal.verify_signature():
            raise SignatureError("NEW-VIEW proposal signature does not verify")
        needed = quorum_size(len(set(validators)))
        if len(self.view_changes) < needed:
            raise SignatureError(
                f"NEW-VIEW has {len(self.view_changes)} view changes, needs {needed}"
            )
        for vc in self.view_changes:
            vc.verify(chain_id, validators)


# --------------------------------------------------------------------------- checkpoint


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A validator's signature on the chain state at a checkpoint height."""

    chain_id: str
    height: int
    block_hash: bytes
    state_root: bytes
    validator: bytes
    sig: bytes

    def __post_init__(self) -> None:
        _require(self.height >= 1, "checkpoint height starts at 1")
        _require(len(self.block_hash) == HASH_BYTES, "block_hash must be 32 bytes")
        _require(len(self.state_root) == HASH_BYTES, "state_root must be 32 bytes")
        _require(len(self.validator) == PUBLIC_KEY_BYTES, "validator must be 32 bytes")
        _require(len(self.sig) == SIGNATURE_BYTES, "sig must be 64 bytes")

    @classmethod
    def create(
        cls, key: SigningKey, *, chain_id: str, height: int, block_hash: bytes, state_root: bytes
    ) -> Checkpoint:
        unsigned = cls(
            chain_id, height, block_hash, state_root, key.public_key, bytes(SIGNATURE_BYTES)
        )
        sig = key.sign(MessageDomain.CHECKPOINT, unsigned.unsigned_bytes())
        return dataclasses.replace(unsigned, sig=sig)

    def unsigned_bytes(self) -> bytes:
        return _CHECKPOINT_UNSIGNED.encode(self)

    @property
    def digest(self) -> bytes:
        return sha256(self.unsigned_bytes())

    def verify(self, chain_id: str, validators: Sequence[bytes]) -> None:
        _require(self.chain_id == chain_id, f"checkpoint for chain {self.chain_id!r}")
        _member(self.validator, validators, "checkpoint")
        if not verify(self.validator, MessageDomain.CHECKPOINT, self.unsigned_bytes(), self.sig):
            raise SignatureError("checkpoint signature does not verify")


# --------------------------------------------------------------------------- catch-up


@dataclass(frozen=True, slots=True)
class Status:
    """ "I have committed up to ``committed.height``" with the certificate as proof."""

    chain_id: str
    committed: CommitCertificate | None

    @property
    def committed_height(self) -> int:
        return 0 if self.committed is None else self.committed.height

    def verify(self, chain_id: str, validators: Sequence[bytes]) -> None:
        _require(self.chain_id == chain_id, f"status for chain {self.chain_id!r}")
        if self.committed is not None:
            self.committed.verify(chain_id, validators)


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """Ask a peer for committed blocks ``from_height`` .. ``from_height + count - 1``."""

    chain_id: str
    from_height: int
    count: int

    def __post_init__(self) -> None:
        _require(self.from_height >= 1, "blocks start at height 1")
        _require(1 <= self.count <= MAX_BLOCKS_PER_RESPONSE, "count out of range")

    def verify(self, chain_id: str, validators: Sequence[bytes]) -> None:
        _require(self.chain_id == chain_id, f"request for chain {self.chain_id!r}")


@dataclass(frozen=True, slots=True)
class BlockResponse:
    """Consecutive committed blocks, each with its commit certificate."""

    chain_id: str
    blocks: tuple[Block, ...]
    certificates: tuple[CommitCertificate, ...]

    def __post_init__(self) -> None:
        _require(len(self.blocks) == len(self.certificates), "one certificate per block")
        _require(len(self.blocks) <= MAX_BLOCKS_PER_RESPONSE, "too many blocks")
        heights = [b.height for b in self.blocks]
        _require(
            all(b == a + 1 for a, b in itertools.pairwise(heights)),
            "blocks must be consecutive",
        )
        for block, cert in zip(self.blocks, self.certificates, strict=True):
            _require(
                (cert.height, cert.block_hash) == (block.height, block.hash),
                f"certificate of block {block.height} names another block",
            )

    def verify(self, chain_id: str, validators: Sequence[bytes]) -> None:
        _require(self.chain_id == chain_id, f"response for chain {self.chain_id!r}")
        for block, cert in zip(self.blocks, self.certificates, strict=True):
            _require(block.header.chain_id == chain_id, "block for another chain")
            cert.verify(chain_id, validators)


# --------------------------------------------------------------------------- schemas

PROPOSAL_SCHEMA: Final = Schema[Proposal](
    "proposal",
    Proposal,
    [
        FieldSpec("vote", "vote", Nested(VOTE_SCHEMA)),
        FieldSpec("block", "block", Nested(BLOCK_SCHEMA)),
    ],
    max_bytes=MAX_BLOCK_BYTES + 1024,
)
VIEW_CHANGE_SCHEMA: Final = Schema[ViewChange](
    "view_change",
    ViewChange,
    [
        FieldSpec("chain", "chain_id", _CHAIN),
        FieldSpec("view", "new_view", UInt()),
        FieldSpec("validator", "validator", _KEY),
        FieldSpec("committed", "committed", Optional(Nested(CERT_SCHEMA))),
        FieldSpec("prepared", "prepared", Optional(Nested(PREPARED_CERT_SCHEMA))),
        FieldSpec("block", "block", Optional(Nested(BLOCK_SCHEMA))),
        FieldSpec("sig", "sig", _SIG),
    ],
    max_bytes=MAX_BLOCK_BYTES + 2 * MAX_VALIDATORS * 128 + 4096,
)
_VIEW_CHANGE_UNSIGNED: Final = VIEW_CHANGE_SCHEMA.without("sig", "block")
NEW_VIEW_SCHEMA: Final = Schema[NewView](
    "new_view",
    NewView,
    [
        FieldSpec("chain", "chain_id", _CHAIN),
        FieldSpec("view", "view", UInt()),
        FieldSpec("validator", "validator", _KEY),
        FieldSpec("vcs", "view_changes", Array(Nested(VIEW_CHANGE_SCHEMA), MAX_VALIDATORS)),
        FieldSpec("proposal", "proposal", Nested(VOTE_SCHEMA)),
        FieldSpec("block", "block", Optional(Nested(BLOCK_SCHEMA))),
        FieldSpec("sig", "sig", _SIG),
    ],
    max_bytes=2 * MAX_BLOCK_BYTES,
)
_NEW_VIEW_UNSIGNED: Final = NEW_VIEW_SCHEMA.without("sig", "block")
CHECKPOINT_SCHEMA: Final = Schema[Checkpoint](
    "checkpoint",
    Checkpoint,
    [
        FieldSpec("chain", "chain_id", _CHAIN),
        FieldSpec("height", "height", UInt()),
        FieldSpec("block", "block_hash", _HASH),
        FieldSpec("state_root", "state_root", _HASH),
        FieldSpec("validator", "validator", _KEY),
        FieldSpec("sig", "sig", _SIG),
    ],
    max_bytes=1024,
)
_CHECKPOINT_UNSIGNED: Final = CHECKPOINT_SCHEMA.without("sig")
STATUS_SCHEMA: Final = Schema[Status](
    "status",
    Status,
    [
        FieldSpec("chain", "chain_id", _CHAIN),
        FieldSpec("committed", "committed", Optional(Nested(CERT_SCHEMA))),
    ],
    max_bytes=MAX_VALIDATORS * 128 + 1024,
)
BLOCK_REQUEST_SCHEMA: Final = Schema[BlockRequest](
    "block_request",
    BlockRequest,
    [
        FieldSpec("chain", "chain_id", _CHAIN),
        FieldSpec("from", "from_height", UInt()),
        FieldSpec("count", "count", UInt(MAX_BLOCKS_PER_RESPONSE)),
    ],
    max_bytes=256,
)
BLOCK_RESPONSE_SCHEMA: Final = Schema[BlockResponse](
    "block_response",
    BlockResponse,
    [
        FieldSpec("chain", "chain_id", _CHAIN),
        FieldSpec("blocks", "blocks", Array(Nested(BLOCK_SCHEMA), MAX_BLOCKS_PER_RESPONSE)),
        FieldSpec("certs", "certificates", Array(Nested(CERT_SCHEMA), MAX_BLOCKS_PER_RESPONSE)),
    ],
    max_bytes=2 * MAX_BLOCK_BYTES,
)

Message: TypeAlias = (
    Proposal | Vote | ViewChange | NewView | Checkpoint | Status | BlockRequest | BlockResponse
)

#: Wire type tags. Never reuse or renumber one.
_TYPES: Final[tuple[tuple[int, type, Schema[Any]], ...]] = (
    (1, Proposal, PROPOSAL_SCHEMA),
    (2, Vote, VOTE_SCHEMA),
    (3, ViewChange, VIEW_CHANGE_SCHEMA),
    (4, NewView, NEW_VIEW_SCHEMA),
    (5, Checkpoint, CHECKPOINT_SCHEMA),
    (6, Status, STATUS_SCHEMA),
    (7, BlockRequest, BLOCK_REQUEST_SCHEMA),
    (8, BlockResponse, BLOCK_RESPONSE_SCHEMA),
)
_BY_TAG: Final = {tag: schema for tag, _, schema in _TYPES}
_BY_TYPE: Final = {cls: (tag, schema) for tag, cls, schema in _TYPES}


def encode_message(message: Message) -> bytes:
    """Canonical ``[type, body]`` encoding of a consensus message."""
    tag, schema = _BY_TYPE[type(message)]
    out: list[bytes] = [codec.array_head(2), codec.encode_int(tag)]
    schema.encode_into(message, out)
    return b"".join(out)


def decode_message(
    data: bytes,
    *,
    max_bytes: int = 2 * MAX_BLOCK_BYTES,
    known_txs: Callable[[bytes], Tx | None] | None = None,
) -> Message:
    """Decode a consensus message; :class:`DecodeError` for anything malformed.

    ``known_txs`` (a transaction's hash -> the transaction, if this node holds
    it) lets a proposal's transactions that this node already decoded and
    validated be reused instead of decoded again; the result is the same.
    """
    if isinstance(data, bytes) and len(data) <= max_bytes and len(data) >= 2:
        # Fast path: [tag, body] read straight into the record (Schema.read).
        dec = codec.Decoder(data, known_txs)
        schema = _BY_TAG.get(data[1]) if data[0] == 0x82 and data[1] < 24 else None
        if schema is not None:
            dec.pos = 2
            try:
                message: Message = schema.read(dec, 1)
            except (DecodeError, RecursionError):
                pass
            else:
                if dec.pos == dec.end:
                    return message
    return _decode_message_reference(data, max_bytes)


def _decode_message_reference(data: bytes, max_bytes: int) -> Message:
    """The reference decoding: generic canonical value first, then the schema."""
    value = codec.decode(data, max_bytes=max_bytes)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int)
        or isinstance(value[0], bool)
    ):
        raise DecodeError("a message is [type, body]")
    schema = _BY_TAG.get(value[0])
    if schema is None:
        raise DecodeError(f"unknown message type {value[0]}")
    slow: Message = schema.from_value(value[1])
    return slow


def verify_message(message: Message, chain_id: str, validators: Sequence[bytes]) -> None:
    """Check every signature and certificate inside ``message`` (see module docstring)."""
    message.verify(chain_id, validators)


__all__ = [
    "BlockRequest",
    "BlockResponse",
    "Checkpoint",
    "Message",
    "MessageDomain",
    "NewView",
    "Proposal",
    "Status",
    "ViewChange",
    "decode_message",
    "encode_message",
    "verify_message",
]
