"""Hypothesis settings for the property and stateful tests, chosen once per pytest run.

``ci`` (the default: ``make test``, ``make unit`` and CI): a fixed number of examples from a
derandomized seed, no example database and no shrinking, so every run tries the same inputs in
the same order within a bounded time (a failure prints every draw of its example).
``fuzz`` (``make fuzz``): many more examples from a random seed, shrunk to a minimal failing
example and remembered in ``.hypothesis/`` so it is replayed first next time;
``FUZZ_EXAMPLES`` sets how many per test. ``HYPOTHESIS_PROFILE`` picks a profile by name.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings

#: The tests drive the operators against a simulator started once per test (function-scoped
#: fixtures); each example isolates itself (a fresh store, counts taken before and after).
_SHARED: dict[str, Any] = {"deadline": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.filter_too_much]}

settings.register_profile("ci", max_examples=50, stateful_step_count=12, derandomize=True,
                          database=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          **_SHARED)
# derandomize=False said outright: with CI set, Hypothesis's own default (which a profile
# inherits) is derandomized.
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "500")),
                          stateful_step_count=30, derandomize=False, **_SHARED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
