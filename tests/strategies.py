"""Hypothesis strategies shared by the policy tests."""

from __future__ import annotations

import math

from hypothesis import assume
from hypothesis import strategies as st

from wsstorm.policies import CATALOG, PolicyError, PolicySpec, parse_policy


@st.composite
def specs(draw) -> PolicySpec:
    """Any preset with random valid parameters (inf where allowed), with or without a budget."""
    preset = CATALOG[draw(st.sampled_from(sorted(CATALOG)))]
    given_: dict[str, str] = {}
    for prm in preset.params:
        if not draw(st.booleans()):
            continue
        if prm.choices:
            v = draw(st.sampled_from(prm.choices))
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
    text = preset.name + (":" + ",".join(f"{k}={v}" for k, v in given_.items()) if given_ else "")
    if draw(st.booleans()):
        text += "+budget:tokens=%r,cost=%r,refund=%r,refill=%r,wait=%d" % (
            draw(st.floats(0.5, 20)),
            draw(st.floats(0, 3)),
            draw(st.floats(0, 2)),
            draw(st.one_of(st.just(0.0), st.floats(0, 2))),
            draw(st.integers(0, 1)),
        )
    try:
        return parse_policy(text)
    except PolicyError:
        assume(False)
        raise
