"""What keeps a held connection small (issue 16): the stateless message phase and the policy made on first use."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import examples
from wsstorm import policies
from wsstorm.load import user as user_mod
from wsstorm.load.options import derive_seed
from wsstorm.policies import Outcome

OUTCOMES = [
    Outcome(code=1006, uptime_s=0.0),
    Outcome(fail="refused"),
    Outcome(code=1012, uptime_s=3.0),
    Outcome(fail="http_status", status=503, retry_after=2.0),
    Outcome(code=1000, uptime_s=20.0),
]


@settings(max_examples=examples(200))
@given(seed=st.integers(0, 2**63 - 1), k=st.integers(0, 10**6))
def test_unit_is_a_seeded_uniform_in_0_1(seed: int, k: int) -> None:
    u = user_mod._unit(seed, k)
    assert 0.0 <= u < 1.0
    assert u == user_mod._unit(seed, k)  # stateless: the same draw for the same (seed, k)


def test_unit_draws_spread_over_the_interval() -> None:
    draws = [user_mod._unit(derive_seed(7, "local/1"), k) for k in range(4000)]
    assert len(set(draws)) == len(draws)
    deciles = [sum(1 for u in draws if i / 10 <= u < (i + 1) / 10) for i in range(10)]
    assert min(deciles) > 300 and max(deciles) < 500  # 400 expected each; a biased mix fails this


@pytest.mark.parametrize("opens", [0, 1, 3])
@pytest.mark.parametrize(
    # sre-throttle counts opens as accepts: one made late that missed them would decide otherwise
    "text",
    ["full-jitter:base=1,cap=2", "fixed:delay=1+budget", "grpc+grpc-throttle", "fixed:delay=1+sre-throttle"],
)
def test_a_policy_made_on_first_use_decides_as_one_made_at_spawn(text: str, opens: int) -> None:
    seed = 11
    spec = policies.parse_policy(text)
    fake = SimpleNamespace(cfg=SimpleNamespace(policy=spec, seed=seed), user_id="local/3", _policy=None)
    fake._opens_pending = 0
    for _ in range(opens):
        user_mod.WebSocketUser._policy_opened(fake)  # type: ignore[arg-type]
    assert fake._policy is None and fake._opens_pending == opens
    lazy = user_mod.WebSocketUser.policy.fget(fake)  # type: ignore[attr-defined]
    assert fake._policy is lazy and fake._opens_pending == 0
    assert user_mod.WebSocketUser.policy.fget(fake) is lazy  # made once
    eager = spec.client(
        seed=derive_seed(seed, "local/3", "policy"), process_seed=derive_seed(seed, user_mod.SESSION.worker)
    )
    for _ in range(opens):
        eager.opened()
    for _ in range(20):  # failures in a row: what a throttle makes of the opens it was told of
        assert lazy.next_delay(Outcome(fail="refused")) == eager.next_delay(Outcome(fail="refused"))
    for o in OUTCOMES:
        assert lazy.next_delay(o) == eager.next_delay(o)
        assert lazy.retries == eager.retries
        user_mod.WebSocketUser._policy_opened(fake)  # type: ignore[arg-type]
        eager.opened()


# A connection's sends and echoes: ("send", None) sends the next seq; ("echo", k) is an echo of seq k.
_STEPS = st.lists(st.one_of(st.just(("send", None)), st.tuples(st.just("echo"), st.integers(-2, 1200))), max_size=60)


@settings(max_examples=examples(300))
@given(steps=_STEPS, cap=st.sampled_from([1, 2, 3, 1000]))
def test_awaited_echoes_match_a_dict_of_the_newest(steps: list[tuple[str, int | None]], cap: int) -> None:
    """The two slots plus an overflow dict answer like one insertion-ordered dict capped at MAX_PENDING."""
    live = user_mod._Conn(SimpleNamespace(), 0.0, 0.0)  # type: ignore[arg-type]
    ref: dict[int, float] = {}
    seq = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(user_mod, "MAX_PENDING", cap)
        for kind, k in steps:
            if kind == "send":
                seq += 1
                live.sent(seq, seq * 0.5)
                ref[seq] = seq * 0.5
                if len(ref) > cap:
                    ref.pop(next(iter(ref)))
            else:
                assert k is not None
                assert live.echoed(k) == ref.pop(k, None)
    assert (live.pending or {}) | ({live.last_seq: live.last_sent} if live.last_seq else {}) == ref


def test_a_connection_that_echoes_in_turn_holds_no_dict() -> None:
    live = user_mod._Conn(SimpleNamespace(), 0.0, 0.0)  # type: ignore[arg-type]
    for seq in range(1, 5):
        live.sent(seq, float(seq))
        assert live.echoed(seq) == float(seq)
    assert live.pending is None and live.last_seq == 0
