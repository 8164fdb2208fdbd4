"""How a comparison decides: protection first, as a scale; the clients' cost second.  Pure (math only).

The protection score of a policy (lower is better) is

    log5(herd factor) + overload seconds / 10 + 0.4 * mean(goodput lost, wasted-work share, latency inflation)

where the last three are each mapped to [0, 1] and only those measured count.  Policies whose scores
fall in the same half-unit band are taken as equally protective and ordered by what their clients paid:
recovery T95, then downtime p99, then wasted attempts per recovery.  Because a herd factor five times
smaller is one whole unit and the bounded terms weigh at most 0.4, a policy never ranks above another
that had no more overload seconds and a herd factor at most one fifth of its own (the invariant the
tests pin); nor above one that hurt the server less on every protection measure, however much faster it
recovered (the order enforces both).  docs/comparison.md explains the rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HERD_STEP = 5.0  # a herd factor this many times larger costs one unit of protection
OVERLOAD_UNIT_S = 10.0  # ten overloaded seconds cost one unit
SECONDARY_WEIGHT = 0.4  # the bounded measures together: always less than one herd step minus a band
BAND = 0.5  # scores in the same half-unit band are "equally protective"
BROKE_HERD = HERD_STEP  # a peak at 5x the budget or more (or a metastable failure) broke the server
SECONDARY = ("goodput_lost_frac", "wasted_work_frac", "rtt_inflation")
CLIENT_COST = ("recovery_T95_s", "downtime_p99_s", "wasted_per_recovered")

RULE = (
    "Order: protection first, as a scale: log5(herd factor) + overload seconds / 10 + 0.4 × the mean of "
    "goodput lost, wasted-work share and collateral-latency inflation (each 0–1, when measured); "
    "policies within the same half-unit band of that score count as equally protective and are ordered by "
    "what clients paid (recovery T95, then downtime p99, then wasted attempts). No policy ranks above one "
    "that had no more overload seconds and a herd factor at most a fifth of its own, nor above one that hurt "
    "the server less on every protection measure."
)


def num(v: Any) -> float:
    """A metric as a float: NaN for None, text ("not reached" is inf) or anything else unknown."""
    if v == "not reached":
        return math.inf
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    return float(v)


def _unit(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def secondary_terms(row: Mapping[str, Any]) -> list[float]:
    """The bounded protection measures of a row, each in [0, 1] (only those measured)."""
    out = []
    for key in SECONDARY:
        v = num(row.get(key))
        if math.isnan(v):
            continue
        if key == "rtt_inflation":  # p99 during/after over p99 before: 1x is no harm, 2x is 0.5, 10x is 0.9
            v = 1.0 - 1.0 / v if v > 1 else 0.0
        out.append(_unit(v))
    return out


def herd_term(row: Mapping[str, Any]) -> float:
    """log5 of the herd factor (-inf for no attempts at all; 0 when the budget is unknown)."""
    h = num(row.get("herd_factor"))
    if math.isnan(h):
        return 0.0
    if h <= 0:
        return -math.inf
    return math.log(h) / math.log(HERD_STEP)


def protection_score(row: Mapping[str, Any]) -> float:
    """The protection score (lower protects better); see the module docstring."""
    ov = num(row.get("overload_s"))
    sec = secondary_terms(row)
    return (
        herd_term(row)
        + (0.0 if math.isnan(ov) else ov / OVERLOAD_UNIT_S)
        + (SECONDARY_WEIGHT * sum(sec) / len(sec) if sec else 0.0)
    )


def band(score: float) -> float:
    """The half-unit band of a protection score (-inf stays -inf)."""
    return score if math.isinf(score) else float(math.floor(score / BAND))


def _cost(row: Mapping[str, Any]) -> tuple[float, ...]:
    out = []
    for key in CLIENT_COST:
        v = num(row.get(key))
        out.append(math.inf if math.isnan(v) else v)
    return tuple(out)


def sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Protection band, then (for herds of zero, where the log scale has no room) overload seconds, then
    the clients' cost, then the exact score, then the name: a total order."""
    score = protection_score(row)
    ov = num(row.get("overload_s"))
    zero_herd_ov = (0.0 if math.isnan(ov) else ov) if score == -math.inf else 0.0
    return (band(score), zero_herd_ov, *_cost(row), score, str(row.get("policy", "")), str(row.get("scenario", "")))


