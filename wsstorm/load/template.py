"""Per-connection handshake extras: ``--header``, ``--query`` and ``--subprotocol``, templated.

A template is compiled once per process (``{env:NAME}`` read, ``{file:PATH}`` loaded, every
check done: one-line :class:`UsageError`), then rendered cheaply per user or per connection:
``{user}`` (the user id), ``{n}`` (the user's number in the run, from 1), ``{conn}``, ``{run}``,
``{file:PATH}`` (line n of PATH, blank lines skipped, wrapping round), ``{{``/``}}`` for braces.
Rendered values may be secrets: callers keep them out of every log (see :meth:`Rendered.secrets`).
Pure apart from reading the files and variables a template names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from wsstorm.errors import UsageError

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token: header names, subprotocols
_FIELD = re.compile(r"\{\{|\}\}|\{([a-z]+)(?::([^{}]*))?\}|[{}]")
# Headers the handshake itself sets: a user value would break it or lie about it.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
        "transfer-encoding",
    }
)
_KINDS = ("user", "n", "conn", "run", "file", "env")


@dataclass(frozen=True)
class Template:
    """A compiled template: literal text and fields (kind, lines) in order."""

    parts: tuple[str | tuple[str, tuple[str, ...]], ...]
    source: str  # what was given (may name a variable or a file, never holds their values)

    @property
    def per_conn(self) -> bool:
        """True if the value changes from one connection of a user to the next."""
        return any(not isinstance(p, str) and p[0] == "conn" for p in self.parts)

    @property
    def static(self) -> bool:
        """True if the value is the same for every user and connection of a run."""
        return all(isinstance(p, str) or p[0] == "run" for p in self.parts)

    def render(self, user: str, n: int, conn: int, run: str) -> str:
        """The value for user ``user`` (number ``n``, from 1), connection ``conn``, run ``run``."""
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            kind, lines = p
            if kind == "user":
                out.append(user)
            elif kind == "n":
                out.append(str(n))
            elif kind == "conn":
                out.append(str(conn))
            elif kind == "run":
                out.append(run)
            else:  # file
                out.append(lines[(n - 1) % len(lines)])
        return "".join(out)


def _read_lines(path: str, what: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = tuple(ln.strip("\r\n") for ln in fh.read().splitlines() if ln.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what}: cannot read {{file:{path}}}: {getattr(exc, 'strerror', None) or exc}") from None
    if not lines:
        raise UsageError(f"{what}: {{file:{path}}} has no lines")
    return lines


def compile_template(text: str, what: str, env: Mapping[str, str] | None = None) -> Template:
    """Compile ``text``; ``what`` names the option in errors (never the value: it may be a secret)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    parts: list[str | tuple[str, tuple[str, ...]]] = []
    pos = 0
    for m in _FIELD.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        pos = m.end()
        tok = m.group(0)
        if tok in ("{{", "}}"):
            parts.append(tok[0])
            continue
        kind, arg = m.group(1), m.group(2)
        if kind is None:
            raise UsageError(f"{what}: a lone {tok!r} (write {tok * 2} for a brace)")
        if kind not in _KINDS:
            raise UsageError(f"{what}: unknown field {{{kind}}} (known: {', '.join('{' + k + '}' for k in _KINDS)})")
        if kind == "env":
            if not arg:
                raise UsageError(f"{what}: {{env:NAME}} needs a variable name")
            if arg not in environ:
                raise UsageError(f"{what}: environment variable {arg} is not set")
            parts.append(environ[arg])
        elif kind == "file":
            if not arg:
                raise UsageError(f"{what}: {{file:PATH}} needs a path")
            parts.append(("file", _read_lines(arg, what)))
        else:
            if arg is not None:
                raise UsageError(f"{what}: {{{kind}}} takes no argument")
            parts.append((kind, ()))
    if pos < len(text):
        parts.append(text[pos:])
    # merge neighbouring literals: fewer pieces to join per connection
    merged: list[str | tuple[str, tuple[str, ...]]] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + p
        else:
            merged.append(p)
    return Template(tuple(merged), text)


@dataclass(frozen=True)
class Rendered:
    """The extras of one connection: header lines (bytes, CRLF-ended) and the query to append."""

    headers: bytes = b""
    query: str = ""
    secrets: tuple[str, ...] = ()  # the values, to scrub from any text that could be shown


@dataclass(frozen=True)
class Extras:
    """Compiled ``--header``/``--query``/``--subprotocol`` of a run."""

    headers: tuple[tuple[str, Template], ...] = ()
    query: tuple[tuple[str, Template], ...] = ()
    subprotocols: tuple[str, ...] = ()
    names: tuple[str, ...] = field(default=(), compare=False)  # header names, for the manifest

    @property
    def empty(self) -> bool:
        """True if there is nothing to add to a handshake."""
        return not (self.headers or self.query)

    @property
    def per_conn(self) -> bool:
        """True if some value changes from one connection to the next ({conn})."""
        return any(t.per_conn for _, t in self.headers + self.query)

    def render(self, user: str, n: int, conn: int, run: str) -> Rendered:
        """Render every header and query value for one connection (values checked: no CR/LF)."""
        lines = []
        secrets = []
        for name, t in self.headers:
            value = t.render(user, n, conn, run)
            if "\r" in value or "\n" in value or "\0" in value:
                value = re.sub(r"[\r\n\0]", "", value)  # a file line cannot split the request
            lines.append(f"{name}: {value}\r\n")
            secrets.append(value)
        query = []
        for key, t in self.query:
            value = t.render(user, n, conn, run)
            query.append(f"{quote(key, safe='')}={quote(value, safe='')}")
            secrets.append(value)
            secrets.append(quote(value, safe=""))
        return Rendered(
            "".join(lines).encode("utf-8"),
            "&".join(query),
            tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)),
        )


def compile_extras(
    headers: tuple[str, ...] | list[str],
    query: tuple[str, ...] | list[str],
    subprotocols: tuple[str, ...] | list[str],
    env: Mapping[str, str] | None = None,
) -> Extras:
    """Check and compile the options (``'Name: value'``, ``'k=v'``, subprotocol names)."""
    hs = []
    for i, h in enumerate(headers, 1):
        name, sep, value = str(h).partition(":")
        name = name.strip()
        what = f"--header #{i} ({name or '?'})"
        if not sep or not _TOKEN.match(name):
            raise UsageError(f"--header #{i} must be 'Name: value' with a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise UsageError(f"{what}: the handshake sets {name} itself (use --subprotocol / --compression)")
        if any(c in value for c in "\r\n\0"):
            raise UsageError(f"{what}: the value has a line break")
        t = compile_template(value.strip(), what, env)
        hs.append((name, t))
    qs = []
    for i, q in enumerate(query, 1):
        key, sep, value = str(q).partition("=")
        if not sep or not key:
            raise UsageError(f"--query #{i} must be 'k=v'")
        qs.append((key, compile_template(value, f"--query #{i} ({key})", env)))
    protos = []
    for p in subprotocols:
        p = str(p).strip()
        if not _TOKEN.match(p):
            raise UsageError(f"--subprotocol {p!r} is not a valid subprotocol name")
        if p in protos:
            raise UsageError(f"--subprotocol {p} given twice")
        protos.append(p)
    return Extras(tuple(hs), tuple(qs), tuple(protos), tuple(n for n, _ in hs))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret value replaced by ``<redacted>`` (longest first)."""
    for s in secrets:
        if s in text:
            text = text.replace(s, "<redacted>")
    return text
