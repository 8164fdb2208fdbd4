"""The catalog: every preset by name, in the order `wsstorm policies` lists them."""

from __future__ import annotations

from wsstorm.policies import backoff, libraries
from wsstorm.policies.rules import Preset

CATALOG: dict[str, Preset] = {p.name: p for p in [*backoff.PRESETS, *libraries.PRESETS]}


def valid_names() -> str:
    """The preset names, comma-separated, for error messages."""
    return ", ".join(CATALOG)
