"""configs/: the example is the dumped default, and README documents every option."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from node.config import SECTION_TYPES, NodeConfig, dump_config, load_config, toml_value

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
_ROW = re.compile(r"^\| `([a-z_]+)` \| `([^`]*)` \|")


def documented() -> dict[str, dict[str, str]]:
    """Section -> key -> default, from the tables of configs/README.md."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in (CONFIGS / "README.md").read_text().splitlines():
        heading = re.fullmatch(r"## \[([a-z0-9]+)\]", line)
        if heading is not None:
            current = tables.setdefault(heading.group(1), {})
        elif line.startswith("## "):
            current = None
        row = _ROW.match(line)
        if row is not None and current is not None:
            assert row.group(1) not in current, f"{row.group(1)} documented twice"
            current[row.group(1)] = row.group(2)
    return tables


def test_example_toml_is_the_dumped_default() -> None:
    example = CONFIGS / "example.toml"
    assert example.read_text() == dump_config(NodeConfig.default())
    assert load_config(example) == NodeConfig.default()


def test_readme_documents_every_option_with_its_default() -> None:
    default = NodeConfig.default()
    expected = {
        cls.SECTION: {
            f.name: toml_value(getattr(getattr(default, cls.SECTION), f.name))
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        }
        for cls in SECTION_TYPES
    }
    assert documented() == expected


def test_readme_sections_are_the_config_sections_in_order() -> None:
    assert list(documented()) == [f.name for f in dataclasses.fields(NodeConfig)]
