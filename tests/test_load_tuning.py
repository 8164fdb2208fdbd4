"""The Locust process's cost tunings (issue 16): GC thresholds, the per-URL loopback check."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import examples
from wsstorm.load import session
from wsstorm.load.user import WAKE_COALESCE_AFTER, WAKE_SLACK, _coalesced, _on_loopback


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
def test_coalesced_wake_is_never_early_and_late_by_under_one_slack_only_for_long_waits(now, ahead):
    wake = now + ahead
    got = _coalesced(wake, now)
    if wake - now <= WAKE_COALESCE_AFTER:
        assert got == wake
    else:
        assert wake <= got < wake + WAKE_SLACK * 1.000001


def test_coalesced_wakes_in_one_slot_land_on_one_instant():
    now = 1000.0
    slot = [_coalesced(now + 5.0 + i * WAKE_SLACK / 10, now) for i in range(1, 9)]
    assert len(set(slot)) == 1
