"""Each jittered preset's draws follow its formula: Kolmogorov-Smirnov tests, scalar and vector APIs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from wsstorm.policies import FAIL_CODES, Outcome, outcome_code, parse_policy

N_SCALAR = 1000
N_VECTOR = 5000
ALPHA = 1e-3  # seeded, so not flaky; small enough that a right formula never fails by chance


def scalar_draws(text: str, outcome: Outcome, k: int, n: int = N_SCALAR) -> np.ndarray:
    """The k-th delay of n independently seeded clients, all fed the same outcome."""
    spec = parse_policy(text)
    out = np.empty(n)
    for s in range(n):
        c = spec.client(seed=s, process_seed=s)
        for _ in range(k):
            d = c.next_delay(outcome)
        out[s] = d
    return out


def vector_draws(text: str, outcome: Outcome, k: int, n: int = N_VECTOR) -> np.ndarray:
    vec = parse_policy(text).vector(n, seed=12345, process_seed=np.arange(n))
    code = outcome_code(outcome)
    hint = np.nan if outcome.retry_after is None else outcome.retry_after
    for _ in range(k):
        d = vec.next_delays(None, code, outcome.uptime_s, hint, reset=False)
    return d


REFUSED = Outcome(fail="refused")
C1006 = Outcome(code=1006, uptime_s=0.1)
C1013 = Outcome(code=1013, uptime_s=0.1)

# (spec, outcome, retry k, the formula's distribution)
CASES = [
    ("full-jitter:base=0.5,cap=30", REFUSED, 1, stats.uniform(0, 0.5)),
    ("full-jitter:base=0.5,cap=30", REFUSED, 4, stats.uniform(0, 4.0)),
    ("full-jitter:base=1,cap=3", REFUSED, 5, stats.uniform(0, 3.0)),
    ("equal-jitter", REFUSED, 3, stats.uniform(2.0, 2.0)),
    ("decorrelated-jitter", REFUSED, 1, stats.uniform(1.0, 2.0)),
    ("code-aware", C1013, 3, stats.uniform(2.0, 2.0)),  # equal jitter over 4 s; no reset at 0.1 s uptime
    ("code-aware", C1006, 4, stats.uniform(0.0, 8.0)),  # full jitter over 8 s
    ("code-aware", Outcome(code=1012, uptime_s=60), 1, stats.uniform(1.0, 4.0)),
    ("code-aware", Outcome(fail="http_status", status=503, retry_after=10.0), 2, stats.uniform(10.0, 1.0)),
    ("grpc", REFUSED, 3, stats.uniform(2.56 * 0.8, 2.56 * 0.4)),
    ("grpc", REFUSED, 12, stats.uniform(120 * 0.8, 120 * 0.4)),
    ("centrifuge", REFUSED, 3, stats.uniform(0.5, 2.001)),  # 500 ms + randomInt(0, 2000) ms
    ("websockets-py", REFUSED, 1, stats.uniform(0.0, 5.0)),
    ("ably", REFUSED, 1, stats.uniform(12.0, 3.0)),  # 15 s * (1 - U*0.2)
    ("ably", REFUSED, 3, stats.uniform(20.0, 5.0)),  # 15 s * 5/3 * (1 - U*0.2)
    ("ably", REFUSED, 4, stats.uniform(24.0, 6.0)),  # coefficient capped at 2
]


@pytest.mark.parametrize("api", ["scalar", "vector"])
@pytest.mark.parametrize("text, outcome, k, dist", CASES, ids=[f"{c[0]}-k{c[2]}" for c in CASES])
def test_draws_match_the_formula(api, text, outcome, k, dist):
    draws = scalar_draws(text, outcome, k) if api == "scalar" else vector_draws(text, outcome, k)
    assert not np.isnan(draws).any()
    res = stats.kstest(draws, dist.cdf)
    assert res.pvalue > ALPHA, f"{text} k={k} {api}: KS D={res.statistic:.4f} p={res.pvalue:.2g}"


def test_a_wrong_formula_is_rejected():
    """The KS check has power: full-jitter's 4th retry is not U(0, 2^4 * base)."""
    draws = vector_draws("full-jitter:base=0.5,cap=30", REFUSED, 4)
    assert stats.kstest(draws, stats.uniform(0, 8.0).cdf).pvalue < ALPHA


