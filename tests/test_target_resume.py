"""Session start versus resume on `wsstorm serve` (Discord's gateway): cheap resumes, limited session starts."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.peers.wsclients import close_of
from wsstorm.errors import UsageError
from wsstorm.run.scenario import from_dict
from wsstorm.target import sessions
from wsstorm.target.control import start_target
from wsstorm.target.settings import check_session_settings

HEADER = sessions.SESSION_HEADER


def _table(n: int = 64) -> tuple[list[int], list[float]]:
    return [0] * n, [0.0] * n


def test_a_closed_session_resumes_within_the_window_only():
    keys, times = _table()
    k = sessions.session_key("alice")
    assert k != 0 and sessions.session_key("") == 0 and sessions.session_key(None) == 0
    assert not sessions.resumable(keys, times, k, 10.0, 5.0)  # never seen
    sessions.begin(keys, times, k, 0, 10.0, 5.0)
    assert not sessions.resumable(keys, times, k, 11.0, 5.0)  # connected now: nothing to resume
    sessions.end(keys, times, k, 12.0)
    assert sessions.resumable(keys, times, k, 17.0, 5.0)
    assert not sessions.resumable(keys, times, k, 17.01, 5.0)
    assert not sessions.resumable(keys, times, k, 13.0, 0.0)  # window 0: resume off


def test_a_crashed_process_closes_its_sessions_at_the_crash():
    keys, times = _table()
    a, b = sessions.session_key("a"), sessions.session_key("b")
    sessions.begin(keys, times, a, 0, 1.0, 5.0)
    sessions.begin(keys, times, b, 1, 1.0, 5.0)
    assert sessions.end_all_of(times, 1, 2.0) == 1
    assert sessions.resumable(keys, times, b, 3.0, 5.0)
    assert not sessions.resumable(keys, times, a, 3.0, 5.0)  # proc 0 still holds it


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=200, unique=True))
def test_a_full_table_forgets_but_never_resumes_a_wrong_session(names):
    keys, times = _table(32)  # far fewer slots than names: collisions and evictions
    for i, name in enumerate(names):
        k = sessions.session_key(name)
        sessions.begin(keys, times, k, 0, float(i), 1000.0)
        sessions.end(keys, times, k, float(i))
    seen = {sessions.session_key(n) for n in names}
    other = sessions.session_key("\x00never")
    if other not in seen:
        assert not sessions.resumable(keys, times, other, float(len(names)), 1000.0)
    assert sessions.resumable(keys, times, sessions.session_key(names[-1]), float(len(names)), 1000.0)


@pytest.mark.parametrize(
    ("args", "word"),
    [
        ((-1, 0, 0, 1013), "resume-window"),
        ((0, -2, 0, 1013), "resume-cost-ms"),
        ((0, 0, -1, 1013), "session-start-rate"),
        ((0, 0, float("nan"), 1013), "session-start-rate"),
        ((0, 0, 0, 1005), "session-refuse-code"),
        ((0, 0, 0, 5000), "session-refuse-code"),
    ],
)
def test_bad_session_settings_are_one_line_errors(args, word):
    with pytest.raises(UsageError, match=word):
        check_session_settings(*args)


@pytest.mark.parametrize(
    ("key", "value", "word"),
    [
        ("resume_window", -1, "resume_window must be >= 0"),
        ("resume_cost_ms", -0.5, "resume_cost_ms must be >= 0"),
        ("session_start_rate", -3, "session_start_rate must be >= 0"),
        ("session_refuse_code", 999, "session_refuse_code must be a close code"),
        ("session_refuse_code", 1013.5, "session_refuse_code must be an integer"),
    ],
)
def test_bad_scenario_session_keys(key, value, word):
    with pytest.raises(UsageError, match=word):
        from_dict({"duration": 10, "target": {key: value}})


def test_scenario_session_keys_reach_the_serve_options():
    sc = from_dict(
        {
            "duration": 10,
            "target": {"resume_window": 30, "resume_cost_ms": 1, "session_start_rate": 50, "session_refuse_code": 4009},
        }
    )
    opts = sc.target.serve_options()
    assert (opts["resume_window"], opts["resume_cost_ms"], opts["session_start_rate"]) == (30.0, 1.0, 50.0)
    assert opts["session_refuse_code"] == 4009
    assert "resume_window" not in from_dict({"duration": 10}).target.serve_options()


def test_bad_session_options_stop_serve_with_a_one_line_error():
    for opts in ({"resume_window": -1}, {"session_refuse_code": 1006}, {"session_start_rate": -5}):
        with pytest.raises(UsageError):
            start_target(timeout=20, **opts)


def _open(url: str, who: str | None):
    ws = connect_with(url, who)
    return ws, ws.getheaders().get(sessions.RESUMED_HEADER.lower())


def connect_with(url: str, who: str | None):
    import websocket

    header = [f"{HEADER}: {who}"] if who is not None else []
    return websocket.create_connection(url, timeout=5, header=header, enable_multithread=False)


def _totals(t) -> dict:
    return t.admin.status()["totals"]


def _wait(pred, timeout: float = 4.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.e2e
def test_reconnect_within_the_window_resumes_cheaply_outside_starts_new(tmp_path):
    out = tmp_path / "server.jsonl"
    window = 1.5
    with start_target(
        capacity=20, handshake_cost_ms=0, session_cost_ms=40, resume_cost_ms=2, resume_window=window, metrics_out=out
    ) as t:
        ws, resumed = _open(t.url, "alice")
        assert resumed == "0"  # a new session
        ws.close()
        time.sleep(0.2)  # the server has seen the close
        ws, resumed = _open(t.url, "alice")  # well within the window
        assert resumed == "1"
        ws.send("hi")
        assert ws.recv() == "hi"
        ws.close()
        time.sleep(window + 0.3)  # now past the window since the last close: a new session
        ws, resumed = _open(t.url, "alice")
        assert resumed == "0"
        ws.close()
        for _ in range(2):  # no identity: never a resume
            ws, resumed = _open(t.url, None)
            assert resumed == "0"
            ws.close()
        tot = _wait(lambda: (lambda x: x if x["session_starts"] + x["resumed"] == 5 else None)(_totals(t)))
        assert (tot["session_starts"], tot["resumed"], tot["session_refused"]) == (4, 1, 0)
        # the work: 4 session starts at 40 ms and one resume at 2 ms (a resume at session cost: 200)
        assert 4 * 40 + 2 <= tot["work_ms"] < 4 * 40 + 2 + 20
        ticks = [json.loads(x) for x in out.read_text().splitlines() if '"tick"' in x]
        assert sum(tk["resumed"] for tk in ticks) == 1
        assert sum(tk["session_starts"] for tk in ticks) == 4


@pytest.mark.e2e
def test_session_start_rate_refuses_with_the_code_and_resumes_pass(tmp_path):
    out = tmp_path / "server.jsonl"
    with start_target(
        capacity=20, session_start_rate=0.2, session_refuse_code=4009, resume_window=5, metrics_out=out
    ) as t:
        first, resumed = _open(t.url, "u0")  # the bucket's one token
        assert resumed == "0"
        codes = []
        for i in range(1, 4):
            ws = connect_with(t.url, f"u{i}")  # the upgrade succeeds, then the refuse code
            codes.append(close_of(ws))
        assert codes == [(4009, "session start rate limited")] * 3
        first.close()
        time.sleep(0.2)  # the server has seen the close
        again, resumed = _open(t.url, "u0")  # a resume is no session start: not limited
        assert resumed == "1"
        again.send("x")
        assert again.recv() == "x"
        again.close()
        tot = _wait(lambda: (lambda x: x if x["session_refused"] == 3 and x["resumed"] == 1 else None)(_totals(t)))
        assert tot["session_starts"] == 1
        assert tot["rejected"].get("session_start") == 3
        assert tot["closes_sent"].get("4009") == 3
        assert "wsstorm_session_starts_refused_total 3.0" in t.admin.metrics()


def test_report_row_shows_resumed_against_new_sessions():
    from types import SimpleNamespace

    import pandas as pd

    from wsstorm.analysis.report import session_rows

    ticks = pd.DataFrame({"resumed": [0, 3, 1], "session_starts": [4, 0, 0], "session_refused": [0, 2, 0]})
    run = SimpleNamespace(server=ticks, manifest={"target": {"resume_window": 30}})
    assert session_rows(run) == [("Sessions resumed / new / starts refused", "4 / 4 / 2 (50% resumed)")]
    off = ticks.assign(resumed=0, session_refused=0)
    assert session_rows(SimpleNamespace(server=off, manifest={"target": {}})) == []  # resume off: no row
    old = pd.DataFrame({"resumed": [None], "session_starts": [None], "session_refused": [None]})
    assert session_rows(SimpleNamespace(server=old, manifest={})) == []  # ticks from before the fields
    assert session_rows(SimpleNamespace(server=None, manifest={})) == []


@pytest.mark.e2e
def test_sessions_and_the_start_bucket_are_shared_by_the_serving_processes():
    with start_target(capacity=20, workers=2, resume_window=5, session_start_rate=0.2, session_refuse_code=4009) as t:
        ws, resumed = _open(t.url, "carol")
        assert resumed == "0"
        ws.close()
        for _ in range(5):  # the kernel spreads these over both processes: each one resumes
            time.sleep(0.2)
            ws, resumed = _open(t.url, "carol")
            assert resumed == "1"
            ws.close()
        refused = [close_of(connect_with(t.url, f"other{i}"))[0] for i in range(4)]
        assert refused == [4009] * 4  # one bucket for both processes: its only token went to carol
        # each process reports its own counts: wait for both (the refusals alone can be in before a resume)
        tot = _wait(lambda: (lambda x: x if x["session_refused"] == 4 and x["resumed"] == 5 else None)(_totals(t)))
        assert (tot["session_starts"], tot["resumed"]) == (1, 5)
