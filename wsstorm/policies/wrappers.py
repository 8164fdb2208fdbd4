"""Wrappers around a preset: the retry budget (a token bucket per client)."""

from __future__ import annotations

from dataclasses import dataclass

from wsstorm.policies.params import Param, fmt


@dataclass(frozen=True)
class BudgetSpec:
    """A retry budget (token bucket): `tokens` capacity, `cost` per retry, `refund` per open, `refill`/s."""

    tokens: float = 10.0
    cost: float = 1.0
    refund: float = 1.0
    refill: float = 0.0
    wait: float = 0.0  # 0: give up when the bucket is short; 1: wait until it has refilled

    def __str__(self) -> str:
        parts = [
            f"{prm.name}={fmt(getattr(self, prm.name))}"
            for prm in BUDGET_PARAMS
            if getattr(self, prm.name) != prm.default
        ]
        return "budget" + (":" + ",".join(parts) if parts else "")


BUDGET_PARAMS: tuple[Param, ...] = (
    Param("tokens", 10.0, lo=1e-9, help="bucket capacity (starts full)"),
    Param("cost", 1.0, help="tokens a retry takes"),
    Param("refund", 1.0, help="tokens a successful open gives back"),
    Param("refill", 0.0, help="tokens per second of elapsed time"),
    Param("wait", 0.0, choices=(0.0, 1.0), help="0: give up when short; 1: wait for refill"),
)
