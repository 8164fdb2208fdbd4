"""Loader tolerance: truncated/garbage lines, duplicate and missing shards, missing logs."""

from __future__ import annotations

import shutil

import pytest

from tests.strategies import examples
from tests.synth import restart_storm
from wsstorm.analysis import metrics as M
from wsstorm.analysis.load import load_run
from wsstorm.errors import UsageError
from wsstorm.runfolder import names


@pytest.fixture()
def folder(tmp_path):
    return restart_storm(n=200).write(tmp_path / "run")


def test_clean_folder_has_no_warnings(folder):
    run = load_run(folder)
    assert run.warnings == []
    assert run.counts["events"] == 200 * 8


def test_truncated_last_line_and_garbage_line(folder):
    shard = folder / "events-local.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    lines.insert(5, "this is not json\n")
    lines.insert(7, "[1, 2]\n")
    shard.write_text("".join(lines) + lines[-1][:25])  # the writer died mid-line
    run = load_run(folder)
    text = " ".join(run.warnings)
    assert "truncated" in text and "2 unreadable line(s)" in text
    assert run.counts["events"] == 200 * 8


def test_duplicate_shard_is_deduplicated(folder):
    shutil.copy(folder / "events-local.jsonl", folder / "events-local-copy.jsonl")
    run = load_run(folder)
    assert run.counts["events"] == 200 * 8
    assert run.counts["events_duplicate"] == 200 * 8
    assert any("duplicate" in w for w in run.warnings)
    assert M.compute(run)["disruptions"][0]["recovery_T95_s"] == pytest.approx(0.95 * 10, abs=0.06)


def test_missing_shard_and_missing_logs_are_warnings(folder):
    m = (folder / "manifest.json").read_text().replace('"workers": ["local"]', '"workers": ["local", "w9"]')
    (folder / "manifest.json").write_text(m)
    (folder / "server.jsonl").unlink()
    (folder / "faults.jsonl").unlink()
    run = load_run(folder)
    text = " ".join(run.warnings)
    assert "w9" in text and "no server.jsonl" in text
    assert run.server is None and len(run.disruptions) == 0
    assert run.budget == 100  # from the manifest's target


def test_not_a_run_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        load_run(tmp_path / "nope")
    with pytest.raises(UsageError):
        load_run(tmp_path)
    (tmp_path / "events-local.jsonl").write_text("garbage\n")
    with pytest.raises(UsageError):
        load_run(tmp_path)


def test_a_corrupt_timestamp_is_skipped_not_stretched_over_years(folder):
    import json

    with open(folder / "events-local.jsonl", "a") as f:
        f.write(
            json.dumps(
                {
                    "v": 1,
                    "t": 1.7e15,
                    "run": "synth",
                    "worker": "local",
                    "user": "local/0",
                    "conn": 1,
                    "event": "open",
                    "connect_ms": 1.0,
                }
            )
            + "\n"
        )
    run = load_run(folder)
    assert any("timestamp far outside the run" in w for w in run.warnings)
    assert run.counts["events"] == 200 * 8
    assert len(run.series) < 100  # the run lasts 40 s, not 50 million years


def test_a_scenario_given_as_a_name_is_not_a_crash(folder):
    import json

    m = json.loads((folder / "manifest.json").read_text())
    m["scenario"] = "restart"
    (folder / "manifest.json").write_text(json.dumps(m))
    run = load_run(folder)
    assert M.compute(run)["run"]["recovery_T95_s"] is not None


def test_every_series_column_is_one_the_run_folder_schema_names(tmp_path):
    from tests.synth import metastable_storm
    from wsstorm.runfolder import schemas

    run = load_run(metastable_storm(n=40, end=50).write(tmp_path / "r"))
    known = {*schemas.SERIES_CLIENT, *schemas.SERIES_SERVER, *schemas.SERIES_LATENCY}
    cols = {c for c in run.series.columns if not c.startswith("closes_")}
    assert cols <= known, cols - known
    assert {"server_goodput", "server_wasted_ms", "server_abandoned", *schemas.SERIES_LATENCY} <= cols


