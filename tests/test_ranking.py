"""The comparison's order: protection first as a scale, client cost second (analysis/ranking.py).

Pinned two ways: hypothesis draws random metric tables and the acceptance invariant must always
hold; and the demo's real numbers (issue 13) are known answers.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import examples
from wsstorm.analysis import ranking as R
from wsstorm.analysis.compare import indistinct, rank, verdict_text

finite = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
maybe = st.one_of(st.none(), st.just(math.nan), finite)
frac = st.one_of(st.none(), st.just(math.nan), st.floats(min_value=0.0, max_value=1.0))
herds = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e4), st.just(math.nan))
row = st.fixed_dictionaries(
    {
        "herd_factor": herds,
        "overload_s": st.one_of(st.integers(min_value=0, max_value=600).map(float), st.just(math.nan)),
        "goodput_lost_frac": frac,
        "wasted_work_frac": frac,
        "rtt_inflation": st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e3)),
        "recovery_T95_s": st.one_of(maybe, st.just(math.inf)),
        "downtime_p99_s": maybe,
        "wasted_per_recovered": maybe,
    }
)


def _table(rows: list[dict]) -> list[dict]:
    return [{"policy": f"p{i}", "scenario": "s", **r} for i, r in enumerate(rows)]


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(row, min_size=2, max_size=8))
def test_no_policy_ranks_above_one_with_no_more_overload_and_a_fifth_of_its_herd(rows):
    rows = _table(rows)
    pos = {i: k for k, i in enumerate(R.order(rows))}
    for a, b in R.dominated_pairs(rows):
        assert pos[b] < pos[a], (rows[a], rows[b])


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(row, min_size=2, max_size=8))
def test_no_policy_ranks_above_one_that_hurt_the_server_less_on_every_measure(rows):
    rows = _table(rows)
    pos = {i: k for k, i in enumerate(R.order(rows))}
    for a, ra in enumerate(rows):
        for b, rb in enumerate(rows):
            if a != b and R.hurt_less_everywhere(rb, ra):
                assert pos[b] < pos[a], (ra, rb)


def test_a_faster_recovery_does_not_lift_a_policy_that_hurt_more_everywhere():
    # Same band (scores 0.35 and 0.11), so the sort key alone would put the faster one first.
    rows = _table(
        [
            {"herd_factor": 1.5, "overload_s": 1.0, "recovery_T95_s": 3.0},
            {"herd_factor": 1.2, "overload_s": 0.0, "recovery_T95_s": 9.0},
        ]
    )
    assert R.band(R.protection_score(rows[0])) == R.band(R.protection_score(rows[1]))
    assert R.order(rows) == [1, 0]


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(row, min_size=1, max_size=8))
def test_order_is_a_permutation_and_the_score_is_never_nan(rows):
    rows = _table(rows)
    assert sorted(R.order(rows)) == list(range(len(rows)))
    for r in rows:
        assert not math.isnan(R.protection_score(r))


@given(
    st.floats(min_value=1e-3, max_value=1e3),
    st.integers(min_value=0, max_value=100),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=1),
)
def test_a_fifth_of_the_herd_is_always_a_lower_band_whatever_the_bounded_terms(h, ov, g1, g2):
    worse = {"herd_factor": h * R.HERD_STEP, "overload_s": ov, "goodput_lost_frac": 0.0, "wasted_work_frac": 0.0}
    better = {"herd_factor": h, "overload_s": ov, "goodput_lost_frac": g1, "wasted_work_frac": g2}
    assert R.band(R.protection_score(better)) < R.band(R.protection_score(worse))


# The demo's restart scenario as issue 13 reports it (immediate ranked first by the old rule).
DEMO_RESTART = [
    {
        "policy": "immediate",
        "scenario": "restart",
        "runs": 1,
        "herd_factor": 71.0,
        "overload_s": 4.0,
        "wasted_per_recovered": 147.0,
        "recovery_T95_s": 4.4,
        "downtime_p99_s": 4.6,
    },
    {
        "policy": "code-aware",
        "scenario": "restart",
        "runs": 1,
        "herd_factor": 0.55,
        "overload_s": 2.0,
        "wasted_per_recovered": 0.4,
        "recovery_T95_s": 6.1,
        "downtime_p99_s": 6.3,
    },
    {
        "policy": "full-jitter",
        "scenario": "restart",
        "runs": 1,
        "herd_factor": 1.3,
        "overload_s": 2.0,
        "wasted_per_recovered": 0.6,
        "recovery_T95_s": 10.0,
        "downtime_p99_s": 10.2,
    },
]


def _with_scores(rows: list[dict]) -> list[dict]:
    return [
        {
            **r,
            "score": R.protection_score(r),
            "score_ci": math.nan,
            "recovery_T95_s_ci": math.nan,
            "metastable_runs": r.get("metastable_runs", 0),
        }
        for r in rows
    ]


def test_demo_restart_numbers_rank_immediate_last():
    ranked = [r["policy"] for r, _ in rank(_with_scores(DEMO_RESTART))]
    assert ranked == ["code-aware", "full-jitter", "immediate"]
    assert R.protection_score(DEMO_RESTART[0]) > 2.5  # log5(71) + 0.4: a broken server, not a close call


def test_demo_verdict_names_who_broke_the_server_and_what_protection_cost():
    rows = _with_scores(DEMO_RESTART)
    text = " ".join(verdict_text(rows, rank(rows)))
    assert "No policy kept the server entirely within its budget" in text
    assert "Broke it: immediate (71× the handshake budget)" in text
    assert "The fastest protective policy, code-aware, cost clients a recovery T95 of 6.10 s" in text
    assert "immediate recovered faster (4.40 s) but protected the server less" in text
    assert "Trade-offs worth considering" in text and "code-aware, immediate" in text


def test_same_band_falls_to_client_cost_and_within_budget_is_named():
    rows = _with_scores(
        [
            {"policy": "slow", "herd_factor": 0.5, "overload_s": 0.0, "recovery_T95_s": 20.0},
            {"policy": "quick", "herd_factor": 0.6, "overload_s": 0.0, "recovery_T95_s": 5.0},
        ]
    )
    for r in rows:
        r["runs"] = 1
    assert R.band(rows[0]["score"]) == R.band(rows[1]["score"])
    assert [r["policy"] for r, _ in rank(rows)] == ["quick", "slow"]
    text = " ".join(verdict_text(rows, rank(rows)))
    assert "Kept the server within its budget (no overload, peak within the handshake budget): quick, slow." in text
    assert "quick is best on both protection and recovery" in text


def test_metastable_breaks_the_server_whatever_the_herd():
    r = {
        "policy": "immediate",
        "runs": 3,
        "herd_factor": 0.9,
        "overload_s": 0.0,
        "metastable_runs": 3,
        "recovery_T95_s": math.inf,
    }
    s = R.standing(r)
    assert s.broke and not s.within_budget and "metastable failure in 3 of 3 run(s)" in s.why


def test_repeats_whose_intervals_overlap_are_not_distinguishable():
    a = {
        "policy": "a",
        "runs": 3,
        "herd_factor": 0.5,
        "overload_s": 0.0,
        "recovery_T95_s": 5.0,
        "recovery_T95_s_ci": 2.0,
    }
    b = {
        "policy": "b",
        "runs": 3,
        "herd_factor": 0.5,
        "overload_s": 0.0,
        "recovery_T95_s": 6.0,
        "recovery_T95_s_ci": 2.0,
    }
    c = {
        "policy": "c",
        "runs": 3,
        "herd_factor": 0.5,
        "overload_s": 0.0,
        "recovery_T95_s": 20.0,
        "recovery_T95_s_ci": 1.0,
    }
    rows = [{**r, "score": R.protection_score(r), "score_ci": 0.1} for r in (a, b, c)]
    pairs = [(x["policy"], y["policy"]) for x, y in indistinct(rank(rows))]
    assert pairs == [("a", "b")]
    assert R.overlap((1.0, 0.5), (2.0, 0.5)) and not R.overlap((1.0, 0.4), (2.0, 0.5))
    assert not R.overlap((1.0, math.nan), (1.0, 0.5))


# A demo run of this version on this machine (restart and overload, 200 users): measured numbers.
MEASURED = {
    "restart": [
        ("immediate", 9.55, 2.0, 4.50),
        ("full-jitter", 1.24, 2.0, 9.48),
        ("code-aware", 0.53, 2.0, 6.14),
        ("socketio", 1.23, 2.0, 7.69),
    ],
    "overload": [
        ("immediate", 5.58, 12.0, math.nan),
        ("full-jitter", 1.94, 13.0, math.nan),
        ("code-aware", 1.53, 11.0, math.nan),
        ("socketio", 1.61, 13.0, math.nan),
    ],
}


def test_measured_demo_numbers_never_rank_immediate_above_the_protective_presets():
    for scenario, table in MEASURED.items():
        rows = _with_scores(
            [
                {
                    "policy": p,
                    "scenario": scenario,
                    "runs": 1,
                    "herd_factor": h,
                    "overload_s": ov,
                    "recovery_T95_s": t95,
                }
                for p, h, ov, t95 in table
            ]
        )
        ranked = [r["policy"] for r, _ in rank(rows)]
        assert ranked[0] == "code-aware" and ranked[-1] == "immediate", (scenario, ranked)