def order(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of rows, best first: the sort key's order, except that a row never comes before one that
    must rank above it (:func:`must_rank_above`); both relations only ever put the row with no more
    overload and a smaller herd first, so together they are acyclic and the greedy pick always exists."""
    left = sorted(range(len(rows)), key=lambda i: sort_key(rows[i]))
    out: list[int] = []
    while left:
        pick = next(i for i in left if not any(must_rank_above(rows[j], rows[i]) for j in left if j != i))
        left.remove(pick)
        out.append(pick)
    return out


def hurt_less_everywhere(b: Mapping[str, Any], a: Mapping[str, Any]) -> bool:
    """True when b hurt the server less than a on every protection measure both have (herd factor and
    overload seconds at least): the design's rule, whatever either policy cost its clients."""
    pairs = [(num(a.get(k)), num(b.get(k))) for k in ("herd_factor", "overload_s", *SECONDARY)]
    if any(math.isnan(x) for pair in pairs[:2] for x in pair):
        return False
    return all(xb < xa for xa, xb in pairs if not (math.isnan(xa) or math.isnan(xb)))


def fifth_of_the_herd(b: Mapping[str, Any], a: Mapping[str, Any]) -> bool:
    """True when b had no more overload seconds and at most a fifth of a's herd factor (both known), and the
    two are not the same on both counts: the issue's acceptance rule."""
    ha, hb = num(a.get("herd_factor")), num(b.get("herd_factor"))
    oa, ob = num(a.get("overload_s")), num(b.get("overload_s"))
    if any(math.isnan(x) for x in (ha, hb, oa, ob)):
        return False
    return ob <= oa and hb <= ha / HERD_STEP and not (hb == ha and ob == oa)


def must_rank_above(b: Mapping[str, Any], a: Mapping[str, Any]) -> bool:
    """True when b must rank above a, whatever the scores and the clients' costs say."""
    return fifth_of_the_herd(b, a) or hurt_less_everywhere(b, a)


def dominated_pairs(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """(a, b) pairs where b must rank above a."""
    return [(a, b) for a, ra in enumerate(rows) for b, rb in enumerate(rows) if a != b and must_rank_above(rb, ra)]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower x and lower y are better)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return front


@dataclass(frozen=True)
class Standing:
    """Where one policy stands, in words and numbers."""

    score: float
    within_budget: bool  # herd factor <= 1, no overload second, no metastable failure
    broke: bool  # metastable, never recovered, or a peak at >= BROKE_HERD x the budget
    why: str  # what decided "broke" (empty if it did not)


def standing(row: Mapping[str, Any]) -> Standing:
    """Classify one row: kept the server within budget, strained it, or broke it."""
    h, ov, t95 = num(row.get("herd_factor")), num(row.get("overload_s")), num(row.get("recovery_T95_s"))
    meta = int(num(row.get("metastable_runs")) or 0) if not math.isnan(num(row.get("metastable_runs"))) else 0
    why = []
    if meta:
        runs = int(num(row.get("runs")) or 1)
        why.append(f"metastable failure in {meta} of {runs} run(s)" if runs > 1 else "metastable failure")
    if not math.isnan(h) and h >= BROKE_HERD:
        why.append(f"{h:.3g}× the handshake budget")
    if math.isinf(t95):
        why.append("clients never recovered")
    within = (not math.isnan(h)) and h <= 1.0 and (ov == 0) and not meta
    return Standing(protection_score(row), within, bool(why), ", ".join(why))


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True if the intervals mean ± half-width overlap (False when either has no interval)."""
    (ma, ha), (mb, hb) = a, b
    if any(math.isnan(x) or math.isinf(x) for x in (ma, ha, mb, hb)):
        return False
    return abs(ma - mb) <= ha + hb
