"""Typed errors of the ledger data model.

Every failure that bad input can cause in ``ledger/`` is one of these, so callers
at the boundary (p2p, RPC, CLI) can catch one family and answer clearly.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error raised by ``ledger/``."""


class EncodeError(LedgerError, ValueError):
    """A value cannot be put in canonical form (wrong type, out of range, too large)."""


class DecodeError(LedgerError, ValueError):
    """Bytes are not the canonical encoding of the expected object.

    Raised for malformed or non-canonical CBOR, unknown or missing fields, wrong
    types, trailing bytes and oversized input; never another exception type.
    """


class ValidationError(LedgerError, ValueError):
    """A well-typed object breaks a rule of the data model (length, range, format)."""


class SignatureError(LedgerError):
    """A signature does not verify, or a certificate lacks a valid quorum."""


class KeyFileError(LedgerError):
    """A key file is missing, malformed, or readable by others."""


class GenesisError(LedgerError):
    """A genesis file is missing, malformed, or inconsistent."""
