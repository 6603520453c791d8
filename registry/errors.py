"""Typed errors of the research registry.

* :class:`Rejected` is how a rule refuses a transaction inside execution; the
  state machine turns it into a :class:`registry.app.TxRejection` and discards
  the transaction's writes. It never escapes :class:`registry.app.Registry`.
* :class:`NotFound` and :class:`InvalidQuery` are what the read-only queries
  raise, so the RPC edge can answer 404 or 400 with the message.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error raised by ``registry/``."""


class Rejected(RegistryError):
    """A transaction breaks a registry rule: ``code`` (snake_case) and a sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NotFound(RegistryError):
    """A query names something the registry does not hold (``what`` and ``ident``)."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} is not in the registry")
        self.what = what
        self.ident = ident


class InvalidQuery(RegistryError):
    """A query argument is malformed (an id that breaks its pattern, an unknown code)."""
