"""The pure vector core: policy state arrays + outcomes + uniform draws in, delays + new state out.

:func:`decide` is the rule of record for a fleet (the simulator, `wsstorm policies show`); its
scalar twin lives in :mod:`wsstorm.policies.scalar`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from wsstorm.policies.numeric import MAX_DELAY, Arr

if TYPE_CHECKING:
    from wsstorm.policies.spec import PolicySpec


class PolicyState(NamedTuple):
    """Per-client state arrays: retries n, previous delay, last delay, budget tokens, per-process constant."""

    n: Arr
    prev: Arr
    last: Arr
    tokens: Arr
    const: Arr


NDRAWS = 2  # uniforms drawn per decision and client


def initial_state(spec: PolicySpec, process_seeds: Arr) -> PolicyState:
    """The state of fresh clients (one per process seed given)."""
    m = process_seeds.shape[0]
    const = spec.preset.const(spec.params, process_seeds) if spec.preset.const else np.zeros(m)
    tokens = np.full(m, spec.budget.tokens if spec.budget else 0.0)
    return PolicyState(np.zeros(m, np.int64), np.full(m, np.nan), np.full(m, np.nan), tokens, const)


def on_open(spec: PolicySpec, s: PolicyState) -> PolicyState:
    """Pure: a connection opened. Reset rules that fire on open; the budget refunds."""
    n, prev, tokens = s.n, s.prev, s.tokens
    if spec.preset.reset_uptime(spec._p) <= 0:
        n, prev = np.zeros_like(n), np.full_like(prev, np.nan)
    if spec.budget is not None:
        tokens = np.minimum(spec.budget.tokens, tokens + spec.budget.refund)
    return PolicyState(n, prev, s.last, tokens, s.const)


def decide(
    spec: PolicySpec, s: PolicyState, code: Arr, uptime: Arr, hint: Arr, u: Arr, reset: bool = True
) -> tuple[Arr, PolicyState]:
    """Pure: state + outcome (encoded code, uptime s, hint s or NaN) + uniforms (m, NDRAWS) -> delays, new state.

    A NaN delay means give up.
    """
    preset, p = spec.preset, spec._p
    n, prev = s.n, s.prev
    if reset:
        closed_long = (code >= 0) & (uptime >= preset.reset_uptime(p))
        n = np.where(closed_long, 0, n)
        prev = np.where(closed_long, np.nan, prev)
    k = n + 1
    d = np.minimum(preset.delay(p, k, prev, code, hint, s.const, u), MAX_DELAY)
    n_new = np.where(preset.counts(code), k, n) if preset.counts else k
    prev_new = np.where(np.isnan(d), prev, d)
    tokens = s.tokens
    if spec.budget is not None:
        b = spec.budget
        elapsed = np.nan_to_num(s.last) + np.maximum(uptime, 0.0)
        tokens = np.minimum(b.tokens, tokens + b.refill * elapsed)
        live = ~np.isnan(d)
        short = live & (tokens < b.cost)
        if b.wait and b.refill > 0:
            with np.errstate(over="ignore"):  # a tiny refill: the wait is clamped like every delay
                need = np.minimum((b.cost - tokens) / b.refill, MAX_DELAY)
            d = np.where(short, np.maximum(d, need), d)
        else:
            d = np.where(short, np.nan, d)
        tokens = np.where(~np.isnan(d), tokens - b.cost, tokens)
    return d, PolicyState(n_new, prev_new, d, tokens, s.const)
