"""Start the embedded target / fault proxy as child processes, and talk to their admin API (stdlib only).

Imported inside Locust processes under gevent, so it uses only the standard library
(subprocess, select, urllib), all of which gevent's monkey patching makes cooperative.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from wsstorm.errors import UsageError


class AdminError(RuntimeError):
    """An admin API call failed: HTTP status and the server's JSON answer."""

    def __init__(self, status: int, payload: Any, path: str) -> None:
        super().__init__(f"admin {path}: HTTP {status}: {payload!r}")
        self.status, self.payload, self.path = status, payload, path


class AdminClient:
    """THE client of the admin HTTP API of a target or proxy started anywhere (URL + Bearer token).

    The fault scheduler, the load side and the tests all call the admin API through this class.
    """

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def call(self, method: str, path: str, body: dict | None = None, *, raw: bool = False) -> Any:
        """One request; returns the decoded JSON (or text when raw); AdminError on a non-2xx answer."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                payload: Any = json.loads(text)
            except ValueError:
                payload = text
            raise AdminError(exc.code, payload, path) from None
        return text if raw else json.loads(text)

    def status(self) -> dict:
        return self.call("GET", "/status")

    def metrics(self) -> str:
        """Prometheus text."""
        return self.call("GET", "/metrics", raw=True)

    def restart(
        self,
        mode: str = "all",
        down: float = 3.0,
        batch: int | None = None,
        interval: float | None = None,
        proc: int | None = None,
    ) -> dict:
        body: dict[str, Any] = {"mode": mode, "down": down}
        for key, value in (("batch", batch), ("interval", interval), ("proc", proc)):
            if value is not None:
                body[key] = value
        return self.call("POST", "/restart", body)

    def lame_duck(
        self,
        grace: float | None = None,
        duration: float | None = None,
        code: int | None = None,
        proc: int | None = None,
    ) -> dict:
        """Lame duck: stop accepting, wait `grace` s, close clients over `duration` s with `code` (1001/1012)."""
        body = {
            k: v for k, v in (("grace", grace), ("duration", duration), ("code", code), ("proc", proc)) if v is not None
        }
        return self.call("POST", "/lame-duck", body)

    def crash(self, down: float = 3.0, proc: int | None = None) -> dict:
        body: dict[str, Any] = {"down": down}
        if proc is not None:
            body["proc"] = proc
        return self.call("POST", "/crash", body)

    def set_capacity(self, capacity: int | None = None, handshake_rate: float | None = None, **extra: Any) -> dict:
        body = {
            k: v for k, v in {"capacity": capacity, "handshake_rate": handshake_rate, **extra}.items() if v is not None
        }
        return self.call("POST", "/capacity", body)

    def set_overload(self, mode: str, retry_hint: float | None = None) -> dict:
        body: dict[str, Any] = {"mode": mode}
        if retry_hint is not None:
            body["retry_hint"] = retry_hint
        return self.call("POST", "/overload", body)

    def partition(self) -> dict:
        return self.call("POST", "/partition", {})

    def heal(self) -> dict:
        return self.call("POST", "/heal", {})

    def reset(self) -> dict:
        return self.call("POST", "/reset", {})

    def latency(self, ms: float) -> dict:
        return self.call("POST", "/latency", {"ms": ms})


def options_to_argv(options: dict[str, Any]) -> list[str]:
    """{'capacity': 10, 'proxy_port': 0, 'uvloop': True} -> ['--capacity', '10', '--proxy-port', '0', '--uvloop']."""
    argv: list[str] = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


class _Child:
    """A `wsstorm serve|proxy` child process in its own session; stop() kills its whole tree."""

    def __init__(self, argv: list[str], timeout: float, env: dict | None = None) -> None:
        self.argv = argv
        self.stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 (open for the child's life; stop() closes it)
        self._stopped = False
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            start_new_session=True,
            env=env,
        )
        try:
            self.ready = self._read_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.url: str = self.ready["url"]
        self.admin_url: str = self.ready["admin"]
        self.token: str = self.ready["token"]
        self.admin = AdminClient(self.admin_url, self.token)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        """What the child wrote to stderr so far ('' once stopped)."""
        if self.stderr_file.closed:
            return ""
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode("utf-8", "replace")

    def _read_ready(self, timeout: float) -> dict:
        stdout = self.proc.stdout
        assert stdout is not None  # Popen(stdout=subprocess.PIPE) in __init__ always makes it
        fd = stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{' '.join(self.argv[2:4])}: no ready line within {timeout:g} s; "
                    f"stderr: {self.stderr_text()[-500:]!r}"
                )
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait(5)
                    err = self.stderr_text().strip().splitlines()
                    msg = err[-1] if err else f"exit code {self.proc.returncode}"
                    if self.proc.returncode == 2:
                        raise UsageError(msg)
                    raise RuntimeError(f"{' '.join(self.argv[2:4])} exited ({self.proc.returncode}): {msg}")
                buf += chunk
        ready = json.loads(buf.split(b"\n", 1)[0])
        if not ready.get("ready"):
            raise RuntimeError(f"unexpected first line: {ready!r}")
        return ready

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the child (it stops its workers), then SIGKILL whatever is left of its process group.

        Idempotent (atexit and quit may both call it): later calls only return the exit code.
        """
        if self._stopped:
            return self.proc.returncode
        self._stopped = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers: workers, resource tracker
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr_file.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class TargetProcess(_Child):
    """A running `wsstorm serve`: .url (ws:// or wss://, the proxy's if any), .admin (its AdminClient: every
    admin call goes through it), .token, .ca_file (the CA to trust with --tls, else None)."""

    @property
    def ca_file(self) -> str | None:
        return self.ready.get("ca_file")

    def sighup(self) -> None:
        """Restart the way an operator would: SIGHUP to the server (all at once, --restart-down)."""
        self.proc.send_signal(signal.SIGHUP)


class ProxyProcess(_Child):
    """A running `wsstorm proxy`: .url (ws:// of the listening side), .admin (AdminClient), .token."""


def start_target(timeout: float = 30.0, **options: Any) -> TargetProcess:
    """Spawn `python -m wsstorm serve` with these options (capacity=..., proxy_port=0, ...); wait until ready.

    ``auth_token`` reaches the child in its environment (settings.AUTH_TOKEN_ENV), not on its command line.
    The target stops by itself if this process dies without stopping it (exit_with_parent).
    """
    options.setdefault("exit_with_parent", True)
    from wsstorm.target.settings import AUTH_TOKEN_ENV

    # The auth token goes by the environment, never argv: argv shows in ps, and in any error that quotes it.
    token = options.pop("auth_token", None)
    env = {**os.environ, AUTH_TOKEN_ENV: str(token)} if token else None
    if env is None and AUTH_TOKEN_ENV in os.environ:
        env = {k: v for k, v in os.environ.items() if k != AUTH_TOKEN_ENV}  # no token asked: none inherited
    return TargetProcess([sys.executable, "-m", "wsstorm", "serve", *options_to_argv(options)], timeout, env=env)


def start_proxy(listen: str = "127.0.0.1:0", upstream: str = "", timeout: float = 30.0, **options: Any) -> ProxyProcess:
    """Spawn `python -m wsstorm proxy --listen LISTEN --upstream UPSTREAM`; wait until ready."""
    if not upstream:
        raise UsageError("start_proxy needs upstream='HOST:PORT'")
    argv = [
        sys.executable,
        "-m",
        "wsstorm",
        "proxy",
        "--listen",
        listen,
        "--upstream",
        upstream,
        *options_to_argv(options),
    ]
    return ProxyProcess(argv, timeout)
