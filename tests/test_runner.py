"""Runner pieces that need no processes: policy lists, Locust command lines, summaries, folders."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from wsstorm.errors import UsageError
from wsstorm.run import runner
from wsstorm.run import scenario as scenarios
from wsstorm.run.progress import RunMonitor, Tail


def test_split_policies_keeps_parameter_lists_whole():
    assert runner.split_policies("immediate, exponential,full-jitter:base=0.5,cap=30,code-aware") == [
        "immediate",
        "exponential",
        "full-jitter:base=0.5,cap=30",
        "code-aware",
    ]
    with pytest.raises(UsageError):
        runner.split_policies(" , ")


def test_locust_argv(tmp_path: Path):
    sc = scenarios.with_overrides(scenarios.load("restart"), users=30, duration=12.5)
    plan = runner.Plan(
        scenario=sc,
        policies=("full-jitter",),
        processes=2,
        client={"ping_interval": 2.0},
        locustfile=runner.find_locustfile(),
        host="ws://127.0.0.1:1",
        admin=("http://127.0.0.1:2", "secret"),
    )
    argv = runner.locust_argv(plan, tmp_path / "r1", "full-jitter", 7, tmp_path / "s.toml", 5999)
    text = " ".join(argv)
    assert argv[1:3] == ["-m", "locust"] and Path(argv[4]).name == "locustfile.py"
    for part in [
        "--headless",
        "-u 30",
        "-t 13s",
        "--seed 7",
        "--run-id r1",
        "--policy full-jitter",
        "--ping-interval 2",
        "--host ws://127.0.0.1:1",
        "--processes 2",
        "--master-bind-port 5999",
        "--master-port 5999",
        "--target-token secret",
        f"--scenario {tmp_path / 's.toml'}",
        f"--csv {tmp_path / 'r1' / 'locust'}",
        "--only-summary",
    ]:
        assert part in text, part
    assert "secret" not in " ".join(runner._redact(argv))


def test_locustfile_is_found_from_anywhere(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.find_locustfile() == Path(runner.__file__).resolve().parents[2] / "locustfile.py"


def test_new_dir_never_reuses_a_folder(tmp_path: Path):
    a, b = runner.new_dir(tmp_path, "x"), runner.new_dir(tmp_path, "x")
    assert a != b and a.is_dir() and b.is_dir()
    assert runner.safe_name("full-jitter:base=0.5,cap=30") == "full-jitter_base_0.5_cap_30"


def test_monitor_tails_run_folder_and_summary(tmp_path: Path):
    shard = tmp_path / "events-local.jsonl"
    lines = [
        {"event": "open", "t": 1.0},
        {"event": "open", "t": 1.1},
        {"event": "close", "code": 1012, "t": 5.0},
        {"event": "fail", "kind": "refused", "t": 5.5},
    ]
    shard.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"event": "ope')  # a torn last line
    (tmp_path / "server.jsonl").write_text(
        json.dumps({"type": "tick", "t": 10.0, "proc": 0, "connections": 7})
        + "\n"
        + json.dumps({"type": "tick", "t": 10.0, "proc": 1, "connections": 5})
        + "\n"
    )
    mon = RunMonitor(tmp_path)
    mon.poll()
    assert mon.events == Counter(open=2, close=1, fail=1) and mon.connected == 12 and mon.peak_connected == 12
    assert mon.recent() == Counter({1012: 1})
    with open(shard, "a") as fh:
        fh.write('n", "t": 6}\n')  # the torn line completes
    mon.poll()
    assert mon.events["open"] == 3 and mon.open_now == 2
    res = runner.RunResult(
        run_dir=tmp_path,
        policy="immediate",
        seed=1,
        monitor=mon,
        metrics={"herd_factor": 3.14159, "recovery_T95_s": float("nan")},
    )
    header, rows = runner.summary_rows([res])
    row = dict(zip(header, rows[0], strict=False))
    assert row["opens"] == "3" and row["closes"] == "1012x1" and row["fails"] == "refusedx1"
    assert row["herd"] == "3.1" and row["T95 s"] == "-"


def test_tail_reads_only_new_lines(tmp_path: Path):
    p = tmp_path / "x.jsonl"
    tail = Tail(p)
    assert tail.read() == []
    p.write_text('{"a": 1}\nnot json\n')
    assert tail.read() == [{"a": 1}]
    assert tail.read() == []


def test_index_links_each_report(tmp_path: Path):
    rep = tmp_path / "restart" / "report.html"
    rep.parent.mkdir()
    rep.write_text("x")
    run_rep = tmp_path / "restart" / "01-immediate" / "report.html"
    run_rep.parent.mkdir()
    run_rep.write_text("y")
    index = runner.write_index(
        tmp_path,
        [
            runner.ScenarioReports("restart", rep, "", [("immediate <i>", run_rep)]),
            runner.ScenarioReports("<b>", None, "comparison failed"),
        ],
    )
    text = index.read_text()
    assert 'href="restart/report.html"' in text and "&lt;b&gt;" in text
    assert 'href="restart/01-immediate/report.html"' in text and "immediate &lt;i&gt;" in text


def _args(name: str, *argv: str):
    import argparse

    p = argparse.ArgumentParser()
    runner.configure(name, p)
    return p.parse_args(list(argv))


def test_harness_is_pinned_to_the_cpus_the_target_leaves_free():
    assert runner.harness_cpus(None, None, (0, 1)) == (None, "")
    cpus, note = runner.harness_cpus(None, (1,), (0, 1))
    assert cpus == "0" and "target pinned to CPUs 1, harness to 0" in note
    cpus, note = runner.harness_cpus(None, (0, 1), (0, 1))
    assert cpus is None and "no other CPU is left" in note
    cpus, note = runner.harness_cpus("0", (0,), (0, 1))
    assert cpus == "0" and "overlap" in note
    with pytest.raises(UsageError):
        runner.harness_cpus("4096", None, (0, 1))  # a CPU that does not exist


def test_connect_timeout_ca_file_and_cpus_reach_locust(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    plan = runner.make_plan(
        _args(
            "run",
            "--scenario",
            "restart",
            "--out",
            str(tmp_path / "out"),
            "--connect-timeout",
            "2.5",
            "--ca-file",
            str(ca),
            "--cpus",
            "0",
            "--host",
            "wss://127.0.0.1:9",
            "--admin-url",
            "http://127.0.0.1:8",
            "--admin-token",
            "t",
        ),
        "restart",
        ["immediate"],
    )
    argv = runner.locust_argv(plan, tmp_path / "r1", "immediate", 1, tmp_path / "s.toml", None)
    text = " ".join(argv)
    assert "--connect-timeout 2.5" in text and f"--ca-file {ca.resolve()}" in text and "--cpus 0" in text
    bare = runner.make_plan(
        _args("run", "--scenario", "restart", "--out", str(tmp_path / "out")), "restart", ["immediate"]
    )
    text = " ".join(runner.locust_argv(bare, tmp_path / "r2", "immediate", 1, tmp_path / "s.toml", None))
    assert "--connect-timeout" not in text and "--ca-file" not in text and "--cpus" not in text


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--connect-timeout", "0"], "--connect-timeout must be > 0"),
        (["--connect-timeout", "inf"], "--connect-timeout must be a finite"),
        (["--ca-file", "/nonexistent/ca.pem", "--host", "wss://127.0.0.1:9"], "no such readable file"),
        (["--cpus", "4096"], "does not exist"),
        (["--cpus", "zero"], "CPU list"),
    ],
)
def test_bad_pass_through_options_are_one_line_errors(tmp_path: Path, argv, words):
    with pytest.raises(UsageError, match=words):
        runner.make_plan(_args("run", "--scenario", "restart", "--out", str(tmp_path), *argv), "restart", ["immediate"])


def test_demo_plans_follow_the_shipped_scenarios(tmp_path: Path):
    plans = runner.demo_plans(_args("demo", "--out", str(tmp_path)))
    shipped = set(scenarios.shipped())
    assert [p.scenario.name for p in plans] == [n for n in runner.DEMO_DEFAULT if n in shipped]
    by_name = {p.scenario.name: p for p in plans}
    # the metastable comparison at its own size: the anti-pattern against two protective policies
    assert {p.split(":")[0] for p in by_name["metastable"].policies} >= {"immediate", "full-jitter", "code-aware"}
    assert by_name["metastable"].scenario.duration == scenarios.load("metastable").duration
    # restart, one --scenarios away, keeps its demo size
    both = {p.scenario.name: p for p in runner.demo_plans(_args("demo", "--scenarios", "restart,metastable"))}
    assert both["restart"].policies == ("immediate", "full-jitter", "code-aware")
    assert both["restart"].scenario.duration == 18 and both["restart"].scenario.users == 200
    one = runner.demo_plans(_args("demo", "--out", str(tmp_path), "--scenarios", "restart", "--policies", "fixed"))
    assert len(one) == 1 and len(one[0].policies) == 1 and one[0].policies[0].startswith("fixed")
    with pytest.raises(UsageError, match="unknown scenario"):
        runner.demo_plans(_args("demo", "--out", str(tmp_path), "--scenarios", "nope"))


def test_demo_fits_its_time_budget():
    # the demo's planned run time (durations + per-run overhead) leaves room for the install
    plan = {name: (policies, size) for name, policies, size in runner.DEMO_PLAN}
    total = 0.0
    for name in runner.DEMO_DEFAULT:
        if name not in scenarios.shipped():
            continue
        policies, size = plan[name]
        sc = scenarios.load(name)
        duration = min(size.get("duration", sc.duration), sc.duration)
        total += len(runner.split_policies(policies)) * (duration + runner.RUN_OVERHEAD_S)
    assert total <= runner.DEMO_BUDGET_S, total


def test_connection_options_reach_locust_and_their_secrets_stay_out_of_command_txt(tmp_path: Path):
    """--header/--query/... of `wsstorm run` become Locust's options of the same names; command.txt
    keeps the header name and the query key, never their values."""
    import argparse

    from wsstorm.run import plan as plan_mod

    parser = argparse.ArgumentParser()
    plan_mod.configure("run", parser)
    args = parser.parse_args(
        [
            "--scenario",
            "steady",
            "--host",
            "wss://127.0.0.1:1/ws",
            "--header",
            "Authorization: Bearer s3cr3t",
            "--header",
            "X-Client: {user}",
            "--query",
            "token=s3cr3t",
            "--subprotocol",
            "chat",
            "--insecure",
            "--protocol",
            "graphql-ws",
            "--init-payload",
            "token=s3cr3t",
            "--ready-timeout",
            "3",
        ]
    )
    argv = list(plan_mod.connection_argv(args))
    assert argv == [
        "--header",
        "Authorization: Bearer s3cr3t",
        "--header",
        "X-Client: {user}",
        "--query",
        "token=s3cr3t",
        "--subprotocol",
        "chat",
        "--insecure",
        "--protocol",
        "graphql-ws",
        "--ready-timeout",
        "3",
        "--init-payload",
        "token=s3cr3t",
    ]
    plan = runner.Plan(
        scenario=scenarios.load("steady"),
        policies=("immediate",),
        locustfile=runner.find_locustfile(),
        host="wss://127.0.0.1:1/ws",
        connection=tuple(argv),
    )
    full = runner.locust_argv(plan, tmp_path / "r", "immediate", 1, tmp_path / "s.toml", None)
    assert " ".join(argv) in " ".join(full)
    shown = " ".join(runner._redact(full))
    assert "s3cr3t" not in shown and "Authorization:<redacted>" in shown and "token=<redacted>" in shown
