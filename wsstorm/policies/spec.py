"""Policy specs: the validated choice of preset + parameters + wrapper, its text form and TOML file form.

`parse_policy("full-jitter:base=0.5,cap=30+budget:tokens=5")` and `load_policy_file(path)` are
the only ways in; both raise PolicyError (one line, exit 2) on bad input.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from wsstorm.policies.client import ClientPolicy, VectorPolicy
from wsstorm.policies.core import NDRAWS
from wsstorm.policies.numeric import MAX_DELAY, Arr
from wsstorm.policies.params import PolicyError, fmt, resolve, short
from wsstorm.policies.presets import CATALOG, valid_names
from wsstorm.policies.rules import Preset
from wsstorm.policies.throttles import THROTTLES, ThrottleSpec
from wsstorm.policies.wrappers import BUDGET_PARAMS, BudgetSpec

WRAPPERS = ("budget", *THROTTLES)  # what may follow the preset after a '+'


@dataclass(frozen=True)
class PolicySpec:
    """A validated policy choice: preset name, full parameter set, at most one wrapper (budget or throttle)."""

    name: str
    param_items: tuple[tuple[str, float], ...]
    budget: BudgetSpec | None = None
    throttle: ThrottleSpec | None = None

    @property
    def preset(self) -> Preset:
        """The preset this spec configures."""
        return CATALOG[self.name]

    @property
    def params(self) -> dict[str, float]:
        """Every parameter of the preset, defaults included."""
        return dict(self.param_items)

    @cached_property
    def _p(self) -> dict[str, float]:
        # read-only by convention: the hot path must not rebuild the dict per decision
        return dict(self.param_items)

    @cached_property
    def cap(self) -> float:
        """The largest delay this spec can return (every delay is clamped to 1e12 s)."""
        c = min(float(self.preset.cap(self.params)), MAX_DELAY)
        if self.budget is not None and self.budget.wait and self.budget.refill > 0:
            c = min(max(c, self.budget.cost / self.budget.refill), MAX_DELAY)
        if self.throttle is not None:
            c = min(self.throttle.cap(c), MAX_DELAY)
        return c

    @cached_property
    def ndraws(self) -> int:
        """Uniforms per decision and client: NDRAWS, plus what a throttle needs."""
        return NDRAWS + (self.throttle.extra_draws if self.throttle is not None else 0)

    def __str__(self) -> str:
        p = self.params
        parts = [f"{prm.name}={fmt(p[prm.name])}" for prm in self.preset.params if p[prm.name] != prm.default]
        text = self.name + (":" + ",".join(parts) if parts else "")
        wrapper = self.budget if self.budget is not None else self.throttle
        return text + (f"+{wrapper}" if wrapper is not None else "")

    def client(self, seed: int = 0, process_seed: int = 0) -> ClientPolicy:
        """One client's stateful policy with its own RNG (seed) and per-process draws (process_seed)."""
        return ClientPolicy(self, seed, process_seed)

    def vector(self, n: int, seed: int = 0, process_seed: int | Sequence[int] | Arr = 0) -> VectorPolicy:
        """n clients' policies as arrays (fleet simulation); process_seed: one int or one per client."""
        return VectorPolicy(self, n, seed, process_seed)


def _make_spec(
    name: object, given: Mapping[str, object], wrapper: tuple[str, Mapping[str, object]] | None = None
) -> PolicySpec:
    if not isinstance(name, str) or name not in CATALOG:
        raise PolicyError(f"unknown policy {short(name)}; valid: {valid_names()}")
    preset = CATALOG[name]
    params = resolve(name, preset.params, given)
    if preset.check is not None:
        msg = preset.check(params)
        if msg:
            raise PolicyError(f"{name}: {msg}")
    bspec = tspec = None
    if wrapper is not None and wrapper[0] == "budget":
        bspec = BudgetSpec(**resolve("budget", BUDGET_PARAMS, wrapper[1]))
    elif wrapper is not None:
        tname, tgiven = wrapper
        tspec = ThrottleSpec(tname, tuple(resolve(tname, THROTTLES[tname].params, tgiven).items()))
    return PolicySpec(name, tuple(params.items()), bspec, tspec)


_KEY_RE = re.compile(r"[a-z_][a-z0-9_]*")


def _split_part(part: str, whole: str) -> tuple[str, dict[str, str]]:
    name, sep, rest = part.partition(":")
    name = name.strip()
    given: dict[str, str] = {}
    if sep:
        if not rest.strip():
            raise PolicyError(
                f"empty parameter list after {short(name + ':')} in {short(whole)}; write NAME or NAME:key=value,..."
            )
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not _KEY_RE.fullmatch(key) or not value.strip():
                raise PolicyError(
                    f"bad parameter {short(item.strip())} in {short(whole)}; write key=value, e.g. base=0.5"
                )
            if key in given:
                raise PolicyError(f"parameter {short(key)} given twice in {short(whole)}")
            given[key] = value.strip()
    return name, given


def parse_policy(text: str) -> PolicySpec:
    """Parse `NAME[:key=value,...][+WRAPPER[:key=value,...]]`; PolicyError (one line) if invalid.

    WRAPPER is budget, sre-throttle or grpc-throttle (at most one).
    """
    if not isinstance(text, str) or not text.strip():
        raise PolicyError(f"empty policy spec; valid: {valid_names()}")
    whole = text.strip()
    parts = whole.split("+")
    name, given = _split_part(parts[0], whole)
    wrapper: tuple[str, dict[str, str]] | None = None
    if len(parts) > 2:
        raise PolicyError(
            f"at most one wrapper ('+budget:...', '+sre-throttle:...') may follow the policy in {short(whole)}"
        )
    if len(parts) == 2:
        wrapper = _split_part(parts[1], whole)
        if wrapper[0] not in WRAPPERS:
            raise PolicyError(f"unknown wrapper {short(wrapper[0])} in {short(whole)}; valid: {', '.join(WRAPPERS)}")
    if not name:
        raise PolicyError(f"empty policy name in {short(whole)}; valid: {valid_names()}")
    return _make_spec(name, given, wrapper)


def load_policy_file(path: str | Path) -> PolicySpec:
    """Read a policy from TOML: `[policy]` with `name` and parameters, optional `[policy.budget]`
    or `[policy.sre-throttle]` or `[policy.grpc-throttle]` (at most one)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"policy file {short(str(p), 80)} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file {short(str(p), 80)}: {type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {short(str(p), 80)} is not valid TOML: {str(exc).splitlines()[0]}") from None
    table = data.get("policy")
    if not isinstance(table, dict):
        raise PolicyError(f"policy file {short(str(p), 80)} needs a [policy] table with name = \"...\"")
    table = dict(table)
    name = table.pop("name", None)
    if name is None:
        raise PolicyError(f"policy file {short(str(p), 80)}: [policy] needs name = \"...\"; valid: {valid_names()}")
    wrappers = {w: table.pop(w) for w in WRAPPERS if w in table}
    if len(wrappers) > 1:
        raise PolicyError(f"policy file {short(str(p), 80)}: at most one of [policy.{'], [policy.'.join(wrappers)}]")
    wrapper = None
    for wname, wtable in wrappers.items():
        if not isinstance(wtable, dict):
            raise PolicyError(f"[policy.{wname}] must be a table of numbers")
        wrapper = (wname, wtable)
    return _make_spec(name, table, wrapper)
