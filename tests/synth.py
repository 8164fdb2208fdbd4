"""Synthetic run folders whose answers are known by construction (contract v1).

Reusable by any test: build a :class:`SynthRun`, add events/ticks/faults, then
``write(folder)``.  Scenario helpers (``restart_storm``, ``herd``, ``realistic``)
return a ready SynthRun together with the numbers analysis must find.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

T0 = 1_700_000_000.0


class SynthRun:
    """An in-memory run: events (per worker), server ticks, faults, manifest."""

    def __init__(
        self,
        run: str = "synth",
        t0: float = T0,
        policy: str = "full-jitter:base=0.5,cap=30",
        capacity: int = 1000,
        handshake_rate: int = 100,
    ) -> None:
        self.run, self.t0, self.policy = run, t0, policy
        self.capacity, self.handshake_rate = capacity, handshake_rate
        self.events: dict[str, list[dict]] = defaultdict(list)
        self.ticks: list[dict] = []
        self.faults: list[dict] = []
        self.server_faults: list[dict] = []
        self._conn: dict[str, int] = defaultdict(int)
        self._opened: dict[str, float] = {}
        self.manifest_extra: dict[str, Any] = {}

    # -- events (times are seconds after t0) ----------------------------------
    def _ev(self, user: str, t: float, event: str, conn: int | None = None, **extra: Any) -> None:
        worker = user.split("/", 1)[0] if "/" in user else "local"
        ev = {
            "v": 1,
            "t": self.t0 + t,
            "run": self.run,
            "worker": worker,
            "user": user,
            "conn": conn if conn is not None else max(self._conn[user], 1),
            "event": event,
        }
        ev.update(extra)
        self.events[worker].append(ev)

    def attempt(
        self, user: str, t: float, attempt: int = 1, planned_delay: float = 0.0, sched_err: float = 0.0
    ) -> None:
        """A connect attempt at t that the policy scheduled at t - sched_err."""
        self._ev(
            user,
            t,
            "attempt",
            self._conn[user] + 1,
            attempt=attempt,
            planned_delay=planned_delay,
            scheduled_t=self.t0 + t - sched_err,
        )

    def open(self, user: str, t: float, connect_ms: float = 1.0) -> None:
        self._conn[user] += 1
        self._opened[user] = t
        self._ev(user, t, "open", connect_ms=connect_ms)

    def fail(
        self, user: str, t: float, kind: str = "refused", status: int | None = None, retry_after: float | None = None
    ) -> None:
        self._ev(
            user,
            t,
            "fail",
            self._conn[user] + 1,
            kind=kind,
            status=status,
            retry_after=retry_after,
            detail=f"synthetic {kind}",
        )

    def close(
        self, user: str, t: float, code: int = 1012, reason: str = "", by: str = "server", how: str | None = None
    ) -> None:
        extra: dict[str, Any] = {
            "code": code,
            "reason": reason,
            "by": by,
            "clean": code != 1006,
            "uptime_s": t - self._opened.pop(user, t),
        }
        if how:
            extra["how"] = how
        self._ev(user, t, "close", **extra)

    def wait(self, user: str, t: float, delay: float, after_code: int | str) -> None:
        self._ev(user, t, "wait", self._conn[user], delay=delay, policy=self.policy, after_code=after_code)

    def stop(self, user: str, t: float) -> None:
        if user in self._opened:
            self.close(user, t, code=1000, reason="stop", by="client")
        self._ev(user, t, "stop")

    def connect(self, user: str, t: float, attempt: int = 1, sched_err: float = 0.0) -> None:
        """An attempt at t that opens at once."""
        self.attempt(user, t, attempt=attempt, sched_err=sched_err)
        self.open(user, t)

    # -- server side -----------------------------------------------------------
    def tick(
        self,
        t: float,
        connections: int,
        accepted: int = 0,
        rejected_1013: int = 0,
        refused: int = 0,
        queue_depth: int = 0,
        state: str = "serving",
        proc: int = 0,
        **cost: Any,
    ) -> None:
        """One server tick; ``cost`` adds the cost model's optional counts (goodput, wasted_ms, abandoned,
        attempts, work_ms ...), which old runs do not have."""
        self.ticks.append(
            {
                "v": 1,
                "type": "tick",
                "t": self.t0 + t,
                "proc": proc,
                "state": state,
                "connections": connections,
                "capacity": self.capacity,
                "handshake_rate": self.handshake_rate,
                "accepted": accepted,
                "rejected": {"1013": rejected_1013, "http_503": 0, "refused": refused, "timeout": 0},
                "closes_sent": {"1012": 0, "1013": rejected_1013, "1000": 0, "1009": 0},
                "queue_depth": queue_depth,
                "cpu_pct": 10.0,
                "rss_bytes": 50_000_000,
                **cost,
            }
        )

    def echo(self, user: str, t: float, rtt_ms: float) -> None:
        """An echoed message came back after rtt_ms (collateral latency of a connected client)."""
        self._ev(user, t, "echo", rtt_ms=rtt_ms)

    def fault(self, t: float, fault: str = "restart", **params: Any) -> None:
        self.faults.append(
            {"v": 1, "t": self.t0 + t, "fault": fault, "params": params, "ok": True, "detail": "synthetic"}
        )

    def server_fault(self, t: float, fault: str = "restart", **params: Any) -> None:
        self.server_faults.append({"v": 1, "type": "fault", "t": self.t0 + t, "proc": 0, "fault": fault, **params})

    # -- output ----------------------------------------------------------------
    def manifest(self, duration_s: float) -> dict:
        m = {
            "v": 1,
            "run": self.run,
            "started": self.t0,
            "ended": self.t0 + duration_s,
            "host": "ws://127.0.0.1:9",
            "embedded_target": True,
            "policy": self.policy,
            "scenario": {"name": "synthetic", "description": "built by tests/synth.py"},
            "seed": 1,
            "users": len(self._conn),
            "spawn_rate": 100,
            "duration_s": duration_s,
            "options": {},
            "workers": sorted(self.events) or ["local"],
            "cpu_warnings": [],
            "versions": {"python": "3.11", "wsstorm": "0.1.0"},
            "machine": {"hostname": "synth", "cpus": 2},
            "target": {
                "capacity": self.capacity,
                "handshake_rate": self.handshake_rate,
                "handshake_cost_ms": 2,
                "overload": "close",
            },
            "simulated": False,
        }
        m.update(self.manifest_extra)
        return m

    def write(
        self, folder: str | Path, duration_s: float | None = None, server_log: bool = True, faults_log: bool = True
    ) -> Path:
        """Write the run folder (one events shard per worker) and return its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if duration_s is None:
            last = max((e["t"] for evs in self.events.values() for e in evs), default=self.t0)
            duration_s = math.ceil(last - self.t0) + 1
        (folder / "manifest.json").write_text(json.dumps(self.manifest(duration_s)))
        for worker, evs in self.events.items():
            evs = sorted(evs, key=lambda e: e["t"])
            with open(folder / f"events-{worker}.jsonl", "w") as fh:
                fh.writelines(json.dumps(e) + "\n" for e in evs)
        if server_log and (self.ticks or self.server_faults):
            lines = sorted(self.ticks + self.server_faults, key=lambda e: e["t"])
            (folder / "server.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
        if faults_log and self.faults:
            (folder / "faults.jsonl").write_text("".join(json.dumps(e) + "\n" for e in self.faults))
        return folder


# -- scenarios with known answers ----------------------------------------------


def restart_storm(
    n: int = 1000, t_restart: float = 10.0, spread: float = 10.0, end: float = 40.0, server_log: bool = True
) -> SynthRun:
    """n clients open at t=0..1; at t_restart all get 1012; client i reopens at
    t_restart + spread*(i+1)/n and holds until end.  T50 = spread/2, T95 = 0.95*spread,
    downtime of client i = spread*(i+1)/n; no wasted attempts."""
    r = SynthRun(handshake_rate=100)
    for i in range(n):
        u = f"local/{i}"
        r.connect(u, i / n)
    r.fault(t_restart, "restart", mode="all", down=0)
    for i in range(n):
        u = f"local/{i}"
        r.close(u, t_restart, code=1012, reason="service restart")
        r.wait(u, t_restart, delay=spread * (i + 1) / n, after_code=1012)
        r.connect(u, t_restart + spread * (i + 1) / n, sched_err=0.002)
    for i in range(n):
        r.stop(f"local/{i}", end)
    if server_log:
        for s in range(int(end)):
            r.tick(s, connections=n if s < t_restart else min(n, int(n * (s - t_restart) / spread)))
    return r


def herd(n: int = 1000, at: float = 5.0, budget: int = 100) -> SynthRun:
    """n attempts (and opens) inside the one second [at, at+1): herd factor n/budget."""
    r = SynthRun(handshake_rate=budget)
    r.fault(at, "restart", mode="all", down=0)
    for i in range(n):
        r.connect(f"local/{i}", at + 0.9 * i / n)
    for i in range(n):
        r.stop(f"local/{i}", at + 20)
    return r


def wasted_loop(n: int = 100, loops: int = 4, t_restart: float = 10.0, hold: float = 5.0) -> SynthRun:
    """n clients connected; restart at t_restart; each client then suffers `loops`
    accept-then-1013 cycles (0.1 s each, 0.5 s apart) and one refused attempt before
    an open held to the end: wasted attempts per recovered client = loops + 1;
    downtime (and recovery time) per client = 0.5*(loops+2)."""
    r = SynthRun(handshake_rate=50, capacity=1000)
    r.fault(t_restart, "restart", mode="all", down=0)
    for i in range(n):
        u = f"local/{i}"
        r.connect(u, 0.0)
    for i in range(n):
        u = f"local/{i}"
        t = t_restart
        r.close(u, t, code=1012, reason="restart")
        r.wait(u, t, 0.5, 1012)
        t += 0.5
        r.attempt(u, t)
        r.fail(u, t, kind="refused")
        r.wait(u, t, 0.5, "refused")
        for k in range(loops):
            t += 0.5
            r.connect(u, t, attempt=k + 2)
            r.close(u, t + 0.1, code=1013, reason="overloaded; retry-after=1")
            r.wait(u, t + 0.1, 0.4, 1013)
        t += 0.5
        r.connect(u, t)
    for i in range(n):
        r.stop(f"local/{i}", t_restart + 30)
    return r


def realistic(n_events: int = 1_000_000, users: int | None = None, seed: int = 1, duration: float = 300.0) -> SynthRun:
    """A plausible mixed run of about n_events events: restarts, 1013 loops,
    refusals, 503s, timeouts, 1006 drops; spread over two worker shards."""
    rng = random.Random(seed)
    users = users or max(n_events // 78, 1)
    r = SynthRun(run="bench", capacity=users, handshake_rate=max(users // 20, 1))
    disruptions = [duration * k / 5 for k in (1, 2, 3, 4)]
    for d in disruptions:
        r.fault(d, rng.choice(["restart", "crash", "partition"]), down=3)
    per_user = max(n_events // users, 8)
    codes = [1012, 1013, 1006, 1001]
    fails = [("refused", None), ("http_status", 503), ("http_status", 429), ("timeout", None), ("reset", None)]
    for i in range(users):
        u = f"w{i % 2}/{i}"
        t = rng.uniform(0, 10)
        n = 0
        attempt = 1
        while n < per_user - 4 and t < duration - 1:
            r.attempt(u, t, attempt=attempt, planned_delay=0.5, sched_err=abs(rng.gauss(0.003, 0.004)))
            n += 1
            if rng.random() < 0.25:
                kind, status = rng.choice(fails)
                r.fail(u, t + 0.01, kind=kind, status=status, retry_after=1.0 if status else None)
                d = rng.uniform(0.1, 3)
                r.wait(u, t + 0.01, d, f"http_{status}" if status else kind)
                n += 2
                attempt += 1
                t += d
                continue
            r.open(u, t + 0.005, connect_ms=5)
            attempt = 1
            nxt = next((d for d in disruptions if d > t), duration)
            up = min(rng.expovariate(1 / 8), nxt - t) if rng.random() < 0.9 else rng.uniform(0.01, 0.5)
            code = 1013 if up < 0.5 else rng.choice(codes)
            t += 0.005 + max(up, 0.001)
            if t >= duration - 1:
                break
            r.close(
                u,
                t,
                code=code,
                reason="<script>alert(1)</script>" if code == 1013 else "bye",
                by="none" if code == 1006 else "server",
                how="eof" if code == 1006 else None,
            )
            d = rng.uniform(0.05, 5)
            r.wait(u, t, d, code)
            n += 3
            t += d
        r.stop(u, duration)
    for s in range(int(duration)):
        r.tick(s, connections=int(users * 0.8), accepted=rng.randint(0, 300), rejected_1013=rng.choice([0, 0, 5]))
    return r


def metastable_storm(
    n: int = 200,
    t_restart: float = 10.0,
    down: float = 3.0,
    end: float = 60.0,
    recovers: bool = False,
    ramp: int = 100,
    echo_users: int = 20,
) -> SynthRun:
    """n clients join at `ramp` per second (goodput = ramp while they join); a restart at t_restart
    with `down` s down time (the trigger ends at t_restart + down); then every client retries each second.
    recovers=False: the server finishes only handshakes for clients already gone (goodput 0, all wasted)
    until the end, so the run is metastable (trigger_end = 13 s, goodput_before = ramp, goodput_after 0).
    recovers=True: everyone is back one second after the trigger ended (goodput n in that second).
    echo_users clients are never cut off and echo every second: 5 ms before the restart, 50 ms after."""
    r = SynthRun(handshake_rate=0, capacity=10_000)
    r.handshake_rate = 0  # the token bucket is off: the herd factor has no budget to divide by
    for i in range(n):
        r.connect(f"local/{i}", i / ramp)
    for i in range(echo_users):
        r.connect(f"local/e{i}", 0.0)
    r.fault(t_restart, "restart", mode="all", down=down)
    t_end = t_restart + down
    for i in range(n):
        u = f"local/{i}"
        r.close(u, t_restart, code=1012, reason="restart")
        r.wait(u, t_restart, down, 1012)
        if recovers:
            r.connect(u, t_end + 0.5)
        else:
            t = t_end
            while t < end - 1:
                r.attempt(u, t)
                r.fail(u, t + 0.9, kind="timeout")
                r.wait(u, t + 0.9, 0.1, "timeout")
                t += 1.0
    for s in range(int(end)):
        for i in range(echo_users):
            r.echo(f"local/e{i}", s + 0.5, 5.0 if s < t_restart else 50.0)
    for i in range(n):
        r.stop(f"local/{i}", end)
    for i in range(echo_users):
        r.stop(f"local/e{i}", end)
    for s in range(int(end)):
        joining = s < n / ramp
        if s < t_restart:
            good, wasted, att = (ramp if joining else 0), 0.0, (ramp if joining else 0)
        elif s < t_end:
            good, wasted, att = 0, 0.0, 0
        elif recovers:
            good, wasted, att = (n if s == int(t_end) else 0), 0.0, (n if s == int(t_end) else 0)
        else:
            good, wasted, att = 0, 5.0 * n, n
        r.tick(
            s,
            connections=echo_users + (min(n, (s + 1) * ramp) if s < t_restart else 0),
            accepted=good,
            state="serving" if not (t_restart <= s < t_end) else "restarting",
            goodput=good,
            wasted_ms=wasted,
            work_ms=wasted + 5.0 * good,
            abandoned=att if not recovers and s >= t_end else 0,
            attempts=att,
        )
    return r
