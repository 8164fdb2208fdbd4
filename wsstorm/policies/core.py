"""The pure vector core: policy state arrays + outcomes + uniform draws in, delays + new state out.

:func:`decide` is the rule of record for a fleet (the simulator, `wsstorm policies show`); its
scalar twin lives in :mod:`wsstorm.policies.scalar`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from wsstorm.policies import throttles
from wsstorm.policies.numeric import MAX_DELAY, Arr, np

if TYPE_CHECKING:
    from wsstorm.policies.spec import PolicySpec


class PolicyState(NamedTuple):
    """Per-client state arrays: retries n, previous delay, last delay, budget tokens, per-process constant,
    and the throttle's columns (m, width), (m, 0) without one."""

    n: Arr
    prev: Arr
    last: Arr
    tokens: Arr
    const: Arr
    wrap: Arr


NDRAWS = 2  # uniforms drawn per decision and client by a preset (a throttle adds spec.ndraws - NDRAWS)


def initial_state(spec: PolicySpec, process_seeds: Arr) -> PolicyState:
    """The state of fresh clients (one per process seed given)."""
    m = process_seeds.shape[0]
    const = np.zeros(m)
    if spec.preset.const is not None:
        seeds, at = np.unique(process_seeds, return_inverse=True)
        const = np.array([spec.preset.const(spec.params, s) for s in seeds.tolist()], dtype=np.float64)[at]
    tokens = np.full(m, spec.budget.tokens if spec.budget else 0.0)
    wrap = throttles.initial_wrap(spec.throttle, m)
    return PolicyState(np.zeros(m, np.int64), np.full(m, np.nan), np.full(m, np.nan), tokens, const, wrap)


def on_open(spec: PolicySpec, s: PolicyState) -> PolicyState:
    """Pure: a connection opened. Reset rules that fire on open; the budget refunds; the throttle counts it."""
    n, prev, tokens, wrap = s.n, s.prev, s.tokens, s.wrap
    if spec.preset.reset_uptime(spec._p) <= 0:
        n, prev = np.zeros_like(n), np.full_like(prev, np.nan)
    if spec.budget is not None:
        tokens = np.minimum(spec.budget.tokens, tokens + spec.budget.refund)
    if spec.throttle is not None:
        wrap = throttles.on_open(spec, wrap, s.last)
    return PolicyState(n, prev, s.last, tokens, s.const, wrap)


def step(
    spec: PolicySpec,
    n: Arr,
    prev: Arr,
    code: Arr,
    uptime: Arr,
    hint: Arr,
    const: Arr,
    last: Arr,
    u: Arr,
    reset: bool,
) -> tuple[Arr, Arr, Arr]:
    """Pure: one decision of the preset alone (reset rule, delay rule, count) -> delays, n, prev."""
    preset, p = spec.preset, spec._p
    if reset:
        closed_long = (code >= 0) & (uptime >= preset.reset_uptime(p))
        if closed_long.any():  # most decisions follow a failure (code < 0): nothing to reset, no copies
            n = np.where(closed_long, 0, n)
            prev = np.where(closed_long, np.nan, prev)
    k = n + 1
    if preset.context:
        raw = preset.delay(p, k, prev, code, hint, const, u, up=uptime, last=last)
    else:
        raw = preset.delay(p, k, prev, code, hint, const, u)
    d = np.minimum(raw, MAX_DELAY)
    n_new = np.where(preset.counts(code), k, n) if preset.counts else k
    prev_new = preset.remember(prev, d, code) if preset.remember else np.where(np.isnan(d), prev, d)
    return d, n_new, prev_new


def decide(
    spec: PolicySpec, s: PolicyState, code: Arr, uptime: Arr, hint: Arr, u: Arr, reset: bool = True
) -> tuple[Arr, PolicyState]:
    """Pure: state + outcome (encoded code, uptime s, hint s or NaN) + uniforms (m, spec.ndraws) -> delays, state.

    A NaN delay means give up.
    """
    d, n_new, prev_new = step(spec, s.n, s.prev, code, uptime, hint, s.const, s.last, u[:, :NDRAWS], reset)
    tokens, wrap = s.tokens, s.wrap
    if spec.budget is not None:
        b = spec.budget
        elapsed = np.nan_to_num(s.last) + np.maximum(uptime, 0.0)
        tokens = np.minimum(b.tokens, tokens + b.refill * elapsed)
        live = ~np.isnan(d)
        short = live & (tokens < b.cost)
        if b.wait and b.refill > 0:
            with np.errstate(over="ignore"):  # a tiny refill: the wait is clamped like every delay
                # tokens never fall below 0 but by rounding: the longest wait is cost / refill (the cap)
                need = np.minimum((b.cost - np.maximum(tokens, 0.0)) / b.refill, MAX_DELAY)
            d = np.where(short, np.maximum(d, need), d)
        else:
            d = np.where(short, np.nan, d)
        tokens = np.where(~np.isnan(d), tokens - b.cost, tokens)
    if spec.throttle is not None:
        d, n_new, prev_new, wrap = throttles.decide(spec, s, d, n_new, prev_new, code, uptime, u, step)
    return d, PolicyState(n_new, prev_new, d, tokens, s.const, wrap)
