"""Several models in one run (`target.models`): the names and their traffic split.

`{name: weight, ...}`: each drawn prompt goes to one model, drawn with probability weight /
sum of weights from a generator seeded by the scenario seed; `[name, ...]`: in turn
(round-robin). The draw itself is the workload's (`bench.workload.requests`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from bench.scenario.base import PositiveFloat

__all__ = ["ModelSplit", "ModelWeights", "model_split"]

_Name = Annotated[str, Field(min_length=1)]


def _check(value: dict[str, float] | list[str]) -> dict[str, float] | list[str]:
    if not value:
        raise ValueError("give at least one model")
    names = list(value)
    if isinstance(value, list) and len(set(names)) != len(names):
        raise ValueError(f"a model is named twice: {sorted({n for n in names if names.count(n) > 1})}")
    if any(not n.strip() for n in names):
        raise ValueError("a model name is empty or only whitespace")
    return value


ModelWeights = Annotated[dict[_Name, PositiveFloat] | list[_Name], AfterValidator(_check)]


@dataclass(frozen=True)
class ModelSplit:
    """The models of a run and how requests are split between them: `weights` as shares
    summing to 1, or None for round-robin."""

    names: tuple[str, ...]
    weights: tuple[float, ...] | None

    @property
    def first(self) -> str:
        return self.names[0]


def model_split(models: Any) -> ModelSplit | None:
    """The split of a validated `target.models` (None when unset)."""
    if not models:
        return None
    if isinstance(models, dict):
        total = float(sum(models.values()))
        return ModelSplit(tuple(models), tuple(float(w) / total for w in models.values()))
    return ModelSplit(tuple(models), None)
