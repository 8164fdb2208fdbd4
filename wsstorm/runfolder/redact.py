"""Which option values are secrets, and how they are kept out of the run folder (manifest, command.txt).

Pure: the load side redacts the manifest's options with :func:`redact_options`, the runner its
``command.txt`` with :func:`redact_argv`, by the same rules.
"""

from __future__ import annotations

from typing import Any

# Left out entirely: bearer tokens of the admin API.
SECRET_OPTIONS: tuple[str, ...] = ("target_token", "admin_token")
# Their values may be secrets (an Authorization header, a token in a query): keep the name, not the value.
REDACTED_OPTIONS: dict[str, str] = {"header": ":", "query": "=", "init_payload": "="}
# May carry a token anywhere in the text: only say that it was given.
REDACTED_WHOLE: tuple[str, ...] = ("ready_send",)
REDACTED = "<redacted>"


def redact_value(name: str, value: str) -> str:
    """One option value as it may be written down (``name`` as in argparse's dest: ``target_token``)."""
    if name in SECRET_OPTIONS or name in REDACTED_WHOLE:
        return REDACTED
    sep = REDACTED_OPTIONS.get(name)
    if sep is None:
        return value
    return f"{str(value).partition(sep)[0].strip()}{sep}{REDACTED}"


def redact_options(options: dict[str, Any]) -> dict[str, Any]:
    """Every option for the manifest: secrets left out, header/query/payload values redacted."""
    out = dict(options)
    for name in SECRET_OPTIONS:
        out.pop(name, None)
    for name in REDACTED_OPTIONS:
        values = out.get(name)
        if isinstance(values, str):  # one value (set by hand or a UI form), not a list
            values = [values]
        if values:
            out[name] = [redact_value(name, str(v)) for v in values]
    for name in REDACTED_WHOLE:
        if out.get(name):
            out[name] = REDACTED
    return out


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with every secret option value redacted (``--opt value`` and ``--opt=value``)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if not arg.startswith("--"):
            continue
        flag, eq, inline = arg.partition("=")
        name = flag[2:].replace("-", "_")
        if not (name in SECRET_OPTIONS or name in REDACTED_WHOLE or name in REDACTED_OPTIONS):
            continue
        if eq:
            out[i] = f"{flag}={redact_value(name, inline)}"
        elif i + 1 < len(out):
            out[i + 1] = redact_value(name, out[i + 1])
    return out
