"""Test certificates made with the openssl command: a CA, a server certificate for 127.0.0.1, a client one.

``make(folder)`` returns the paths; ``expired=True`` makes the server certificate expire at once
(valid for 0 days: expired a second after it was made).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _run(args: list[str], cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _leaf(folder: Path, name: str, cn: str, ext: str, days: str) -> None:
    (folder / f"{name}.ext").write_text(ext)
    _run(
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}"],
        folder,
    )
    _run(
        [
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            days,
            "-extfile",
            f"{name}.ext",
        ],
        folder,
    )


def make(folder: Path, expired: bool = False) -> Certs:
    """A CA and certificates signed by it, in ``folder`` (skips the test without openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder.mkdir(parents=True, exist_ok=True)
    _run(
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
            "2",
            "-subj",
            "/CN=wsstorm test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        folder,
    )
    _leaf(
        folder,
        "server",
        "127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        "0" if expired else "2",
    )
    _leaf(folder, "client", "wsstorm client", "extendedKeyUsage=clientAuth\n", "2")
    return Certs(
        folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "client.pem", folder / "client.key"
    )
