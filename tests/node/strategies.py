"""Hypothesis strategies for node configurations, derived from each option's spec."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from hypothesis import strategies as st

from ledger.genesis import NAME_PATTERN
from node.config import (
    SECTION_TYPES,
    AddressSpec,
    BoolSpec,
    ChoiceSpec,
    ConfigError,
    IntSpec,
    NameSpec,
    NodeConfig,
    PathSpec,
    Section,
    Spec,
    spec_of,
)

T = TypeVar("T")

hosts = st.one_of(
    st.builds("127.0.0.{}".format, st.integers(0, 255)),
    st.sampled_from(["localhost", "0.0.0.0", "node-1.hospital.example", "[::1]"]),
)
addresses = st.builds("{}:{}".format, hosts, st.integers(1, 65535))
node_keys = st.binary(min_size=32, max_size=32).map(bytes.hex)


def values(spec: Spec) -> st.SearchStrategy[Any]:
    """Valid values of one option."""
    if isinstance(spec, IntSpec):
        return st.integers(spec.low, spec.high)
    if isinstance(spec, BoolSpec):
        return st.booleans()
    if isinstance(spec, ChoiceSpec):
        return st.sampled_from(spec.choices)
    if isinstance(spec, NameSpec):
        return st.from_regex(NAME_PATTERN, fullmatch=True)
    if isinstance(spec, PathSpec):
        return st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)
    if isinstance(spec, AddressSpec):
        return st.one_of(st.just(""), addresses) if spec.optional else addresses
    keys = st.lists(node_keys, max_size=5, unique=True)
    if spec.of == "keys":
        return keys.map(tuple)
    return keys.flatmap(
        lambda ks: st.tuples(*[st.builds(f"{k}@{{}}".format, addresses) for k in ks])
    )


def _present(value: object) -> bool:
    return value is not None


def _unwrap(value: T | None) -> T:
    assert value is not None
    return value


def _build(cls: type[Section], kwargs: dict[str, Any]) -> Section | None:
    try:
        return cls(**kwargs)
    except ConfigError:  # a rule between options (e.g. backoff cap < base)
        return None


def sections(cls: type[Section]) -> st.SearchStrategy[Section]:
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    kwargs = st.fixed_dictionaries({f.name: values(spec_of(f)) for f in fields})
    return kwargs.map(lambda kw: _build(cls, kw)).filter(_present).map(_unwrap)


def _config(parts: dict[str, Section]) -> NodeConfig | None:
    try:
        return NodeConfig(**parts)  # type: ignore[arg-type]
    except ConfigError:  # two listeners on one address
        return None


node_configs: st.SearchStrategy[NodeConfig] = (
    st.fixed_dictionaries({cls.SECTION: sections(cls) for cls in SECTION_TYPES})
    .map(_config)
    .filter(_present)
    .map(_unwrap)
)
