"""Unit tests of the target's pure parts: token bucket, hint format, admin auth, CLI argv, host:port."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsstorm.errors import UsageError
from wsstorm.target.admin import authorized
from wsstorm.target.control import options_to_argv
from wsstorm.target.metrics import LEDGER, MetricsBook, Tally, ledger_counts, remainder
from wsstorm.target.proxy import parse_hostport
from wsstorm.target.worker import refill, retry_reason


@given(st.floats(0, 100), st.floats(0, 1e4), st.floats(0, 1e3), st.floats(0.01, 1e4), st.floats(1, 1e4))
def test_refill_never_exceeds_burst_and_never_drops(tokens, last, dt, rate, burst):
    tokens = min(tokens, burst)
    after = refill(tokens, last, last + dt, rate, burst)
    assert tokens <= after + 1e-9
    assert after <= burst


def test_refill_rate():
    assert refill(0.0, 10.0, 11.5, 2.0, 100.0) == pytest.approx(3.0)
    assert refill(0.0, 10.0, 9.0, 2.0, 100.0) == 0.0  # clock never runs backwards into debt


def test_retry_reason_uses_the_contract_hint_format():
    from wsstorm.policies import hint_from_reason  # the reader on the client side

    assert retry_reason("overloaded", 2.5) == "overloaded; retry-after=2.5"
    assert hint_from_reason(retry_reason("overloaded", 2.5)) == 2.5
    assert retry_reason("overloaded", -1) == "overloaded"


def test_authorized_needs_exact_bearer_token():
    assert authorized({"authorization": "Bearer abc"}, "abc")
    assert authorized({"authorization": "bearer abc"}, "abc")
    assert not authorized({"authorization": "Bearer abd"}, "abc")
    assert not authorized({"authorization": "abc"}, "abc")
    assert not authorized({}, "abc")


def test_options_to_argv():
    assert options_to_argv({"capacity": 10, "proxy_port": 0, "uvloop": True, "retry_hint": None, "x": False}) == [
        "--capacity",
        "10",
        "--proxy-port",
        "0",
        "--uvloop",
    ]


@pytest.mark.parametrize("text", ["nope", ":80", "host:", "host:99999", "host:-1"])
def test_parse_hostport_rejects(text):
    with pytest.raises(UsageError):
        parse_hostport(text, "--upstream")


def test_parse_hostport():
    assert parse_hostport("127.0.0.1:8080", "--listen") == ("127.0.0.1", 8080)


def test_metrics_book_totals_and_prometheus():
    book = MetricsBook(2)
    tick = {
        "proc": 1,
        "accepted": 3,
        "rejected": {"1013": 2},
        "closes_sent": {"1012": 4},
        "connections": 7,
        "queue_depth": 1,
        "rss_bytes": 10,
        "cpu_pct": 5.0,
    }
    book.tick(tick)
    book.tick({**tick, "accepted": 1})
    assert book.totals["accepted"] == 4
    assert book.totals["rejected"]["1013"] == 4
    text = book.prometheus(["serving", "down"], 100, 50.0)
    assert "wsstorm_handshakes_accepted_total 4.0" in text
    assert 'wsstorm_connections{proc="1"} 7.0' in text
    assert 'wsstorm_serving{proc="1"} 0.0' in text


COUNTABLE = [
    ("accepted", None),
    ("messages", None),
    ("abnormal", None),
    ("rejected", "1013"),
    ("rejected", "http_503"),
    ("closes_sent", "1012"),
    ("closes_sent", "1013"),
    ("closes_sent", "1001"),
    ("closes_sent", "4000"),
    ("closes_received", "1000"),
    ("bad_input", "bad_handshake"),
]


@given(st.lists(st.one_of(st.sampled_from(COUNTABLE), st.just("tick")), max_size=200))
def test_ticks_plus_the_crash_remainder_are_every_count(steps):
    """Whatever a process counted is in its ticks or in the remainder the supervisor writes
    after a SIGKILL: never lost, never twice (for every key the ledger keeps)."""
    proc = 1
    ledger = [0] * (2 * len(LEDGER))
    tally, reported, made = Tally(ledger, proc), {}, {}
    for step in steps:
        if step == "tick":
            for name, v in ledger_counts(tally.take()).items():
                reported[name] = reported.get(name, 0) + v
            continue
        group, key = step
        tally.add(group, key)
        name = group if key is None else f"{group}.{key}"
        made[name] = made.get(name, 0) + 1
    assert ledger[: len(LEDGER)] == [0] * len(LEDGER)  # the other process's slots are untouched
    left = remainder(ledger[len(LEDGER) :], reported)
    total = dict(reported)
    for name, v in ledger_counts(left or {}).items():
        total[name] = total.get(name, 0) + v
    assert total == {k: v for k, v in made.items() if k in LEDGER}
    assert remainder(ledger[len(LEDGER) :], total) is None  # settling twice writes nothing


# --- the cost model -------------------------------------------------------------------------

from wsstorm.target import costs  # noqa: E402
from wsstorm.target.settings import cpus_text, parse_cpus  # noqa: E402
from wsstorm.target.store import percentile  # noqa: E402

_MS = st.floats(0, 1e4, allow_nan=False)


@given(_MS, _MS, _MS, _MS, st.sampled_from(costs.OUTCOMES))
def test_account_never_wastes_more_than_the_work_and_goodput_wastes_nothing(tls, attempt, store, session, outcome):
    cost = costs.AttemptCost(tls, attempt, store, session)
    booked = costs.account(cost, outcome)
    assert booked.work_ms == pytest.approx(tls + attempt + store + session)
    assert 0 <= booked.wasted_ms <= booked.work_ms + 1e-9
    assert booked.goodput == (outcome == costs.GOODPUT) and booked.abandoned == (outcome == costs.ABANDONED)
    if outcome == costs.GOODPUT:
        assert booked.wasted_ms == 0
    elif outcome == costs.REJECTED:
        assert booked.wasted_ms == pytest.approx(tls + attempt + store)  # pre-admission work only
    else:
        assert booked.wasted_ms == pytest.approx(booked.work_ms)


def test_account_refuses_an_unknown_outcome():
    with pytest.raises(ValueError):
        costs.account(costs.AttemptCost(), "maybe")


def test_cpu_work_is_real_cpu_time():
    import time

    t0 = time.thread_time()
    done = costs.cpu_work(5)
    assert done >= 5 and (time.thread_time() - t0) * 1000 >= 5
    assert costs.cpu_work(0) == 0 and costs.cpu_work(-1) == 0


@given(st.sets(st.integers(0, 63), min_size=1))
def test_cpu_lists_round_trip(cpus):
    text = cpus_text(tuple(cpus))
    assert parse_cpus(text, available=64) == tuple(sorted(cpus))


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "CPU list"),
        ("a", "CPU list"),
        ("1-", "CPU list"),
        ("-1", "CPU list"),
        ("3-1", "backwards"),
        ("2", "does not exist"),
        ("0,1,9", "CPU 9 does not exist"),
    ],
)
def test_bad_cpu_lists_are_one_line(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_cpus(text, available=2)


def test_percentile_nearest_rank():
    assert percentile([], 0.5) == 0.0
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 0.5) == 50.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


COST_STEPS = [
    ("attempts", None),
    ("goodput", None),
    ("abandoned", None),
    ("store_calls", None),
    ("ms", "wasted_ms"),
    ("ms", "work_ms"),
]


@given(
    st.lists(st.one_of(st.sampled_from(COST_STEPS), st.just("tick")), max_size=150),
    st.lists(st.floats(0, 500, allow_nan=False), min_size=1, max_size=20),
)
def test_cost_counts_and_cpu_ms_survive_a_crash_exactly(steps, amounts):
    """The new tick counts, CPU milliseconds included, are never lost or counted twice across a crash."""
    ledger = [0] * len(LEDGER)
    tally, reported, made = Tally(ledger, 0), {}, {}
    for i, step in enumerate(steps):
        if step == "tick":
            for name, v in ledger_counts(tally.take()).items():
                reported[name] = reported.get(name, 0) + v
            continue
        group, key = step
        if group == "ms":
            ms = amounts[i % len(amounts)]
            tally.add_ms(key, ms)
            made[key] = made.get(key, 0) + round(ms * 1000)
        else:
            tally.add(group)
            made[group] = made.get(group, 0) + 1
    left = remainder(ledger, reported)
    got = dict(reported)
    for name, v in ledger_counts(left or {}).items():
        got[name] = got.get(name, 0) + v
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in made.items() if v}


def test_peer_closed_sees_an_unread_fin_without_consuming_data():
    import socket as _socket

    from wsstorm.target.netio import peer_closed

    class _Transport:
        def __init__(self, sock):
            self.sock = sock

        def get_extra_info(self, name):
            return self.sock if name == "socket" else None

    a, b = _socket.socketpair()
    try:
        assert not peer_closed(_Transport(a))  # nothing to read: the peer is there
        b.sendall(b"x")
        assert not peer_closed(_Transport(a))  # data waiting: still there
        b.close()
        assert a.recv(1) == b"x"  # the peek consumed nothing
        assert peer_closed(_Transport(a))  # only the FIN is left: gone
        assert not peer_closed(None) and not peer_closed(_Transport(None))
    finally:
        a.close()
