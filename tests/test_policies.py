"""Reconnect policies: parsing, golden sequences, quirks, resets, budget, and hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.strategies import examples, specs
from wsstorm.errors import UsageError
from wsstorm.policies import (
    CATALOG,
    FAIL_CODES,
    NDRAWS,
    Outcome,
    PolicyError,
    PolicySpec,
    code_label,
    decide,
    decide_scalar,
    hint_from_reason,
    initial_scalar_state,
    initial_state,
    load_policy_file,
    on_open_scalar,
    outcome_code,
    parse_code,
    parse_policy,
)

REFUSED = Outcome(fail="refused")


def delays(client, outcome: Outcome, count: int) -> list[float | None]:
    return [client.next_delay(outcome) for _ in range(count)]


# ---------------------------------------------------------------- parsing


def test_policy_error_is_a_usage_error():
    assert issubclass(PolicyError, UsageError)


def test_parse_canonical_text_and_params():
    spec = parse_policy("full-jitter:base=0.5,cap=30")
    assert str(spec) == "full-jitter:base=0.5,cap=30"
    assert spec.name == "full-jitter"
    assert spec.params == {"base": 0.5, "cap": 30.0, "factor": 2.0, "min_uptime": 0.0}
    assert spec.cap == 30.0
    # defaults vanish from the canonical text, order follows the preset
    assert str(parse_policy(" full-jitter : cap=30 , base=1 ")) == "full-jitter:cap=30"
    assert str(parse_policy("exponential:cap=inf")) == "exponential:cap=inf"
    assert parse_policy("exponential:cap=inf").cap == 1e12  # clamped: every delay stays finite


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("bogus", "valid: none, immediate, fixed"),
        ("full-jitter:x=1", "valid: base=1, cap=60, factor=2, min_uptime=0"),
        ("signalr:a=1", "takes no parameters"),
        ("full-jitter:base=-1", "base must be >= 0"),
        ("full-jitter:base=nan", "not NaN"),
        ("full-jitter:base=inf", "must be finite"),
        ("full-jitter:base=1e999", "must be finite"),
        ("full-jitter:base=abc", "is not a number"),
        ("full-jitter:base=5,cap=1", "cap (1) must be >= base (5)"),
        ("full-jitter:base=1,base=2", "given twice"),
        ("full-jitter:", "empty parameter list"),
        ("full-jitter:base", "write key=value"),
        ("", "empty policy spec"),
        ("socketio:jitter=2", "jitter must be <= 1"),
        ("phoenix:rejoin=2", "must be one of 0, 1"),
        ("full-jitter+budgets:tokens=1", "valid: budget"),
        ("full-jitter+budget:tokens=0", "tokens must be >="),
        ("full-jitter+budget+budget", "at most one"),
        ("code-aware:restart_min=6", "restart_max (5) must be >= restart_min (6)"),
    ],
)
def test_invalid_specs_raise_one_line(text, fragment):
    with pytest.raises(PolicyError) as err:
        parse_policy(text)
    msg = str(err.value)
    assert fragment in msg
    assert "\n" not in msg


def test_budget_text_round_trips():
    text = "full-jitter:base=0.5,cap=30+budget:tokens=5,refill=0.1,wait=1"
    spec = parse_policy(text)
    assert str(spec) == text
    assert parse_policy(str(spec)) == spec
    assert spec.cap == 30.0
    assert parse_policy("fixed:delay=1+budget:refill=0.01,wait=1").cap == 100.0  # cost/refill


def test_policy_file(tmp_path):
    good = tmp_path / "p.toml"
    good.write_text('[policy]\nname = "full-jitter"\nbase = 0.5\ncap = 30\n[policy.budget]\ntokens = 4\n')
    assert str(load_policy_file(good)) == "full-jitter:base=0.5,cap=30+budget:tokens=4"
    cases = {
        "bad.toml": ("[policy\nname=", "not valid TOML"),
        "noname.toml": ("[policy]\nbase = 1\n", "needs name"),
        "unknown.toml": ('[policy]\nname = "full-jitter"\nbogus = 1\n', "valid: base=1"),
        "string.toml": ('[policy]\nname = "full-jitter"\nbase = "x"\n', "is not a number"),
        "bool.toml": ('[policy]\nname = "full-jitter"\nbase = true\n', "is not a number"),
        "badname.toml": ('[policy]\nname = "nope"\n', "valid: none"),
        "notable.toml": ('policy = "full-jitter"\n', "needs a [policy] table"),
    }
    for fname, (content, fragment) in cases.items():
        path = tmp_path / fname
        path.write_text(content)
        with pytest.raises(PolicyError, match=None) as err:
            load_policy_file(path)
        assert fragment in str(err.value), fname
    with pytest.raises(PolicyError, match="not found"):
        load_policy_file(tmp_path / "missing.toml")


def test_outcome_encoding_and_labels():
    assert outcome_code(Outcome(code=1013)) == 1013
    assert outcome_code(Outcome(fail="refused")) == -1
    assert outcome_code(Outcome(fail="http_status", status=503)) == -503
    assert outcome_code(Outcome(fail="http_status")) == -599
    assert outcome_code(Outcome()) == 1006
    assert outcome_code(Outcome(fail="martian")) == FAIL_CODES["protocol"]
    for text in ["1013", "refused", "timeout", "http_503", "reset"]:
        assert code_label(parse_code(text)) == text
    with pytest.raises(PolicyError):
        parse_code("bogus")


def test_hint_from_reason():
    assert hint_from_reason("overloaded; retry-after=2.5") == 2.5
    assert hint_from_reason("Retry-After = 7") == 7.0
    assert hint_from_reason("retry-after=abc") is None
    assert hint_from_reason("") is None
    assert hint_from_reason(None) is None
    assert hint_from_reason("\x00\u202e retry-after=1e9") is None  # not a plain decimal: no hint, not 1 s
    assert hint_from_reason("retry-after=3; try later") == 3.0


# ---------------------------------------------------------------- golden sequences


def test_signalr_golden():
    c = parse_policy("signalr").client(seed=1)
    assert delays(c, REFUSED, 6) == [0.0, 2.0, 10.0, 30.0, None, None]
    c.opened()
    assert c.retries == 0
    # a close after an open starts over; failed attempts then walk the table
    assert [c.next_delay(Outcome(code=1006, uptime_s=3.0)), c.next_delay(REFUSED)] == [0.0, 2.0]


def test_phoenix_golden():
    c = parse_policy("phoenix").client(seed=1)
    assert delays(c, REFUSED, 11) == [0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 5.0]
    assert c.next_delay(Outcome(code=1000)) is None  # no reconnect after a normal closure
    c.opened()
    assert c.next_delay(REFUSED) == 0.01
    r = parse_policy("phoenix:rejoin=1").client()
    assert delays(r, REFUSED, 5) == [1.0, 2.0, 5.0, 10.0, 10.0]


def test_exponential_and_grpc_first_retry():
    c = parse_policy("exponential:base=0.5,cap=5").client()
    assert delays(c, REFUSED, 6) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    g = parse_policy("grpc").client(seed=3)
    assert g.next_delay(REFUSED) == 1.0  # INITIAL_BACKOFF, no jitter
    second = g.next_delay(REFUSED)
    assert 1.6 * 0.8 <= second <= 1.6 * 1.2


def _socketio_delay(r: float, k: int, spec: PolicySpec | None = None) -> float:
    spec = spec or parse_policy("socketio")
    u = np.array([[r, 0.5]])
    return float(
        spec.preset.delay(
            spec.params, np.array([k]), np.array([np.nan]), np.array([-1]), np.array([np.nan]), np.zeros(1), u
        )[0]
    )


def test_socketio_backo2_golden():
    # ms=1000; r=0.05: floor(0.5)=0 even -> minus, dev=floor(25)=25
    assert _socketio_delay(0.05, 1) == 0.975
    # r=0.15: floor(1.5)=1 odd -> plus, dev=75
    assert _socketio_delay(0.15, 1) == 1.075
    # r=0.999: odd -> plus, dev=floor(499.5)=499
    assert _socketio_delay(0.999, 1) == 1.499
    # k=3: ms=4000, r=0.95: floor(9.5)=9 odd -> plus 1900 = 5900 -> capped AFTER jitter at 5000
    assert _socketio_delay(0.95, 3) == 5.0
    # whole milliseconds (the `| 0`)
    assert _socketio_delay(0.123456, 2) * 1000 == pytest.approx(round(_socketio_delay(0.123456, 2) * 1000))


def test_socketio_cap_after_jitter_loses_the_jitter():
    vec = parse_policy("socketio").vector(2000, seed=5)
    rows = [vec.next_delays(None, -1) for _ in range(5)]
    assert np.all(rows[4] == 5.0)  # cap-before-jitter would spread 2.5..7.5 s
    # k=4: 8000 ms -/+ floor(r*4000): below the cap only when minus and r*4000 > 3000 (r in [0.8, 0.9))
    assert 0.85 < np.mean(rows[3] == 5.0) < 0.95 and rows[3].min() >= 4.4
    assert rows[0].min() >= 0.5 and rows[0].max() <= 1.5


def test_socketio_resets_on_every_close():
    c = parse_policy("socketio").client(seed=2)
    delays(c, REFUSED, 4)
    assert c.retries == 4
    d = c.next_delay(Outcome(code=1013, uptime_s=0.01))  # no opened() call needed: a close resets
    assert c.retries == 1 and 0.5 <= d <= 1.5


def test_reconnecting_websocket_per_process_minimum():
    spec = parse_policy("reconnecting-websocket")
    same = {spec.client(seed=s, process_seed=7).next_delay(REFUSED) for s in range(20)}
    assert len(same) == 1  # every client of a process shares minReconnectionDelay
    m = same.pop()
    assert 1.0 <= m <= 5.0
    other = {spec.client(seed=0, process_seed=p).next_delay(REFUSED) for p in range(20)}
    assert len(other) == 20  # processes differ
    c = spec.client(seed=0, process_seed=7)
    expected = [min(10.0, m * 1.3**i) for i in range(8)]
    assert delays(c, REFUSED, 8) == pytest.approx(expected)
    # the vector API draws the same per-process minimum
    vec = spec.vector(4, seed=9, process_seed=[7, 7, 8, 8])
    first = vec.next_delays(None, -1)
    assert first[0] == first[1] == pytest.approx(m) and first[2] == first[3] != first[0]


def test_reconnecting_websocket_resets_only_after_min_uptime():
    c = parse_policy("reconnecting-websocket").client(seed=0, process_seed=1)
    delays(c, REFUSED, 3)
    c.opened()
    c.next_delay(Outcome(code=1013, uptime_s=1.0))
    assert c.retries == 4  # closed within minUptime: keeps counting
    c.opened()
    c.next_delay(Outcome(code=1013, uptime_s=5.0))
    assert c.retries == 1


def test_websockets_py_loop():
    c = parse_policy("websockets-py").client(seed=4)
    c.opened()
    assert c.next_delay(Outcome(code=1013, uptime_s=0.01)) == 0.0  # reconnects at once after a close
    assert c.retries == 0
    first = c.next_delay(REFUSED)
    assert 0.0 <= first <= 5.0
    rest = delays(c, REFUSED, 12)
    expected = [min(90.0, 3.1 * 1.618**i) for i in range(12)]
    assert rest == pytest.approx(expected)
    assert c.next_delay(Outcome(fail="http_status", status=503)) == 90.0
    assert c.next_delay(Outcome(fail="http_status", status=429)) is None  # fatal in process_exception
    assert c.next_delay(Outcome(fail="protocol")) is None


def test_centrifuge_permanent_codes_and_floor():
    c = parse_policy("centrifuge").client(seed=1)
    assert c.next_delay(Outcome(code=3500)) is None
    assert c.next_delay(Outcome(code=4501)) is None
    d = c.next_delay(Outcome(code=4000))
    assert 0.5 <= d <= 1.0 and round(d * 1000) == pytest.approx(d * 1000)


def test_code_aware_rules():
    spec = parse_policy("code-aware")
    c = spec.client(seed=11)
    d = c.next_delay(Outcome(code=1012, uptime_s=100))
    assert 1.0 <= d <= 5.0
    c = spec.client(seed=11)
    assert c.next_delay(Outcome(fail="http_status", status=503, retry_after=7.0)) == pytest.approx(7.0, rel=0.1001)
    assert c.next_delay(Outcome(code=1013, retry_after=1e6)) == 60.0  # hint honoured, capped
    capped = parse_policy("code-aware:hint_cap=3").client().next_delay(Outcome(code=1013, retry_after=100))
    assert capped == 3.0


def test_code_aware_does_not_reset_on_accept_then_1013():
    c = parse_policy("code-aware").client(seed=3)
    got = []
    for _ in range(6):
        c.opened()
        got.append(c.next_delay(Outcome(code=1013, uptime_s=0.05)))
    assert c.retries == 6
    assert got[-1] >= 16.0  # equal jitter over 2^5 = 32 s
    c.opened()
    d = c.next_delay(Outcome(code=1013, uptime_s=30.0))  # stayed up past min_uptime: reset
    assert c.retries == 1 and 0.5 <= d <= 1.0
    # the naive preset resets on the bare open: a tight loop
    naive = parse_policy("full-jitter").client(seed=3)
    for _ in range(6):
        naive.opened()
        assert naive.next_delay(Outcome(code=1013, uptime_s=0.05)) <= 1.0


def test_budget_gives_up_then_refunds():
    c = parse_policy("fixed:delay=1+budget:tokens=3,cost=1,refund=1").client()
    assert delays(c, REFUSED, 4) == [1.0, 1.0, 1.0, None]
    c.opened()
    assert c.next_delay(REFUSED) == 1.0
    assert c.next_delay(REFUSED) is None


def test_budget_waits_for_refill():
    c = parse_policy("fixed:delay=1+budget:tokens=2,cost=1,refill=0.25,wait=1").client()
    got = delays(c, REFUSED, 6)
    # tokens: 2 -> 1 -> (1+0.25) -> 0.25; then short: (1 - 0.5)/0.25 = 2 s, then cost/refill = 4 s each
    assert got == [1.0, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(d <= c.spec.cap for d in got)


def test_none_and_immediate():
    assert delays(parse_policy("none").client(), REFUSED, 3) == [None] * 3
    assert delays(parse_policy("immediate").client(), REFUSED, 3) == [0.0] * 3


def test_vector_matches_scalar_rules_for_deterministic_presets():
    for text in ["exponential:base=0.5,cap=20", "signalr", "phoenix", "fixed:delay=2"]:
        spec = parse_policy(text)
        c = spec.client()
        vec = spec.vector(3)
        for _ in range(8):
            d = c.next_delay(REFUSED)
            v = vec.next_delays(np.array([0, 2]), -1)
            expected = np.nan if d is None else d
            np.testing.assert_array_equal(v, [expected, expected])
        assert vec.retries.tolist() == [8, 0, 8]


def test_vector_opened_and_subsets():
    vec = parse_policy("exponential").vector(4)
    for _ in range(3):
        vec.next_delays(None, -1)
    vec.opened([1, 3])
    assert vec.retries.tolist() == [3, 0, 3, 0]
    d = vec.next_delays(slice(None), -2)
    assert d.tolist() == [8.0, 1.0, 8.0, 1.0]
    assert parse_policy("fixed").vector(0).next_delays(None, -1).shape == (0,)
    with pytest.raises(PolicyError):
        parse_policy("fixed").vector(3, process_seed=[1, 2])


def test_decide_is_pure():
    spec = parse_policy("full-jitter")
    s = initial_state(spec, np.zeros(3, dtype=np.int64))
    u = np.full((3, NDRAWS), 0.5)
    args = (np.array([-1, 1006, 1013]), np.zeros(3), np.full(3, np.nan), u)
    d1, s1 = decide(spec, s, *args)
    d2, _s2 = decide(spec, s, *args)
    np.testing.assert_array_equal(d1, d2)
    assert s.n.tolist() == [0, 0, 0] and s1.n.tolist() == [1, 1, 1]


# ---------------------------------------------------------------- hypothesis properties

CODES = [1000, 1001, 1006, 1011, 1012, 1013, 3000, 3500, 4000, 4500, -1, -2, -3, -4, -5, -6, -429, -500, -503, -404]


def _outcome(code: int, uptime: float, hint: float | None) -> Outcome:
    if code >= 0:
        return Outcome(code=code, uptime_s=uptime, retry_after=hint)
    if code <= -100:
        return Outcome(fail="http_status", status=-code, retry_after=hint)
    return Outcome(fail={v: k for k, v in FAIL_CODES.items()}[code])


events = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from(CODES),
        st.floats(0, 100, allow_nan=False),
        st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)),
    ),
    min_size=1,
    max_size=30,
)

PROPS = settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)


@PROPS
@given(spec=specs(), evs=events, seed=st.integers(0, 2**32), pseed=st.integers(0, 2**16))
def test_every_delay_is_finite_nonnegative_and_capped(spec, evs, seed, pseed):
    c = spec.client(seed, pseed)
    for opened, code, up, hint in evs:
        if opened:
            c.opened()
        d = c.next_delay(_outcome(code, up, hint))
        if d is not None:
            assert math.isfinite(d) and 0.0 <= d <= spec.cap
        assert c.retries >= 0


@PROPS
@given(spec=specs(), evs=events, seed=st.integers(0, 2**32))
def test_vector_delays_are_finite_nonnegative_and_capped(spec, evs, seed):
    vec = spec.vector(5, seed=seed, process_seed=[1, 2, 3, 4, 5])
    for opened, code, up, hint in evs:
        if opened:
            vec.opened([0, 2])
        d = vec.next_delays(None, code, up, np.nan if hint is None else hint)
        live = d[~np.isnan(d)]
        assert np.all(np.isfinite(live)) and np.all(live >= 0) and np.all(live <= spec.cap)


@PROPS
@given(spec=specs(), evs=events, seed=st.integers(0, 2**32), pseed=st.integers(0, 2**16))
def test_same_seed_same_delays(spec, evs, seed, pseed):
    def run_scalar():
        c = spec.client(seed, pseed)
        out = []
        for opened, code, up, hint in evs:
            if opened:
                c.opened()
            out.append(c.next_delay(_outcome(code, up, hint)))
        return out

    def run_vector():
        vec = spec.vector(4, seed=seed, process_seed=pseed)
        out = []
        for opened, code, up, hint in evs:
            if opened:
                vec.opened([1])
            out.append(vec.next_delays(None, code, up, hint))
        return np.array(out)

    assert run_scalar() == run_scalar()
    np.testing.assert_array_equal(run_vector(), run_vector())


@PROPS
@given(spec=specs())
def test_parsing_round_trips(spec):
    again = parse_policy(str(spec))
    assert again == spec
    assert str(again) == str(spec)


@PROPS
@given(text=st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_policy_error(text):
    try:
        spec = parse_policy(text)
    except PolicyError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(spec, PolicySpec)


@PROPS
@given(
    name=st.sampled_from([n for n, p in CATALOG.items() if p.params]),
    bad=st.sampled_from(["-1", "-0.001", "nan", "NaN", "-inf", "abc", "1e999x", "", "0x10", "--1", "1,2"]),
    data=st.data(),
)
def test_invalid_values_always_raise_policy_error(name, bad, data):
    prm = data.draw(st.sampled_from(CATALOG[name].params))
    with pytest.raises(PolicyError) as err:
        parse_policy(f"{name}:{prm.name}={bad}")
    assert "\n" not in str(err.value)


def _first_retry_bounds(spec: PolicySpec, code: int, hint: float) -> tuple[float, float]:
    """Smallest and largest first-retry delay over a fine grid of draws (what a fresh client can return)."""
    g = np.linspace(0, 1, 2001)
    u = np.stack(np.meshgrid(g, [0.0, 0.5, 1.0]), -1).reshape(-1, 2)
    s = initial_state(spec, np.zeros(len(u), dtype=np.int64))
    s = s._replace(const=np.full(len(u), spec.client(0, 0)._state.const[0]))
    m = len(u)
    d, _ = decide(spec, s, np.full(m, code), np.zeros(m), np.full(m, hint), u)
    d = d[~np.isnan(d)]
    return (float(d.min()), float(d.max())) if d.size else (math.nan, math.nan)


@PROPS
@given(
    spec=specs(), pre=st.integers(1, 8), code=st.sampled_from([-1, -2, -503, 1006, 1013]), seed=st.integers(0, 2**20)
)
def test_after_the_reset_rule_the_next_delay_is_a_first_retry(spec, pre, code, seed):
    assume(spec.budget is None and spec.throttle is None)  # a wrapper may lengthen or refuse the first retry
    reset_after = spec.preset.reset_uptime(spec.params)
    assume(math.isfinite(reset_after))
    c = spec.client(seed, 0)
    for _ in range(pre):
        c.next_delay(REFUSED)
    c.opened()
    # the connection stayed up long enough for the preset's reset rule, then failed again
    d = c.next_delay(Outcome(code=1006, uptime_s=reset_after + 1.0))
    if d is None or (spec.name == "websockets-py"):
        return
    assert c.retries == (0 if spec.preset.counts is not None else 1)  # pusher: a close does not count
    lo, hi = _first_retry_bounds(spec, 1006, math.nan)
    tol = 1e-3 + 1e-6 * hi
    assert lo - tol <= d <= hi + tol


# ---------------------------------------------------------------- ably, pusher (issue 17)


def _scalar_steps(text: str, steps: list, u0: float = 0.0) -> list[float | None]:
    """Drive the scalar core with fixed uniforms: steps are 'open' or (code, uptime)."""
    spec = parse_policy(text)
    s = initial_scalar_state(spec, 0)
    out: list[float | None] = []
    for st_ in steps:
        if st_ == "open":
            s = on_open_scalar(spec, s)
            continue
        d, s = decide_scalar(spec, s, st_[0], st_[1], math.nan, u0, 0.0, extra=[0.0] * (spec.ndraws - NDRAWS))
        out.append(None if math.isnan(d) else d)
    return out


def test_ably_disconnected_then_suspended_golden():
    # u0 = 0: jitter coefficient 1. 15 s * min((n+2)/3, 2): 15, 20, 25, 30, then the 120 s ttl is
    # crossed during the 5th wait (90 s waited + 30): suspended at 120 s, first retry 30 s later
    assert _scalar_steps("ably", [(-1, 0.0)] * 8) == [15.0, 20.0, 25.0, 30.0, 60.0, 30.0, 30.0, 30.0]
    # the most jitter: 0.8 of each (1 - U*0.2 with U -> 1)
    near = _scalar_steps("ably", [(-1, 0.0)] * 2, u0=1.0)
    assert near == pytest.approx([12.0, 16.0])


def test_ably_close_reconnects_at_once_but_not_twice_within_a_second():
    steps = ["open", (1006, 0.2), "open", (1006, 0.2), "open", (1000, 5.0), (-1, 0.0), (-1, 0.0)]
    got = _scalar_steps("ably", steps)
    # the first connection was not opened by an auto reconnect: at once; the second was, 200 ms
    # ago + 1 ms: wait 799 ms; one that stayed up 5 s: at once; then failures count from 2
    assert got[0] == 0.0 and got[1] == pytest.approx(0.799) and got[2] == 0.0
    assert got[3:] == [20.0, 25.0]  # disconnectedRetryCount 2, 3: the close was the 1st
    c = parse_policy("ably").client(seed=3)
    c.opened()
    assert c.next_delay(Outcome(code=4001, uptime_s=30)) == 0.0  # the close code does not matter


def test_ably_resets_on_open():
    c = parse_policy("ably").client(seed=1)
    for _ in range(7):
        c.next_delay(REFUSED)
    assert c.next_delay(REFUSED) == 30.0  # suspended
    c.opened()
    c.next_delay(Outcome(code=1006, uptime_s=50))
    assert 16.0 <= c.next_delay(REFUSED) <= 20.0  # disconnected again, count 2


def test_pusher_close_code_classes_and_strategy_timeouts():
    c = parse_policy("pusher").client()
    assert delays(c, REFUSED, 5) == [15.0, 30.0, 60.0, 60.0, 60.0]
    expected = {
        4000: 0.0,
        4200: 0.0,
        4299: 0.0,
        4001: None,
        4099: None,
        4300: None,
        4999: None,
        4100: 1.0,
        4199: 1.0,
        1000: 1.0,
        1001: 1.0,
        1002: 1.0,
        1006: 1.0,
        1012: 1.0,
        1013: 1.0,
        3000: 1.0,
    }
    for code, want in expected.items():
        c = parse_policy("pusher").client()
        c.opened()
        assert c.next_delay(Outcome(code=code, uptime_s=1.0)) == want, code
        if want is not None:
            assert c.retries == 0  # a close does not advance the strategy loop
            assert c.next_delay(REFUSED) == 15.0  # a new connect(): the loop starts over


# ---------------------------------------------------------------- throttles (issue 17)


def test_throttle_specs_parse_and_round_trip(tmp_path):
    spec = parse_policy("full-jitter+sre-throttle:k=2,window=120")
    assert str(spec) == "full-jitter+sre-throttle" and spec.throttle is not None and spec.budget is None
    assert parse_policy(str(spec)) == spec
    assert spec.cap == 60.0 * 17  # max_skips + 1 waits at most
    g = parse_policy("grpc:cap=30+grpc-throttle:max_tokens=4,token_ratio=0.5")
    assert str(g) == "grpc:cap=30+grpc-throttle:max_tokens=4,token_ratio=0.5" and g.cap == 36.0
    assert spec.ndraws == NDRAWS + 3 * 16 and g.ndraws == NDRAWS
    f = tmp_path / "t.toml"
    f.write_text('[policy]\nname = "ably"\n[policy.sre-throttle]\nk = 1.5\n')
    assert str(load_policy_file(f)) == "ably+sre-throttle:k=1.5"
    f.write_text('[policy]\nname = "ably"\n[policy.budget]\n[policy.grpc-throttle]\n')
    with pytest.raises(PolicyError, match="at most one"):
        load_policy_file(f)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("full-jitter+sre-throttle:k=0.5", "k must be >= 1"),
        ("full-jitter+sre-throttle:max_skips=2.5", "must be a whole number"),
        ("full-jitter+sre-throttle:max_skips=65", "must be <= 64"),
        ("full-jitter+sre-throttle:bogus=1", "valid: k=2, window=120, max_skips=16"),
        ("full-jitter+grpc-throttle:max_tokens=0", "max_tokens must be >= 1"),
        ("full-jitter+grpc-throttle:max_tokens=1001", "must be <= 1000"),
        ("full-jitter+grpc-throttle:token_ratio=0", "token_ratio must be >= 0.001"),
        ("full-jitter+budget+sre-throttle", "at most one wrapper"),
        ("full-jitter+throttle", "valid: budget, sre-throttle, grpc-throttle"),
    ],
)
def test_invalid_throttle_specs_raise_one_line(text, fragment):
    with pytest.raises(PolicyError) as err:
        parse_policy(text)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def _vector_first(text: str, u_rest: float, code: int = -1) -> tuple[float, int]:
    spec = parse_policy(text)
    s = initial_state(spec, np.zeros(1, dtype=np.int64))
    u = np.full((1, spec.ndraws), u_rest)
    u[0, :NDRAWS] = 0.0
    d, s = decide(spec, s, np.array([code]), np.zeros(1), np.full(1, np.nan), u)
    return float(d[0]), int(s.wrap[0, 2])


def test_sre_throttle_skip_probability_golden():
    # a fresh client's failed attempt: requests 1, accepts 0 -> p = (1 - 2*0)/(1 + 1) = 0.5 at the check
    assert _vector_first("fixed:delay=1+sre-throttle:max_skips=1", 0.49) == (2.0, 1)  # skipped: 1 s more
    assert _vector_first("fixed:delay=1+sre-throttle:max_skips=1", 0.5) == (1.0, 0)  # 0.5 < 0.5 is false: sent
    # draws of 0 skip whenever p > 0: p = 1/2, 2/3, 3/4, ... until max_skips, then the attempt is sent
    assert _vector_first("fixed:delay=1+sre-throttle", 0.0) == (17.0, 16)
    assert _vector_first("fixed:delay=1+sre-throttle:max_skips=0", 0.0) == (1.0, 0)
    # a close is not a request: nothing counted, nothing skipped
    assert _vector_first("fixed:delay=1+sre-throttle", 0.0, code=1006) == (1.0, 0)


def test_sre_throttle_accepts_keep_it_open_and_the_window_forgets():
    spec = parse_policy("fixed:delay=1+sre-throttle")
    c = spec.client(seed=2)
    for _ in range(20):  # every attempt accepted: requests = accepts, p < 0
        c.opened()
        assert c.next_delay(Outcome(code=1013, uptime_s=0.5)) == 1.0 and c.skipped == 0
    skipped = []
    for _ in range(30):  # now the server refuses: 30 requests, 20 accepts in the window
        c.next_delay(REFUSED)
        skipped.append(c.skipped)
    assert sum(skipped) > 0 and c.spec.cap == 17.0
    # a connection that stayed up past the window: the old counts are gone, nothing is skipped
    c.opened()
    assert c.next_delay(Outcome(code=1006, uptime_s=1000.0)) == 1.0 and c.skipped == 0


def test_grpc_throttle_golden():
    c = parse_policy("fixed:delay=1+grpc-throttle").client()
    # tokens 10 -> 9, 8, 7, 6: retries allowed (> 5); the 5th failure leaves 5 <= 5: no retry
    assert delays(c, REFUSED, 5) == [1.0, 1.0, 1.0, 1.0, None]
    c = parse_policy("fixed:delay=1+grpc-throttle").client()
    delays(c, REFUSED, 4)  # 6 tokens
    c.opened()  # 6.1
    assert c.next_delay(Outcome(code=1013, uptime_s=0.1)) == 1.0  # 1013 costs a token (5.1); a new call is sent
    assert c.state.wrap == pytest.approx((5.1,))
    assert c.next_delay(Outcome(code=1000, uptime_s=0.1)) == 1.0  # other closes: neither cost nor check
    assert c.next_delay(Outcome(fail="protocol")) == 1.0  # not a server failure: no cost, 5.1 > 5
    assert c.next_delay(Outcome(fail="http_status", status=503)) is None  # 4.1 <= 5: the failure is returned
    for _ in range(100):  # successes refill by token_ratio, up to max_tokens
        c.opened()
    assert c.state.wrap == (10.0,)
    vec = parse_policy("fixed:delay=1+grpc-throttle:max_tokens=4").vector(3)
    first, second = vec.next_delays(None, -1), vec.next_delays(None, -1)
    assert first.tolist() == [1.0] * 3 and np.isnan(second).all()  # 4 -> 3 > 2: retry; 3 -> 2 <= 2: none


@PROPS
@given(spec=specs(), seed=st.integers(0, 2**32), ups=st.lists(st.floats(0, 300), min_size=1, max_size=25))
def test_sre_throttle_never_skips_while_every_attempt_is_accepted(spec, seed, ups):
    assume(spec.budget is None and spec.throttle is None)
    k = 1.0 + (seed % 7) / 2  # any K >= 1
    wrapped = parse_policy(f"{spec}+sre-throttle:k={k!r}")
    c = wrapped.client(seed)
    for up in ups:
        c.opened()
        d = c.next_delay(Outcome(code=1006, uptime_s=up))
        assert c.skipped == 0
        if d is None:
            break


def test_new_rules_cite_their_sources():
    from wsstorm.policies.throttles import THROTTLES

    assert "Source: ably/ably-js 2.26.0" in CATALOG["ably"].doc and "connectionmanager.ts" in CATALOG["ably"].doc
    assert "Source: pusher/pusher-js 8.6.0" in CATALOG["pusher"].doc and "protocol.ts" in CATALOG["pusher"].doc
    assert "A6-client-retries.md" in THROTTLES["grpc-throttle"].doc
    assert "Handling Overload" in THROTTLES["sre-throttle"].doc and "Eq. 21-1" in THROTTLES["sre-throttle"].doc


def test_a_budget_wait_never_passes_the_cap_by_rounding():
    """Found by hypothesis: tokens that should come back to exactly 0 came back a hair below it, and the
    wait came out one ulp longer than cost / refill, the spec's cap."""
    spec = parse_policy("fixed:delay=1+budget:tokens=0.5,cost=1.875,refund=0,refill=1.53125,wait=1")
    vec = spec.vector(5, seed=0, process_seed=[1, 2, 3, 4, 5])
    c = spec.client(0, 1)
    for _ in range(6):
        assert np.all(vec.next_delays(None, 1000, 0.0, np.nan) <= spec.cap)
        assert c.next_delay(_outcome(1000, 0.0, None)) <= spec.cap
