"""Which validators take part in consensus, as seen from this node.

Operators need to know when one validator stops voting long before it costs
the network its quorum: with n = 4 the network keeps committing while one
validator is silent, so the height alone hides it. This tracker counts, per
validator, the heights this node committed *live* (through its own rounds,
not catch-up) for which no verified vote or proposal from that validator
arrived. A height is settled only once the next one commits, so a vote that
arrives just after this node had its 2f+1 still counts.

Only verified consensus messages are fed in (the peer layer checks every
signature against the validator set first), and only heights near the
committed one are kept, so a validator cannot grow this node's memory by
signing votes for far-away heights.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Heights beyond the next one that a vote may name and still be remembered.
LOOKAHEAD = 2


class Participation:
    def __init__(self, validators: Iterable[bytes], me: bytes, committed: int = 0) -> None:
        self.validators: tuple[bytes, ...] = tuple(validators)
        self._known = frozenset(self.validators)
        self._me = me
        self._committed = committed
        #: height -> validators heard from for it (heights not settled yet)
        self._heard: dict[int, set[bytes]] = {}
        #: live heights committed but not settled yet (settled when the next commits)
        self._pending: list[int] = []
        #: validator -> heights it missed since this node started
        self.missed: dict[bytes, int] = dict.fromkeys(self.validators, 0)
        #: validator -> highest height it voted for (0: none seen since start)
        self.last_vote_height: dict[bytes, int] = dict.fromkeys(self.validators, 0)

    def heard(self, validator: bytes, height: int) -> None:
        """A verified vote (or proposal) of ``validator`` for ``height`` arrived."""
        if validator not in self._known:
            return
        if height > self.last_vote_height[validator]:
            self.last_vote_height[validator] = min(height, self._committed + 1 + LOOKAHEAD)
        if self._oldest_open() <= height <= self._committed + 1 + LOOKAHEAD:
            self._heard.setdefault(height, set()).add(validator)

    def committed(self, height: int, *, live: bool) -> None:
        """``height`` committed here; ``live`` unless it came through catch-up."""
        for pending in self._pending:
            if pending < height:
                self._settle(pending)
        self._pending = [h for h in self._pending if h >= height]
        self._committed = max(self._committed, height)
        if live:
            self._pending.append(height)
        if self._me in self._known:  # our own votes never come back to us
            self.last_vote_height[self._me] = max(self.last_vote_height[self._me], height)
        floor = self._oldest_open()
        for old in [h for h in self._heard if h < floor]:
            del self._heard[old]

    def _oldest_open(self) -> int:
        return min(self._pending, default=self._committed + 1)

    def _settle(self, height: int) -> None:
        heard = self._heard.pop(height, set())
        for validator in self.validators:
            if validator != self._me and validator not in heard:
                self.missed[validator] += 1


__all__ = ["LOOKAHEAD", "Participation"]
