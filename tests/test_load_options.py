"""Load-side options: --cpus parsing and pinning, connect_timeout precedence, TLS option checks,
the embedded target's options, and the manifest's view of the options (no secrets)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_user_e2e import LOCUST
from wsstorm.errors import UsageError
from wsstorm.load.connection import tls_reason
from wsstorm.load.options import parse_cpus, pin_cpus, redacted_options, resolve_config
from wsstorm.load.session import target_info, target_options


def opts(**kw):
    base = dict(
        policy="full-jitter",
        policy_file="",
        message_rate=None,
        message_size=64,
        ping_interval=None,
        pong_timeout=None,
        connect_timeout=None,
        seed=3,
    )
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize(
    "text,want",
    [
        ("0", (0,)),
        ("1", (1,)),
        ("0-1", (0, 1)),
        ("0,1", (0, 1)),
        ("1,0", (0, 1)),
        (" 0 - 1 ", (0, 1)),
        ("0,0-1", (0, 1)),
    ],
)
def test_cpus_lists(text, want):
    assert parse_cpus(text, available=2) == want


@pytest.mark.parametrize("text", ["", "x", "1-0", "-1", "0-", "2", "0-2", "0,,1", "1.5"])
def test_bad_cpus_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_cpus(text, available=2)


@given(st.sets(st.integers(0, 63), min_size=1))
def test_cpus_round_trip(cpus):
    text = ",".join(map(str, sorted(cpus)))
    assert parse_cpus(text, available=64) == tuple(sorted(cpus))


def test_pin_cpus_pins_and_reports():
    before = os.sched_getaffinity(0)
    try:
        cpu = min(before)
        assert pin_cpus(str(cpu)) == (cpu,)
        assert os.sched_getaffinity(0) == {cpu}
        assert pin_cpus("") is None
        with pytest.raises(UsageError):
            pin_cpus(str(os.cpu_count()))
    finally:
        os.sched_setaffinity(0, before)


def test_connect_timeout_cli_then_scenario_then_default():
    sc = argparse.Namespace(
        client=argparse.Namespace(message_rate=None, ping_interval=None, pong_timeout=None, connect_timeout=2.5)
    )
    assert resolve_config(opts()).connect_timeout == 10.0
    assert resolve_config(opts(), sc).connect_timeout == 2.5
    assert resolve_config(opts(connect_timeout=4.0), sc).connect_timeout == 4.0
    sc_bad = argparse.Namespace(client=argparse.Namespace(connect_timeout=-1.0))
    with pytest.raises(UsageError):
        resolve_config(opts(), sc_bad)


def test_tls_option_checks(tmp_path):
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    cfg = resolve_config(opts(ca_file=str(pem), server_name="example.org"))
    assert cfg.tls.ca_file == str(pem) and cfg.tls.server_name == "example.org" and not cfg.tls.insecure
    for kw in (
        dict(ca_file=str(tmp_path / "none.pem")),
        dict(client_key=str(pem)),
        dict(insecure=True, ca_file=str(pem)),
        dict(client_cert=str(tmp_path / "none.pem")),
    ):
        with pytest.raises(UsageError):
            resolve_config(opts(**kw))


def target_opts(**kw):
    base = dict(
        target_capacity=None,
        target_handshake_rate=None,
        target_handshake_cost_ms=None,
        target_overload="",
        target_port=None,
        target_workers=None,
        target_proxy=False,
        target_tls=False,
    )
    base.update(kw)
    return argparse.Namespace(**base)


def test_target_options_cli_wins_and_no_secret_in_info():
    t = argparse.Namespace(
        capacity=6, handshake_rate=500.0, handshake_cost_ms=0.0, overload="close", workers=1, proxy=True
    )
    out = target_options(target_opts(target_capacity=9, target_tls=True), argparse.Namespace(target=t))
    assert out == {
        "capacity": 9,
        "handshake_rate": 500.0,
        "handshake_cost_ms": 0.0,
        "overload": "close",
        "workers": 1,
        "proxy_port": 0,
        "tls": True,
    }
    assert target_options(target_opts(), None) == {}
    info = target_info({**out, "auth_token": "s3cret"})
    assert info["proxy"] is True and "proxy_port" not in info and "auth_token" not in info


def test_manifest_options_leave_the_admin_token_out():
    out = redacted_options(argparse.Namespace(target_token="t0ken", policy="x"))
    assert "t0ken" not in json.dumps(out) and out["policy"] == "x"


@pytest.mark.parametrize(
    "code,reason",
    [
        (20, "unknown CA"),
        (18, "unknown CA (self-signed certificate)"),
        (10, "certificate expired"),
        (62, "hostname mismatch"),
    ],
)
def test_tls_reasons_by_verify_code(code, reason):
    import ssl

    exc = ssl.SSLCertVerificationError("certificate verify failed")
    exc.verify_code = code
    assert tls_reason(exc) == reason


@pytest.mark.e2e
def test_cpus_pins_locust_and_is_in_the_manifest(tmp_path):
    cpu = min(os.sched_getaffinity(0))
    run_dir = tmp_path / "run"
    r = subprocess.run(
        [
            *LOCUST,
            "--headless",
            "-u",
            "1",
            "-t",
            "1s",
            "--host",
            "ws://127.0.0.1:9/",
            "--run-dir",
            str(run_dir),
            "--cpus",
            str(cpu),
            "--only-summary",
            "--policy",
            "fixed:delay=5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode in (0, 1), r.stderr[-2000:]  # 1: Locust counts the refused connects as failures
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["options"]["cpus"] == str(cpu) and m["options"]["cpus_pinned"] == {"local": [cpu]}


@pytest.mark.e2e
@pytest.mark.parametrize("cpus", ["99", "0-x"])
def test_bad_cpus_exit_2_one_line(tmp_path, cpus):
    r = subprocess.run(
        [
            *LOCUST,
            "--headless",
            "-u",
            "1",
            "-t",
            "1s",
            "--host",
            "ws://127.0.0.1:9/",
            "--run-dir",
            str(tmp_path),
            "--cpus",
            cpus,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--cpus" in r.stderr


def test_scenario_client_handshake_keys_reach_the_options(tmp_path):
    from wsstorm.load.options import scenario_into_options

    pem = tmp_path / "ca.pem"
    pem.write_text("x")
    client = argparse.Namespace(
        message_rate=None,
        ping_interval=None,
        pong_timeout=None,
        connect_timeout=None,
        headers=["Authorization: Bearer {env:T}"],
        query=None,
        subprotocols=["chat"],
        ca_file=str(pem),
        insecure=False,
        server_name="example.org",
    )
    o = opts(header=None, query=None, subprotocol=["cli-wins"], ca_file="", server_name="")
    scenario_into_options(o, argparse.Namespace(client=client))
    assert o.header == ["Authorization: Bearer {env:T}"] and o.query is None and o.subprotocol == ["cli-wins"]
    assert o.ca_file == str(pem) and o.server_name == "example.org"


def test_manifest_redacts_header_and_query_values():
    out = redacted_options(argparse.Namespace(header=["Authorization: Bearer t0ken", "X-A:b"], query="k=t0ken"))
    assert out["header"] == ["Authorization:<redacted>", "X-A:<redacted>"] and out["query"] == ["k=<redacted>"]
    assert "t0ken" not in json.dumps(out)
