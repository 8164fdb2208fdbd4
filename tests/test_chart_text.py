"""Every text artist of every chart (run report and comparison) renders as numbers and words:
no `$` and no `\\mathdefault` reach the page, except run-folder text escaped as `\\$`."""

from __future__ import annotations

import re

import matplotlib.text
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from tests.synth import metastable_storm, realistic
from wsstorm.analysis import charts
from wsstorm.analysis import metrics as M
from wsstorm.analysis.compare import comparison_figures, group_runs, summarize
from wsstorm.analysis.load import load_run

pytestmark = pytest.mark.integration

EVIL = r"$\frac{1}{2}$ $\mathdefault{x}$"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("charts")
    a = metastable_storm(n=100, end=50)
    a.policy = "imm" + EVIL
    a.faults[0]["fault"] = "restart" + EVIL  # a fault name is run-folder text too
    b = realistic(20_000, duration=60.0)
    b.policy = "odd $x^$ name"
    for evs in b.events.values():
        for e in evs[:50]:
            if e["event"] == "wait":
                e["after_code"] = "$\\mathdefault{10^{3}}$"  # a fail kind from the log, drawn in a legend
    out = []
    for i, r in enumerate((a, b)):
        run = load_run(r.write(base / f"r{i}"))
        out.append((run, M.compute(run)))
    return out


def _texts(fig) -> list[str]:
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def _check(texts: list[str], where: str) -> None:
    for text in texts:
        escaped = "\\$" in text
        rest = text.replace("\\$", "")
        assert "$" not in rest, (where, text)
        assert escaped or "\\mathdefault" not in rest, (where, text)


def test_every_text_artist_of_both_reports_is_plain(runs):
    walked, log_axes = 0, 0
    for run, _ in runs:
        for name, _, fig in charts.figures(run):
            _check(_texts(fig), name)
            walked += 1
            for ax in fig.axes:
                for axis in (ax.xaxis, ax.yaxis):
                    if axis.get_scale() in ("log", "symlog"):
                        log_axes += 1
                        labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
                        assert labels and all(re.fullmatch(r"[-−]?[\d.,]+(e[+-]\d+)?", t) for t in labels), labels
    rows = summarize(group_runs(runs))
    for row in rows:
        row["score"] = row.get("score", 0.0)
    labels = [(str(run.manifest["policy"]), run, m) for run, m in runs]
    for name, _, fig in comparison_figures(rows, labels):
        texts = _texts(fig)
        _check(texts, name)
        walked += 1
    assert walked >= 12 and log_axes >= 2  # every chart of both, the log axes among them
    # the escaped run text is really there, shown as literal dollars
    all_text = [t for run, _ in runs for _, _, fig in charts.figures(run) for t in _texts(fig)]
    assert any(EVIL.replace("$", "\\$") in t for t in all_text)


def test_plain_escapes_dollars_only():
    assert charts.plain("a$b") == "a\\$b" and charts.plain(1012) == "1012"
    assert charts.code_label("$x$") == "\\$x\\$" and charts.code_label(1013) == "1013 Try Again Later"
