"""Server configurations of a `bench sweep --serve-params FILE`: a grid, a list, or both.

The file (YAML or JSON) names server parameters and their values::

    grid:                      # every combination, in file order
      max_num_seqs: [16, 64]
      enable_chunked_prefill: [true, false]
    configs:                   # and/or configurations spelt out, each with an optional name
      - {name: tp2, params: {tensor_parallel_size: 2}}

Each configuration becomes a `ServeConfig`: its name (given, or `key=value,...`) and its
parameters. How parameters become a command line is `bench.target.serve`'s concern.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.errors import BenchInputError
from bench.scenario.error_line import first_error_line
from bench.scenario.loader import read_mapping

__all__ = ["MAX_CONFIGS", "ParamValue", "ServeConfig", "ServeGrid", "config_name", "load_serve_grid"]

MAX_CONFIGS = 256  # a grid past this is a typo (a list where a scalar was meant), not a plan

ParamValue = str | int | float | bool | None
_PARAM_NAME = r"^-{0,2}[A-Za-z0-9][A-Za-z0-9_.-]*$"
ParamName = Annotated[str, Field(pattern=_PARAM_NAME)]
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,-]+")


class _Listed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.=,-]+$")] | None = None
    params: dict[ParamName, ParamValue] = Field(default_factory=dict)


class ServeGrid(BaseModel):
    """The `--serve-params` file: `grid` (name -> list of values) and/or `configs`."""

    model_config = ConfigDict(extra="forbid")

    grid: dict[ParamName, Annotated[list[ParamValue], Field(min_length=1)]] = Field(default_factory=dict)
    configs: list[_Listed] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some(self) -> ServeGrid:
        if not self.grid and not self.configs:
            raise ValueError("give grid (parameter: [values]) and/or configs (a list)")
        return self


@dataclass(frozen=True)
class ServeConfig:
    """One server configuration: `name` is safe as a directory name; `params` keep file order."""

    name: str
    params: dict[str, ParamValue]


def load_serve_grid(path: Path) -> list[ServeConfig]:
    """The configurations of a `--serve-params` file, grid combinations first.

    Raises BenchInputError (one line naming the file, the field and the problem) on a bad
    file, on two configurations with one name and past MAX_CONFIGS configurations.
    """
    data = read_mapping(path, "serve-params")
    try:
        grid = ServeGrid.model_validate(data)
    except ValidationError as exc:
        raise BenchInputError(first_error_line(exc, str(path), ServeGrid)) from None
    configs = _combinations(grid.grid) + [
        ServeConfig(listed.name or config_name(listed.params), dict(listed.params)) for listed in grid.configs]
    if len(configs) > MAX_CONFIGS:
        raise BenchInputError(f"{path}: grid: {len(configs)} configurations (at most {MAX_CONFIGS})")
    seen: set[str] = set()
    for config in configs:
        if config.name in seen:
            raise BenchInputError(f"{path}: configs: two configurations are named {config.name!r}")
        seen.add(config.name)
    return configs


def _combinations(grid: dict[str, list[ParamValue]]) -> list[ServeConfig]:
    if not grid:
        return []
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[key] for key in keys)):
        params = dict(zip(keys, values, strict=True))
        out.append(ServeConfig(config_name(params), params))
    return out


def config_name(params: dict[str, ParamValue]) -> str:
    """`key=value,...` with characters unsafe in a directory name replaced; `default` for none."""
    if not params:
        return "default"
    text = ",".join(f"{key.lstrip('-')}={_show(value)}" for key, value in params.items())
    return _NAME_UNSAFE.sub("_", text)


def _show(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)
