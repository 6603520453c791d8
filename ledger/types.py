"""The wire records: transactions, block headers, blocks, votes, certificates, evidence.

All are frozen, slotted dataclasses that check themselves on construction
(raising :class:`ValidationError`) and have exactly one canonical encoding
(``encode()`` / ``decode()``, see ``ledger.codec`` and ``docs/PROTOCOL.md``).

Hashes are SHA-256 of the canonical encoding:

* transaction hash = SHA-256(encode(tx)), signature included;
* block hash = SHA-256(encode(header));
* ``tx_root`` = RFC 6962 Merkle root over the transaction hashes in block order;
* ``evidence_root`` = RFC 6962 Merkle root over the evidence hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Final, Protocol, Self

from ledger import codec, merkle
from ledger.errors import DecodeError, SignatureError, ValidationError
from ledger.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Domain, SigningKey, verify
from ledger.schema import (
    Array,
    Bytes,
    CanonicalMap,
    FieldSpec,
    Nested,
    RawMap,
    Schema,
    Text,
    UInt,
)

HASH_BYTES: Final = 32
TX_VERSION: Final = 1
HEADER_VERSION: Final = 1

#: Chain ids: 1-64 characters of letters, digits, dot, underscore, dash.
CHAIN_ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
#: Transaction kinds: dotted lower-case words, e.g. ``dataset.register``.
TX_KIND_PATTERN: Final = r"[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){0,3}"

#: Largest encoded transaction accepted anywhere (64 KiB). Genesis may set less.
MAX_TX_BYTES: Final = 64 * 1024
#: Largest encoded block accepted anywhere (32 MiB). Genesis may set less.
MAX_BLOCK_BYTES: Final = 32 * 1024 * 1024
#: Most transactions a block may carry.
MAX_BLOCK_TXS: Final = 100_000
#: Most evidence records a block may carry.
MAX_BLOCK_EVIDENCE: Final = 1_000
#: Most validators a certificate may name.
MAX_VALIDATORS: Final = 1_000

_CHAIN_ID_RE: Final = re.compile(CHAIN_ID_PATTERN)
_TX_KIND_RE: Final = re.compile(TX_KIND_PATTERN)
_UINT64_MAX: Final = (1 << 64) - 1


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class _HashCached(Protocol):
    @property
    def _hash(self) -> bytes | None: ...

    def encode(self) -> bytes: ...


def _cached_hash(record: _HashCached) -> bytes:
    """SHA-256 of the record's encoding, kept in its ``_hash`` slot after the first call."""
    cached = record._hash
    if cached is None:
        cached = sha256(record.encode())
        object.__setattr__(record, "_hash", cached)
    return cached


def max_faulty(n: int) -> int:
    """f: how many Byzantine validators ``n`` validators tolerate."""
    if n < 1:
        raise ValidationError("a validator set needs at least one member")
    return (n - 1) // 3


def quorum_size(n: int) -> int:
    """Smallest quorum such that any two quorums share at least f+1 validators.

    ``ceil((n + f + 1) / 2)``: 2f+1 when n = 3f+1, and correct for other n
    (e.g. n=5 -> 4, n=6 -> 4).
    """
    return (n + max_faulty(n)) // 2 + 1


def _check_chain_id(chain_id: str) -> None:
    if not isinstance(chain_id, str) or _CHAIN_ID_RE.fullmatch(chain_id) is None:
        raise ValidationError(f"chain id {chain_id!r} does not match {CHAIN_ID_PATTERN}")


