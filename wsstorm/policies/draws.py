"""Seeded uniforms on plain ints (splitmix64): the randomness of one client, with no numpy and no state object."""

from __future__ import annotations

from collections.abc import Callable

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment: 2**64 / the golden ratio


def _mix64(z: int) -> int:
    """splitmix64's finaliser (Steele, Lea and Flood 2014): a bijection of 64-bit words that avalanches."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def stream_unit(seed: int, k: int) -> float:
    """The k-th uniform in [0, 1) of the splitmix64 stream of ``seed`` (k >= 1), without holding a stream."""
    return (_mix64((int(seed) + k * _GOLDEN) & _M64) >> 11) * 1.1102230246251565e-16  # 53 bits -> [0, 1)


def client_uniforms(seed: int = 0, process_seed: int = 0) -> Callable[[], float]:
    """The uniform source of `spec.client(seed, process_seed)`: spec.ndraws calls per decision, in order.

    A splitmix64 stream, not a Mersenne Twister: a Locust process holds one per user, and MT's 2.5 KiB
    of state and ~20 us of seeding were a fifth of a held connection's memory and a storm's CPU."""
    state = [_mix64((_mix64((int(seed) & _M64) ^ _GOLDEN) + (int(process_seed) & _M64)) & _M64)]

    def uniform() -> float:
        z = state[0] = (state[0] + _GOLDEN) & _M64
        return (_mix64(z) >> 11) * 1.1102230246251565e-16  # 53 bits -> [0, 1)

    return uniform
