"""Scenario files: every shipped one loads; every kind of bad input is one clear line naming the file/field."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from wsstorm.errors import UsageError
from wsstorm.run import scenario as scenarios

SHIPPED = [
    "steady",
    "overload",
    "restart",
    "drain-restart",
    "rolling-restart",
    "crash",
    "partition",
    "flapping",
    "lame-duck",
]
BASE = 'name = "t"\nduration = 20\nusers = 10\n'


def test_all_required_scenarios_ship_and_load():
    assert set(SHIPPED) <= set(scenarios.shipped())
    for name in scenarios.shipped():
        sc = scenarios.load(name)
        assert sc.name == name and sc.users > 0 and sc.duration > 0
        assert 50 <= sc.users <= 500 and sc.duration <= 60  # sized for a small machine
        scenarios.check_target(sc, embedded=True)


def test_shipped_scenarios_have_the_faults_they_promise():
    def actions(n):
        return [f.action for f in scenarios.load(n).faults]

    assert actions("steady") == []
    over = scenarios.load("overload")
    assert over.users > over.target.capacity and over.target.overload == "close"
    assert actions("restart") == ["restart"] and scenarios.load("restart").faults[0].param("mode") == "all"
    assert scenarios.load("drain-restart").faults[0].param("mode") == "drain"
    rolling = scenarios.load("rolling-restart")
    assert rolling.target.workers >= 2
    assert [f.param("proc") for f in rolling.faults] == list(range(rolling.target.workers))
    assert actions("crash") == ["crash"]
    part = scenarios.load("partition")
    assert part.target.proxy and actions("partition") == ["partition"]
    assert part.client.ping_interval + part.client.pong_timeout < part.faults[0].param("duration")
    flap = scenarios.load("flapping")
    assert flap.faults[0].repeat > 1 and flap.faults[0].every > 0


def test_scenario_is_frozen():
    sc = scenarios.load("restart")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.users = 5  # type: ignore[misc]


def _err(text: str) -> str:
    with pytest.raises(UsageError) as exc:
        scenarios.parse(text, source="my.toml")
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    "text, expect",
    [
        (BASE + "duration = [", "malformed TOML"),
        ('name = "t"\nduration = 20\nusers = = 3\n', "line 3"),
        (BASE + "colour = 3\n", "unknown key 'colour'"),
        (BASE + "[target]\ncapacity = 0\n", "target.capacity must be >= 1, got 0"),
        (BASE + "[target]\nspeed = 1\n", "unknown key 'speed' in target"),
        (BASE + "[client]\nping_interval = -1\n", "client.ping_interval must be > 0"),
        (BASE + "[target]\noverload = \"explode\"\n", "target.overload must be one of close, http, refuse"),
        (BASE + "[[faults]]\nat = 25\naction = \"crash\"\n", "after the end of the run"),
        (BASE + "[[faults]]\nat = 5\naction = \"crash\"\nrepeat = 4\nevery = 5\n", "after the end of the run"),
        (BASE + "[[faults]]\nat = 5\naction = \"partition\"\nduration = 20\n", "heals at 25 s, after the end"),
        (BASE + "[[faults]]\nat = 5\naction = \"explode\"\n", "unknown action 'explode'"),
        (BASE + "[[faults]]\nat = 5\naction = \"crash\"\nmode = \"all\"\n", "unknown key 'mode' in faults[0] (crash)"),
        (BASE + "[[faults]]\nat = -1\naction = \"crash\"\n", "faults[0] (crash).at must be >= 0"),
        (BASE + "[[faults]]\nat = 1\naction = \"crash\"\ndown = -3\n", ".down must be >= 0"),
        (BASE + "[[faults]]\naction = \"crash\"\n", "missing 'at'"),
        (BASE + "[[faults]]\nat = 1\naction = \"restart\"\nproc = 2\n", "target has 1 worker"),
        (BASE + "[[faults]]\nat = 1\naction = \"crash\"\nrepeat = 3\n", "needs every"),
        (BASE + "[[faults]]\nat = 1\naction = \"http\"\nurl = \"ftp://x\"\n", "url must be an http"),
        (BASE + "[[faults]]\nat = 1\naction = \"shell\"\n", "command must be a non-empty string"),
        ('name = "t"\nusers = 3\n', "missing 'duration'"),
        (BASE + "users = true\n", "malformed TOML"),  # duplicate key
        ('duration = 20\nusers = 1.5\n', "users must be an integer"),
        ('duration = 20\nusers = -4\n', "users must be >= 1"),
        (BASE + "[target]\nattempt_cost_ms = -1\n", "target.attempt_cost_ms must be >= 0"),
        (BASE + "[target]\nsession_cost_ms = -0.5\n", "target.session_cost_ms must be >= 0"),
        (BASE + "[target]\nstore_ms = -2\nstore_concurrency = 2\n", "target.store_ms must be >= 0"),
        (BASE + "[target]\nstore_ms = 5\n", "store_ms needs store_concurrency"),
        (BASE + "[target]\nstore_concurrency = 1.5\n", "target.store_concurrency must be an integer"),
        (BASE + "[target]\nhandshake_rate = -1\n", "target.handshake_rate must be >= 0"),
        (BASE + "[target]\nhandshake_timeout = 0\n", "target.handshake_timeout must be > 0"),
        (BASE + "[target]\ntls = \"yes\"\n", "target.tls must be true or false"),
        (BASE + "[target]\ncpus = \"4096\"\n", "CPU 4096 does not exist"),
        (BASE + "[target]\ncpus = \"a-b\"\n", "target.cpus must be a CPU list"),
        (BASE + "[target]\ncpus = 1\n", "target.cpus must be a string"),
        (BASE + "[client]\nconnect_timeout = 0\n", "client.connect_timeout must be > 0"),
        (BASE + "[[faults]]\nat = 1\naction = \"capacity\"\nattempt_cost_ms = -4\n", ".attempt_cost_ms must be >= 0"),
    ],
)
def test_bad_scenarios_are_one_clear_line(text, expect):
    msg = _err(text)
    assert msg.startswith("my.toml: ")
    assert expect in msg


def test_unknown_scenario_lists_shipped_ones():
    with pytest.raises(UsageError) as exc:
        scenarios.load("nope")
    assert "unknown scenario 'nope'" in str(exc.value) and "restart" in str(exc.value)
    with pytest.raises(UsageError, match="not found"):
        scenarios.load("/nowhere/x.toml")


def test_user_file_by_path(tmp_path: Path):
    p = tmp_path / "mine.toml"
    p.write_text(
        'duration = 10\nusers = 5\n[[faults]]\nat = 2\naction = "http"\nurl = "http://127.0.0.1:1/x"\n'
        '[[faults]]\nat = 1\naction = "shell"\ncommand = "true"\n'
    )
    sc = scenarios.load(str(p))
    assert sc.name == "mine" and [f.action for f in sc.faults] == ["shell", "http"]
    assert not sc.needs_target()
    scenarios.check_target(sc, embedded=False)  # http/shell are fine against --host


def test_target_faults_need_embedded_target_or_admin():
    sc = scenarios.load("restart")
    with pytest.raises(UsageError, match="use http or shell faults"):
        scenarios.check_target(sc, embedded=False)
    scenarios.check_target(sc, embedded=False, admin=True)
    part = scenarios.parse(BASE + "[[faults]]\nat = 1\naction = \"partition\"\n", source="p.toml")
    with pytest.raises(UsageError, match="proxy = true"):
        scenarios.check_target(part, embedded=True)


def test_overrides_rescale_the_schedule_and_keep_outage_lengths():
    sc = scenarios.load("flapping")  # 45 s, crash at 10, every 8, down 2
    short = scenarios.with_overrides(sc, users=50, duration=22.5, spawn_rate=25)
    f = short.faults[0]
    assert (short.users, short.duration, short.spawn_rate) == (50, 22.5, 25)
    assert f.at == 5 and f.every == 4 and f.param("down") == 2 and f.repeat == 4
    with pytest.raises(UsageError, match="--users must be >= 1"):
        scenarios.with_overrides(sc, users=0)
    part = scenarios.load("partition")  # partition 10 s at 10 of 40: at 12 s of a 12 s run, it heals too late
    with pytest.raises(UsageError, match="after the end"):
        scenarios.with_overrides(part, duration=12)


def test_cli_list_and_show():
    out = subprocess.run([sys.executable, "-m", "wsstorm", "scenarios", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and all(n in out.stdout for n in SHIPPED)
    out = subprocess.run(
        [sys.executable, "-m", "wsstorm", "scenarios", "show", "restart"], capture_output=True, text=True
    )
    assert out.returncode == 0 and 'action = "restart"' in out.stdout and "12 s: restart" in out.stdout
    out = subprocess.run([sys.executable, "-m", "wsstorm", "scenarios", "show", "nope"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "unknown scenario" in out.stderr


@pytest.mark.parametrize("name", SHIPPED)
def test_to_toml_round_trips(name):
    sc = scenarios.with_overrides(scenarios.load(name), duration=33.3)
    again = scenarios.parse(scenarios.to_toml(sc), source=sc.source)
    assert again == sc


def test_to_toml_round_trips_http_headers():
    sc = scenarios.parse(
        BASE + '[[faults]]\nat = 1\naction = "http"\nurl = "http://h/x?a=\\"b\\""\n'
        'headers = { "X-A" = "1", Authorization = "Bearer \\u00e9" }\nbody = "line\\nnext"\n',
        source="h.toml",
    )
    assert scenarios.parse(scenarios.to_toml(sc), source="h.toml") == sc


def test_cost_model_keys_parse_and_become_serve_options():
    sc = scenarios.parse(
        BASE + "[target]\ntls = true\nattempt_cost_ms = 3\nsession_cost_ms = 2\n"
        "store_concurrency = 4\nstore_ms = 5\nhandshake_timeout = 30\ncpus = \"0\"\n"
        "session_max_s = 20\n[client]\nconnect_timeout = 3\n",
        source="c.toml",
    )
    t = sc.target
    assert (t.tls, t.attempt_cost_ms, t.session_cost_ms, t.store_concurrency, t.store_ms) == (True, 3, 2, 4, 5)
    assert t.handshake_rate == 0  # the token bucket is off unless a scenario asks for it
    assert sc.client.connect_timeout == 3
    opts = t.serve_options()
    assert opts["tls"] is True and opts["cpus"] == "0" and opts["handshake_timeout"] == 30
    assert opts["store_concurrency"] == 4 and opts["store_ms"] == 5 and opts["session_max_s"] == 20
    from wsstorm.target.control import options_to_argv

    argv = options_to_argv(opts)
    assert "--attempt-cost-ms" in argv and "--handshake-timeout" in argv and "--tls" in argv
    assert scenarios.parse(scenarios.to_toml(sc), source="c.toml") == sc


def test_existing_shipped_scenarios_keep_their_token_bucket():
    # The bucket became optional (off by default): the scenarios written for it still set it.
    for name in ("restart", "drain-restart", "rolling-restart", "crash", "partition", "flapping", "overload", "steady"):
        assert scenarios.load(name).target.handshake_rate > 0, name


def test_cpu_lists_are_canonical():
    sc = scenarios.parse(BASE + "[target]\ncpus = \"0,0-0\"\n", source="c.toml")
    assert sc.target.cpus == "0"


def test_shipped_lame_duck_resumes_and_ends_in_time():
    sc = scenarios.load("lame-duck")
    (f,) = sc.faults
    assert f.action == "lame-duck" and f.param("code") in (1001, 1012)
    assert f.span() < sc.duration  # the target serves again before the run ends
    t = sc.target
    assert t.resume_window > 0 and t.resume_cost_ms < t.session_cost_ms and t.session_start_rate > 0
    opts = t.serve_options()
    assert (opts["resume_window"], opts["session_start_rate"], opts["session_refuse_code"]) == (30.0, 100.0, 4009)


def test_client_connection_keys_reach_the_locust_options_and_stay_out_of_the_manifest():
    from types import SimpleNamespace

    from wsstorm.load.options import scenario_into_options

    sc = scenarios.parse(
        'name = "mine"\ndescription = "d"\nduration = 10\nusers = 5\nspawn_rate = 5\n[client]\n'
        'headers = ["Authorization: Bearer {env:TOK}", "X-Client: {user}"]\nquery = "room=1"\n'
        'subprotocols = ["chat.v2"]\nserver_name = "ws.example"\ninsecure = true\nprotocol = "graphql-ws"\n'
        'init_payload = ["token={env:TOK}"]\nready_timeout = 3\n'
    )
    opts = SimpleNamespace(
        header=None,
        query=None,
        subprotocol=None,
        init_payload=None,
        ca_file="",
        client_cert="",
        client_key="",
        server_name="",
        compression="",
        protocol="",
        ready_send="",
        ready_match="",
        subscribe="",
        insecure=False,
        ready_timeout=None,
    )
    scenario_into_options(opts, sc)
    assert opts.header == ["Authorization: Bearer {env:TOK}", "X-Client: {user}"] and opts.query == ["room=1"]
    assert opts.subprotocol == ["chat.v2"] and opts.server_name == "ws.example" and opts.insecure
    assert opts.protocol == "graphql-ws" and opts.init_payload == ["token={env:TOK}"] and opts.ready_timeout == 3.0
    shown = sc.to_dict()["client"]
    assert shown["headers"] == ["Authorization:<redacted>", "X-Client:<redacted>"]
    assert shown["init_payload"] == ["token=<redacted>"] and "{env:TOK}" not in str(shown)
    assert scenarios.parse(scenarios.to_toml(sc)) == sc  # what Locust reads keeps the templates whole
    with pytest.raises(UsageError, match=r"client\.subprotocols must be a string or a list of strings"):
        scenarios.parse('name="x"\ndescription="d"\nduration=10\nusers=5\nspawn_rate=5\n[client]\nsubprotocols=[1]\n')
    with pytest.raises(UsageError, match=r"client\.ready_timeout must be > 0"):
        scenarios.parse('name="x"\ndescription="d"\nduration=10\nusers=5\nspawn_rate=5\n[client]\nready_timeout=0\n')
