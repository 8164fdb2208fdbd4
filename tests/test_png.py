"""analysis.png: charts saved by forked children are the same files, none is lost when a child fails, and
children can build and draw every chart while the parent works."""

from __future__ import annotations

import os
import time

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure

from wsstorm.analysis import png


def _figures(n: int) -> list[Figure]:
    out = []
    for i in range(n):
        fig = Figure(figsize=(3, 2), dpi=50)
        ax = fig.add_subplot()
        ax.plot(range(10), [x * (i + 1) for x in range(10)])
        ax.set_title(f"chart {i}")
        out.append(fig)
    return out


def test_files_drawn_by_children_are_the_files_one_process_draws(tmp_path):
    figs = _figures(5)
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    png.save_all([(f, tmp_path / "one" / f"{i}.png") for i, f in enumerate(figs)], workers=1)
    png.save_all([(f, tmp_path / "many" / f"{i}.png") for i, f in enumerate(figs)], workers=3)
    for i in range(5):
        one = (tmp_path / "one" / f"{i}.png").read_bytes()
        assert one.startswith(b"\x89PNG")
        assert (tmp_path / "many" / f"{i}.png").read_bytes() == one


class _FailsInAChild:
    """A figure stand-in that cannot be saved outside the process that made it."""

    def __init__(self) -> None:
        self.parent = os.getpid()

    def savefig(self, path, dpi=None) -> None:
        if os.getpid() != self.parent:
            raise RuntimeError("no display in the child")
        path.write_text(str(os.getpid()))


def test_a_share_whose_child_fails_is_saved_by_the_parent(tmp_path):
    items = [(_FailsInAChild(), tmp_path / f"{i}.png") for i in range(4)]
    png.save_all(items, workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "2.png", "3.png"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {str(os.getpid())}


def test_without_fork_every_chart_is_saved_here(tmp_path, monkeypatch):
    def no_fork() -> int:
        raise OSError("fork: resource temporarily unavailable")

    monkeypatch.setattr(png, "_fork", no_fork)
    items = [(_FailsInAChild(), tmp_path / f"{i}.png") for i in range(3)]
    png.save_all(items, workers=3)
    assert len(list(tmp_path.iterdir())) == 3


class _Pid:
    """A figure stand-in whose file names the process that saved it."""

    def savefig(self, path, dpi=None) -> None:
        path.write_text(str(os.getpid()))


def _until(cond, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "the children did not draw in time"
        time.sleep(0.01)


def test_the_child_builds_and_draws_the_charts_while_this_process_goes_on(tmp_path):
    built: list[int] = []  # filled only in the process that builds (a child's list is its own copy)

    def make(i: int):
        built.append(i)
        return None if i == 2 else _Pid()

    (tmp_path / "2.png").write_text("an older build's chart")
    drawing = png.start([(lambda i=i: make(i), tmp_path / f"{i}.png") for i in range(5)], workers=2)
    # this process draws only from wait() on: before that, the child alone takes every chart from the queue
    _until(lambda: all((tmp_path / f"{i}.png").exists() for i in (0, 1, 3, 4)))
    written = drawing.wait()
    assert built == []  # none was built here
    assert [p.name for p in written] == ["0.png", "1.png", "3.png", "4.png"]  # no data: no file, not a stale one
    assert {p.read_text() for p in written} != {str(os.getpid())}


class _Slow(_Pid):
    """A chart that takes ~10 ms of CPU to draw, as a real one takes ~100 ms."""

    def savefig(self, path, dpi=None) -> None:
        end = time.thread_time() + 0.01
        while time.thread_time() < end:
            pass
        super().savefig(path, dpi)


def test_the_charts_left_in_the_queue_are_shared_with_this_process(tmp_path):
    drawing = png.start([(_Slow, tmp_path / f"{i}.png") for i in range(40)], workers=2)
    written = drawing.wait()  # the child has had ~0.4 s of charts to draw: this process takes some of them
    assert len(written) == 40
    assert str(os.getpid()) in {p.read_text() for p in written}


def test_a_chart_that_fails_in_a_child_is_built_and_drawn_here(tmp_path):
    items = [(_FailsInAChild(), tmp_path / f"{i}.png") for i in range(3)]
    drawing = png.start([(lambda f=f: f, p) for f, p in items], workers=3)
    assert [p.name for p in drawing.wait()] == ["0.png", "1.png", "2.png"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {str(os.getpid())}


def test_abandon_stops_the_drawing(tmp_path):
    drawing = png.start([(_Slow, tmp_path / f"{i}.png") for i in range(200)], workers=2)
    drawing.abandon()  # the child finishes the chart it is drawing and takes no other
    drawn = len(list(tmp_path.iterdir()))
    assert drawn < 200
    assert drawing.queue is None and drawing.children == []
