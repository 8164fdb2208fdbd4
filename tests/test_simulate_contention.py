"""The contention experiment against the AWS backoff simulator's own output (tests/data/aws_backoff).

wsstorm.sim.contention models what that simulator does (separate read and write round trips in
continuous time, |N(10 ms, 2 ms)| per message) with wsstorm's own policies; both the calls and the
completion time must agree within 15% for all five algorithms at 50, 100 and 150 clients.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from wsstorm.sim.contention import AWS_ALGORITHMS, aws_policy, contend, experiment
from wsstorm.sim.simulate import fleet_policy, parse_policy_text

REFERENCE = Path(__file__).parent / "data" / "aws_backoff" / "reference.csv"
TOLERANCE = 0.15
REPS = 40  # the reference averages 100 runs; 40 keep our own mean within a few % (measured sd of the mean <= 3.2%)


def reference() -> dict[tuple[int, str], tuple[float, float]]:
    """(clients, algorithm) -> (calls, time in s) from the AWS simulator's CSV."""
    with open(REFERENCE, newline="", encoding="utf-8") as fh:
        return {
            (int(r["clients"]), r["Algorithm"]): (float(r["calls"]), float(r["time"]) / 1000.0)
            for r in csv.DictReader(fh)
        }


@pytest.mark.parametrize("clients", [50, 100, 150])
def test_contention_reproduces_the_aws_simulator_within_15_percent(clients):
    ref = reference()
    assert set(AWS_ALGORITHMS) == {a for (_, a) in ref}
    lines, bad = [], []
    for alg in AWS_ALGORITHMS:
        s = experiment(aws_policy(alg), clients, reps=REPS, seed=clients)
        calls, time_s = ref[(clients, alg)]
        rc, rt = s.calls / calls, s.time_s / time_s
        lines.append(
            f"{alg:<12} calls {s.calls:8.0f} vs {calls:6.0f} ({rc:.2f})  "
            f"time {s.time_s:7.3f} s vs {time_s:7.3f} s ({rt:.2f})"
        )
        if abs(rc - 1) > TOLERANCE or abs(rt - 1) > TOLERANCE:
            bad.append(alg)
    print("\n".join(lines))
    assert not bad, "\n".join(lines)


def test_the_blog_ordering_no_lock_step():
    """The blog's findings: no backoff does the most work, full jitter the least; clients drift apart, so
    plain exponential does far less than everyone colliding in every round (n(n+1)/2 calls)."""
    n = 100
    calls = {alg: experiment(aws_policy(alg), n, reps=10, seed=3).calls for alg in AWS_ALGORITHMS}
    assert calls["None"] == max(calls.values())
    assert calls["FullJitter"] == min(calls.values())
    assert calls["FullJitter"] < 0.5 * calls["Exponential"]
    assert calls["Exponential"] < 0.5 * n * (n + 1) / 2


def test_aws_policies_wait_as_the_blog_simulator_does():
    """expo(n) = min(cap, 5 ms * 2**n) from n = 1: the first retry of plain exponential waits 10 ms."""
    pol = fleet_policy(parse_policy_text(aws_policy("Exponential")), 1, seed=1)
    waits = [float(pol.next_delays(np.array([0]), "http_409", np.zeros(1), None)[0]) for _ in range(10)]
    assert waits == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.0, 2.0])
    assert aws_policy("None") == "immediate"
    with pytest.raises(ValueError):
        aws_policy("Linear")


def test_one_client_is_done_after_two_round_trips_and_one_call():
    r = contend(fleet_policy(parse_policy_text("immediate"), 1, seed=1), 1, seed=1)
    assert r.calls == 1 and 0.02 < r.time_s < 0.06 and r.gave_up == 0


def test_a_policy_that_gives_up_leaves_without_an_update():
    r = contend(fleet_policy(parse_policy_text("none"), 20, seed=1), 20, seed=1)
    assert r.gave_up >= 1 and r.calls == 20  # every client wrote once; the losers never retried


def test_same_seed_same_result():
    spec = parse_policy_text(aws_policy("FullJitter"))
    a = contend(fleet_policy(spec, 50, seed=4), 50, seed=4)
    b = contend(fleet_policy(spec, 50, seed=4), 50, seed=4)
    assert a == b
