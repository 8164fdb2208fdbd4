"""Recorder.emit (a user's per-event path) writes exactly the line Recorder.record writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import examples
from wsstorm.load.recorder import Recorder

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),  # past 64 bits orjson refuses: record's path
    st.floats(allow_nan=True, allow_infinity=True),  # non-finite: record's path (json refuses them)
    st.text(),  # lone surrogates included: record's path escapes them
    st.lists(st.integers(), max_size=3),
)
_KEYS = st.one_of(st.sampled_from(["kind", "code", "reason", "rtt_ms", "conn", "event", "v", "user"]), st.text())


def _pair(run: str, worker: str) -> tuple[Recorder, Recorder]:
    out: list[list[bytes]] = [[], []]
    return (
        Recorder(run, worker, out[0].append, clock=lambda: 1764620000.25),
        Recorder(run, worker, out[1].append, clock=lambda: 1764620000.25),
    )


@settings(max_examples=examples(300))
@given(
    run=st.text(max_size=8),
    worker=st.text(max_size=8),
    user=st.text(max_size=8),
    conn=st.integers(min_value=0, max_value=2**66),
    event=st.text(min_size=1, max_size=8),
    fields=st.dictionaries(_KEYS, _VALUES, max_size=4),
    t=st.one_of(st.none(), st.floats(allow_nan=False), st.integers(0, 2**40)),
)
def test_emit_writes_what_record_writes(run, worker, user, conn, event, fields, t) -> None:  # type: ignore[no-untyped-def]
    fields.pop("t", None)
    a, b = _pair(run, worker)
    failed = []
    for call in (
        lambda: a.record(user, conn, event, t, **fields),
        lambda: b.emit(user, conn, event, {**fields, **({} if t is None else {"t": t})}),
    ):
        try:
            call()
        except (ValueError, TypeError) as exc:  # json refuses some values outright: both must then
            failed.append(type(exc))
    assert len(failed) in (0, 2)
    assert a._buf == b._buf
    assert a.count == b.count


def test_emit_common_events() -> None:
    """The user's own events, field for field (what the event-log contract's readers see)."""
    a, b = _pair("run-1", "local")
    cases = [
        ("attempt", {"attempt": 1, "planned_delay": 0.0, "scheduled_t": 1764620000.125}),
        ("open", {"t": 1764620001.5, "connect_ms": 1.234}),
        ("echo", {"rtt_ms": 0.5}),
        ("close", {"code": 1000, "reason": "", "by": "client", "clean": True, "uptime_s": 20.0}),
        ("wait", {"delay": 1.5, "policy": "full-jitter:base=1,cap=2", "after_code": "http_503"}),
        ("fail", {"kind": "refused", "status": None, "retry_after": None, "detail": "caf\u00e9 \ud800"}),
        ("stop", {}),
    ]
    for event, fields in cases:
        t = fields.get("t")
        a.record("local/1", 2, event, t, **{k: v for k, v in fields.items() if k != "t"})
        b.emit("local/1", 2, event, dict(fields))
    assert a._buf == b._buf
