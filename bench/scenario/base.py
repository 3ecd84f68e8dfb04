"""The scenario schema's building blocks: the strict base model, number types, and the JSON
Schema marker for fields that also take a bare number."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler

__all__ = ["NonNegFloat", "OrBare", "PositiveFloat", "Strict"]

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class OrBare:
    """JSON Schema marker for a field whose before-validator also takes a bare number
    (`prompt_tokens: 256`, `think_time_s: 2`): the printed schema accepts it too."""

    json_type: Literal["integer", "number"]
    minimum: float

    def __get_pydantic_json_schema__(self, core: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"anyOf": [{"type": self.json_type, "minimum": self.minimum}, handler(core)]}
