"""dataset.register (single and multipart series, versions) and dataset.derive, with queries."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.manifest import SeriesEntry, dataset_root, series_root
from registry import queries
from registry.errors import InvalidQuery, NotFound
from tests.registry.helpers import (
    ADMIN,
    RESEARCHER,
    RESEARCHER1,
    SUBJECT,
    Chain,
    access_body,
    amend_body,
    derive_body,
    digest,
    grant_body,
    leaf,
    leaf_value,
    leaves,
    register_bodies,
    result_body,
    summary,
    summary_value,
    trial_body,
)

SERIES = "1.2.840.113619.2.55"


def test_register_creates_the_dataset_with_owner_site_and_series(pop: Chain) -> None:
    series_leaves = leaves(5, prefix="1.9.1")
    [body] = register_bodies("ct-2024", SERIES, series_leaves)
    tx = pop.submit(RESEARCHER, "dataset.register", body, reason="initial upload")
    info = queries.dataset(pop.state, "ct-2024")
    assert info["owner"] == RESEARCHER.public_key.hex()
    assert info["site"] == "site0"
    assert info["kind"] == "registered"
    assert info["created_height"] == pop.height
    assert info["created_time_ms"] == pop.time_ms
    assert info["created"]["reason"] == "initial upload"
    assert info["created"]["tx"] == tx.hash.hex()
    [series] = info["series"]
    assert series["uid"] == SERIES
    assert series["complete"] is True
    assert series["parts_received"] == series["parts"] == 1
    assert series["instances"] == 5
    assert series["series_root"] == series_root(series_leaves).hex()
    assert series["summary"] == summary(5).to_json()
    expected = dataset_root([SeriesEntry(SERIES, series_root(series_leaves), 5)])
    assert info["dataset_root"] == expected.hex()
    assert queries.series_leaves(pop.state, "ct-2024", SERIES) == series_leaves


def test_dataset_root_covers_complete_series_only(pop: Chain) -> None:
    first = leaves(3, prefix="1.9.1")
    second = leaves(4, prefix="1.9.2")
    pop.submit(RESEARCHER, "dataset.register", register_bodies("multi", "1.5.1", first)[0])
    pop.submit(RESEARCHER, "dataset.register", register_bodies("multi", "1.5.2", second, 2)[0])
    partial = queries.dataset(pop.state, "multi")
    assert partial["complete_series"] == 1
    assert (
        partial["dataset_root"] == dataset_root([SeriesEntry("1.5.1", series_root(first), 3)]).hex()
    )
    pop.submit(RESEARCHER, "dataset.register", register_bodies("multi", "1.5.2", second, 2)[1])
    full = queries.dataset(pop.state, "multi")
    assert (
        full["dataset_root"]
        == dataset_root(
            [
                SeriesEntry("1.5.1", series_root(first), 3),
                SeriesEntry("1.5.2", series_root(second), 4),
            ]
        ).hex()
    )


def test_multipart_series_checks_the_root_at_the_last_part(pop: Chain) -> None:
    all_leaves = leaves(10, prefix="1.7")
    bodies = register_bodies("big", SERIES, all_leaves, parts=3)
    carried = []
    for body in bodies[:2]:
        carried.append(pop.submit(RESEARCHER, "dataset.register", body).hash)
        assert queries.dataset(pop.state, "big")["series"][0]["complete"] is False
    carried.append(pop.submit(RESEARCHER, "dataset.register", bodies[2]).hash)
    assert queries.series_parts(pop.state, "big", SERIES) == carried
    [series] = queries.dataset(pop.state, "big")["series"]
    assert series["complete"] is True
    assert series["parts_received"] == 3
    assert series["completed_height"] == pop.height
    assert queries.series_leaves(pop.state, "big", SERIES) == all_leaves


def test_multipart_wrong_root_is_refused_at_the_last_part(pop: Chain) -> None:
    bodies = register_bodies("big", SERIES, leaves(6), parts=2, root=digest("not the root"))
    pop.submit(RESEARCHER, "dataset.register", bodies[0])  # cannot be known before the end
    pop.refuse(RESEARCHER, "dataset.register", bodies[1], "series_root_mismatch")
    assert queries.dataset(pop.state, "big")["series"][0]["complete"] is False


def test_single_part_wrong_root_is_refused(pop: Chain) -> None:
    [body] = register_bodies("x", SERIES, leaves(2), root=digest("wrong"))
    pop.refuse(RESEARCHER, "dataset.register", body, "series_root_mismatch")
    with pytest.raises(NotFound):
        queries.dataset(pop.state, "x")


def test_parts_must_arrive_in_order(pop: Chain) -> None:
    bodies = register_bodies("big", SERIES, leaves(9), parts=3)
    pop.refuse(RESEARCHER, "dataset.register", bodies[1], "part_out_of_order")
    pop.submit(RESEARCHER, "dataset.register", bodies[0])
    pop.refuse(RESEARCHER, "dataset.register", bodies[2], "part_out_of_order")
    pop.refuse(RESEARCHER, "dataset.register", bodies[0], "part_out_of_order")
    pop.submit(RESEARCHER, "dataset.register", bodies[1])
    pop.submit(RESEARCHER, "dataset.register", bodies[2])


def test_a_complete_series_cannot_be_registered_again(pop: Chain) -> None:
    [body] = register_bodies("ds0", "1.2.3.1", leaves(4))
    pop.refuse(RESEARCHER, "dataset.register", body, "series_complete")


@pytest.mark.parametrize(
    ("field", "value"), [("parts", 4), ("instances", 10), ("series_root", digest("other"))]
)
def test_later_parts_cannot_change_the_declaration(pop: Chain, field: str, value: Any) -> None:
    bodies = register_bodies("big", SERIES, leaves(9), parts=3)
    pop.submit(RESEARCHER, "dataset.register", bodies[0])
    pop.refuse(RESEARCHER, "dataset.register", {**bodies[1], field: value}, "series_mismatch")


def test_leaves_must_ascend_within_and_across_parts(pop: Chain) -> None:
    all_leaves = leaves(6)
    bodies = register_bodies("big", SERIES, all_leaves, parts=2)
    shuffled = {**bodies[0], "leaves": list(reversed(bodies[0]["leaves"]))}
    pop.refuse(RESEARCHER, "dataset.register", shuffled, "leaf_order")
    duplicated = {**bodies[0], "leaves": [bodies[0]["leaves"][0]] * 2 + bodies[0]["leaves"][2:]}
    pop.refuse(RESEARCHER, "dataset.register", duplicated, "leaf_order")
    pop.submit(RESEARCHER, "dataset.register", bodies[0])
    # part 1 starting before the end of part 0
    overlapping = {**bodies[1], "leaves": [leaf_value(all_leaves[2]), *bodies[1]["leaves"][:-1]]}
    pop.refuse(RESEARCHER, "dataset.register", overlapping, "leaf_order")


def test_instance_count_must_add_up(pop: Chain) -> None:
    too_few = register_bodies("a", SERIES, leaves(3))[0]
    too_few["instances"] = 4
    too_few["summary"] = summary_value(summary(4))
    pop.refuse(RESEARCHER, "dataset.register", too_few, "instance_count_mismatch")
    # part 0 of 3 with all instances leaves nothing for parts 1 and 2
    crowded = register_bodies("b", SERIES, leaves(3))[0]
    crowded["parts"] = 3
    pop.refuse(RESEARCHER, "dataset.register", crowded, "instance_count_mismatch")


def test_body_level_series_rules(pop: Chain) -> None:
    [body] = register_bodies("a", SERIES, leaves(2))
    pop.refuse(RESEARCHER, "dataset.register", {**body, "summary": None}, "bad_body")
    pop.refuse(
        RESEARCHER, "dataset.register", {**body, "summary": summary_value(summary(3))}, "bad_body"
    )
    pop.refuse(RESEARCHER, "dataset.register", {**body, "part": 1}, "bad_body")  # part >= parts
    pop.refuse(RESEARCHER, "dataset.register", {**body, "parts": 0}, "bad_body")
    pop.refuse(RESEARCHER, "dataset.register", {**body, "leaves": []}, "bad_body")
    pop.refuse(RESEARCHER, "dataset.register", {**body, "series": "1.2.abc"}, "bad_body")
    bodies = register_bodies("a", SERIES, leaves(4), parts=2)
    with_summary = {**bodies[1], "summary": bodies[0]["summary"]}
    pop.submit(RESEARCHER, "dataset.register", bodies[0])
    pop.refuse(RESEARCHER, "dataset.register", with_summary, "bad_body")
    bad_leaf = {**bodies[1]["leaves"][0], "patient_id": "12345"}
    pop.refuse(RESEARCHER, "dataset.register", {**bodies[1], "leaves": [bad_leaf]}, "bad_body")


def test_other_series_only_by_the_same_site(pop: Chain) -> None:
    [body] = register_bodies("ds0", "1.2.3.2", leaves(2, prefix="1.8"))
    pop.refuse(RESEARCHER1, "dataset.register", body, "wrong_site")
    pop.refuse(ADMIN[1], "dataset.register", body, "wrong_site")
    pop.submit(ADMIN[0], "dataset.register", body)  # same site, not the owner
    assert len(queries.dataset(pop.state, "ds0")["series"]) == 2


def test_a_sop_uid_is_unique_within_a_dataset_but_not_across(pop: Chain) -> None:
    again = register_bodies("ds0", "1.2.3.9", leaves(1))[0]  # leaf 0 is in ds0 already
    pop.refuse(RESEARCHER, "dataset.register", again, "instance_exists")
    corrected = register_bodies("ds0-v2", "1.2.3.1", leaves(4), supersedes="ds0")[0]
    pop.submit(RESEARCHER, "dataset.register", corrected)
    found = queries.find_instance(pop.state, leaf(2).sop_instance_uid)
    assert [(loc["dataset"], loc["series"], loc["index"]) for loc in found["locations"]] == [
        ("ds0", "1.2.3.1", 2),
        ("ds0-v2", "1.2.3.1", 2),
    ]
    assert found["locations"][0]["leaf"] == leaf(2).to_json()


def test_supersedes_links_versions_both_ways(pop: Chain) -> None:
    [body] = register_bodies("ds0-v2", "1.2.3.1", leaves(4), supersedes="ds0")
    pop.submit(RESEARCHER, "dataset.register", body)
    assert queries.dataset(pop.state, "ds0")["versions"] == {
        "supersedes": None,
        "superseded_by": "ds0-v2",
    }
    assert queries.dataset(pop.state, "ds0-v2")["versions"] == {
        "supersedes": "ds0",
        "superseded_by": None,
    }
    [again] = register_bodies("ds0-v3", "1.2.3.1", leaves(4), supersedes="ds0")
    pop.refuse(RESEARCHER, "dataset.register", again, "already_superseded")


def test_supersedes_rules(pop: Chain) -> None:
    [missing] = register_bodies("v2", SERIES, leaves(2), supersedes="nope")
    pop.refuse(RESEARCHER, "dataset.register", missing, "unknown_dataset")
    [other_site] = register_bodies("v2", SERIES, leaves(2), supersedes="ds0")
    pop.refuse(RESEARCHER1, "dataset.register", other_site, "wrong_site")
    [existing] = register_bodies("ds0", SERIES, leaves(2, prefix="1.6"), supersedes="ds0")
    pop.refuse(RESEARCHER, "dataset.register", existing, "supersedes_not_new")
    assert queries.dataset(pop.state, "ds0")["versions"]["superseded_by"] is None


def test_derive_links_parents_and_children(pop: Chain) -> None:
    pop.submit(RESEARCHER1, "dataset.register", register_bodies("ds1", SERIES, leaves(2))[0])
    pop.submit(RESEARCHER, "dataset.derive", derive_body("seg", ["ds0", "ds1"]))
    seg = queries.dataset(pop.state, "seg")
    assert seg["kind"] == "derived"
    assert seg["site"] == "site0"
    assert seg["derivation"]["parents"] == ["ds0", "ds1"]
    assert seg["derivation"]["transformation"] == "segmentation"
    assert seg["derivation"]["code_version"] == digest("container sha").hex()
    assert seg["derivation"]["output"] == digest("output seg").hex()
    assert queries.dataset(pop.state, "ds1")["derivation"]["children"] == ["seg"]
    # its series are added with dataset.register
    pop.submit(RESEARCHER, "dataset.register", register_bodies("seg", "1.3.1", leaves(2))[0])
    assert queries.dataset(pop.state, "seg")["complete_series"] == 1


def test_derive_rules(pop: Chain) -> None:
    pop.refuse(RESEARCHER, "dataset.derive", derive_body("ds0", ["ds0"]), "dataset_exists")
    pop.refuse(RESEARCHER, "dataset.derive", derive_body("seg", ["ds0", "nope"]), "unknown_dataset")
    pop.refuse(RESEARCHER, "dataset.derive", derive_body("seg", []), "bad_body")
    pop.refuse(RESEARCHER, "dataset.derive", derive_body("seg", ["ds0", "ds0"]), "bad_body")
    pop.refuse(RESEARCHER, "dataset.derive", derive_body("seg", ["ds0"], "blur"), "bad_body")
    many = [f"p{i}" for i in range(17)]
    pop.refuse(RESEARCHER, "dataset.derive", derive_body("seg", many), "bad_body")


def test_dataset_queries_refuse_unknown_and_malformed_ids(pop: Chain) -> None:
    with pytest.raises(NotFound):
        queries.dataset(pop.state, "nope")
    with pytest.raises(InvalidQuery):
        queries.dataset(pop.state, "ds0/acc")
    with pytest.raises(NotFound):
        queries.series_leaves(pop.state, "ds0", "1.2.3.999")
    with pytest.raises(InvalidQuery):
        queries.series_leaves(pop.state, "ds0", "not-a-uid")
    with pytest.raises(NotFound):
        queries.find_instance(pop.state, "1.2.3.4.5")
    with pytest.raises(InvalidQuery):
        queries.find_instance(pop.state, "DOE^JANE")


# --------------------------------------------------------------------------- sealing


def _use_by_access(chain: Chain) -> None:
    chain.submit(RESEARCHER, "access.log", access_body("ds0"))


def _use_by_derive(chain: Chain) -> None:
    chain.submit(RESEARCHER1, "dataset.derive", derive_body("seg", ["ds0"]))


def _use_by_trial_register(chain: Chain) -> None:
    chain.submit(RESEARCHER1, "trial.register", trial_body("T1", ["ds0"]))


def _use_by_trial_amend(chain: Chain) -> None:
    chain.submit(RESEARCHER, "trial.register", trial_body("T1"))
    assert queries.dataset(chain.state, "ds0")["sealed"] is None
    chain.submit(RESEARCHER, "trial.amend", amend_body("T1", datasets_added=["ds0"]))


def _use_by_trial_result(chain: Chain) -> None:
    chain.submit(RESEARCHER, "trial.register", trial_body("T1"))
    chain.submit(RESEARCHER, "trial.result", result_body("T1", ["ds0"]))


def _use_by_superseding(chain: Chain) -> None:
    [body] = register_bodies("ds0-v2", "1.2.3.1", leaves(4), supersedes="ds0")
    chain.submit(RESEARCHER, "dataset.register", body)


SEALINGS = {
    "accessed": ("access.log", _use_by_access),
    "derived from": ("dataset.derive", _use_by_derive),
    "in a trial": ("trial.register", _use_by_trial_register),
    "in a trial (amended)": ("trial.amend", _use_by_trial_amend),
    "in a trial result": ("trial.result", _use_by_trial_result),
    "superseded": ("dataset.register", _use_by_superseding),
}


@pytest.mark.parametrize("cause", sorted(SEALINGS))
def test_a_used_dataset_is_sealed_and_takes_no_new_series(pop: Chain, cause: str) -> None:
    action, use = SEALINGS[cause]
    assert queries.dataset(pop.state, "ds0")["sealed"] is None
    use(pop)
    sealed = queries.dataset(pop.state, "ds0")["sealed"]
    assert sealed is not None
    assert sealed["cause"] == cause.removesuffix(" (amended)")
    assert sealed["action"] == action
    assert sealed["height"] == pop.height
    [body] = register_bodies("ds0", "1.2.3.2", leaves(2, prefix="1.8"))
    refusal = pop.refuse(RESEARCHER, "dataset.register", body, "dataset_sealed")
    latest = "ds0-v2" if cause == "superseded" else "ds0"
    assert f"supersedes {latest}" in refusal.message
    assert queries.dataset(pop.state, "ds0")["sealed"] == sealed  # the first use stays


def test_sealing_is_recorded_once_by_the_first_use(pop: Chain) -> None:
    first = pop.submit(RESEARCHER, "access.log", access_body("ds0"), reason="first look")
    pop.submit(RESEARCHER1, "dataset.derive", derive_body("seg", ["ds0"]))
    sealed = queries.dataset(pop.state, "ds0")["sealed"]
    assert sealed["tx"] == first.hash.hex()
    assert sealed["reason"] == "first look"
    assert sealed["actor"] == RESEARCHER.public_key.hex()


def test_consent_and_subject_links_do_not_seal(pop: Chain) -> None:
    pop.submit(SUBJECT, "consent.grant", grant_body("site", "site0"))
    assert queries.dataset(pop.state, "ds0")["sealed"] is None
    [body] = register_bodies("ds0", "1.2.3.2", leaves(2, prefix="1.8"))
    pop.submit(RESEARCHER, "dataset.register", body)


def test_a_series_declared_before_sealing_may_still_complete(pop: Chain) -> None:
    """Its manifest root was fixed by part 0; the last part can only complete exactly it."""
    bodies = register_bodies("ds0", "1.2.3.5", leaves(6, prefix="1.8"), parts=2)
    pop.submit(RESEARCHER, "dataset.register", bodies[0])
    pop.submit(RESEARCHER1, "access.log", access_body("ds0"))
    pop.submit(RESEARCHER, "dataset.register", bodies[1])
    series = {s["uid"]: s for s in queries.dataset(pop.state, "ds0")["series"]}
    assert series["1.2.3.5"]["complete"] is True
    [other] = register_bodies("ds0", "1.2.3.6", leaves(1, prefix="1.9"))
    pop.refuse(RESEARCHER, "dataset.register", other, "dataset_sealed")


def test_a_sealed_dataset_in_the_same_block_refuses_a_later_registration(pop: Chain) -> None:
    [body] = register_bodies("ds0", "1.2.3.2", leaves(2, prefix="1.8"))
    access = pop.tx(RESEARCHER1, "access.log", access_body("ds0"))
    register = pop.tx(RESEARCHER, "dataset.register", body)
    outcome = pop.block([access, register])
    assert outcome[0] is None
    assert outcome[1] is not None
    assert outcome[1].code == "dataset_sealed"


def test_a_new_version_of_a_sealed_dataset_can_be_registered(pop: Chain) -> None:
    pop.submit(RESEARCHER, "access.log", access_body("ds0"))
    [body] = register_bodies("ds0-v2", "1.2.3.1", leaves(4), supersedes="ds0")
    pop.submit(RESEARCHER, "dataset.register", body)
    [more] = register_bodies("ds0-v2", "1.2.3.2", leaves(2, prefix="1.8"))
    pop.submit(RESEARCHER, "dataset.register", more)  # the new version is open until used
    assert queries.dataset(pop.state, "ds0")["versions"]["superseded_by"] == "ds0-v2"
    assert queries.dataset(pop.state, "ds0-v2")["sealed"] is None
