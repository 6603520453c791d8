"""The per-validator participation count behind the missed-votes metric and alert."""

from __future__ import annotations

from node.participation import LOOKAHEAD, Participation

A, B, C, D = (bytes([i]) * 32 for i in range(1, 5))
OUTSIDER = b"\x09" * 32


def _tracker(me: bytes = A, committed: int = 0) -> Participation:
    return Participation((A, B, C, D), me, committed=committed)


def _commit_live(p: Participation, height: int, voters: tuple[bytes, ...]) -> None:
    for voter in voters:
        p.heard(voter, height)
    p.committed(height, live=True)


def test_a_silent_validator_misses_every_settled_height() -> None:
    p = _tracker()
    for height in range(1, 6):
        _commit_live(p, height, (B, C))  # D never votes
    # heights 1-4 are settled (5 waits for the next commit)
    assert p.missed == {A: 0, B: 0, C: 0, D: 4}


def test_a_late_vote_arriving_before_the_next_commit_still_counts() -> None:
    p = _tracker()
    _commit_live(p, 1, (B, C))
    p.heard(D, 1)  # arrives after this node already had its quorum for height 1
    _commit_live(p, 2, (B, C, D))
    _commit_live(p, 3, (B, C, D))
    assert p.missed[D] == 0


def test_a_vote_after_its_height_settled_is_not_counted() -> None:
    p = _tracker()
    _commit_live(p, 1, (B, C))
    _commit_live(p, 2, (B, C, D))  # height 1 settles here without D
    p.heard(D, 1)
    _commit_live(p, 3, (B, C, D))
    assert p.missed[D] == 1


def test_heights_learnt_through_catch_up_are_never_counted_as_missed() -> None:
    p = _tracker()
    for height in range(1, 50):
        p.committed(height, live=False)  # nobody's votes arrive during sync
    _commit_live(p, 50, (B, C, D))
    _commit_live(p, 51, (B, C, D))
    assert p.missed == {A: 0, B: 0, C: 0, D: 0}


def test_last_vote_height_follows_votes_and_own_commits() -> None:
    p = _tracker()
    _commit_live(p, 1, (B, C, D))
    _commit_live(p, 2, (B, C))
    _commit_live(p, 3, (B,))
    assert p.last_vote_height == {A: 3, B: 3, C: 2, D: 1}


def test_a_non_validator_node_counts_every_validator() -> None:
    p = Participation((A, B, C, D), OUTSIDER)
    _commit_live(p, 1, (A, B, C))
    _commit_live(p, 2, (A, B, C))
    assert p.missed == {A: 0, B: 0, C: 0, D: 1}
    assert OUTSIDER not in p.last_vote_height


def test_votes_of_unknown_keys_and_far_heights_are_not_kept() -> None:
    p = _tracker(committed=10)
    p.heard(OUTSIDER, 11)
    p.heard(B, 10**9)  # a validator signing votes for a far height cannot grow memory
    p.heard(B, 3)  # or for long-settled ones
    assert p.last_vote_height[B] == 10 + 1 + LOOKAHEAD
    assert OUTSIDER not in p.last_vote_height
    assert all(11 <= h <= 10 + 1 + LOOKAHEAD for h in p._heard)


def test_memory_stays_bounded_over_many_heights() -> None:
    p = _tracker()
    for height in range(1, 10_001):
        _commit_live(p, height, (B, C, D))
        p.heard(B, height + 1)
        p.heard(C, height + 2)
    assert len(p._heard) <= LOOKAHEAD + 2
    assert len(p._pending) == 1
    assert p.missed == {A: 0, B: 0, C: 0, D: 0}
