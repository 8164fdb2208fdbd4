"""Numeric helpers shared by the rules: exact growth curves (vector and scalar twins) and the delay clamp."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

Arr = np.ndarray  # float64 (or int64 for counts) arrays, one element per client

MAX_DELAY = 1e12  # s; every delay is clamped here so it stays finite even with cap=inf


def grow(base: Arr | float, factor: Arr | float, exp: Arr, cap: float) -> Arr:
    """min(cap, base * factor**exp), exact for small exponents, never NaN (0*inf) and never inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.fmin(np.multiply(base, np.power(float(factor), exp, dtype=np.float64)), 1e300)
    v = np.where(np.greater(base, 0), v, 0.0)  # fmin turned 0*inf (NaN) into 1e300
    return np.minimum(v, cap)


POW_TABLE_TOP = 1024  # exponents -1..POW_TABLE_TOP come from the table; beyond (rare), one numpy call


@lru_cache(maxsize=64)
def pow_table(factor: float) -> tuple[float, ...]:
    """factor**e for e = -1..POW_TABLE_TOP, computed by numpy so the scalar twin matches it bit for bit.

    numpy's vectorised power is not libm's pow (they differ in the last bit for ~5% of inputs),
    so the scalar path must not use `**` or math.pow.
    """
    with np.errstate(over="ignore"):
        return tuple(np.power(float(factor), np.arange(-1, POW_TABLE_TOP + 1), dtype=np.float64).tolist())


def grow1(base: float, factor: float, exp: int, cap: float) -> float:
    """Scalar twin of :func:`grow` (same floats, bit for bit)."""
    if -1 <= exp <= POW_TABLE_TOP:
        pw = pow_table(factor)[exp + 1]
    else:
        with np.errstate(over="ignore"):
            pw = float(np.power(float(factor), np.array([exp], dtype=np.int64), dtype=np.float64)[0])
    if not base > 0:
        return 0.0 if cap >= 0.0 else cap
    v = base * pw
    if not v <= 1e300:  # also NaN (0*inf), as np.fmin does
        v = 1e300
    return v if v <= cap else cap


def nan_like(k: Arr) -> Arr:
    """NaN (give up) for every client of `k`."""
    return np.full(k.shape, np.nan)


FLOAT_MAX = float(np.finfo(np.float64).max)  # what np.nan_to_num turns inf into
