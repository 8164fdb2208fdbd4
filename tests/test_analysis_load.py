"""Loader tolerance: truncated/garbage lines, duplicate and missing shards, missing logs."""

from __future__ import annotations

import shutil

import pytest

from tests.synth import restart_storm
from wsstorm.analysis import metrics as M
from wsstorm.analysis.load import load_run
from wsstorm.errors import UsageError


@pytest.fixture()
def folder(tmp_path):
    return restart_storm(n=200).write(tmp_path / "run")


def test_clean_folder_has_no_warnings(folder):
    run = load_run(folder)
    assert run.warnings == []
    assert run.counts["events"] == 200 * 8


def test_truncated_last_line_and_garbage_line(folder):
    shard = folder / "events-local.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    lines.insert(5, "this is not json\n")
    lines.insert(7, "[1, 2]\n")
    shard.write_text("".join(lines) + lines[-1][:25])  # the writer died mid-line
    run = load_run(folder)
    text = " ".join(run.warnings)
    assert "truncated" in text and "2 unreadable line(s)" in text
    assert run.counts["events"] == 200 * 8


def test_duplicate_shard_is_deduplicated(folder):
    shutil.copy(folder / "events-local.jsonl", folder / "events-local-copy.jsonl")
    run = load_run(folder)
    assert run.counts["events"] == 200 * 8
    assert run.counts["events_duplicate"] == 200 * 8
    assert any("duplicate" in w for w in run.warnings)
    assert M.compute(run)["disruptions"][0]["recovery_T95_s"] == pytest.approx(0.95 * 10, abs=0.06)


def test_missing_shard_and_missing_logs_are_warnings(folder):
    m = (folder / "manifest.json").read_text().replace('"workers": ["local"]', '"workers": ["local", "w9"]')
    (folder / "manifest.json").write_text(m)
    (folder / "server.jsonl").unlink()
    (folder / "faults.jsonl").unlink()
    run = load_run(folder)
    text = " ".join(run.warnings)
    assert "w9" in text and "no server.jsonl" in text
    assert run.server is None and len(run.disruptions) == 0
    assert run.budget == 100  # from the manifest's target


def test_not_a_run_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        load_run(tmp_path / "nope")
    with pytest.raises(UsageError):
        load_run(tmp_path)
    (tmp_path / "events-local.jsonl").write_text("garbage\n")
    with pytest.raises(UsageError):
        load_run(tmp_path)


def test_a_corrupt_timestamp_is_skipped_not_stretched_over_years(folder):
    import json

    with open(folder / "events-local.jsonl", "a") as f:
        f.write(
            json.dumps(
                {
                    "v": 1,
                    "t": 1.7e15,
                    "run": "synth",
                    "worker": "local",
                    "user": "local/0",
                    "conn": 1,
                    "event": "open",
                    "connect_ms": 1.0,
                }
            )
            + "\n"
        )
    run = load_run(folder)
    assert any("timestamp far outside the run" in w for w in run.warnings)
    assert run.counts["events"] == 200 * 8
    assert len(run.series) < 100  # the run lasts 40 s, not 50 million years


def test_a_scenario_given_as_a_name_is_not_a_crash(folder):
    import json

    m = json.loads((folder / "manifest.json").read_text())
    m["scenario"] = "restart"
    (folder / "manifest.json").write_text(json.dumps(m))
    run = load_run(folder)
    assert M.compute(run)["run"]["recovery_T95_s"] is not None


def test_every_series_column_is_one_the_run_folder_schema_names(tmp_path):
    from tests.synth import metastable_storm
    from wsstorm.runfolder import schemas

    run = load_run(metastable_storm(n=40, end=50).write(tmp_path / "r"))
    known = {*schemas.SERIES_CLIENT, *schemas.SERIES_SERVER, *schemas.SERIES_LATENCY}
    cols = {c for c in run.series.columns if not c.startswith("closes_")}
    assert cols <= known, cols - known
    assert {"server_goodput", "server_wasted_ms", "server_abandoned", *schemas.SERIES_LATENCY} <= cols
