"""Comparison report: table with t-intervals for repeats, Pareto chart, overlays, ranking."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pytest

from tests.synth import restart_storm, wasted_loop
from wsstorm.analysis.compare import mean_ci, pareto_front, write_comparison


def test_mean_ci_and_pareto_front():
    m, h = mean_ci([10.0, 12.0])
    assert m == 11.0 and h == pytest.approx(12.706, rel=1e-3)  # t(0.975, 1 df) * s / sqrt(n) = 12.706 * 1
    assert math.isnan(mean_ci([3.0])[1]) and mean_ci([1.0, math.inf])[0] == math.inf
    assert pareto_front([(1, 5), (2, 2), (3, 3), (0.5, 9)]) == [0, 1, 3]


@pytest.mark.integration
def test_comparison_report(tmp_path):
    folders = []
    for i, spread in enumerate([10.0, 12.0]):
        r = restart_storm(n=200, spread=spread)
        r.policy = "full-jitter:base=0.5,cap=30"
        folders.append(r.write(tmp_path / f"fj{i}"))
    r = wasted_loop(n=50)
    r.policy = "immediate <i>"
    folders.append(r.write(tmp_path / "imm"))
    page, rows = write_comparison(folders, tmp_path / "out")
    html = page.read_text(encoding="utf-8")
    for png in ["pareto.png", "connected_overlay.png", "attempts_overlay.png"]:
        assert (tmp_path / "out" / png).stat().st_size > 0
    assert "immediate <i>" not in html and "immediate &lt;i&gt;" in html
    assert "±" in html  # the repeated policy has a confidence interval
    # the policy within its budget ranks first, with its reason in words
    ranking = html[html.index("<ol>") : html.index("</ol>")]
    assert ranking.index("full-jitter") < ranking.index("immediate")
    assert "kept the peak within the handshake budget" in ranking
    tags = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, dict(attrs)))

    Tags().feed(html)
    assert all(a["src"].startswith("data:") for t, a in tags if t == "img") and len(rows) == 3


@pytest.mark.integration
def test_run_text_with_mathtext_syntax_is_drawn_as_plain_text(tmp_path):
    # a policy or fault name is run-folder text: "$\frac$" must not reach matplotlib's mathtext parser
    folders = []
    for i in range(2):
        r = restart_storm(n=50)
        r.policy = "$\\frac$" if i == 0 else "odd $x^$ name"
        folders.append(r.write(tmp_path / f"r{i}"))
    page, _rows = write_comparison(folders, tmp_path / "out")
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 0
    assert "$\\frac$" in page.read_text(encoding="utf-8")
