"""Optional compiled build: ``RADLEDGER_COMPILE=1`` compiles the hot modules with mypyc.

Everything is configured in pyproject.toml; this file only adds the extension
modules when asked, so a plain or editable install stays pure Python. A site
that wants the faster node installs with::

    pip install mypy setuptools wheel
    RADLEDGER_COMPILE=1 pip install --no-build-isolation .

The list of modules is ``[tool.radledger] native-modules`` in pyproject.toml.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup


def _ext_modules() -> list[Any]:
    if os.environ.get("RADLEDGER_COMPILE") != "1":
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 - only needed for a compiled build

    config = tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text())
    modules: list[str] = config["tool"]["radledger"]["native-modules"]
    return list(mypycify(modules, opt_level="3"))


setup(ext_modules=_ext_modules())
