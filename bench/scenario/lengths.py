"""Length distributions of a scenario (prompt and output tokens): a fixed value, uniform,
normal or log-normal, or a bare integer for a fixed one."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from bench.scenario.base import NonNegFloat, OrBare, PositiveFloat, Strict

__all__ = ["Fixed", "LengthDist", "LogNormal", "Normal", "Uniform", "coerce_length"]

class Fixed(Strict):
    dist: Literal["fixed"] = "fixed"
    value: Annotated[int, Field(ge=1)]


class Uniform(Strict):
    dist: Literal["uniform"]
    min: Annotated[int, Field(ge=1)]
    max: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class Normal(Strict):
    dist: Literal["normal"]
    mean: PositiveFloat
    std: NonNegFloat
    min: Annotated[int, Field(ge=1)] = 1
    max: Annotated[int, Field(ge=1)] | None = None


class LogNormal(Strict):
    """`mean` is the mean of the distribution in tokens; `sigma` the log-space spread."""

    dist: Literal["lognormal"]
    mean: PositiveFloat
    sigma: NonNegFloat
    min: Annotated[int, Field(ge=1)] = 1
    max: Annotated[int, Field(ge=1)] | None = None


LengthDist = Annotated[Fixed | Uniform | Normal | LogNormal, Field(discriminator="dist"),
                       OrBare("integer", 1)]


def coerce_length(value: Any) -> Any:
    # A bare integer is the common case: `prompt_tokens: 256`.
    if isinstance(value, int) and not isinstance(value, bool):
        return {"dist": "fixed", "value": value}
    return value
