"""The simulated server's handshake pipeline, one tick at a time (a mixin of the FleetModel).

An attempt pays, in order, as the embedded target does (wsstorm.target.costs): work before the
admission decision, paid by every attempt (the library's handshake, TLS, ``attempt_cost_ms``);
then, if there is a dependency store, a wait for one of its ``store_concurrency`` slots and
``store_ms`` there; then the admission decision (capacity, and the token bucket if it is on);
then, once admitted, the session work (``handshake_cost_ms``, ``session_cost_ms``). The server
works through its queue in arrival order and does not know that a client has given up: it
finishes the work anyway (abandoned, all of it wasted). Its own handshake timeout sheds
attempts that waited longer than ``handshake_timeout`` before it started them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from wsstorm.sim.queues import Fifo, join

if TYPE_CHECKING:
    from wsstorm.sim.fleetmodel import ModelConfig

# client phases (shared with fleetmodel)
IDLE, WAIT, QUEUED, OPEN, HANG, GONE = 0, 1, 2, 3, 4, 5


class ServerPipeline:
    """Queues and accounting of the server; the client-side reactions (_open, _react ...) come from FleetModel."""

    cfg: ModelConfig
    dt: float
    phase: np.ndarray
    att_seq: np.ndarray
    col: dict[str, np.ndarray]
    pol: Any
    overload: str
    cap_total: int
    conns: int
    cpu: float

    if TYPE_CHECKING:  # provided by FleetModel

        def _sec(self, tick: int) -> int: ...
        def _up_fraction(self, tick: int) -> float: ...
        def _count_attempts(self, column: str, idx: np.ndarray) -> None: ...
        def _open(self, idx: np.ndarray, t: float, tick: int) -> None: ...
        def _lose(self, idx: np.ndarray, t: float) -> None: ...
        def _react(
            self,
            idx: np.ndarray,
            outcome: str,
            t: float,
            tick: int,
            uptime: np.ndarray | None = None,
            retry_after: float | None = None,
        ) -> None: ...

    def _init_server(self) -> None:
        c = self.cfg
        self.tls_q = Fifo()  # TLS handshakes waiting for the server's CPU (stage 1, with TLS only)
        self.pre_q = Fifo()  # upgrade requests waiting for the server's CPU (stage 2: library + attempt cost)
        self.store_q = Fifo()  # waiting for a free slot of the dependency store
        self.post_q = Fifo()  # admitted, waiting for the server's CPU (stage 3: session work, with a store only)
        self.store_done: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        self.tls_job = c.tls_ms
        self.pre_ms = c.reject_service_ms + c.attempt_cost_ms
        self.post_ms = max(0.0, c.handshake_service_ms - c.reject_service_ms) + c.session_cost_ms
        self.store_on = c.store_concurrency > 0 and c.store_ms > 0
        self.store_ms = c.store_ms if self.store_on else 0.0
        self.store_ticks = max(1, math.ceil(self.store_ms / 1000.0 / self.dt - 1e-9)) if self.store_on else 0
        self.store_budget = 0.0
        self.shed_ticks = round(c.handshake_timeout / self.dt) if c.handshake_timeout > 0 else 1 << 40
        self.tokens = c.burst if c.handshake_rate > 0 else math.inf

    def _arrive(self, tick: int, idx: np.ndarray, seq: np.ndarray) -> None:
        """New connections: their first job is the TLS handshake, or (plain ws) the upgrade request."""
        self.col["server_attempts"][self._sec(tick)] += idx.size  # the target counts them at TCP accept
        (self.tls_q if self.tls_job > 0 else self.pre_q).push(tick, idx, seq)

    @property
    def in_flight(self) -> int:
        """Attempts the server holds (any stage)."""
        return (
            self.tls_q.size
            + self.pre_q.size
            + self.store_q.size
            + self.post_q.size
            + sum(p[1].size for parts in self.store_done.values() for p in parts)
        )

    def _live(self, idx: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Which entries still have their client waiting on this very attempt."""
        live: np.ndarray = (self.att_seq[idx] == seq) & (self.phase[idx] == QUEUED)
        return live

    def _waste(self, tick: int, ms: float) -> None:
        """Work for nothing: it is part of all the attempt work too (the target's work_ms)."""
        if ms:
            self.col["server_wasted_ms"][self._sec(tick)] += ms
            self.col["server_work_ms"][self._sec(tick)] += ms

    # -- outcomes -------------------------------------------------------------------
    def _admitted(self, idx: np.ndarray, seq: np.ndarray, t: float, tick: int, cost: float) -> None:
        """Handshakes done: a live client opens (goodput); a gone one was served for nothing (abandoned)."""
        if idx.size == 0:
            return
        s = self._sec(tick)
        live = self._live(idx, seq)
        n_live = int(np.count_nonzero(live))
        self.col["server_accepted"][s] += idx.size
        self.col["server_goodput"][s] += n_live
        self.col["server_work_ms"][s] += n_live * cost  # the gone ones' share is added as waste
        gone = idx.size - n_live
        if gone:
            self.col["server_abandoned"][s] += gone
            self._waste(tick, gone * cost)
        ok = idx if n_live == idx.size else idx[live]
        if ok.size:
            self._count_attempts("attempts_open", ok)
            self._open(ok, t, tick)

    def _rejected(self, idx: np.ndarray, seq: np.ndarray, t: float, tick: int, cost: float) -> None:
        """Turned away after the pre-admission work (all of it wasted); gone clients count as abandoned."""
        if idx.size == 0:
            return
        s = self._sec(tick)
        self.col["server_rejected"][s] += idx.size
        self._waste(tick, idx.size * cost)
        live = self._live(idx, seq)
        no = idx[live]
        if no.size < idx.size:
            self.col["server_abandoned"][s] += idx.size - no.size
        if no.size == 0:
            return
        c = self.cfg
        if self.overload == "close":
            # accepted, then closed at once with 1013: the policy sees an open, then a close
            self._count_attempts("attempts_1013", no)
            self.col["closes_1013"][s] += no.size
            self.pol.opened(no)
            self._lose(no, t)
            self._react(no, "1013", t, tick, uptime=np.zeros(no.size), retry_after=c.retry_after)
        elif self.overload == "http":
            self._count_attempts("attempts_http_503", no)
            self._react(no, "http_503", t, tick, retry_after=c.retry_after)
        else:
            self._count_attempts("attempts_refused", no)
            self._react(no, "refused", t, tick)

    def _cut(self, idx: np.ndarray, seq: np.ndarray, t: float, tick: int, cost: float, outcome: str = "reset") -> None:
        """The server drops attempts it holds (its handshake timeout, a restart): the work so far is wasted;
        clients still waiting see their connection cut."""
        if idx.size == 0:
            return
        self._waste(tick, idx.size * cost)
        live = idx[self._live(idx, seq)]
        if live.size:
            self._count_attempts("attempts_other", live)
            self._react(live, outcome, t, tick)

    def _shed(self, tick: int, t: float) -> None:
        """The server's handshake timeout (websockets' open_timeout, which starts once TLS is done): upgrade
        requests not yet started after handshake_timeout are dropped."""
        late = self.pre_q.expire(tick - self.shed_ticks)
        if late is not None:
            self.col["server_rejected"][self._sec(tick)] += late[0].size
            self._cut(late[0], late[1], t, tick, self.tls_job)

    def _drop_all(self, t: float, tick: int) -> None:
        """A restart or crash kills every handshake in flight."""
        self._cut(*self.tls_q.clear(), t, tick, 0.0)
        self._cut(*self.pre_q.clear(), t, tick, self.tls_job)
        before_store = self.tls_job + self.pre_ms
        self._cut(*self.store_q.clear(), t, tick, before_store)
        for parts in self.store_done.values():
            self._cut(*join(parts), t, tick, before_store + self.store_ms)
        self.store_done.clear()
        self._cut(*self.post_q.clear(), t, tick, before_store + self.store_ms)

    def _hang_all(self) -> np.ndarray:
        """A partition: the server never hears of the attempts it holds again; their clients hang."""
        held = [q.clear()[0] for q in (self.tls_q, self.pre_q, self.store_q, self.post_q)]
        held += [join(parts)[0] for parts in self.store_done.values()]
        self.store_done.clear()
        return np.concatenate(held)

    # -- one tick -------------------------------------------------------------------
    def _room(self) -> int:
        """Admissions possible now: capacity left (admitted-but-unfinished reserve a slot) and tokens."""
        room = max(0, self.cap_total - self.conns - self.post_q.size)
        return int(min(room, self.tokens)) if math.isfinite(self.tokens) else room

    def _take_token(self, n: int) -> None:
        if math.isfinite(self.tokens):
            self.tokens -= n

    def _serve(self, tick: int, t: float) -> None:
        c = self.cfg
        frac = self._up_fraction(tick)
        if frac == 0.0:
            return
        self._shed(tick, t)
        per_tick = c.cpu_ms_per_s * frac * self.dt
        job = self.tls_job + self.pre_ms + self.post_ms
        # unused time carries over one tick only (an idle server does not bank it), but always
        # enough for one handshake, or a service time longer than two ticks would never finish
        self.cpu = min(self.cpu + per_tick, max(2 * per_tick, job + per_tick))
        if not self.store_on:
            self._serve_cpu(tick, t)
            return
        self._store_replies(tick, t)
        share = self.cfg.store_cpu_share
        if share > 0:
            # one set of cores for both: the store's busy threads and the serving loop share them
            loop_busy = bool(self.tls_q.size or self.pre_q.size or self.post_q.size)
            self.cpu -= self._serve_store(tick, max(0.0, min(self.cpu, per_tick * share if loop_busy else self.cpu)))
            self._serve_cpu(tick, t)
        else:
            self._serve_cpu(tick, t)
            self._serve_store(tick)

    def _afford(self, cost: float, n: int) -> int:
        return n if cost <= 0 else min(n, int(self.cpu / cost + 1e-9))

    def _serve_cpu(self, tick: int, t: float) -> None:
        """One event loop: jobs of every stage in the order they became ready (a TLS handshake of a new
        connection runs before the session work of a client whose store reply came back later)."""
        queues = ((self.post_q, self._do_post), (self.pre_q, self._do_pre), (self.tls_q, self._do_tls))
        while True:
            best = None
            for q, do in queues:  # at equal ready ticks the later stage goes first: it is the older attempt
                if q.size and (best is None or q.chunks[0][0] < best[0].chunks[0][0]):
                    best = (q, do)
            if best is None:
                return
            q, do = best
            head = q.chunks[0][1].size
            if do(head, tick, t) < head:
                return  # out of CPU: the rest wait

    def _do_tls(self, n: int, tick: int, t: float) -> int:
        """TLS handshakes; a client still there then sends its upgrade request (a new job), one gone does not."""
        n = self._afford(self.tls_job, n)
        idx, seq = self.tls_q.take(n)
        self.cpu -= n * self.tls_job
        live = self._live(idx, seq)
        if not live.all():
            self._waste(tick, (idx.size - int(np.count_nonzero(live))) * self.tls_job)
            idx, seq = idx[live], seq[live]
        self.pre_q.push(tick, idx, seq)
        return n

    def _do_pre(self, n: int, tick: int, t: float) -> int:
        """Upgrade requests (library + attempt cost). Without a store the decision and the session work follow
        at once (nothing yields in between); with one, the request waits for the store."""
        spent = self.tls_job + self.pre_ms
        if self.store_on:
            n = self._afford(self.pre_ms, n)
            self.store_q.push_parts(self.pre_q.take_parts(n))
            self.cpu -= n * self.pre_ms
            return n
        admit = min(n, self._room())
        n_ok = self._afford(self.pre_ms + self.post_ms, admit)
        idx, seq = self.pre_q.take(n_ok)
        self.cpu -= n_ok * (self.pre_ms + self.post_ms)
        self._take_token(n_ok)
        self._admitted(idx, seq, t, tick, spent + self.post_ms)
        if n_ok < admit or n_ok == n:
            return n_ok
        n_no = self._afford(self.pre_ms, n - n_ok)  # no room or no token left: the rest are turned away
        idx, seq = self.pre_q.take(n_no)
        self.cpu -= n_no * self.pre_ms
        self._rejected(idx, seq, t, tick, spent)
        return n_ok + n_no

    def _do_post(self, n: int, tick: int, t: float) -> int:
        """Session work of admitted attempts (after their store reply)."""
        n = self._afford(self.post_ms, n)
        idx, seq = self.post_q.take(n)
        self.cpu -= n * self.post_ms
        self._admitted(idx, seq, t, tick, self.tls_job + self.pre_ms + self.store_ms + self.post_ms)
        return n

    def _store_replies(self, tick: int, t: float) -> None:
        """Store replies that came back: the admission decision (a request past the server's timeout is shed)."""
        done = self.store_done.pop(tick, None)
        if not done:
            return
        spent = self.tls_job + self.pre_ms + self.store_ms
        late = [p for p in done if p[0] < tick - self.shed_ticks]
        if late:
            done = [p for p in done if p[0] >= tick - self.shed_ticks]
            idx, seq = join(late)
            self.col["server_rejected"][self._sec(tick)] += idx.size
            self._cut(idx, seq, t, tick, spent)
        idx, seq = join(done)
        if idx.size:
            n_ok = min(idx.size, self._room())
            self._take_token(n_ok)
            self.post_q.push(tick, idx[:n_ok], seq[:n_ok])
            self._rejected(idx[n_ok:], seq[n_ok:], t, tick, spent)

    def _serve_store(self, tick: int, cpu_ms: float = math.inf) -> float:
        """The store: store_concurrency slots of store_ms each, in arrival order, within ``cpu_ms`` of CPU when
        it shares the server's cores; returns the CPU ms it used."""
        per_tick = self.cfg.store_concurrency * self.dt * 1000.0
        self.store_budget = min(self.store_budget + per_tick, max(2 * per_tick, self.store_ms + per_tick))
        if not self.store_q.size:
            return 0.0
        n = min(self.store_q.size, int(min(self.store_budget, cpu_ms) / self.store_ms + 1e-9))
        if n:
            self.store_budget -= n * self.store_ms
            self.store_done.setdefault(tick + self.store_ticks, []).extend(self.store_q.take_parts(n))
        return n * self.store_ms
