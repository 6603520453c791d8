"""Shared test configuration.

Hypothesis prints the failing example and a reproduction blob on failure; the
"ci" profile (used when CI=true) also derandomises nothing, so every run
explores new inputs, and prints the seed with ``--hypothesis-show-statistics``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", print_blob=True, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
