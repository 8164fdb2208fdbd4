"""User guards: host port checks, NaN options, and the guarded policy decision."""

from __future__ import annotations

import argparse

import pytest

from wsstorm import policies
from wsstorm.errors import UsageError
from wsstorm.load.options import check_host, resolve_config
from wsstorm.load.user import policy_decision


def opts(**kw):
    base = dict(
        policy="full-jitter",
        policy_file="",
        message_rate=None,
        message_size=64,
        ping_interval=None,
        pong_timeout=None,
        connect_timeout=10.0,
        seed=3,
    )
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("host", ["ws://h:99999", "ws://127.0.0.1:abc/x", "wss://[::1]:70000"])
def test_bad_port_is_a_usage_error(host: str) -> None:
    with pytest.raises(UsageError):
        check_host(host)


@pytest.mark.parametrize("name", ["message_rate", "ping_interval", "pong_timeout", "connect_timeout"])
def test_nan_options_are_usage_errors(name: str) -> None:
    with pytest.raises(UsageError):
        resolve_config(opts(**{name: float("nan")}))


def test_policy_decision_guards_a_raising_call() -> None:
    pol = policies.parse_policy("full-jitter").client(seed=1)
    delay, err = policy_decision(pol, {"code": 1000})
    assert err is None and delay is not None and 0 <= delay < float("inf")
    delay, err = policy_decision(pol, {"code": 1006, "retry_after": "soon"})  # float("soon") raises
    assert delay is None and err is not None and err.startswith("ValueError")
    delay, err = policy_decision(pol, {"no_such_field": 1})
    assert delay is None and err.startswith("TypeError")
