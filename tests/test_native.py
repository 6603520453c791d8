"""In ``make test-native`` the hot modules really are the compiled ones.

``make test-native`` builds a compiled copy of the tree (bench/native.py) and
runs the equivalence-relevant tests there; this test makes sure that run did
not silently import the interpreted sources.
"""

from __future__ import annotations

import importlib
import os

import pytest

from bench.native import native_modules


@pytest.mark.skipif(
    os.environ.get("RADLEDGER_EXPECT_NATIVE") != "1", reason="only in make test-native"
)
@pytest.mark.parametrize("path", native_modules())
def test_the_hot_modules_are_compiled(path: str) -> None:
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    assert module.__file__ is not None
    assert module.__file__.endswith(".so"), module.__file__


def test_the_native_modules_exist() -> None:
    for path in native_modules():
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert module.__name__ == path.removesuffix(".py").replace("/", ".")
