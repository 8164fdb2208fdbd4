"""report.html: parses, embeds every image, fetches nothing, escapes server text, renders in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from wsstorm.analysis.report import write_report
from tests.synth import wasted_loop

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
    r.manifest_extra = {"cpu_warnings": [{"t": 1.0, "worker": "local", "cpu": 97.0}],
                        "scenario": {"name": "<b>evil</b>", "description": "<img src=x onerror=alert(2)>"}}
    for evs in r.events.values():
        for e in evs:
            if e["event"] == "close" and e["code"] == 1013:
                e["reason"] = XSS
    folder = r.write(tmp_path_factory.mktemp("run") / "run")
    page, m = write_report(folder)
    return folder, page, m


def test_outputs_sit_beside_the_report(report):
    folder, page, m = report
    assert page == folder / "report.html"
    for name in ["metrics.csv", "metrics.json", "connected.png", "attempts.png", "closes.png",
                 "downtime_cdf.png", "delays.png", "sched_error.png"]:
        assert (folder / name).stat().st_size > 0, name
    mj = json.loads((folder / "metrics.json").read_text())
    assert mj["run"]["wasted_per_recovered"] == pytest.approx(5.0)
    assert any("CPU" in w for w in mj["warnings"])


def test_html_parses_embeds_every_image_and_fetches_nothing(report):
    folder, page, _ = report
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
    for words in ["Herd factor", "Recovery T50 / T95 / T99", "Client downtime", "Wasted attempts",
                  "Overload seconds", "harness ran hot", "Top close reasons", "Scenario", "Policy"]:
        assert words in html, words


def test_cli_prints_path_and_exits_2_on_bad_folder(report, tmp_path):
    folder, _, _ = report
    ok = subprocess.run([sys.executable, "-m", "wsstorm.analysis", str(folder)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == str(folder / "report.html")
    for bad in (tmp_path / "missing", tmp_path):
        r = subprocess.run([sys.executable, "-m", "wsstorm.analysis", str(bad)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.e2e
def test_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian package chromium not installed (make system-deps)")
    _, page, _ = report
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           page.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=90)
    assert shot.exists() and shot.stat().st_size > 0
    from PIL import Image
    px = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert px.shape[0] >= 1000 and px.std() > 10  # not blank: text, tables and charts
    assert (px < 128).mean() > 0.005  # some dark ink
