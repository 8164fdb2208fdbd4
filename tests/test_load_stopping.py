"""session.mark_stopping: the stop a stop timeout asks for, without Locust's greenlet per user."""

from __future__ import annotations

import gevent
import locust.runners
from locust import User, events, task
from locust.env import Environment

import pytest

from wsstorm.load.session import mark_stopping


class Held(User):
    """Stands in for WebSocketUser: marked, Locust's own stop(), a task that never returns."""

    wsstorm_user = True
    fixed_count = 6

    @task
    def hold(self) -> None:
        while True:
            gevent.sleep(3600)


class OwnStop(Held):
    """Its stop() is its own: left to Locust."""

    fixed_count = 2

    def stop(self, force: bool = False) -> bool:
        return super().stop(force)


class Plain(User):
    """Not a wsstorm user: left to Locust."""

    fixed_count = 2

    @task
    def hold(self) -> None:
        while True:
            gevent.sleep(3600)


def test_marked_users_stop_without_a_greenlet_each(monkeypatch: pytest.MonkeyPatch) -> None:
    env = Environment(user_classes=[Held, OwnStop, Plain], events=events, stop_timeout=0.2)
    runner = env.create_local_runner()
    runner.start(10, spawn_rate=100)
    for _ in range(200):  # bounded: the spawning greenlet starts them in a turn or two
        if runner.user_count == 10:
            break
        gevent.sleep(0.01)
    assert runner.user_count == 10
    assert mark_stopping(runner) == 6
    assert (
        sorted(type(g.args[0]).__name__ for g in runner.user_greenlets if g.args[0]._state == "stopping")
        == ["Held"] * 6
    )
    spawned: list[object] = []
    real = locust.runners.gevent.spawn_later

    def counting(seconds: float, fn: object, *args: object, **kw: object) -> object:
        spawned.append(getattr(fn, "__self__", None))
        return real(seconds, fn, *args, **kw)

    monkeypatch.setattr(locust.runners.gevent, "spawn_later", counting)
    runner.stop()  # its test_stopping listener (wsstorm's) marks none again: all are marked or not ours
    assert sorted(type(u).__name__ for u in spawned) == ["OwnStop", "OwnStop", "Plain", "Plain"]
    assert runner.user_count == 0
    runner.quit()
