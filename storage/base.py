"""What the LevelDB store and its in-memory twin share: identity, lifecycle, closed check."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from storage.errors import StoreClosedError


class StoreLifecycle(ABC):
    """Identity properties, ``with`` support and the closed-store check of a store.

    Subclasses set ``_path``, ``_chain_id``, ``_genesis_hash`` and ``_closed`` in
    their constructor and implement :meth:`close`.
    """

    _path: str
    _chain_id: str
    _genesis_hash: bytes
    _closed: bool

    @property
    def path(self) -> str:
        return self._path

    @property
    def chain_id(self) -> str:
        return self._chain_id

    @property
    def genesis_hash(self) -> bytes:
        return self._genesis_hash

    @abstractmethod
    def close(self) -> None:
        """Release the store. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(self._path)