# -- the columnar (pyarrow) path reads exactly what the tolerant path reads ----------------------

import json  # noqa: E402

import pandas as pd  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from wsstorm.analysis import load as L  # noqa: E402

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12) | st.sampled_from(
    ["", "NaN", 'after_code": 5', "after_code#text", "{[", "\\", '"', "}\n{", "Infinity", "é✓"]
)
_NUM = st.one_of(
    st.integers(-3, 2000), st.floats(allow_nan=False, allow_infinity=False, width=64), st.integers(2**62, 2**70)
)
_ANY = st.one_of(st.none(), st.booleans(), _NUM, _TEXT, st.lists(st.integers(), max_size=2))
_EVENTS = st.sampled_from([*L.KNOWN_EVENTS, "attempt", "close", "wait", "fail", "mystery"])


@st.composite
def _event(draw) -> dict:
    """One event, mostly well-formed; sometimes a field of the wrong type, missing or extra."""
    ev = {
        "v": draw(st.sampled_from([1, 1, 1, 2, None])),
        "t": 1_700_000_000 + draw(st.floats(0, 60, allow_nan=False)),
        "user": f"w0/{draw(st.integers(0, 6))}",
        "conn": draw(st.integers(1, 4)),
        "event": draw(_EVENTS),
    }
    ev.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "scheduled_t": st.floats(1.7e9, 1.7e9 + 60),
                    "kind": st.sampled_from(["refused", "timeout", "http_status"]),
                    "status": st.sampled_from([None, 503, 429]),
                    "code": st.sampled_from([1000, 1006, 1012, 1013]),
                    "by": st.sampled_from(["server", "client"]),
                    "reason": _TEXT,
                    "uptime_s": st.floats(0, 60),
                    "delay": st.floats(0, 30),
                    "after_code": st.sampled_from([1012, 1006, "refused", "http_503", None, 0]),
                    "rtt_ms": st.floats(0, 500),
                    "policy": _TEXT,
                    "extra": st.dictionaries(st.sampled_from(["a", "after_code"]), _ANY, max_size=2),
                },
            )
        )
    )
    if draw(st.integers(0, 9)) == 0:  # a field of the wrong type, or missing
        key = draw(st.sampled_from(["t", "user", "conn", "event", "code", "kind", "reason", "after_code", "v"]))
        if draw(st.booleans()):
            ev[key] = draw(_ANY)
        else:
            ev.pop(key, None)
    return ev


_BAD_LINES = [
    b"this is not json",
    b"[1, 2]",
    b"null",
    b"5",
    b"   ",
    b"",
    b'{"t": NaN, "user": "w0/1", "event": "open"}',
    b'{"t": 1700000001, "user": "w0/1", "event": "open", "x": Infinity}',
    b'{"t": 1700000001, "user": "w0/1", "event": "open"} {"t": 1700000002, "user": "w0/2", "event": "open"}',
    b'{"t": 1700000001, "user": "w0/1", "event": "open", "x": "\xff"}',
    b'\xef\xbb\xbf{"t": 1700000001, "user": "w0/1", "event": "open"}',
    b'{"t": 1700000001, "user": "w0/1", "event": "wait", "after_code": 1012, "after_code": "refused"}',
    b'{"t": 1700000001, "user": "w0/1", "event": "wait", "after_code": 1012.0}',
    b'{"t": 1700000001, "user": "w0/1", "event": "wait", "after\\u005fcode": "refused"}',
    b'{"t": 1700000001, "user": "w0/1", "event": "open", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}",
    b'{"t": 1700000001, "user": "w0/1", "event": "open"}\r',
    b'{"t": 1700000001, "user": "w0/1", "event": "open",}',
]


