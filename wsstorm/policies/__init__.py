"""Reconnect policies: pure, seeded rules for the delay before the next attempt (docs/contracts.md).

This package owns the policy catalog and everything a policy decides: outcomes and their int
encoding (outcomes), the parameter model (params), the preset rules (rules, backoff, libraries,
presets), the wrappers: the retry budget (wrappers) and the client-side throttles (throttles),
spec parsing (spec), the pure vector core (core) and its scalar twin (scalar), seeded uniforms
(draws), and the stateful client/fleet wrappers (client); catalog.py is the `wsstorm policies`
command. It may import numpy (only on first use, through numeric.np: the scalar path runs
without it), the standard library and wsstorm.errors only: no network, process or Locust/gevent
I/O (the one file it reads is a TOML policy file in load_policy_file). Every
`from wsstorm.policies import X` of the public API below keeps working.
tests/test_policies_scalar.py holds the scalar and vector twins equal, step by step, for every preset.
"""

from __future__ import annotations

from wsstorm.policies.client import ClientPolicy, VectorPolicy
from wsstorm.policies.core import NDRAWS, PolicyState, decide, initial_state, on_open
from wsstorm.policies.draws import client_uniforms, stream_unit
from wsstorm.policies.numeric import MAX_DELAY
from wsstorm.policies.numeric import grow as _grow  # noqa: F401  (tests check the twins of the growth curve)
from wsstorm.policies.numeric import grow1 as _grow1  # noqa: F401
from wsstorm.policies.outcomes import (
    FAIL_CODES,
    HTTP_UNKNOWN,
    Outcome,
    after_code_label,
    hint_from_reason,
    outcome_code,
    parse_code,
)
from wsstorm.policies.params import Param, PolicyError
from wsstorm.policies.presets import CATALOG
from wsstorm.policies.rules import Preset
from wsstorm.policies.scalar import ScalarState, decide_scalar, initial_scalar_state, on_open_scalar
from wsstorm.policies.spec import PolicySpec, load_policy_file, parse_policy
from wsstorm.policies.throttles import THROTTLES, ThrottleSpec
from wsstorm.policies.wrappers import BUDGET_PARAMS, BudgetSpec

# the old name, kept while tests/test_policies.py imports it (analysis/charts.py has an unrelated code_label)
code_label = after_code_label

__all__ = [
    "BUDGET_PARAMS",
    "CATALOG",
    "FAIL_CODES",
    "HTTP_UNKNOWN",
    "MAX_DELAY",
    "NDRAWS",
    "THROTTLES",
    "BudgetSpec",
    "ClientPolicy",
    "Outcome",
    "Param",
    "PolicyError",
    "PolicySpec",
    "PolicyState",
    "Preset",
    "ScalarState",
    "ThrottleSpec",
    "VectorPolicy",
    "after_code_label",
    "client_uniforms",
    "code_label",
    "decide",
    "decide_scalar",
    "hint_from_reason",
    "initial_scalar_state",
    "initial_state",
    "load_policy_file",
    "on_open",
    "on_open_scalar",
    "outcome_code",
    "parse_code",
    "parse_policy",
    "stream_unit",
]
