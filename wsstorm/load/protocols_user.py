"""The user's half of the application protocols (wsstorm.load.protocols): what a received message does
(replies sent, ``ready`` recorded, a refusal failed, the protocol's own disconnect) and a failure after open.

A mixin of :class:`wsstorm.load.user.WebSocketUser`, which provides ``_rec``, ``_report``, ``_policy_opened``
and ``_secrets``; kept apart so the user's module stays about the connection's life.
"""

from __future__ import annotations

import time
from typing import Any

from wsstorm.load.protocols import Adapter
from wsstorm.load.template import scrub


class WSFailure(Exception):
    """What Locust shows for a failed connect or a close that is a failure by nature."""


class AppUserMixin:
    """Application-protocol handling of a held connection (``live`` is the user's ``_Conn``)."""

    _secrets: tuple[str, ...]

    def _rec(self, event: str, **fields: Any) -> None:  # provided by the user
        raise NotImplementedError

    def _report(self, name: str, ms: float, exc: Exception | None = None, length: int = 0) -> None:
        raise NotImplementedError

    def _policy_opened(self) -> None:  # provided by the user
        raise NotImplementedError

    def _on_app(self, live: Any, data: bytes) -> int | None:
        """One message through the application protocol: replies, ready, a refusal; the echoed seq."""
        app: Adapter | None = live.app
        assert app is not None
        step = app.on_text(data)
        if step.replies and not live.c.close_sent:  # nothing may follow our Close frame
            for text in step.replies:
                live.c.send_text(text)
        if step.ready:
            ms = (time.monotonic() - live.opened_mono) * 1000.0
            self._rec("ready", ready_ms=round(ms, 3))
            self._report("ready", ms)
            self._policy_opened()
        elif step.fail is not None and live.result is None:
            self._app_fail(live, "protocol", step.fail)
        elif step.end and live.result is None:  # the protocol's own disconnect: we close the socket
            live.result = {"code": 1000, "reason": "", "by": "client", "clean": False}
            live.c.send_close(1000)
        elif step.message:
            self._report("message", 0.0, length=len(data))
        return step.echo

    def _app_fail(self, live: Any, kind: str, detail: str) -> None:
        """A failure after open (no ready reply, a protocol refusal): recorded, then we close (1000)."""
        secrets = self._secrets + (live.app.secrets if live.app else ())
        self._rec("fail", kind=kind, status=None, retry_after=None, detail=scrub(detail, secrets)[:200])
        self._report(f"fail {kind}", (time.monotonic() - live.opened_mono) * 1000.0, WSFailure(f"fail {kind}"))
        live.app_fail = kind
        live.result = {"code": 1000, "reason": "", "by": "client", "clean": False}
        live.c.send_close(1000)