def _check_len(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise ValidationError(f"{name} must be {size} bytes")


def _check_uint(name: str, value: int, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= _UINT64_MAX:
        raise ValidationError(f"{name} must be an integer in [{minimum}, 2**64-1]")


# --------------------------------------------------------------------------- Tx


@dataclass(frozen=True, slots=True)
class Tx:
    """A signed transaction envelope.

    ``body`` holds the canonical encoding of the kind-specific payload map; on
    the wire it is inline (a CBOR map, not a byte string). The signature covers
    ``Domain.TX || 0x00 || encode(tx without "sig")``; the chain id is inside.
    """

    version: int
    chain_id: str
    kind: str
    signer: bytes
    nonce: int
    body: bytes
    sig: bytes
    _hash: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.version != TX_VERSION:
            raise ValidationError(f"unsupported transaction version {self.version}")
        _check_chain_id(self.chain_id)
        if not isinstance(self.kind, str) or _TX_KIND_RE.fullmatch(self.kind) is None:
            raise ValidationError(
                f"transaction kind {self.kind!r} does not match {TX_KIND_PATTERN}"
            )
        _check_len("signer", self.signer, PUBLIC_KEY_BYTES)
        _check_uint("nonce", self.nonce)
        _check_len("sig", self.sig, SIGNATURE_BYTES)
        if not isinstance(self.body, CanonicalMap):
            if not isinstance(self.body, bytes):
                raise ValidationError("body must be the canonical encoding of a map")
            try:
                decoded = codec.decode(self.body, max_bytes=MAX_TX_BYTES)
            except DecodeError as exc:
                raise ValidationError(f"body is not canonical: {exc}") from None
            if not isinstance(decoded, dict):
                raise ValidationError("body must be a map")

    @classmethod
    def create(
        cls,
        key: SigningKey,
        *,
        chain_id: str,
        kind: str,
        nonce: int,
        body: Mapping[str, Any],
    ) -> Tx:
        """Build and sign a transaction."""
        unsigned = cls(
            version=TX_VERSION,
            chain_id=chain_id,
            kind=kind,
            signer=key.public_key,
            nonce=nonce,
            body=CanonicalMap(codec.encode(dict(body))),
            sig=bytes(SIGNATURE_BYTES),
        )
        return dataclasses.replace(unsigned, sig=key.sign(Domain.TX, unsigned.unsigned_bytes()))

    def unsigned_bytes(self) -> bytes:
        return _TX_UNSIGNED.encode(self)

    def encode(self) -> bytes:
        return TX_SCHEMA.encode_cached(self)

    @classmethod
    def decode(cls, data: bytes) -> Tx:
        return TX_SCHEMA.decode(data)

    @property
    def hash(self) -> bytes:
        return _cached_hash(self)

    def body_value(self) -> dict[str, codec.Value]:
        decoded = codec.decode(self.body)
        assert isinstance(decoded, dict)  # guaranteed by __post_init__
        return decoded

    def verify_signature(self) -> bool:
        return verify(self.signer, Domain.TX, self.unsigned_bytes(), self.sig)

    def to_json(self) -> dict[str, Any]:
        return TX_SCHEMA.to_json(self)


TX_SCHEMA: Final = Schema[Tx](
    "tx",
    Tx,
    [
        FieldSpec("v", "version", UInt(0xFFFF)),
        FieldSpec("chain", "chain_id", Text(64, CHAIN_ID_PATTERN)),
        FieldSpec("kind", "kind", Text(128, TX_KIND_PATTERN)),
        FieldSpec("signer", "signer", Bytes(size=PUBLIC_KEY_BYTES)),
        FieldSpec("nonce", "nonce", UInt()),
        FieldSpec("body", "body", RawMap()),
        FieldSpec("sig", "sig", Bytes(size=SIGNATURE_BYTES)),
    ],
    max_bytes=MAX_TX_BYTES,
    cache_attr="_encoded",
    hash_attr="_hash",
)
_TX_UNSIGNED: Final = TX_SCHEMA.without("sig")


# --------------------------------------------------------------------------- votes


class VoteKind(IntEnum):
    """Which PBFT phase a vote belongs to."""

    PREPARE = 1
    COMMIT = 2
    PROPOSE = 3  # the primary's signature on its PRE-PREPARE


@dataclass(frozen=True, slots=True)
class Vote:
    """A validator's signed PREPARE or COMMIT for a block at (height, view)."""

    chain_id: str
    kind: VoteKind
    height: int
    view: int
    block_hash: bytes
    validator: bytes
    sig: bytes

    def __post_init__(self) -> None:
        _check_chain_id(self.chain_id)
        try:
            object.__setattr__(self, "kind", VoteKind(self.kind))
        except ValueError:
            raise ValidationError(f"unknown vote kind {self.kind!r}") from None
        _check_uint("height", self.height, 1)
        _check_uint("view", self.view)
        _check_len("block_hash", self.block_hash, HASH_BYTES)
        _check_len("validator", self.validator, PUBLIC_KEY_BYTES)
        _check_len("sig", self.sig, SIGNATURE_BYTES)

    @classmethod
    def create(
        cls,
        key: SigningKey,
        *,
        chain_id: str,
        kind: VoteKind,
        height: int,
        view: int,
        block_hash: bytes,
    ) -> Vote:
        unsigned = cls(
            chain_id, kind, height, view, block_hash, key.public_key, bytes(SIGNATURE_BYTES)
        )
        return dataclasses.replace(unsigned, sig=key.sign(Domain.VOTE, unsigned.unsigned_bytes()))

    def unsigned_bytes(self) -> bytes:
        return _VOTE_UNSIGNED.encode(self)

    def encode(self) -> bytes:
        return VOTE_SCHEMA.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> Vote:
        return VOTE_SCHEMA.decode(data)

    def verify_signature(self) -> bool:
        return verify(self.validator, Domain.VOTE, self.unsigned_bytes(), self.sig)

    def verify(self, chain_id: str, validators: Sequence[bytes]) -> None:
        """Raise unless this is a validly signed vote of a validator of ``chain_id``."""
        if self.chain_id != chain_id:
            raise ValidationError(f"vote for chain {self.chain_id!r}, not {chain_id!r}")
        if self.validator not in validators:
            raise SignatureError(f"vote signer {self.validator.hex()[:16]} is not a validator")
        if not self.verify_signature():
            raise SignatureError("vote signature does not verify")

    def conflicts_with(self, other: Vote) -> bool:
        """Same signer, chain, kind, height and view, but a different block."""
        return (
            self.validator == other.validator
            and self.chain_id == other.chain_id
            and self.kind == other.kind
            and self.height == other.height
            and self.view == other.view
            and self.block_hash != other.block_hash
        )


VOTE_SCHEMA: Final = Schema[Vote](
    "vote",
    Vote,
    [
        FieldSpec("chain", "chain_id", Text(64, CHAIN_ID_PATTERN)),
        FieldSpec("kind", "kind", UInt(0xFF)),
        FieldSpec("height", "height", UInt()),
        FieldSpec("view", "view", UInt()),
        FieldSpec("block", "block_hash", Bytes(size=HASH_BYTES)),
        FieldSpec("validator", "validator", Bytes(size=PUBLIC_KEY_BYTES)),
        FieldSpec("sig", "sig", Bytes(size=SIGNATURE_BYTES)),
    ],
    max_bytes=1024,
)
_VOTE_UNSIGNED: Final = VOTE_SCHEMA.without("sig")


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class ValidatorSignature:
    validator: bytes
    sig: bytes

    def __post_init__(self) -> None:
        _check_len("validator", self.validator, PUBLIC_KEY_BYTES)
        _check_len("sig", self.sig, SIGNATURE_BYTES)


_VALIDATOR_SIG_SCHEMA: Final = Schema[ValidatorSignature](
    "validator_sig",
    ValidatorSignature,
    [
        FieldSpec("validator", "validator", Bytes(size=PUBLIC_KEY_BYTES)),
        FieldSpec("sig", "sig", Bytes(size=SIGNATURE_BYTES)),
    ],
)


@dataclass(frozen=True, slots=True)
class QuorumCertificate:
    """Signatures of a quorum of validators on one (chain, kind, height, view, block).

    Each entry is the signature of a vote of the certificate's ``KIND``; entries
    are sorted by validator key (strictly, so a validator appears once and the
    encoding is unique). Subclasses fix the kind.
    """

    KIND: ClassVar[VoteKind]
    SCHEMA: ClassVar[Schema[Any]]

    chain_id: str
    height: int
    view: int
    block_hash: bytes
    signatures: tuple[ValidatorSignature, ...]

    def __post_init__(self) -> None:
        _check_chain_id(self.chain_id)
        _check_uint("height", self.height, 1)
        _check_uint("view", self.view)
        _check_len("block_hash", self.block_hash, HASH_BYTES)
        if not isinstance(self.signatures, tuple) or not self.signatures:
            raise ValidationError("a certificate needs at least one signature")
        keys = [s.validator for s in self.signatures]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise ValidationError("certificate signatures must be sorted by validator, no repeats")

    @classmethod
    def from_votes(cls, votes: Iterable[Vote]) -> Self:
        """Assemble a certificate from matching votes (deduplicated by validator)."""
        by_validator: dict[bytes, Vote] = {}
        first: Vote | None = None
        for vote in votes:
            if first is None:
                first = vote
            if vote.kind != cls.KIND:
                raise ValidationError(f"only {cls.KIND.name} votes form a {cls.__name__}")
            if (vote.chain_id, vote.height, vote.view, vote.block_hash) != (
                first.chain_id,
                first.height,
                first.view,
                first.block_hash,
            ):
                raise ValidationError("votes are for different blocks, heights or views")
            by_validator[vote.validator] = vote
        if first is None:
            raise ValidationError("no votes")
        signatures = tuple(
            ValidatorSignature(key, by_validator[key].sig) for key in sorted(by_validator)
        )
        return cls(first.chain_id, first.height, first.view, first.block_hash, signatures)

    def votes(self) -> tuple[Vote, ...]:
        """The votes this certificate carries, reconstructed."""
        return tuple(
            Vote(
                self.chain_id,
                self.KIND,
                self.height,
                self.view,
                self.block_hash,
                s.validator,
                s.sig,
            )
            for s in self.signatures
        )

    def verify(self, chain_id: str, validators: Sequence[bytes]) -> None:
        """Raise :class:`SignatureError` unless this is a valid quorum of ``validators``."""
        if self.chain_id != chain_id:
            raise SignatureError(f"certificate is for chain {self.chain_id!r}, not {chain_id!r}")
        members = set(validators)
        needed = quorum_size(len(members))
        for vote in self.votes():
            if vote.validator not in members:
                raise SignatureError(f"signer {vote.validator.hex()} is not a validator")
            if not vote.verify_signature():
                raise SignatureError(f"signature of {vote.validator.hex()} does not verify")
        if len(self.signatures) < needed:
            raise SignatureError(
                f"{len(self.signatures)} signatures, a quorum of {len(members)} needs {needed}"
            )

    def encode(self) -> bytes:
        return self.SCHEMA.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        record = cls.SCHEMA.decode(data)
        assert isinstance(record, cls)
        return record

    def to_json(self) -> dict[str, Any]:
        return self.SCHEMA.to_json(self)


@dataclass(frozen=True, slots=True)
class CommitCertificate(QuorumCertificate):
    """Proof that a quorum committed ``block_hash`` at (height, view): stored with the block."""

    KIND: ClassVar[VoteKind] = VoteKind.COMMIT


@dataclass(frozen=True, slots=True)
class PreparedCertificate(QuorumCertificate):
    """Proof that a quorum prepared ``block_hash`` at (height, view): carried by view changes."""

    KIND: ClassVar[VoteKind] = VoteKind.PREPARE


def _certificate_schema(name: str, build: type[QuorumCertificate]) -> Schema[Any]:
    return Schema(
        name,
        build,
        [
            FieldSpec("chain", "chain_id", Text(64, CHAIN_ID_PATTERN)),
            FieldSpec("height", "height", UInt()),
            FieldSpec("view", "view", UInt()),
            FieldSpec("block", "block_hash", Bytes(size=HASH_BYTES)),
            FieldSpec("sigs", "signatures", Array(Nested(_VALIDATOR_SIG_SCHEMA), MAX_VALIDATORS)),
        ],
        max_bytes=MAX_VALIDATORS * 128 + 1024,
    )


CERT_SCHEMA: Final = _certificate_schema("certificate", CommitCertificate)
PREPARED_CERT_SCHEMA: Final = _certificate_schema("prepared_certificate", PreparedCertificate)
CommitCertificate.SCHEMA = CERT_SCHEMA
PreparedCertificate.SCHEMA = PREPARED_CERT_SCHEMA


# --------------------------------------------------------------------------- evidence


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence:
    """Two conflicting votes signed by one validator (equivocation).

    The two votes are ordered by their encodings so the evidence has one form.
    """

    vote_a: Vote
    vote_b: Vote

    def __post_init__(self) -> None:
        if not self.vote_a.conflicts_with(self.vote_b):
            raise ValidationError("evidence votes do not conflict")
        if self.vote_a.encode() >= self.vote_b.encode():
            raise ValidationError("evidence votes must be in canonical order")

    @classmethod
    def of(cls, first: Vote, second: Vote) -> DuplicateVoteEvidence:
        a, b = sorted((first, second), key=lambda v: v.encode())
        return cls(a, b)

    def verify(self, validators: Sequence[bytes]) -> None:
        if self.vote_a.validator not in set(validators):
            raise SignatureError("evidence names a signer that is not a validator")
        if not (self.vote_a.verify_signature() and self.vote_b.verify_signature()):
            raise SignatureError("an evidence vote's signature does not verify")

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())

    def encode(self) -> bytes:
        return EVIDENCE_SCHEMA.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> DuplicateVoteEvidence:
        return EVIDENCE_SCHEMA.decode(data)


EVIDENCE_SCHEMA: Final = Schema[DuplicateVoteEvidence](
    "evidence",
    DuplicateVoteEvidence,
    [
        FieldSpec("a", "vote_a", Nested(VOTE_SCHEMA)),
        FieldSpec("b", "vote_b", Nested(VOTE_SCHEMA)),
    ],
    max_bytes=2048,
)


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """What validators agree on. ``time`` is milliseconds since the Unix epoch."""

    version: int
    chain_id: str
    height: int
    view: int
    prev_hash: bytes
    time_ms: int
    proposer: bytes
    tx_root: bytes
    state_root: bytes
    evidence_root: bytes
    _hash: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.version != HEADER_VERSION:
            raise ValidationError(f"unsupported header version {self.version}")
        _check_chain_id(self.chain_id)
        _check_uint("height", self.height, 1)
        _check_uint("view", self.view)
        _check_uint("time_ms", self.time_ms)
        _check_len("prev_hash", self.prev_hash, HASH_BYTES)
        _check_len("proposer", self.proposer, PUBLIC_KEY_BYTES)
        _check_len("tx_root", self.tx_root, HASH_BYTES)
        _check_len("state_root", self.state_root, HASH_BYTES)
        _check_len("evidence_root", self.evidence_root, HASH_BYTES)

    @property
    def hash(self) -> bytes:
        return _cached_hash(self)

    def encode(self) -> bytes:
        return HEADER_SCHEMA.encode_cached(self)

    @classmethod
    def decode(cls, data: bytes) -> BlockHeader:
        return HEADER_SCHEMA.decode(data)

    def to_json(self) -> dict[str, Any]:
        return HEADER_SCHEMA.to_json(self)


HEADER_SCHEMA: Final = Schema[BlockHeader](
    "header",
    BlockHeader,
    [
        FieldSpec("v", "version", UInt(0xFFFF)),
        FieldSpec("chain", "chain_id", Text(64, CHAIN_ID_PATTERN)),
        FieldSpec("height", "height", UInt()),
        FieldSpec("view", "view", UInt()),
        FieldSpec("prev", "prev_hash", Bytes(size=HASH_BYTES)),
        FieldSpec("time", "time_ms", UInt()),
        FieldSpec("proposer", "proposer", Bytes(size=PUBLIC_KEY_BYTES)),
        FieldSpec("tx_root", "tx_root", Bytes(size=HASH_BYTES)),
        FieldSpec("state_root", "state_root", Bytes(size=HASH_BYTES)),
        FieldSpec("ev_root", "evidence_root", Bytes(size=HASH_BYTES)),
    ],
    max_bytes=1024,
    cache_attr="_encoded",
)


def tx_root(txs: Sequence[Tx]) -> bytes:
    return merkle.root([tx.hash for tx in txs])


def evidence_root(evidence: Sequence[DuplicateVoteEvidence]) -> bytes:
    return merkle.root([e.hash for e in evidence])


@dataclass(frozen=True, slots=True)
class Block:
    """A header with the transactions and evidence its roots commit to.

    Construction checks the roots and that every transaction and evidence vote
    is for this chain, so a decoded ``Block`` is internally consistent.
    """

    header: BlockHeader
    txs: tuple[Tx, ...]
    evidence: tuple[DuplicateVoteEvidence, ...] = ()

    def __post_init__(self) -> None:
        chain = self.header.chain_id
        if any(tx.chain_id != chain for tx in self.txs):
            raise ValidationError("a transaction in the block is for another chain")
        if any(e.vote_a.chain_id != chain for e in self.evidence):
            raise ValidationError("evidence in the block is for another chain")
        if len({tx.hash for tx in self.txs}) != len(self.txs):
            raise ValidationError("a transaction appears twice in the block")
        if tx_root(self.txs) != self.header.tx_root:
            raise ValidationError("tx_root does not match the transactions")
        if evidence_root(self.evidence) != self.header.evidence_root:
            raise ValidationError("evidence_root does not match the evidence")

    @classmethod
    def build(
        cls,
        *,
        chain_id: str,
        height: int,
        view: int,
        prev_hash: bytes,
        time_ms: int,
        proposer: bytes,
        state_root: bytes,
        txs: Sequence[Tx] = (),
        evidence: Sequence[DuplicateVoteEvidence] = (),
    ) -> Self:
        header = BlockHeader(
            version=HEADER_VERSION,
            chain_id=chain_id,
            height=height,
            view=view,
            prev_hash=prev_hash,
            time_ms=time_ms,
            proposer=proposer,
            tx_root=tx_root(txs),
            state_root=state_root,
            evidence_root=evidence_root(evidence),
        )
        return cls(header, tuple(txs), tuple(evidence))

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def encode(self) -> bytes:
        return BLOCK_SCHEMA.encode(self)

    @classmethod
    def decode(
        cls,
        data: bytes,
        *,
        max_bytes: int = MAX_BLOCK_BYTES,
        known_txs: Callable[[bytes], Tx | None] | None = None,
    ) -> Block:
        """``known_txs``: see :func:`ledger.messages.decode_message`."""
        return BLOCK_SCHEMA.decode(data, max_bytes=max_bytes, known=known_txs)

    def tx_inclusion_proof(self, index: int) -> list[bytes]:
        return merkle.inclusion_proof([tx.hash for tx in self.txs], index)


BLOCK_SCHEMA: Final = Schema[Block](
    "block",
    Block,
    [
        FieldSpec("header", "header", Nested(HEADER_SCHEMA)),
        FieldSpec("txs", "txs", Array(Nested(TX_SCHEMA), MAX_BLOCK_TXS)),
        FieldSpec("evidence", "evidence", Array(Nested(EVIDENCE_SCHEMA), MAX_BLOCK_EVIDENCE)),
    ],
    max_bytes=MAX_BLOCK_BYTES,
)


# --------------------------------------------------------------------------- safety record


@dataclass(frozen=True, slots=True)
class SafetyRecord:
    """What a validator signed in one slot: (height, view, phase) -> digest.

    Consensus writes one (durably) before sending the signed message; after a
    restart it refuses to sign a different digest for a recorded slot. Phase
    numbers are defined by ``consensus/``; to storage they are opaque.
    """

    height: int
    view: int
    phase: int
    digest: bytes

    def __post_init__(self) -> None:
        _check_uint("height", self.height)
        _check_uint("view", self.view)
        if not isinstance(self.phase, int) or not 0 <= self.phase <= 0xFF:
            raise ValidationError("phase must be in [0, 255]")
        _check_len("digest", self.digest, HASH_BYTES)

    @property
    def slot(self) -> tuple[int, int, int]:
        return (self.height, self.view, self.phase)

    def encode(self) -> bytes:
        return SAFETY_RECORD_SCHEMA.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> SafetyRecord:
        return SAFETY_RECORD_SCHEMA.decode(data)


SAFETY_RECORD_SCHEMA: Final = Schema[SafetyRecord](
    "safety_record",
    SafetyRecord,
    [
        FieldSpec("height", "height", UInt()),
        FieldSpec("view", "view", UInt()),
        FieldSpec("phase", "phase", UInt(0xFF)),
        FieldSpec("digest", "digest", Bytes(size=HASH_BYTES)),
    ],
    max_bytes=256,
)
