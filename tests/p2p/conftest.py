"""Fixtures of the peer-layer tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.p2p.helpers import Nets


@pytest.fixture
async def nets() -> AsyncIterator[Nets]:
    box = Nets()
    try:
        yield box
    finally:
        await box.close()
