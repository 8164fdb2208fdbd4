"""Stateful policies with their own seeded randomness: ClientPolicy (one client), VectorPolicy (a fleet)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wsstorm.policies.core import NDRAWS, PolicyState, decide, initial_state, on_open
from wsstorm.policies.draws import client_uniforms
from wsstorm.policies.numeric import Arr, np
from wsstorm.policies.outcomes import Outcome, outcome_code
from wsstorm.policies.params import PolicyError
from wsstorm.policies.scalar import ScalarState, decide_scalar, initial_scalar_state, on_open_scalar

if TYPE_CHECKING:
    from wsstorm.policies.spec import PolicySpec


def _seed_seq(seed: int, process_seed: int, tag: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) % 2**64, int(process_seed) % 2**64, tag])


@functools.lru_cache(maxsize=256)
def _initial(spec: PolicySpec, process_seed: int) -> ScalarState:
    # the same for every client of a process (an immutable NamedTuple, so it can be shared)
    return initial_scalar_state(spec, process_seed)


class ClientPolicy:
    """One client's policy: thin stateful wrapper over :func:`decide_scalar` with its own seeded RNG."""

    def __init__(self, spec: PolicySpec, seed: int = 0, process_seed: int = 0) -> None:
        self.spec = spec
        self._uniform = client_uniforms(seed, process_seed)
        self._s = _initial(spec, int(process_seed))
        self._extra = spec.ndraws - NDRAWS

    @property
    def retries(self) -> int:
        """Retry count n since the last reset."""
        return self._s.n

    @property
    def state(self) -> ScalarState:
        """The current state (plain numbers)."""
        return self._s

    @property
    def _state(self) -> PolicyState:
        # the state as 1-element arrays, for code written against the array core
        s = self._s
        n = np.array([s.n], dtype=np.int64)
        wrap = np.array([s.wrap], dtype=np.float64).reshape(1, len(s.wrap))
        return PolicyState(n, np.array([s.prev]), np.array([s.last]), np.array([s.tokens]), np.array([s.const]), wrap)

    @property
    def skipped(self) -> int:
        """Attempts the last decision skipped locally (sre-throttle; 0 otherwise): its delay includes their waits."""
        t = self.spec.throttle
        return int(self._s.wrap[2]) if t is not None and t.name == "sre-throttle" else 0

    def opened(self) -> None:
        """A connection opened: apply reset rules that fire on open (the budget's refund, a throttle's accept)."""
        self._s = on_open_scalar(self.spec, self._s)

    def next_delay(self, outcome: Outcome) -> float | None:
        """Seconds to wait before the next attempt after `outcome`, or None to give up."""
        hint = outcome.retry_after
        h = math.nan if hint is None else float(hint)
        if h == math.inf or h == -math.inf:
            h = math.nan
        up = float(outcome.uptime_s or 0.0)
        if up != up or up == math.inf or up == -math.inf:
            up = 0.0
        draw = self._uniform
        u0 = draw()  # NDRAWS = 2 uniforms per decision, whatever the preset uses
        u1 = draw()
        extra = [draw() for _ in range(self._extra)] if self._extra else ()  # a throttle's draws, after
        d, self._s = decide_scalar(self.spec, self._s, outcome_code(outcome), up, h, u0, u1, extra=extra)
        return None if d != d else d


class VectorPolicy:
    """n clients' policies as numpy arrays; same rules as ClientPolicy, one RNG for the fleet."""

    def __init__(self, spec: PolicySpec, n: int, seed: int = 0, process_seed: int | Sequence[int] | Arr = 0) -> None:
        if int(n) < 0:
            raise PolicyError(f"vector size must be >= 0, got {n}")
        self.spec = spec
        self.n = int(n)
        ps = np.asarray(process_seed)
        if ps.ndim == 0:
            ps = np.full(self.n, int(ps) % 2**63, dtype=np.int64)
            first = int(process_seed)  # type: ignore[arg-type]
        elif ps.shape != (self.n,):
            raise PolicyError(f"process_seed must be one int or {self.n} ints, got shape {ps.shape}")
        else:
            ps = (
                np.asarray([int(x) % 2**63 for x in ps.tolist()], dtype=np.int64)
                if ps.dtype.kind != "i"
                else ps.astype(np.int64)
            )
            first = 0
        self._rng = np.random.default_rng(_seed_seq(seed, first, 2))
        self._state = initial_state(spec, ps)

    @property
    def retries(self) -> Arr:
        """Retry count n since the last reset, per client (a read-only view)."""
        v = self._state.n.view()
        v.flags.writeable = False
        return v

    @property
    def skipped(self) -> Arr:
        """Attempts each client's last decision skipped locally (sre-throttle; zeros otherwise)."""
        t = self.spec.throttle
        if t is not None and t.name == "sre-throttle":
            return self._state.wrap[:, 2].astype(np.int64)
        return np.zeros(self.n, dtype=np.int64)

    @property
    def const(self) -> Arr:
        """The per-client constant of the preset (reconnecting-websocket: its minimum delay), else 0."""
        return self._state.const.copy()

    def _idx(self, idx: Arr | Sequence[int] | slice | None) -> Arr:
        if idx is None:
            return np.arange(self.n)
        if isinstance(idx, slice):
            return np.arange(self.n)[idx]
        return np.asarray(idx, dtype=np.int64).reshape(-1)

    def opened(self, idx: Arr | Sequence[int] | slice | None = None) -> None:
        """Clients `idx` opened a connection."""
        i = self._idx(idx)
        sub = PolicyState(*(a[i] for a in self._state))
        new = on_open(self.spec, sub)
        for a, b in zip(self._state, new, strict=True):
            a[i] = b

    def next_delays(
        self,
        idx: Arr | Sequence[int] | slice | None,
        code: Arr | int,
        uptime_s: Arr | float = 0.0,
        retry_after: Arr | float | None = None,
        *,
        reset: bool = True,
    ) -> Arr:
        """Delays (s, NaN = give up) for clients `idx` (no repeats) after encoded outcomes `code`.

        code: close code (>= 0), or -1 refused, -2 timeout, -3 tls, -4 dns, -5 protocol,
        -6 reset, -7 throttled, -status for an HTTP status (see FAIL_CODES). retry_after: hints, NaN = none.
        reset=False skips the reset rule (used to trace the n-th consecutive retry).
        """
        i = self._idx(idx)
        m = i.shape[0]
        c = np.broadcast_to(np.asarray(code, dtype=np.int64), (m,))
        up = np.broadcast_to(np.nan_to_num(np.asarray(uptime_s, dtype=np.float64), nan=0.0, posinf=0.0), (m,))
        if retry_after is None:
            h = np.full(m, np.nan)
        else:
            h = np.broadcast_to(np.asarray(retry_after, dtype=np.float64), (m,))
            h = np.where(np.isfinite(h), h, np.nan)
        sub = PolicyState(*(a[i] for a in self._state))
        d, new = decide(self.spec, sub, c, up, h, self._rng.random((m, self.spec.ndraws)), reset=reset)
        for a, b in zip(self._state, new, strict=True):
            a[i] = b
        return d
