"""TLS for the embedded target: a CA and a server certificate made at start, and the CPU of each handshake.

`make_certificates` creates a throw-away CA and a server certificate for 127.0.0.1/::1/localhost
with the `openssl` command (RSA-2048: the asymmetric crypto a real server pays per handshake). Only
the CA certificate is written where the harness can read it (--ca-out); the private keys live in
a temporary directory the supervisor removes at exit.

`instrument_server_tls` measures, on the serving process's CPU clock, the work asyncio's TLS layer
does for each handshake, and reports handshakes that ended before the WebSocket layer ever saw them
(the client gave up, sent garbage, or the TLS handshake timed out), so that work is accounted too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsstorm.errors import UsageError

_DAYS = "7"
_SERVER_EXT = (
    "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n"
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth\n"
    "authorityKeyIdentifier=keyid,issuer\n"
    "subjectKeyIdentifier=hash\n"
)


@dataclass(frozen=True)
class Certificates:
    """Where the server's certificate chain and key are (private dir) and where the CA PEM went."""

    cert: str
    key: str
    ca_file: str
    workdir: str  # temporary; remove with cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def check_ca_out(path: str) -> None:
    """UsageError unless a CA file can be written at `path` (its folder exists and is writable)."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise UsageError(f"--ca-out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"--ca-out {path}: not writable")


def _openssl(args: list[str], cwd: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise UsageError("--tls needs the openssl command to make its certificate (apt-get install -y openssl)")
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise UsageError(f"openssl {args[0]} failed: {last[:200]}")


def make_certificates(ca_out: str) -> Certificates:
    """Make a CA and a server certificate signed by it; copy the CA PEM to `ca_out`."""
    check_ca_out(ca_out)
    work = tempfile.mkdtemp(prefix="wsstorm-tls-")
    try:
        os.chmod(work, 0o700)
        _openssl(
            [
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                _DAYS,
                "-subj",
                "/CN=wsstorm embedded target CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            work,
        )
        _openssl(
            [
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            work,
        )
        Path(work, "server.ext").write_text(_SERVER_EXT)
        _openssl(
            [
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                str(secrets.randbits(63)),
                "-days",
                _DAYS,
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
            work,
        )
        try:
            shutil.copyfile(os.path.join(work, "ca.pem"), ca_out)
        except OSError as exc:
            raise UsageError(f"--ca-out {ca_out}: {exc.strerror or exc}") from None
        os.unlink(os.path.join(work, "ca.key"))  # nothing more is ever signed with it
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Certificates(
        cert=os.path.join(work, "server.pem"),
        key=os.path.join(work, "server.key"),
        ca_file=os.path.abspath(ca_out),
        workdir=work,
    )


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The serving processes' TLS context (TLS 1.2+, the certificate made at start)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.num_tickets = 0
    return ctx


def client_context(ca_file: str) -> ssl.SSLContext:
    """A client context that trusts only the embedded target's CA (for tests and benchmarks)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    return ctx


# How a TLS handshake that never reached the WebSocket layer ended.
TLS_SHED = "shed"  # the TLS handshake timeout cut it off
TLS_BAD = "bad"  # the client spoke something that is not TLS
TLS_LEFT = "left"  # the client went away (EOF/RST) mid-handshake

OnTlsLost = Callable[[Any, float, bool, str], None]  # (app protocol, tls CPU ms, server did crypto, how)


def instrument_server_tls(on_lost: OnTlsLost) -> bool:
    """Time every server TLS handshake on the thread CPU clock and report the ones lost before the app saw them.

    Wraps four methods of asyncio's own TLS protocol (CPython 3.11+) in this process only. Each
    handshake's CPU ms end up in `wss_tls_ms` of the app protocol (the WebSocket connection), which
    exists before the handshake starts. Returns False (nothing wrapped) on an asyncio without them:
    handshakes then count 0 TLS ms.
    """
    from asyncio import sslproto

    cls: Any = getattr(sslproto, "SSLProtocol", None)
    states: Any = getattr(sslproto, "AppProtocolState", None)
    names = ("_do_handshake", "_on_handshake_complete", "_check_handshake_timeout", "connection_lost")
    if cls is None or states is None or not all(hasattr(cls, n) for n in names):
        return False
    if getattr(cls, "_wss_instrumented", False):
        return True
    do_handshake, complete, check_timeout, lost = (getattr(cls, n) for n in names)

    def _do_handshake(self: Any) -> None:
        t0 = time.thread_time()
        try:
            do_handshake(self)
        finally:
            self._wss_tls_ms = getattr(self, "_wss_tls_ms", 0.0) + (time.thread_time() - t0) * 1000.0
            self._wss_calls = getattr(self, "_wss_calls", 0) + 1
            app = self._app_protocol
            if app is not None:
                app.wss_tls_ms = self._wss_tls_ms

    def _on_handshake_complete(self: Any, exc: Any) -> None:
        if exc is not None:
            self._wss_exc = exc
        complete(self, exc)

    def _check_handshake_timeout(self: Any) -> None:
        if self._state == sslproto.SSLProtocolState.DO_HANDSHAKE:
            self._wss_shed = True
        check_timeout(self)

    def connection_lost(self: Any, exc: Any) -> None:
        app = self._app_protocol
        if app is not None and self._app_state == states.STATE_INIT and not getattr(self, "_wss_reported", False):
            self._wss_reported = True
            err = getattr(self, "_wss_exc", None)
            if getattr(self, "_wss_shed", False):
                how = TLS_SHED
            elif isinstance(err, ssl.SSLError) and not isinstance(err, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                how = TLS_BAD
            else:
                how = TLS_LEFT
            # The first _do_handshake call runs before any byte came in; the crypto happens on a later one.
            with contextlib.suppress(Exception):  # accounting must never break the transport
                on_lost(app, getattr(self, "_wss_tls_ms", 0.0), getattr(self, "_wss_calls", 0) >= 2, how)
        lost(self, exc)

    cls._do_handshake = _do_handshake
    cls._on_handshake_complete = _on_handshake_complete
    cls._check_handshake_timeout = _check_handshake_timeout
    cls.connection_lost = connection_lost
    cls._wss_instrumented = True
    return True
