"""The Locust process's cost tunings (issue 16): GC thresholds, the per-URL loopback check, the
TLS context a ws:// run does without."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import examples
from wsstorm.errors import UsageError
from wsstorm.load import session
from wsstorm.load.handshake import _default_tls
from wsstorm.load.options import TLSConfig
from wsstorm.load.user import WAKE_COALESCE_AFTER, WAKE_SHARE, WAKE_SLACK, _coalesced, _on_loopback, wake_grid


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_tune_gc_sets_the_thresholds_over_cpythons_default(thresholds):
    gc.set_threshold(700, 10, 10)
    session.tune_gc()
    assert gc.get_threshold() == session.GC_THRESHOLDS


def test_tune_gc_keeps_thresholds_someone_chose(thresholds):
    gc.set_threshold(1234, 5, 6)
    session.tune_gc()
    assert gc.get_threshold() == (1234, 5, 6)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("ws://127.0.0.1:8765/", True),
        ("ws://127.3.4.5/", True),
        ("wss://[::1]:9000/path", True),
        ("ws://localhost:1/", True),
        ("ws://10.0.0.1:8765/", False),
        ("wss://example.com/", False),
        ("", False),
    ],
)
def test_on_loopback_answers_the_same_first_and_cached(host, loopback):
    assert _on_loopback(host) is loopback
    assert _on_loopback(host) is loopback


@given(now=st.floats(0, 1e7), ahead=st.floats(0, 3600))
@settings(max_examples=examples(200))
def test_coalesced_wake_is_never_early_and_late_by_at_most_its_share_only_for_long_waits(now, ahead):
    wake = now + ahead
    got = _coalesced(wake, now)
    if wake - now <= WAKE_COALESCE_AFTER:
        assert got == wake
    else:
        grid = wake_grid(wake - now)
        assert WAKE_SLACK <= grid <= max(WAKE_SLACK, WAKE_SHARE * (wake - now)) * 1.000001
        assert wake <= got < wake + grid * 1.000001


def test_coalesced_wakes_in_one_slot_land_on_one_instant():
    now = 1000.0
    slot = [_coalesced(now + 5.0 + i * WAKE_SLACK / 10, now) for i in range(1, 9)]
    assert len(set(slot)) == 1


@given(gap=st.floats(1.0001, 3600))
@settings(max_examples=examples(200))
def test_a_coarser_grid_is_made_of_points_of_the_finest(gap):
    # waits of different lengths end on shared instants: every grid is a whole number of the finest
    steps = wake_grid(gap) / WAKE_SLACK
    assert steps >= 1 and abs(steps - round(steps)) < 1e-9 and (round(steps) & (round(steps) - 1)) == 0


def test_wake_grids_by_wait():
    assert wake_grid(1.5) == WAKE_SLACK  # waits of 1-2 s: 10 ms
    assert wake_grid(4.9) == 4 * WAKE_SLACK  # a message every 5 s: 40 ms, under 1% of it
    assert wake_grid(30.0) == 16 * WAKE_SLACK


class _Cfg:
    def __init__(self, **tls: object) -> None:
        self.tls = TLSConfig(**tls)


def test_a_ws_run_without_tls_options_makes_no_tls_context():
    # a connection redirected to wss:// falls back to _default_tls(): the context this one would be
    assert session.client_tls(_Cfg(), "ws://127.0.0.1:9/") is None


def test_a_wss_host_or_a_tls_option_still_gets_its_context_at_start():
    assert session.client_tls(_Cfg(), "wss://127.0.0.1:9/") is _default_tls()
    insecure = session.client_tls(_Cfg(insecure=True), "ws://127.0.0.1:9/")
    assert insecure is not None and not insecure.check_hostname
    with pytest.raises(UsageError):  # a bad file is still a one-line error at start
        session.client_tls(_Cfg(ca_file="/nonexistent/ca.pem"), "ws://127.0.0.1:9/")
