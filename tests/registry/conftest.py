from __future__ import annotations

import pytest

from tests.registry.helpers import Chain, populated_chain


@pytest.fixture
def chain() -> Chain:
    """A fresh chain: only genesis (site admins)."""
    return Chain()


@pytest.fixture
def pop() -> Chain:
    """Members enrolled at site0/site1, dataset ds0 registered, SUBJECT linked to ds0."""
    return populated_chain()