@pytest.mark.parametrize("api", ["scalar", "vector"])
def test_decorrelated_jitter_is_uniform_given_the_previous_delay(api):
    base = 1.0
    if api == "scalar":
        pairs = []
        spec = parse_policy("decorrelated-jitter")
        for s in range(N_SCALAR):
            c = spec.client(seed=s)
            pairs.append((c.next_delay(REFUSED), c.next_delay(REFUSED)))
        first, second = np.array(pairs).T
    else:
        vec = parse_policy("decorrelated-jitter").vector(N_VECTOR, seed=3)
        first = vec.next_delays(None, FAIL_CODES["refused"])
        second = vec.next_delays(None, FAIL_CODES["refused"])
    u = (second - base) / (3 * first - base)  # cap 60 is never reached here
    assert stats.kstest(u, stats.uniform(0, 1).cdf).pvalue > ALPHA


@pytest.mark.parametrize("api", ["scalar", "vector"])
def test_socketio_deviation_magnitude_and_sign(api):
    """backo2: |delay - base| = floor(r*jitter*ms) ~ U(0, 0.5 s); the sign comes from the same draw."""
    draws = scalar_draws("socketio", REFUSED, 1) if api == "scalar" else vector_draws("socketio", REFUSED, 1)
    dev = np.abs(draws - 1.0)
    assert stats.kstest(dev, stats.uniform(0, 0.5).cdf).pvalue > ALPHA
    # r < 0.1 gives the smallest deviations (< 50 ms) and floor(10 r) = 0 is even: always minus
    assert np.all(draws[dev < 0.05] <= 1.0)
    assert 0.45 < np.mean(draws < 1.0) < 0.55


def test_reconnecting_websocket_minimum_is_uniform_across_processes():
    spec = parse_policy("reconnecting-websocket")
    mins = np.array([spec.client(seed=0, process_seed=p).next_delay(REFUSED) for p in range(N_SCALAR)])
    assert stats.kstest(mins, stats.uniform(1.0, 4.0).cdf).pvalue > ALPHA
    vec = spec.vector(N_VECTOR, seed=0, process_seed=np.arange(N_VECTOR))
    third = [vec.next_delays(None, -1) for _ in range(3)][-1]  # m * 1.3^2, all below the 10 s cap
    assert stats.kstest(third, stats.uniform(1.69, 4 * 1.69).cdf).pvalue > ALPHA


@pytest.mark.parametrize("api", ["scalar", "vector"])
def test_sre_throttle_skips_with_the_books_probability(api):
    """A fresh client's failed attempt: skip with p = (1 - 2*0)/(1 + 1) = 1/2, then (2 - 0)/(2 + 1) = 2/3, ...

    immediate+sre-throttle:max_skips=2 -> skipped 0, 1, 2 with probabilities 1/2, 1/2*1/3, 1/2*2/3.
    """
    text = "immediate+sre-throttle:max_skips=2"
    if api == "scalar":
        spec = parse_policy(text)
        skipped = []
        for s in range(N_SCALAR):
            c = spec.client(seed=s)
            assert c.next_delay(REFUSED) == 0.0
            skipped.append(c.skipped)
        counts = np.bincount(skipped, minlength=3)
    else:
        vec = parse_policy(text).vector(N_VECTOR, seed=7)
        assert np.all(vec.next_delays(None, FAIL_CODES["refused"]) == 0.0)
        counts = np.bincount(vec.skipped, minlength=3)
    expected = np.array([1 / 2, 1 / 6, 1 / 3]) * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > ALPHA, counts
    # the check has power: a constant p = 1/2 (no growth with requests) would give 1/2, 1/4, 1/4
    wrong = np.array([1 / 2, 1 / 4, 1 / 4]) * counts.sum()
    if api == "vector":
        assert stats.chisquare(counts, wrong).pvalue < ALPHA
