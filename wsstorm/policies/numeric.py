"""Numeric helpers shared by the rules: numpy on first use, exact growth curves (twins) and the delay clamp.

A Locust process decides on plain floats (the scalar twins) and never imports numpy: numpy's
~15 MiB would be a tenth of its memory at 10,000 connections. The vector rules reach numpy
through `np` below, which imports it when a vector function first runs (the simulator, the
report, `wsstorm policies`); tests/test_load_numpy_free.py holds the load side to it.
"""

from __future__ import annotations

import math
import sys
import types
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import numpy as np
else:

    class _Numpy(types.ModuleType):
        """numpy, imported at the first attribute read; later reads are plain module attributes."""

        def __getattr__(self, name: str) -> Any:
            import numpy

            self.__dict__.update(numpy.__dict__)
            return getattr(numpy, name)

    np = _Numpy("numpy")

__all__ = ["FLOAT_MAX", "MAX_DELAY", "POW_TABLE_TOP", "Arr", "grow", "grow1", "nan_like", "np", "pow1", "pow_table"]

Arr: TypeAlias = "np.ndarray[Any, Any]"  # float64 (or int64 for counts) arrays, one element per client

MAX_DELAY = 1e12  # s; every delay is clamped here so it stays finite even with cap=inf
FLOAT_MAX = sys.float_info.max  # what np.nan_to_num turns inf into

POW_TABLE_TOP = 1024  # exponents -1..POW_TABLE_TOP come from the table; beyond (rare), one pow each


def pow1(factor: float, exp: int) -> float:
    """factor**exp by the C library's pow (inf past the largest float): the one power both twins use.

    numpy's vectorised power is not libm's (its SIMD loops differ in the last bit for ~4% of
    inputs, and by CPU), so the vector twin reads this function's table instead of np.power.
    """
    try:
        return float(factor) ** int(exp)
    except OverflowError:
        return math.inf


@lru_cache(maxsize=64)
def pow_table(factor: float) -> tuple[float, ...]:
    """factor**e for e = -1..POW_TABLE_TOP, by :func:`pow1`."""
    return tuple(pow1(factor, e) for e in range(-1, POW_TABLE_TOP + 1))


@lru_cache(maxsize=64)
def _pow_array(factor: float) -> Arr:
    a = np.array(pow_table(factor), dtype=np.float64)
    a.flags.writeable = False
    return a


def grow(base: Arr | float, factor: float, exp: Arr, cap: float) -> Arr:
    """min(cap, base * factor**exp), exact for small exponents, never NaN (0*inf) and never inf."""
    tab = _pow_array(float(factor))
    i = np.asarray(exp, dtype=np.int64) + 1
    pw = tab[np.clip(i, 0, tab.size - 1)]
    beyond = (i < 0) | (i >= tab.size)
    if beyond.any():  # a retry count past the table: rare, one pow each
        pw[beyond] = [pow1(factor, int(e) - 1) for e in i[beyond].tolist()]
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.fmin(np.multiply(base, pw), 1e300)  # 0*inf is NaN, which fmin turns into 1e300
    v = np.where(np.greater(base, 0), v, 0.0)
    out: Arr = np.minimum(v, cap)
    return out


def grow1(base: float, factor: float, exp: int, cap: float) -> float:
    """Scalar twin of :func:`grow` (same floats, bit for bit)."""
    pw = pow_table(factor)[exp + 1] if -1 <= exp <= POW_TABLE_TOP else pow1(factor, exp)
    if not base > 0:
        return 0.0 if cap >= 0.0 else cap
    v = base * pw
    if not v <= 1e300:  # also NaN (0*inf), as np.fmin does
        v = 1e300
    return v if v <= cap else cap


def nan_like(k: Arr) -> Arr:
    """NaN (give up) for every client of `k`."""
    return np.full(k.shape, np.nan)
