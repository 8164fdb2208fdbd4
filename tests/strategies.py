"""Hypothesis strategies shared by the policy tests, and the example counts of every property test."""

from __future__ import annotations

import math

from hypothesis import assume, settings
from hypothesis import strategies as st

from wsstorm.policies import CATALOG, PolicyError, PolicySpec, parse_policy
from wsstorm.policies.throttles import THROTTLES


def examples(n: int) -> int:
    """n examples under the default profile, scaled like the active one (the fast profile runs fewer)."""
    return max(10, n * settings().max_examples // settings.get_profile("default").max_examples)


@st.composite
def specs(draw) -> PolicySpec:
    """Any preset with random valid parameters (inf where allowed), bare or with one wrapper (budget or a throttle)."""
    preset = CATALOG[draw(st.sampled_from(sorted(CATALOG)))]
    text = preset.name + _params(draw, preset.params)
    wrapper = draw(st.sampled_from(["", "", "budget", "sre-throttle", "grpc-throttle"]))
    if wrapper == "budget":
        tokens, cost, refund = draw(st.floats(0.5, 20)), draw(st.floats(0, 3)), draw(st.floats(0, 2))
        refill, wait = draw(st.one_of(st.just(0.0), st.floats(0, 2))), draw(st.integers(0, 1))
        text += f"+budget:tokens={tokens!r},cost={cost!r},refund={refund!r},refill={refill!r},wait={wait:d}"
    elif wrapper:
        text += "+" + wrapper + _params(draw, THROTTLES[wrapper].params)
    try:
        return parse_policy(text)
    except PolicyError:
        assume(False)
        raise


def _params(draw, params) -> str:
    """':key=value,...' for a random subset of `params` (valid values, inf where allowed), or ''."""
    given_: dict[str, str] = {}
    for prm in params:
        if not draw(st.booleans()):
            continue
        if prm.choices:
            v = draw(st.sampled_from(prm.choices))
        elif prm.integer:
            v = float(draw(st.integers(int(prm.lo), int(min(prm.hi, 200)))))
        else:
            v = draw(
                st.one_of(
                    st.floats(min_value=prm.lo, max_value=min(prm.hi, 200.0), allow_nan=False),
                    st.sampled_from([x for x in (prm.lo, 1.0, 1.3, 1.618, 2.0, 3.0, 10.0) if prm.lo <= x <= prm.hi]),
                )
            )
            if prm.allow_inf and draw(st.integers(0, 5)) == 0:
                v = math.inf
        given_[prm.name] = repr(v)
    return ":" + ",".join(f"{k}={v}" for k, v in given_.items()) if given_ else ""
