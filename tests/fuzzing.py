"""The fuzz tests' shared budget: bounded, derandomized (the same examples on every run), and scaled by
``AGENTPACK_FUZZ_SCALE`` (10 runs ten times as many examples)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = int(os.environ.get("AGENTPACK_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """``examples`` per property (times ``SCALE``), derandomized, with no deadline and no example database."""
    return settings(
        max_examples=examples * SCALE,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
