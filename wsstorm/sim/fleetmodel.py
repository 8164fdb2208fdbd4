"""The fleet model: N clients and one server (capacity, handshake budget, handshake queue, faults), in 10 ms ticks.

Pure and seeded: no files, no wall clock. Clients are numpy arrays; each holds at
most one pending event in a calendar of per-tick buckets, so the cost is the
number of events plus a small constant per tick, i.e. linear in clients.
Reconnect delays come from the policy objects of :mod:`wsstorm.policies`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsstorm.runfolder import schemas
from wsstorm.sim.queues import Calendar, Fifo
from wsstorm.sim.serving import GONE, HANG, IDLE, OPEN, QUEUED, WAIT, ServerPipeline

__all__ = ["GONE", "HANG", "IDLE", "OPEN", "QUEUED", "WAIT", "FaultAt", "FleetModel", "ModelConfig", "ModelResult"]
# pending event kinds
EV_NONE, EV_ATTEMPT, EV_TIMEOUT, EV_DEAD = 0, 1, 2, 3

# outcome kinds the model produces (close codes as text, or the contract's fail kinds)
OUTCOMES = ("1012", "1013", "1006", "refused", "timeout", "http_503", "reset")

# The per-second series the model writes: the analysis series frame's columns (one home: runfolder.schemas).
CLOSE_CODES = (1006, 1012, 1013)
SERIES_COLUMNS: tuple[str, ...] = (
    "s",
    *schemas.SERIES_CLIENT,
    *(schemas.closes_column(c) for c in CLOSE_CODES),
    *schemas.SERIES_SERVER,
)
FLOAT_COLUMNS = frozenset({"server_wasted_ms", "server_work_ms"})
DISRUPTIONS = tuple(d for d in schemas.DISRUPTIONS if d != "lame-duck")  # lame-duck is not modelled


@dataclass(frozen=True)
class FaultAt:
    """One firing of a fault: seconds after the start, action, its parameters (already scaled)."""

    at: float
    action: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """Everything the model needs, already scaled to the fleet size."""

    clients: int
    duration: float
    spawn_rate: float
    capacity: int
    handshake_rate: float  # admission budget: token bucket refill, per second (0: no bucket)
    burst: float  # token bucket size (the embedded target: rate/10, at least 1)
    handshake_service_ms: float  # server time per accepted handshake (measured: wsstorm.sim.servicetime)
    reject_service_ms: float = 0.0  # server time per rejected handshake (1013/503: no admission work)
    close_service_ms: float = 0.0  # server time per close sent: a restart's 1012s go out over time
    cpu_ms_per_s: float = 1000.0  # server time (ms per second) for the handshake queue, all workers
    handshake_cost_ms: float = 0.0  # the scenario's admission work (part of handshake_service_ms; shown only)
    workers: int = 1
    overload: str = "close"  # close | http | refuse
    retry_after: float | None = None
    connect_timeout: float = 10.0
    ping_interval: float = 5.0
    pong_timeout: float = 5.0
    server_ping: float = 20.0  # websockets' server keepalive (interval = timeout = 20 s)
    # the cost model of an attempt (wsstorm.target.costs), per serving process, ms of CPU
    tls_ms: float = 0.0  # TLS handshake, paid by every attempt before admission
    attempt_cost_ms: float = 0.0  # e.g. authentication, paid by every attempt before admission
    session_cost_ms: float = 0.0  # session setup, paid once admitted
    store_concurrency: int = 0  # the dependency store's slots (0: no store)
    store_ms: float = 0.0  # time of one store call in one slot
    handshake_timeout: float = 10.0  # the server drops a handshake it has not started after this (0: never)
    # > 0: the store runs on the server's own cores (a scenario's [target] cpus pins them together) and
    # gets this share of them while both have work (its busy threads against the serving loops: c / (c + w))
    store_cpu_share: float = 0.0
    faults: tuple[FaultAt, ...] = ()
    dt: float = 0.01
    held_s: float = 5.0
    seed: int = 1


@dataclass
class ModelResult:
    """Per-second series (columns of the analysis series frame), per-tick connected, downtimes, faults."""

    series: dict[str, np.ndarray]
    connected_tick: np.ndarray
    dt: float
    downtimes: np.ndarray
    recovered: np.ndarray
    faults: list[dict[str, Any]]
    totals: dict[str, int]


class FleetModel(ServerPipeline):
    """One simulated run. ``policy`` is a vector policy (wsstorm.sim.simulate.fleet_policy): ``opened(idx)``,
    ``next_delays(idx, outcome, uptime_s, retry_after)`` with ``outcome`` one of OUTCOMES (uptime_s None: 0),
    and ``next_delays_all(outcome, uptime_s, retry_after)`` for every client at once, in client order."""

    def __init__(self, cfg: ModelConfig, policy: Any) -> None:
        self.cfg = cfg
        self.pol = policy
        n = cfg.clients
        self.dt = cfg.dt
        self.n_ticks = math.ceil(cfg.duration / cfg.dt - 1e-9)
        self.n_sec = math.ceil(cfg.duration - 1e-9)
        self.rng = np.random.default_rng([cfg.seed, 0x5EED])
        self.phase = np.zeros(n, dtype=np.int8)
        self.ev = np.zeros(n, dtype=np.int8)  # the kind of each client's pending calendar entry
        self.att_t = np.zeros(n)  # when the current attempt started
        self.open_t = np.zeros(n)  # when the current connection opened
        self.down_since = np.full(n, np.nan)  # since when the client lacks a connection held >= held_s
        self.conn_proc = np.zeros(n, dtype=np.int16)
        self.cal = Calendar(self.n_ticks)
        self.serial = np.zeros(n, dtype=np.int32)  # of each client's pending calendar entry
        self.att_seq = np.zeros(n, dtype=np.int32)  # attempts started, per client
        # server state
        self.cap_total = cfg.capacity
        self.rate_total = cfg.handshake_rate
        self.overload = cfg.overload
        self.proc_up_tick = np.zeros(cfg.workers, dtype=np.int64)  # proc serves from this tick on
        self.cpu = 0.0
        self.burst = cfg.burst
        self.conns = 0  # server-side connections (open clients + zombies)
        self.connected = 0  # client-side: clients holding an open connection
        self.partitioned = False
        self.zombie_release = np.zeros(self.n_ticks + 2, dtype=np.int64)
        self.drains: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.conn_seq = np.zeros(n, dtype=np.int32)
        self.recheck = np.zeros(n, dtype=bool)  # clients that opened while down: held long enough yet?
        self.downtimes: list[np.ndarray] = []
        s = self.n_sec
        self.col = {c: np.zeros(s, dtype=float if c in FLOAT_COLUMNS else np.int64) for c in SERIES_COLUMNS if c != "s"}
        self.connected_tick = np.zeros(self.n_ticks, dtype=np.int64)
        self.fault_log: list[dict[str, Any]] = []
        self.totals = {k: 0 for k in ("attempts", "opens", "gaveup")}
        self._init_server()
        self.patience = Fifo()  # attempts at the server, in arrival order, until their client's connect timeout
        # the tick at which a client started at tick 0 gives up (as _schedule rounds it)
        self.ct_ticks = max(1, math.ceil(cfg.connect_timeout / cfg.dt - 1e-6))

    # -- helpers --------------------------------------------------------------------
    def _sec(self, tick: int) -> int:
        return min(int(tick * self.dt + 1e-9), self.n_sec - 1)

    def _up_fraction(self, tick: int) -> float:
        return float(np.count_nonzero(self.proc_up_tick <= tick)) / self.cfg.workers

    def _count_attempts(self, column: str, idx: np.ndarray) -> None:
        """Attempts are counted in the second they started, by how they ended."""
        if idx.size == 0:
            return
        secs = np.minimum((self.att_t[idx] + 1e-9).astype(np.int64), self.n_sec - 1)
        per_sec = np.bincount(secs, minlength=self.n_sec)
        self.col[column] += per_sec
        self.col["attempts"] += per_sec
        self.totals["attempts"] += int(idx.size)

    def _count_started_now(self, column: str, count: int, tick: int) -> None:
        """_count_attempts for ``count`` attempts that all started at ``tick`` (their att_t is tick * dt)."""
        s = self._sec(tick)
        self.col[column][s] += count
        self.col["attempts"][s] += count
        self.totals["attempts"] += count

    def _ticks(self, at: np.ndarray, tick: int) -> np.ndarray:
        """The calendar tick of each event time (nothing happens within the tick that caused it)."""
        x = np.asarray(at, dtype=float) / self.dt
        if x.ndim == 0:
            return np.maximum(np.ceil(x - 1e-6).astype(np.int64), tick + 1)
        x -= 1e-6  # in place: the same floats as ceil(at / dt - 1e-6), without the temporaries
        np.ceil(x, out=x)
        ticks = x.astype(np.int64)
        np.maximum(ticks, tick + 1, out=ticks)
        return ticks

    def _schedule(self, idx: np.ndarray, at: np.ndarray | float, kind: int, tick: int) -> None:
        ticks = self._ticks(np.asarray(at, dtype=float), tick)
        if ticks.ndim == 0:
            ticks = np.full(idx.size, int(ticks), dtype=np.int64)
        self.ev[idx] = kind
        serial = self.serial[idx] + 1
        self.serial[idx] = serial
        self.cal.add(idx, ticks, serial)

    def _cancel(self, idx: np.ndarray) -> None:
        """Forget the clients' pending events (their calendar entries die with the old serial)."""
        self.ev[idx] = EV_NONE
        self.serial[idx] += 1

    def _react(
        self,
        idx: np.ndarray,
        outcome: str,
        t: float,
        tick: int,
        uptime: np.ndarray | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The policy chooses each client's next attempt after ``outcome``; NaN means it gave up.

        Every pending event of the clients is replaced (a new serial each), so callers need not cancel first.
        """
        if idx.size == 0:
            return
        n = self.cfg.clients
        if idx.size == n and n > 1:
            self._react_all(idx, outcome, t, tick, uptime, retry_after)
            return
        d = np.asarray(self.pol.next_delays(idx, outcome, uptime, retry_after), dtype=float)  # uptime None: 0
        self._follow(idx, d, t, tick)

    def _react_all(
        self,
        idx: np.ndarray,
        outcome: str,
        t: float,
        tick: int,
        uptime: np.ndarray | None,
        retry_after: float | None,
    ) -> None:
        """_react for the whole fleet (idx: every client once, in any order), on whole arrays in client order:
        a fleet in lock-step (``immediate`` against a refusing server) reacts every tick, all 10^6 of it."""
        up = None
        if uptime is not None and uptime.any():
            up = np.empty(idx.size)
            up[idx] = uptime
        d = np.asarray(self.pol.next_delays_all(outcome, up, retry_after), dtype=float)  # client order
        if np.isnan(d).any():  # some give up: the general path, in idx order
            self._follow(idx, d[idx], t, tick)
            return
        self.phase.fill(WAIT)
        ticks = self._ticks(t + d, tick)
        self.ev.fill(EV_ATTEMPT)
        self.serial += 1
        # the calendar keeps idx's order (the order the clients reach the server's queue in)
        lo, hi = int(ticks.min()), int(ticks.max())
        if lo == hi:
            self.cal.add_fleet(lo, idx, self.serial)
        else:
            self.cal.add(idx, ticks[idx], self.serial[idx])

    def _follow(self, idx: np.ndarray, d: np.ndarray, t: float, tick: int) -> None:
        """Clients idx wait d seconds (idx order) before their next attempt; NaN: they give up."""
        gone = np.isnan(d)
        if gone.any():
            g = idx[gone]
            self.phase[g] = GONE
            self._cancel(g)
            self.totals["gaveup"] += int(g.size)
            idx, d = idx[~gone], d[~gone]
        self.phase[idx] = WAIT
        self._schedule(idx, t + d, EV_ATTEMPT, tick)

    def _lose(self, idx: np.ndarray, t: float) -> None:
        """Clients whose open connection ended: start their downtime unless already down."""
        healthy = np.isnan(self.down_since[idx])
        self.down_since[idx[healthy]] = t

    def _close(self, idx: np.ndarray, code: str, t: float, tick: int, server_frees: bool = True) -> None:
        """Open connections end with ``code``; their clients ask the policy when to come back."""
        if idx.size == 0:
            return
        self.connected -= idx.size
        if server_frees:
            self.conns -= idx.size
        self.col[f"closes_{code}"][self._sec(tick)] += idx.size
        self._lose(idx, t)
        self._react(idx, code, t, tick, uptime=t - self.open_t[idx])

    def _open(self, idx: np.ndarray, t: float, tick: int) -> None:
        self.phase[idx] = OPEN
        self._cancel(idx)
        self.open_t[idx] = t
        self.conn_seq[idx] += 1
        self.connected += idx.size
        self.conns += idx.size
        self.totals["opens"] += int(idx.size)
        if self.cfg.workers > 1:
            self.conn_proc[idx] = self.rng.integers(0, self.cfg.workers, idx.size)
        self.recheck[idx[~np.isnan(self.down_since[idx])]] = True
        self.pol.opened(idx)
        if self.partitioned:
            self._arm_dead(idx, t, tick)

    def _arm_dead(self, idx: np.ndarray, t: float, tick: int) -> None:
        """Under a partition an open client notices at its next ping plus the pong timeout."""
        c = self.cfg
        when = t + self.rng.uniform(0.0, c.ping_interval, idx.size) + c.pong_timeout
        self._schedule(idx, when, EV_DEAD, tick)

    def _settle_downtimes(self, t: float, final: bool = False) -> None:
        """A client's downtime ends at an open that was then held >= held_s."""
        idx = np.flatnonzero(self.recheck)
        if idx.size == 0:
            return
        self.recheck[idx] = False
        live = (self.phase[idx] == OPEN) & ~np.isnan(self.down_since[idx])
        idx = idx[live]
        held = (t - self.open_t[idx]) >= self.cfg.held_s - 1e-9
        done = idx[held]
        if done.size:
            self.downtimes.append(self.open_t[done] - self.down_since[done])
            self.down_since[done] = np.nan
        if not final and (~held).any():
            self.recheck[idx[~held]] = True

    # -- faults ---------------------------------------------------------------------
    def _open_idx(self, proc: int | None = None) -> np.ndarray:
        mask = self.phase == OPEN
        if proc is not None and self.cfg.workers > 1:
            mask &= self.conn_proc == proc
        return np.flatnonzero(mask)

    def _reset_queue(self, t: float, tick: int) -> None:
        self._drop_all(t, tick)

    def _fire(self, f: FaultAt, tick: int) -> None:
        t = tick * self.dt
        p = f.params
        ok, detail = True, ""
        if f.action == "restart":
            proc = p.get("proc")
            if p.get("mode", "all") == "drain":
                self._drain(p, t, tick)
                detail = "drain"
            else:
                down = float(p.get("down", 0.0))
                self._close_paced(self._open_idx(proc), tick)
                up = tick + round(down / self.dt)
                if proc is None or self.cfg.workers == 1:
                    self._reset_queue(t, tick)
                    self.proc_up_tick[:] = up
                    self._clear_zombies(tick)
                else:
                    self.proc_up_tick[int(proc)] = up
        elif f.action == "crash":
            down = float(p.get("down", 0.0))
            self._close(self._open_idx(), "1006", t, tick)
            self._reset_queue(t, tick)
            self._clear_zombies(tick)
            self.proc_up_tick[:] = tick + round(down / self.dt)
        elif f.action == "partition":
            self.partitioned = True
            idx = self._open_idx()
            self._arm_dead(idx, t, tick)
            # queued handshakes are cut off too: they hang until the client's connect timeout
            q = self._hang_all()
            q = q[self.phase[q] == QUEUED]  # their client-side connect timeouts are already set
            self.phase[q] = HANG
            if p.get("duration"):
                self._pending.append(FaultAt(f.at + float(p["duration"]), "heal", {"auto": True}))
                self._pending.sort(key=lambda x: x.at)
        elif f.action == "heal":
            self.partitioned = False
            # clients that have not noticed yet keep their connection
            idx = np.flatnonzero((self.phase == OPEN) & (self.ev == EV_DEAD))
            self._cancel(idx)
            self._clear_zombies(tick)
        elif f.action == "reset":
            self._close(self._open_idx(), "1006", t, tick)
        elif f.action == "capacity":
            if "capacity" in p:
                self.cap_total = int(p["capacity"])
            if "handshake_rate" in p:
                self.rate_total = float(p["handshake_rate"])
                if self.rate_total <= 0:
                    self.tokens = math.inf  # 0: the bucket is off
                elif not math.isfinite(self.tokens):
                    self.burst = max(1.0, self.rate_total / 10.0)  # the embedded target's bucket size
                    self.tokens = self.burst
        elif f.action == "overload":
            self.overload = str(p["mode"])
        else:
            ok, detail = False, f"{f.action} is not modelled by the simulator"
        self.fault_log.append({"at": t, "fault": f.action, "params": dict(p), "ok": ok, "detail": detail})

    def _close_paced(self, idx: np.ndarray, tick: int) -> None:
        """Close with 1012 as fast as the server's CPU sends close frames (all at once if that costs nothing)."""
        c = self.cfg
        per_tick = c.cpu_ms_per_s * self.dt / c.close_service_ms if c.close_service_ms > 0 else idx.size
        per_tick = max(1, int(per_tick))
        self.rng.shuffle(idx)
        if idx.size <= per_tick:
            self._close(idx, "1012", tick * self.dt, tick)
            return
        for j, a in enumerate(range(0, idx.size, per_tick)):
            part = idx[a : a + per_tick]
            self.drains.setdefault(tick + j, []).append((part, self.conn_seq[part].copy()))

    def _drain(self, p: dict[str, Any], t: float, tick: int) -> None:
        idx = self._open_idx(p.get("proc"))
        self.rng.shuffle(idx)
        batch = max(1, int(p.get("batch") or idx.size or 1))
        interval = float(p.get("interval") or 0.0)
        for j, a in enumerate(range(0, idx.size, batch)):
            part = idx[a : a + batch]
            at = tick + round(j * interval / self.dt)
            self.drains.setdefault(at, []).append((part, self.conn_seq[part].copy()))

    def _clear_zombies(self, tick: int) -> None:
        rest = int(self.zombie_release[tick + 1 :].sum())
        self.zombie_release[tick + 1 :] = 0
        self.conns -= rest

    # -- the run --------------------------------------------------------------------
    def run(self) -> ModelResult:
        """Run the model to the end of the scenario and return its series."""
        c = self.cfg
        n = c.clients
        self._pending = sorted(c.faults, key=lambda f: f.at)
        # users start as Locust starts them: a batch of spawn_rate users at the top of each second
        # (its dispatcher ticks once a second), and each connects at once
        start = np.floor(np.arange(n, dtype=np.float64) / c.spawn_rate + 1e-9)
        idx = np.arange(n, dtype=np.int64)
        self.phase[:] = WAIT
        self._schedule(idx, start, EV_ATTEMPT, -1)
        for tick in range(self.n_ticks):
            t = tick * self.dt
            while self._pending and self._pending[0].at <= t + 1e-9:
                self._fire(self._pending.pop(0), tick)
            for part, seq in self.drains.pop(tick, ()):
                live = part[(self.phase[part] == OPEN) & (self.conn_seq[part] == seq)]
                self._close(live, "1012", t, tick)
            if self.zombie_release[tick]:
                self.conns -= int(self.zombie_release[tick])
            frac = self._up_fraction(tick)
            if frac == 0.0:
                self.col["server_not_serving"][self._sec(tick)] = 1
            # capacity and the handshake budget are shared by all worker processes (and outlive a restart)
            if self.rate_total > 0:
                self.tokens = min(self.burst, self.tokens + self.rate_total * self.dt)
            self._give_up(tick, t)
            due = self.cal.pop(tick, self.serial)
            if due is not None:
                self._due(due, tick, t, frac)
            self._serve(tick, t)
            self.connected_tick[tick] = self.connected
            if (tick + 1) % round(1 / self.dt) == 0 or tick == self.n_ticks - 1:
                s = self._sec(tick)
                self.col["connected"][s] = self.connected
                self.col["server_connections"][s] = self.conns
                self.col["server_queue_depth"][s] = self.in_flight
                self.col["capacity"][s] = self.cap_total
                self.col["handshake_rate"][s] = round(self.rate_total)
                self._settle_downtimes(t + self.dt)
        end = self.n_ticks * self.dt
        self._settle_downtimes(end, final=True)
        done = np.concatenate(self.downtimes) if self.downtimes else np.empty(0)
        still = self.down_since[~np.isnan(self.down_since)]
        downtimes = np.concatenate([done, end - still])
        recovered = np.concatenate([np.ones(done.size, bool), np.zeros(still.size, bool)])
        series = {"s": np.arange(self.n_sec, dtype=np.int64), **self.col}
        return ModelResult(
            series=series,
            connected_tick=self.connected_tick,
            dt=self.dt,
            downtimes=downtimes,
            recovered=recovered,
            faults=self.fault_log,
            totals=dict(self.totals),
        )

    def _give_up(self, tick: int, t: float) -> None:
        """Clients whose attempt is still unanswered connect_timeout after it began stop waiting.

        A FIFO rather than calendar entries: every attempt waits the same time, so arrival order is
        timeout order, and an attempt answered in time costs nothing here.
        """
        before = tick - self.ct_ticks + 1
        chunks = self.patience.chunks
        first = chunks[0][0] if chunks else None  # arrival ticks never decrease along the FIFO
        late = self.patience.expire(before)
        if late is None:
            return
        idx, seq = late
        ph = self.phase[idx]
        hung = idx[(self.att_seq[idx] == seq) & ((ph == QUEUED) | (ph == HANG))]
        if hung.size:
            # a pending calendar entry of a hung attempt is this very timeout: _react replaces it
            if first == before - 1:  # all arrived (started their attempt) in one tick: no per-client count
                self._count_started_now("attempts_timeout", hung.size, before - 1)
            else:
                self._count_attempts("attempts_timeout", hung)
            self._react(hung, "timeout", t, tick)

    def _due(self, due: np.ndarray, tick: int, t: float, frac: float) -> None:
        whole = due.size == self.cfg.clients and due.size > 1  # every client, once each
        if whole:
            all_attempts = bool((self.ev == EV_ATTEMPT).all())
        else:
            kinds = self.ev[due]
            all_attempts = bool((kinds == EV_ATTEMPT).all())
        if all_attempts:  # the common case: skip sorting the due clients by kind
            if whole:
                self.ev.fill(EV_NONE)
            else:
                self.ev[due] = EV_NONE
            self._attempt(due, tick, t, frac, whole)
            return
        if whole:
            kinds = self.ev[due]
        self.ev[due] = EV_NONE
        dead = due[kinds == EV_DEAD]
        if dead.size:
            # the client gives up on a silent peer; the server holds the slot until its own keepalive fires
            self.phase[dead] = WAIT
            self.connected -= dead.size
            self.col["closes_1006"][self._sec(tick)] += dead.size
            rel = tick + np.ceil(
                self.rng.uniform(self.cfg.server_ping, 2 * self.cfg.server_ping, dead.size) / self.dt
            ).astype(np.int64)
            rel = np.minimum(rel, self.n_ticks + 1)
            np.add.at(self.zombie_release, rel, 1)
            self._lose(dead, t)
            self._react(dead, "1006", t, tick, uptime=t - self.open_t[dead])
        hung = due[kinds == EV_TIMEOUT]
        if hung.size:
            self._count_attempts("attempts_timeout", hung)
            self._react(hung, "timeout", t, tick)
        att = due[kinds == EV_ATTEMPT]
        if att.size:
            self._attempt(att, tick, t, frac, False)

    def _attempt(self, att: np.ndarray, tick: int, t: float, frac: float, whole: bool) -> None:
        """Clients att start an attempt now (whole: att is every client once)."""
        if whole:
            self.att_t.fill(t)
            self.att_seq += 1
        else:
            self.att_t[att] = t
            self.att_seq[att] += 1
        if self.partitioned:
            self.phase[att] = HANG
            self._schedule(att, t + self.cfg.connect_timeout, EV_TIMEOUT, tick)
        elif frac == 0.0:
            self._count_started_now("attempts_refused", att.size, tick)
            self._react(att, "refused", t, tick)
        else:
            if whole:
                self.phase.fill(QUEUED)
            else:
                self.phase[att] = QUEUED
            seq = self.att_seq[att]  # a copy (fancy indexing)
            self._arrive(tick, att, seq)
            # the client gives up after connect_timeout; the server does not know and keeps the attempt
            self.patience.push(tick, att, seq)
