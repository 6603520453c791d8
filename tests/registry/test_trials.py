"""trial.register / trial.amend / trial.result, access naming a trial, and the timeline."""

from __future__ import annotations

import pytest

from registry import queries
from registry.errors import InvalidQuery, NotFound
from tests.registry.helpers import (
    ADMIN,
    AUDITOR,
    RESEARCHER,
    RESEARCHER1,
    Chain,
    access_body,
    amend_body,
    digest,
    leaves,
    register_bodies,
    result_body,
    trial_body,
)


def test_register_rules(pop: Chain) -> None:
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", ["ds0"]))
    pop.refuse(RESEARCHER1, "trial.register", trial_body("T1"), "trial_exists")
    pop.refuse(RESEARCHER, "trial.register", trial_body("T2", ["nope"]), "unknown_dataset")
    pop.refuse(AUDITOR, "trial.register", trial_body("T2"), "role_forbidden")
    for bad in (["nct01234567"], ["NCT123"], ["NCT01234567", "NCT01234567"], ["X1234567"]):
        pop.refuse(RESEARCHER, "trial.register", trial_body("T2", registry_ids=bad), "bad_body")
    ids = ["NCT01234567", "ISRCTN12345678", "EUCT2023-501234-12-00"]
    pop.submit(ADMIN[1], "trial.register", trial_body("T2", registry_ids=ids))
    info = queries.trial(pop.state, "T2")
    assert info["site"] == "site1"
    assert info["registry_ids"] == ids
    assert queries.dataset(pop.state, "ds0")["trials"] == ["T1"]


def test_amend_and_result_only_by_the_trials_site(pop: Chain) -> None:
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", ["ds0"]))
    amend = amend_body("T1", protocol=digest("protocol v2"))
    pop.refuse(RESEARCHER1, "trial.amend", amend, "wrong_site")
    pop.refuse(AUDITOR, "trial.amend", amend, "role_forbidden")
    pop.refuse(RESEARCHER, "trial.amend", amend_body("T9", protocol=digest("p")), "unknown_trial")
    pop.refuse(RESEARCHER, "trial.amend", amend_body("T1"), "bad_body")  # changes nothing
    pop.refuse(
        RESEARCHER, "trial.amend", amend_body("T1", datasets_added=["ds0"]), "dataset_in_trial"
    )
    pop.refuse(
        RESEARCHER, "trial.amend", amend_body("T1", datasets_added=["zz"]), "unknown_dataset"
    )
    pop.submit(ADMIN[0], "trial.amend", amend)  # any active member of the site
    assert queries.trial(pop.state, "T1")["protocol"] == digest("protocol v2").hex()
    pop.refuse(RESEARCHER1, "trial.result", result_body("T1"), "wrong_site")
    pop.refuse(RESEARCHER, "trial.result", result_body("T1", ["zz"]), "unknown_dataset")
    pop.refuse(RESEARCHER, "trial.result", result_body("T9"), "unknown_trial")
    pop.submit(RESEARCHER, "trial.result", result_body("T1", ["ds0"]))
    pop.submit(RESEARCHER, "trial.result", result_body("T1"))  # several results allowed
    events = [e["event"] for e in queries.trial(pop.state, "T1")["timeline"]]
    assert events == ["register", "amend", "result", "result"]


def test_amendment_is_flagged_only_after_access(pop: Chain) -> None:
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", ["ds0"]))
    pop.submit(RESEARCHER, "trial.amend", amend_body("T1", endpoints=digest("endpoints v2")))
    pop.submit(RESEARCHER1, "access.log", access_body("ds0"), reason="first look")
    accessed_at = pop.height
    pop.submit(RESEARCHER, "access.log", access_body("ds0"))  # only the first is in the timeline
    pop.submit(RESEARCHER, "trial.amend", amend_body("T1", protocol=digest("protocol v3")))
    info = queries.trial(pop.state, "T1")
    timeline = info["timeline"]
    assert [(e["event"], e["flagged_after_access"]) for e in timeline] == [
        ("register", False),
        ("amend", False),
        ("first_access", False),
        ("amend", True),
    ]
    assert timeline[2]["height"] == accessed_at == info["first_access_height"]
    assert timeline[2]["actor"] == RESEARCHER1.public_key.hex()
    assert timeline[2]["reason"] == "first look"
    heights = [e["height"] for e in timeline]
    assert heights == sorted(heights)
    assert info["endpoints"] == digest("endpoints v2").hex()
    assert info["protocol"] == digest("protocol v3").hex()


def test_an_access_earlier_in_the_same_block_flags_the_amendment(pop: Chain) -> None:
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", ["ds0"]))
    access = pop.tx(RESEARCHER1, "access.log", access_body("ds0"))
    amend = pop.tx(RESEARCHER, "trial.amend", amend_body("T1", protocol=digest("v2")))
    assert pop.block([access, amend]) == [None, None]
    assert queries.trial(pop.state, "T1")["timeline"][-1]["flagged_after_access"] is True


