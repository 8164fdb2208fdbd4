"""Analysis speed-ups keep every number: metrics, series, warnings and counts of a few synthetic run folders
equal, exactly, those the analysis gave before it was made fast (tests/data/analysis_golden.json); plus
the array shortcuts of the loader against the pandas steps they replace.

A deliberate change of a metric's definition regenerates the file (and says so in its commit):
``.venv/bin/python -m tests.test_analysis_golden --write``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import synth
from tests.strategies import examples
from wsstorm.analysis import load as L
from wsstorm.analysis import metrics as M
from wsstorm.runfolder.jsonl import jsonable

GOLDEN = Path(__file__).parent / "data" / "analysis_golden.json"
FOLDERS = {
    "restart_storm": lambda: synth.restart_storm(n=200),
    "wasted_loop": lambda: synth.wasted_loop(),
    "metastable": lambda: synth.metastable_storm(),
    "metastable_recovers": lambda: synth.metastable_storm(recovers=True),
    "realistic": lambda: synth.realistic(8000, seed=3, duration=120.0),
}


def outcome(folder: Path) -> dict[str, Any]:
    """What must not change: metrics, warnings, counts, the series (as a hash of its CSV) and its dtypes."""
    run = L.load_run(folder)
    return json.loads(
        json.dumps(
            {
                "metrics": jsonable(M.compute(run)),
                "warnings": run.warnings,
                "counts": run.counts,
                "series_sha256": hashlib.sha256(run.series.to_csv().encode()).hexdigest(),
                "series_dtypes": {c: str(d) for c, d in run.series.dtypes.items()},
            },
            sort_keys=True,
            default=str,
        )
    )


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_numbers_are_those_of_the_analysis_before_it_was_made_fast(tmp_path, name):
    golden = json.loads(GOLDEN.read_text())[name]
    got = outcome(FOLDERS[name]().write(tmp_path / name))
    assert got["metrics"] == golden["metrics"]
    assert got == golden


_ROWS = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0]),  # few distinct times: many ties
        st.sampled_from(["u1", "u2"]),
        st.sampled_from([1.0, 2.0, np.nan]),
        st.sampled_from(["open", "close", "attempt"]),
        st.integers(0, 3),  # a payload that differs between key twins: shows which one was kept
    ),
    max_size=30,
)


@settings(max_examples=examples(200), deadline=None)
@given(rows=_ROWS, mask=st.lists(st.booleans(), min_size=30, max_size=30), categorical=st.booleans())
def test_dedupe_sorted_is_drop_duplicates_then_a_stable_sort(rows, mask, categorical):
    df = pd.DataFrame(rows, columns=["t", "user", "conn", "event", "payload"])
    if categorical:  # as the loader's frames have them; plain text columns are compared as well
        df = df.astype({"user": "category", "event": "category"})
    keep = np.flatnonzero(np.array(mask[: len(df)], dtype=bool))
    want = df.iloc[keep].drop_duplicates(subset=L.DEDUPE_KEY).sort_values("t", kind="stable")
    got, dup = L._dedupe_sorted(df, keep, df["t"].to_numpy(dtype=float))
    assert dup == len(keep) - len(want)
    assert got.tolist() == want.index.tolist()


def _outcomes_reference(ev: pd.DataFrame, conns: pd.DataFrame, gated: bool) -> pd.DataFrame:
    """attempt_outcomes as it was written on object columns (the definition the fast one must match)."""
    cols = ["user", "t", "event", "kind", "status", "conn"]
    opened_event = "ready" if gated else "open"
    sub = ev.loc[ev["event"].isin(["attempt", opened_event, "fail"]), cols]
    codes = sub["user"].cat.codes.to_numpy()
    order = np.lexsort((sub["t"].to_numpy(), codes))
    s = sub.iloc[order]
    nxt_event = s["event"].astype(object).shift(-1).fillna("")
    same_user = pd.Series(codes[order]).shift(-1).to_numpy() == codes[order]
    kind = s["kind"].astype(object).shift(-1).fillna("")
    status = s["status"].shift(-1)
    is_att = (s["event"] == "attempt").to_numpy()
    a = s.loc[is_att, ["user", "t", "conn"]].copy()
    ne, su = nxt_event.to_numpy()[is_att], same_user[is_att]
    kd, st_ = kind.to_numpy()[is_att], status.to_numpy()[is_att]
    out = np.full(len(a), "other", dtype=object)
    opened = su & (ne == opened_event)
    failed = su & (ne == "fail")
    out[failed & (kd == "refused")] = "refused"
    out[failed & ((kd == "timeout") | (kd == "ready_timeout"))] = "timeout"
    http = failed & (kd == "http_status")
    out[http] = "http_other"
    out[http & (st_ == 503)] = "http_503"
    out[http & (st_ == 429)] = "http_429"
    out[opened] = "open"
    a["outcome"] = out
    quick = conns.loc[(conns["code"] == 1013) & (conns["by"] == "server") & (conns["uptime"] <= 1.0), ["user", "conn"]]
    if len(quick):
        key = pd.MultiIndex.from_frame(a[["user", "conn"]].astype({"user": "string"}))
        qkey = pd.MultiIndex.from_frame(quick.astype({"user": "string"}))
        a.loc[opened & key.isin(qkey), "outcome"] = "1013"
    return a.reset_index(drop=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("gated", [False, True])
def test_attempt_outcomes_match_their_object_column_definition(tmp_path, seed, gated):
    r = synth.realistic(6000, seed=seed, duration=60.0)
    for evs in r.events.values():  # some attempts without a conn, some ready events, a ready timeout
        for i, e in enumerate(evs):
            if e["event"] == "attempt" and i % 17 == 0:
                e.pop("conn")
            if e["event"] == "open" and i % 3:
                evs.append({**e, "event": "ready", "t": e["t"] + 0.001})
            if e["event"] == "fail" and i % 5 == 0:
                e["kind"] = "ready_timeout"
    run = L.load_run(r.write(tmp_path / "run"))
    assert run.events is not None and run.conns is not None
    fast = L.attempt_outcomes(run.events, run.conns, gated)
    pd.testing.assert_frame_equal(fast, _outcomes_reference(run.events, run.conns, gated))
    assert set(fast["outcome"]) >= {"open", "1013", "refused", "timeout", "http_503"}


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = {name: outcome(make().write(Path(tmp) / name)) for name, make in FOLDERS.items()}
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