@st.composite
def _shard(draw) -> bytes:
    """A shard's bytes: events written with random separators, maybe corrupt lines, maybe cut short."""
    seps = draw(st.sampled_from([(", ", ": "), (",", ":")]))
    ascii_only = draw(st.booleans())
    events = draw(st.lists(_event(), max_size=40))
    lines = [json.dumps(e, separators=seps, ensure_ascii=ascii_only).encode() for e in events]
    for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(_BAD_LINES)))
    data = b"".join(ln + b"\n" for ln in lines)
    if lines and draw(st.integers(0, 3)) == 0:  # the writer died mid-line (or just before the newline)
        data = data[: -draw(st.integers(1, min(30, len(lines[-1]) + 1)))]
    return data


def _load(folder, columnar: bool):
    old = L.COLUMNAR
    L.COLUMNAR = columnar
    try:
        warnings: list[str] = []
        counts: dict[str, int] = {}
        frame = L.load_events(folder, {"workers": ["w0", "w1"]}, warnings, counts)
        return frame, warnings, counts
    finally:
        L.COLUMNAR = old


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shards=st.lists(_shard(), min_size=1, max_size=2), small_blocks=st.booleans())
def test_columnar_and_tolerant_paths_give_identical_frames(tmp_path, shards, small_blocks):
    from wsstorm.analysis import columnar as C

    folder = tmp_path / "run"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i, data in enumerate(shards):
        (folder / f"events-w{i}.jsonl").write_bytes(data)
    sizes = C.BLOCK, C.GROUP
    if small_blocks:  # a shard of many blocks, framed a few at a time, as a big log is
        C.BLOCK, C.GROUP = 300, 2
    try:
        fast, fast_warnings, fast_counts = _load(folder, True)
    finally:
        C.BLOCK, C.GROUP = sizes
    slow, slow_warnings, slow_counts = _load(folder, False)
    assert fast_warnings == slow_warnings
    assert fast_counts == slow_counts
    if slow is None:
        assert fast is None
    else:
        pd.testing.assert_frame_equal(fast, slow)


def _no_tolerant(path):
    raise AssertionError(f"{path}: took the tolerant path")


def test_a_clean_shard_takes_the_columnar_path(folder, monkeypatch):
    slow = load_run(folder).events
    monkeypatch.setattr(L, "tolerant_frames", _no_tolerant)
    run = load_run(folder)  # mixed after_code (close codes and fail kinds), reasons, every event type
    assert run.warnings == [] and run.counts["events"] == 200 * 8
    pd.testing.assert_frame_equal(run.events, slow)


def test_a_truncated_last_line_only_sends_that_line_to_the_tolerant_reader(folder, monkeypatch):
    shard = folder / "events-local.jsonl"
    shard.write_bytes(shard.read_bytes() + b'{"v": 1, "t": 17000')
    seen = []
    tolerant = L.tolerant_frames
    monkeypatch.setattr(L, "tolerant_frames", lambda p: (seen.append(p.read_bytes()), tolerant(p))[1])
    run = load_run(folder)
    assert seen == [b'{"v": 1, "t": 17000']
    assert any("truncated" in w for w in run.warnings) and run.counts["events"] == 200 * 8


def test_a_garbage_line_sends_the_shard_to_the_tolerant_reader(folder):
    shard = folder / "events-local.jsonl"
    lines = shard.read_bytes().splitlines(keepends=True)
    shard.write_bytes(b"".join([*lines[:3], b'{"t": NaN}\n', *lines[3:]]))
    fast, slow = _load(folder, True), _load(folder, False)
    assert fast[1] == slow[1] and any("1 unreadable line(s)" in w for w in fast[1])
    pd.testing.assert_frame_equal(fast[0], slow[0])


