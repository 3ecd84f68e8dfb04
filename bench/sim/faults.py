"""Fault injection: which request gets which fault.

A fault spec is ``KIND[:key=value[,key=value...]]``, e.g. ``http_500:p=0.1``,
``drop:every=5,after=3``, ``stall:every=2,seconds=1.5``. Keys:

- ``p``: probability per request (seeded: the same seed and request order give the
  same choices), or ``every``: every k-th completion request (k, 2k, ...). One of the two;
  neither means every request.
- ``after``: content chunks written before a mid-stream fault (drop, malformed, stall).
- ``seconds``: length of a ``stall`` or the ``slow_headers`` delay.
- ``retry_after``: value of the ``Retry-After`` header of ``http_429`` / ``http_503``.

At most one fault applies to a request: the first matching spec in list order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "FAULT_KINDS",
    "MID_STREAM",
    "FaultKind",
    "FaultPlan",
    "FaultSpec",
    "mix",
    "parse_fault",
    "uniform",
]

FaultKind = Literal[
    "http_429", "http_500", "http_503", "drop", "malformed", "stall", "no_done", "slow_headers"
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]
MID_STREAM = frozenset({"drop", "malformed", "stall", "no_done"})


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    p: float | None = Field(default=None, ge=0.0, le=1.0)
    every: int | None = Field(default=None, ge=1)
    after: int = Field(default=2, ge=0)
    seconds: float = Field(default=2.0, ge=0.0)
    retry_after: float = Field(default=1.0, ge=0.0)

    @model_validator(mode="after")
    def _one_selector(self) -> FaultSpec:
        if self.p is not None and self.every is not None:
            raise ValueError("give either p= or every=, not both")
        return self

    def label(self) -> str:
        sel = f"p={self.p}" if self.p is not None else f"every={self.every or 1}"
        return f"{self.kind}:{sel}"


def parse_fault(spec: str) -> FaultSpec:
    """Parse ``KIND[:k=v,...]``; raises ValueError with the offending text."""
    kind, _, rest = spec.strip().partition(":")
    fields: dict[str, object] = {"kind": kind}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"fault {spec!r}: expected key=value, got {item!r}")
        fields[key.strip()] = value.strip()
    try:
        return FaultSpec.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"fault {spec!r}: {problems} (kinds: {', '.join(FAULT_KINDS)})") from None


def mix(*parts: int) -> int:
    """splitmix64 over the parts: a cheap, seedable, order-independent hash."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x


def uniform(*parts: int) -> float:
    """A deterministic float in [0, 1) from integer parts."""
    return (mix(*parts) >> 11) / float(1 << 53)


class FaultPlan:
    """Chooses the fault of the n-th (1-based) completion request."""

    def __init__(self, specs: list[FaultSpec], seed: int) -> None:
        self.specs = tuple(specs)
        self.seed = seed

    def pick(self, counter: int) -> FaultSpec | None:
        for i, spec in enumerate(self.specs):
            if spec.p is not None:
                if uniform(self.seed, 0xFA17, i, counter) < spec.p:
                    return spec
            elif counter % (spec.every or 1) == 0:
                return spec
        return None
