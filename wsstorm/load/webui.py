"""The wsstorm tab in Locust's web UI: the storm live, read from the run folder as it grows.

Built on Locust's own extension points: a tab and its table in the UI's template arguments, the
rows in the ``extended_stats`` of ``/stats/requests`` (which the UI polls every 2 s), and a JSON
endpoint ``/wsstorm/live``. It tails the run folder (event shards, ``server.jsonl``,
``faults.jsonl``) through :mod:`wsstorm.runfolder`, so it works alike for a local run and for a
distributed master (which writes every worker's shard), and against any server (the server-side
rows are then simply absent).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from wsstorm.load.livestats import LiveStats
from wsstorm.runfolder import names
from wsstorm.runfolder.jsonl import Tail

TAB_KEY = "wsstorm"
ENDPOINT = "/wsstorm/live"


class LiveFeed:
    """Tails one run folder into a :class:`LiveStats`."""

    def __init__(self, run_dir: Path, gated: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.stats = LiveStats(gated=gated)
        self.shards: dict[Path, Tail] = {}
        self.server = Tail(self.run_dir / names.SERVER)
        self.faults = Tail(self.run_dir / names.FAULTS)

    def poll(self) -> None:
        """Read everything appended since the last poll (new shards included)."""
        for path in names.event_shards(self.run_dir):
            if path not in self.shards:
                self.shards[path] = Tail(path)
            self.stats.add_events(self.shards[path].read())
        self.stats.add_ticks(self.server.read())
        self.stats.add_faults(self.faults.read())

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Poll, then the live view now."""
        self.poll()
        return self.stats.snapshot(time.time() if now is None else now)


def install(environment: Any, run_dir: Path) -> LiveFeed | None:
    """Add the wsstorm tab and ``/wsstorm/live`` to Locust's web UI (nothing when it has none)."""
    web_ui = getattr(environment, "web_ui", None)
    if web_ui is None:
        return None
    from flask import Response, request  # Flask comes with Locust's web UI

    opts = getattr(environment, "parsed_options", None)
    gated = bool(getattr(opts, "ready_match", "")) or getattr(opts, "protocol", "") in ("socketio", "graphql-ws")
    feed = LiveFeed(run_dir, gated)
    # update_template_args() merges into these, so the tab survives every page render.
    web_ui.template_args["extended_tabs"] = [{"title": "wsstorm", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {"key": TAB_KEY, "structure": [{"key": "metric", "title": "wsstorm"}, {"key": "value", "title": "now"}]}
    ]

    @web_ui.app.route(ENDPOINT)
    @web_ui.auth_required_if_enabled
    def wsstorm_live() -> Response:
        return Response(json.dumps(feed.snapshot(), allow_nan=False, default=str), mimetype="application/json")

    @web_ui.app.after_request
    def add_rows(response: Response) -> Response:
        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        try:
            body = json.loads(response.get_data())
        except ValueError:
            return response
        snap = feed.snapshot()
        body["extended_stats"] = [{"key": TAB_KEY, "data": feed.stats.rows(snap)}]
        response.set_data(json.dumps(body))
        return response

    return feed