def test_with_a_ready_condition_a_connection_counts_from_its_ready(tmp_path):
    """Open but never ready is still down: it is no connection, and its attempt timed out."""
    from tests.synth import SynthRun

    r = SynthRun(capacity=10, handshake_rate=100)
    for i in range(4):  # ready 0.5 s after open, held to the end
        u = f"local/{i}"
        r.attempt(u, 1.0)
        r.open(u, 1.1)
        r._ev(u, 1.6, "ready", ready_ms=500.0)
    for i in range(4, 7):  # opened, the ready reply never came: the client closes
        u = f"local/{i}"
        r.attempt(u, 1.0)
        r.open(u, 1.1)
        r._ev(u, 11.1, "fail", kind="ready_timeout", status=None, retry_after=None, detail="no ready in 10 s")
        r.close(u, 11.2, code=1000, by="client")
    for i in range(7):
        r.stop(f"local/{i}", 20.0)
    run = load_run(r.write(tmp_path / "r"))
    assert len(run.conns) == 4 and (run.conns["open_t"] - r.t0).round(1).eq(1.6).all()
    assert run.series["connected"].max() == 4
    assert run.series.loc[1, "connected"] == 4  # second 1 ends after the ready at 1.6
    outcomes = run.attempts["outcome"].value_counts().to_dict()
    assert outcomes == {"open": 4, "timeout": 3}


def test_a_close_code_after_a_chunk_without_one_stays_an_integer_code(tmp_path):
    """The columnar block of the first line has no after_code (float categories), the tolerant read of the
    unterminated last line an int one: concatenated, the code is still "1012", as the tolerant path reads it
    (found by the property test above)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "events-w0.jsonl").write_bytes(
        b'{"v": 1, "user": "w0/0", "conn": 1, "event": "wait"}\n'
        b'{"v": 1, "t": 1700000000.0, "user": "w0/0", "conn": 1, "event": "wait", "scheduled_t": 1700000000.0, '
        b'"kind": "refused", "extra": {}, "rtt_ms": 0.0, "after_code": 1012}'
    )
    fast, _, _ = _load(folder, True)
    slow, _, _ = _load(folder, False)
    assert list(fast["after_code"].cat.categories) == ["1012"] == list(slow["after_code"].cat.categories)
    pd.testing.assert_frame_equal(fast, slow)


def test_a_parse_started_before_the_load_is_the_one_it_reads(folder, monkeypatch):
    from wsstorm.analysis import columnar as C
    from wsstorm.analysis import fields

    expected = load_run(folder).events
    parsing = C.start(names.event_shards(folder), fields.BY_EVENT, fields.EVENT_FLOATS)
    made = []
    monkeypatch.setattr(C, "Parsing", lambda *a: made.append(a) or pytest.fail("parsed a second time"))
    pd.testing.assert_frame_equal(load_run(folder, parsing).events, expected)
    assert not made and not parsing._producer.is_alive()


def test_a_parse_of_other_shards_is_closed_and_the_folder_parsed_afresh(folder, tmp_path):
    from wsstorm.analysis import columnar as C
    from wsstorm.analysis import fields

    other = tmp_path / "other.jsonl"
    other.write_bytes((folder / "events-local.jsonl").read_bytes())
    stale = C.start([other], fields.BY_EVENT, fields.EVENT_FLOATS)
    run = load_run(folder, stale)
    assert not stale._producer.is_alive() and run.counts["events"] == 200 * 8


def test_a_parse_nobody_reads_ends_its_threads_when_closed(folder):
    from wsstorm.analysis import columnar as C
    from wsstorm.analysis import fields

    parsing = C.start(names.event_shards(folder) * 50, fields.BY_EVENT, fields.EVENT_FLOATS)
    parsing.close()
    parsing.close()  # twice is harmless
    assert not parsing._producer.is_alive()
    handed = C.start(names.event_shards(folder), fields.BY_EVENT, fields.EVENT_FLOATS)
    with pytest.raises(UsageError):  # the load fails before reading: the parse it was handed is closed
        load_run(folder / "missing", handed)
    assert not handed._producer.is_alive()