def test_datasets_added_by_amendment_count_from_then_on(pop: Chain) -> None:
    [body] = register_bodies("ds1", "1.6.1", leaves(2, prefix="1.6"))
    pop.submit(RESEARCHER, "dataset.register", body)
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", ["ds0"]))
    pop.submit(RESEARCHER, "trial.amend", amend_body("T1", datasets_added=["ds1"]))
    assert queries.trial(pop.state, "T1")["datasets"] == ["ds0", "ds1"]
    pop.submit(RESEARCHER, "access.log", access_body("ds1", trial="T1"))
    pop.submit(RESEARCHER, "trial.amend", amend_body("T1", protocol=digest("v2")))
    assert queries.trial(pop.state, "T1")["timeline"][-1]["flagged_after_access"] is True


def test_access_naming_a_trial(pop: Chain) -> None:
    [body] = register_bodies("ds1", "1.6.1", leaves(2, prefix="1.6"))
    pop.submit(RESEARCHER, "dataset.register", body)
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", ["ds0"]))
    pop.refuse(RESEARCHER, "access.log", access_body("ds0", trial="T9"), "unknown_trial")
    pop.refuse(RESEARCHER, "access.log", access_body("ds1", trial="T1"), "dataset_not_in_trial")
    pop.submit(RESEARCHER, "access.log", access_body("ds0", "clinical-trial", trial="T1"))
    [entry] = queries.dataset(pop.state, "ds0")["access"]
    assert entry["trial"] == "T1"
    assert entry["purpose"] == "clinical-trial"


def test_trial_query_errors(pop: Chain) -> None:
    with pytest.raises(NotFound):
        queries.trial(pop.state, "T1")
    with pytest.raises(InvalidQuery):
        queries.trial(pop.state, "../T1")


def test_a_trial_registered_after_its_data_was_accessed_is_flagged(pop: Chain) -> None:
    """Register after peeking: the access before the trial existed counts."""
    peek = pop.submit(RESEARCHER1, "access.log", access_body("ds0"), reason="a quick look")
    peeked_at, peeked_time = pop.height, pop.time_ms
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", ["ds0"]))
    pop.submit(RESEARCHER, "trial.amend", amend_body("T1", protocol=digest("protocol v2")))
    info = queries.trial(pop.state, "T1")
    assert info["first_access_height"] == peeked_at
    assert info["first_access_time_ms"] == peeked_time
    timeline = info["timeline"]
    assert [(e["event"], e["flagged_after_access"]) for e in timeline] == [
        ("first_access", False),
        ("register", True),
        ("amend", True),
    ]
    first = timeline[0]
    assert first["height"] == peeked_at
    assert first["actor"] == RESEARCHER1.public_key.hex()
    assert first["reason"] == "a quick look"
    assert first["audit"]["tx"] == peek.hash.hex()
    assert first["datasets"] == ["ds0"]
    pop.submit(RESEARCHER, "access.log", access_body("ds0", trial="T1"))
    events = [e["event"] for e in queries.trial(pop.state, "T1")["timeline"]]
    assert events.count("first_access") == 1  # set once


def test_a_dataset_accessed_before_it_joined_flags_the_amendment_adding_it(pop: Chain) -> None:
    [body] = register_bodies("ds1", "1.6.1", leaves(2, prefix="1.6"))
    pop.submit(RESEARCHER, "dataset.register", body)
    pop.submit(RESEARCHER, "access.log", access_body("ds1"))
    accessed_at = pop.height
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", ["ds0"]))
    pop.submit(RESEARCHER, "trial.amend", amend_body("T1", protocol=digest("v2")))
    pop.submit(RESEARCHER, "trial.amend", amend_body("T1", datasets_added=["ds1"]))
    info = queries.trial(pop.state, "T1")
    assert [(e["event"], e["flagged_after_access"]) for e in info["timeline"]] == [
        ("first_access", False),  # of ds1, in height order
        ("register", False),
        ("amend", False),  # the trial's data then (ds0) had not been accessed
        ("amend", True),  # adds ds1, which had been
    ]
    assert info["first_access_height"] == accessed_at
    assert info["timeline"][0]["datasets"] == ["ds1"]
    assert info["timeline"][0]["height"] == accessed_at


def test_the_earliest_prior_access_of_several_datasets_is_the_first(pop: Chain) -> None:
    [body] = register_bodies("ds1", "1.6.1", leaves(2, prefix="1.6"))
    pop.submit(RESEARCHER, "dataset.register", body)
    pop.submit(RESEARCHER, "access.log", access_body("ds1"))
    first = pop.height
    pop.submit(RESEARCHER, "access.log", access_body("ds0"))
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", ["ds0", "ds1"]))
    info = queries.trial(pop.state, "T1")
    assert info["first_access_height"] == first
    assert info["timeline"][0]["datasets"] == ["ds1"]
