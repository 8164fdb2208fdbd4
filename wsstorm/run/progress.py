"""Live view of a running experiment: tails the run folder, shows connected clients and recent close codes.

A rich live panel on a terminal; plain lines every few seconds otherwise (CI logs).
"""

from __future__ import annotations

import collections
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from wsstorm.runfolder import names
from wsstorm.runfolder.jsonl import Tail

__all__ = ["RECENT_S", "Progress", "RunMonitor", "Tail", "codes_text"]  # Tail: the run-folder tailer, re-exported

RECENT_S = 5.0


@dataclass
class RunMonitor:
    """Counts what a run folder has recorded so far (events shards, server ticks, faults)."""

    run_dir: Path
    tails: dict[str, Tail] = field(default_factory=dict)
    server_conns: dict[Any, tuple[float, int]] = field(default_factory=dict)
    recent_closes: collections.deque = field(default_factory=collections.deque)
    events: collections.Counter = field(default_factory=collections.Counter)
    closes: collections.Counter = field(default_factory=collections.Counter)
    fails: collections.Counter = field(default_factory=collections.Counter)
    faults: list[dict[str, Any]] = field(default_factory=list)
    open_now: int = 0
    peak_open: int = 0
    tick_sums: collections.Counter = field(default_factory=collections.Counter)
    last_event_t: float = 0.0

    def _tail(self, path: Path) -> Tail:
        key = path.name
        if key not in self.tails:
            self.tails[key] = Tail(path)
        return self.tails[key]

    def poll(self) -> None:
        """Read whatever was appended since the last poll."""
        for path in names.event_shards(self.run_dir):
            for ev in self._tail(path).read():
                self._event(ev)
        for tick in self._tail(self.run_dir / names.SERVER).read():
            if tick.get("type") == "tick" and isinstance(tick.get("connections"), int):
                t = float(tick.get("t") or 0)
                self.server_conns[tick.get("proc")] = (t, tick["connections"])
                self.tick_sums[round(t)] += tick["connections"]
        self.faults.extend(self._tail(self.run_dir / names.FAULTS).read())

    @property
    def peak_connected(self) -> int:
        """Most clients connected at once: from the server's ticks, else from opens - closes."""
        if self.tick_sums:
            return max(self.tick_sums.values())
        return self.peak_open

    def _event(self, ev: dict[str, Any]) -> None:
        kind = str(ev.get("event"))
        self.events[kind] += 1
        t = ev.get("t")
        if isinstance(t, (int, float)):
            self.last_event_t = max(self.last_event_t, float(t))
        if kind == "open":
            self.open_now += 1
            self.peak_open = max(self.peak_open, self.open_now)
        elif kind == "close":
            self.open_now -= 1
            code = ev.get("code")
            self.closes[code] += 1
            if isinstance(t, (int, float)):
                self.recent_closes.append((float(t), code))
        elif kind == "fail":
            self.fails[str(ev.get("kind"))] += 1

    @property
    def connected(self) -> int | None:
        """Connected clients: the server's latest ticks if it reports them, else opens - closes."""
        if self.server_conns:
            newest = max(t for t, _ in self.server_conns.values())
            # a process that stopped ticking (crashed, restarting) holds nobody
            return sum(c for t, c in self.server_conns.values() if newest - t < 2.5)
        return self.open_now if self.events else None

    def recent(self, now: float | None = None) -> collections.Counter:
        """Close codes seen in the last few seconds of recorded time."""
        now = self.last_event_t if now is None else now
        while self.recent_closes and self.recent_closes[0][0] < now - RECENT_S:
            self.recent_closes.popleft()
        return collections.Counter(code for _, code in self.recent_closes)


def codes_text(counter: collections.Counter, limit: int = 6) -> str:
    """'1012x300 1006x4' for the most common codes."""
    return " ".join(f"{code}x{n}" for code, n in counter.most_common(limit)) or "-"


class Progress:
    """Shows the state of the current run: rich live panel on a TTY, plain lines otherwise."""

    def __init__(self, stream: TextIO | None = None, every: float = 5.0, live: bool | None = None):
        self.stream = stream or sys.stdout
        self.every = every
        self.live_mode = self.stream.isatty() if live is None else live
        # off a terminal rich assumes 80 columns and folds the summary table; logs can be wider
        self.console = Console(file=self.stream, width=None if self.stream.isatty() else 200)
        self._live: Live | None = None
        self._last_line = 0.0

    def __enter__(self) -> Progress:
        if self.live_mode:
            self._live = Live(Table(), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def message(self, text: str) -> None:
        """A line that stays (printed above the live panel on a TTY)."""
        if self._live is not None:
            self._live.console.print(escape(text))
        else:
            print(text, file=self.stream, flush=True)

    def update(self, label: str, elapsed: float, total: float, mon: RunMonitor, capacity: int | None) -> None:
        """Refresh the view with the current run's state."""
        conn = mon.connected
        conn_text = "-" if conn is None else (f"{conn}/{capacity}" if capacity else str(conn))
        recent = codes_text(mon.recent())
        fired = len(mon.faults)
        if self._live is not None:
            table = Table(title=escape(label), show_header=False, expand=False)
            table.add_column(style="bold")
            table.add_column()
            table.add_row("elapsed", f"{elapsed:5.0f} s of {total:g} s  ({max(0.0, total - elapsed):.0f} s left)")
            table.add_row("connected", conn_text)
            table.add_row(f"closes, last {RECENT_S:g} s", escape(recent))
            table.add_row("closes, total", escape(codes_text(mon.closes)))
            table.add_row("faults fired", escape(", ".join(str(f.get("fault", "?")) for f in mon.faults[-5:])) or "-")
            self._live.update(table)
            return
        now = time.monotonic()
        if now - self._last_line >= self.every:
            self._last_line = now
            print(
                f"[{label}] {elapsed:4.0f}/{total:g} s  connected {conn_text}  "
                f"closes(last {RECENT_S:g} s) {recent}  faults {fired}",
                file=self.stream,
                flush=True,
            )
