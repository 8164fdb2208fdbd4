"""User option checks: pure parts of wsstorm.load.user (no network)."""

from __future__ import annotations

import argparse

import pytest

from wsstorm.errors import UsageError
from wsstorm.load.options import check_host, derive_seed, resolve_config


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


def test_defaults_and_scenario_then_cli_precedence() -> None:
    cfg = resolve_config(opts())
    assert (cfg.message_rate, cfg.ping_interval, cfg.pong_timeout, cfg.seed) == (0.1, 5.0, 5.0, 3)
    sc = argparse.Namespace(client=argparse.Namespace(message_rate=2.0, ping_interval=1.0, pong_timeout=None))
    cfg = resolve_config(opts(ping_interval=9.0), sc)
    assert (cfg.message_rate, cfg.ping_interval, cfg.pong_timeout) == (2.0, 9.0, 5.0)


@pytest.mark.parametrize(
    "kw",
    [
        dict(policy="nope"),
        dict(message_rate=-1.0),
        dict(message_size=3),
        dict(connect_timeout=0.0),
        dict(ping_interval=1.0, pong_timeout=0.0),
        dict(ping_interval=float("inf")),
    ],
)
def test_bad_options_are_usage_errors(kw) -> None:
    with pytest.raises(UsageError):
        resolve_config(opts(**kw))


def test_host_must_be_websocket_url() -> None:
    check_host("ws://127.0.0.1:1/x")
    check_host("wss://example.org")
    check_host(None)
    with pytest.raises(UsageError):
        check_host("http://127.0.0.1:1")


def test_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(1, "local/1") == derive_seed(1, "local/1")
    assert derive_seed(1, "local/1") != derive_seed(1, "local/2")
