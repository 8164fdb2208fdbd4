"""report.html: parses, embeds every image, fetches nothing, escapes server text, renders in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tests.browser import chromium
from tests.synth import wasted_loop
from wsstorm.analysis.report import write_report

pytestmark = pytest.mark.integration

XSS = "<script>alert(1)</script>"


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    r = wasted_loop(n=50)
    r.manifest_extra = {
        "cpu_warnings": [{"t": 1.0, "worker": "local", "cpu": 97.0}],
        "scenario": {"name": "<b>evil</b>", "description": "<img src=x onerror=alert(2)>"},
    }
    for evs in r.events.values():
        for e in evs:
            if e["event"] == "close" and e["code"] == 1013:
                e["reason"] = XSS
    folder = r.write(tmp_path_factory.mktemp("run") / "run")
    page, m = write_report(folder)
    return folder, page, m


def test_outputs_sit_beside_the_report(report):
    folder, page, _m = report
    assert page == folder / "report.html"
    for name in [
        "metrics.csv",
        "metrics.json",
        "connected.png",
        "attempts.png",
        "closes.png",
        "downtime_cdf.png",
        "delays.png",
        "sched_error.png",
    ]:
        assert (folder / name).stat().st_size > 0, name
    mj = json.loads((folder / "metrics.json").read_text())
    assert mj["run"]["wasted_per_recovered"] == pytest.approx(5.0)
    assert any("CPU" in w for w in mj["warnings"])


def test_html_parses_embeds_every_image_and_fetches_nothing(report):
    _folder, page, _ = report
    p = Collect()
    p.feed(page.read_text(encoding="utf-8"))
    p.close()
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 6
    assert all(a["src"].startswith("data:image/png;base64,") for a in imgs)
    for tag, attrs in p.tags:
        for key in ("src", "href", "action", "poster", "data"):
            v = attrs.get(key)
            assert v is None or v.startswith("data:"), (tag, key, v)
        assert tag not in ("script", "link", "iframe", "object", "embed")


def test_server_text_is_escaped(report):
    _, page, _ = report
    html = page.read_text(encoding="utf-8")
    assert XSS not in html and "<b>evil</b>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    p = Collect()
    p.feed(html)
    assert XSS in "".join(p.text)  # shown as text (top close reasons)
    assert html.index("Headline") < html.index("<img")  # headline table first


def test_headline_and_warnings_are_there(report):
    _, page, _ = report
    html = page.read_text(encoding="utf-8")
    for words in [
        "Herd factor",
        "Recovery T50 / T95 / T99",
        "Client downtime",
        "Wasted attempts",
        "Overload seconds",
        "harness ran hot",
        "Top close reasons",
        "Scenario",
        "Policy",
    ]:
        assert words in html, words


def test_cli_prints_path_and_exits_2_on_bad_folder(report, tmp_path):
    folder, _, _ = report
    ok = subprocess.run(
        [sys.executable, "-m", "wsstorm.analysis", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == str(folder / "report.html")
    for bad in (tmp_path / "missing", tmp_path):
        r = subprocess.run(
            [sys.executable, "-m", "wsstorm.analysis", str(bad)], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.e2e
def test_renders_in_headlesschromium(report, tmp_path):
    _, page, _ = report
    shot = tmp_path / "shot.png"
    chromium(page.resolve().as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.exists() and shot.stat().st_size > 0
    from PIL import Image

    px = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert px.shape[0] >= 1000 and px.std() > 10  # not blank: text, tables and charts
    assert (px < 128).mean() > 0.005  # some dark ink


# -- drill-down, scenario table, both reports in Chromium ---------------------------------------

SCENARIO = {
    "name": "restart",
    "description": "Every client is closed with 1012 at once.",
    "duration": 40,
    "users": 50,
    "spawn_rate": 100,
    "target": {"capacity": 1000, "handshake_rate": 150, "handshake_cost_ms": 2, "overload": "close"},
    "client": {"message_rate": 0.1, "ping_interval": 5, "connect_timeout": 3},
    "faults": [{"at": 10, "action": "restart", "mode": "all", "down": 3}],
}
TOML = 'name = "restart"\n[[faults]]\nat = 10\naction = "restart"\n# <script>x</script>\n'


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    from tests.synth import metastable_storm
    from wsstorm.analysis.compare import write_comparison

    base = tmp_path_factory.mktemp("cmp") / "demo"
    folders = []
    for i, (policy, recovers) in enumerate((("immediate", False), ("code-aware", True))):
        r = metastable_storm(n=60, end=50, recovers=recovers)
        r.policy = policy
        r.manifest_extra = {"scenario": SCENARIO}
        folder = r.write(base / "restart" / f"0{i + 1}-{policy}")
        (folder / "scenario.toml").write_text(TOML)
        folders.append(folder)
    page, _ = write_comparison(folders, base / "restart")
    return base, page, folders


def _links(page: Path) -> list[str]:
    p = Collect()
    p.feed(page.read_text(encoding="utf-8"))
    return [a["href"] for t, a in p.tags if t == "a"]


def test_comparison_builds_and_links_each_run_report_both_ways_relatively(comparison, tmp_path):
    base, page, folders = comparison
    links = _links(page)
    assert len(links) == 2 and all(not h.startswith(("/", "file:", "http")) for h in links)
    for folder in folders:
        rep = folder / "report.html"
        assert rep.is_file() and os.path.relpath(rep, page.parent) in links
        back = _links(rep)
        assert back == ["../compare.html"] and (folder / back[0]).resolve() == page.resolve()
        result = json.loads((folder / "result.json").read_text())
        assert result["kind"] == "run" and result["report"] == "report.html"
    result = json.loads((page.parent / "result.json").read_text())
    assert result["kind"] == "comparison" and result["report"] == "compare.html"
    assert [(page.parent / r).resolve() for r in result["run_reports"]] == [
        (f / "report.html").resolve() for f in folders
    ]
    moved = tmp_path / "elsewhere"
    shutil.copytree(base, moved)  # the folder still works from anywhere on disk
    new_page = moved / page.parent.name / "compare.html"
    for href in _links(new_page):
        target = new_page.parent / href
        assert target.is_file()
        assert (target.parent / _links(target)[0]).resolve() == new_page.resolve()


def test_comparison_verdict_and_metastable_in_words(comparison):
    _base, page, folders = comparison
    html = page.read_text(encoding="utf-8")
    top = html[: html.index("<h2>Ranking")]
    assert "Broke it: immediate (metastable failure" in top
    assert "The fastest protective policy, code-aware" in top
    ranking = html[html.index("<ol>") : html.index("</ol>")]
    assert ranking.index("code-aware") < ranking.index("immediate")
    assert "protection first, as a scale" in html  # the rule, under the ranking
    rep = (folders[0] / "report.html").read_text(encoding="utf-8")
    head = rep[: rep.index("<h2>Headline")]
    assert "Metastable failure: the trigger ended at 13 s" in head and "pre-fault 100/s" in head
    mj = json.loads((folders[0] / "metrics.json").read_text())
    assert mj["run"]["metastable"]["flag"] is True and mj["run"]["metastable"]["trigger_end_s"] == 13.0
    ok = json.loads((folders[1] / "metrics.json").read_text())
    assert ok["run"]["metastable"]["flag"] is False


def test_scenario_section_is_a_table_with_the_raw_toml_behind_details(comparison):
    _, _, folders = comparison
    html = (folders[0] / "report.html").read_text(encoding="utf-8")
    section = html[html.index("<h2>Scenario</h2>") : html.index("<h2>Policy</h2>")]
    for words in [
        "<h3>Target</h3>",
        "connection capacity",
        "token bucket",
        "<h3>Client settings</h3>",
        "connect timeout (s)",
        "<h3>Faults (as scheduled)</h3>",
        "mode all, down 3 s",
        "<h3>Faults as fired</h3>",
        "13.0 s",
        "<details>",
        "raw scenario (TOML)",
    ]:
        assert words in section, words
    assert "<script>x</script>" not in section and "&lt;script&gt;x&lt;/script&gt;" in section
    assert section.index("<table>") < section.index("<details>")


CHECK_JS = """<script>addEventListener('load', () => {
  document.body.setAttribute('data-imgs', JSON.stringify([...document.images].map(i => i.naturalWidth)));
});</script>"""


@pytest.mark.e2e
def test_both_reports_render_and_every_chart_image_loads_inchromium(comparison, tmp_path):
    from PIL import Image

    _, page, folders = comparison
    for i, rep in enumerate((page, folders[0] / "report.html")):
        shot = tmp_path / f"shot{i}.png"
        chromium(rep.resolve().as_uri(), tmp_path / f"p{i}", f"--screenshot={shot}", "--window-size=1280,2000")
        px = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert px.shape[0] >= 1000 and px.std() > 10 and (px < 128).mean() > 0.005
        # the same page with a probe script (the reports themselves carry none): every image decoded
        probe = rep.parent / f".probe-{i}.html"
        probe.write_text(rep.read_text(encoding="utf-8").replace("</body>", CHECK_JS + "</body>"), encoding="utf-8")
        try:
            dom = chromium(
                probe.resolve().as_uri(), tmp_path / f"q{i}", "--dump-dom", "--virtual-time-budget=5000"
            ).stdout
        finally:
            probe.unlink()
        found = re.search(r'data-imgs="([^"]*)"', dom)
        assert found, dom[-500:]
        widths = json.loads(found.group(1).replace("&quot;", '"'))
        n_img = rep.read_text(encoding="utf-8").count("<img ")
        assert len(widths) == n_img >= 3 and all(w > 0 for w in widths), widths
