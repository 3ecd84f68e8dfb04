"""The simulator's served names: models, LoRA-style adapters, and the profile and engine of each.

- A name of `profile.models` without overrides is an alias on the first engine (vLLM's
  `--served-model-name a b`), with the profile itself.
- A name with `model_profiles` overrides is a deployment of its own (its own engine and step
  costs), as a gateway in front of several servers.
- An adapter (`profile.adapters`: name -> base model) runs in its base model's engine,
  in the same batch; its overrides may change only per-request fields (REQUEST_FIELDS).
An unknown name is a 404, as vLLM answers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.sim.engine import Engine
from bench.sim.profile import Profile, model_profile

__all__ = ["Served", "engines", "model_card", "served_models"]


@dataclass(frozen=True, eq=False)
class Served:
    """One served name: its profile, the engine that runs it, and its base model (adapters)."""

    name: str
    profile: Profile
    engine: Engine
    parent: str | None = None


def served_models(profile: Profile) -> dict[str, Served]:
    """Every served name (models, then adapters) with its profile and engine."""
    first = Engine(profile)
    out: dict[str, Served] = {}
    for name in profile.models:
        if name in profile.model_profiles:
            own = model_profile(profile, name)
            out[name] = Served(name, own, Engine(own))
        else:
            out[name] = Served(name, profile, first)
    for adapter, base in profile.adapters.items():
        own = model_profile(profile, adapter) if adapter in profile.model_profiles else out[base].profile
        out[adapter] = Served(adapter, own, out[base].engine, parent=base)
    return out


def engines(served: dict[str, Served]) -> list[Engine]:
    """Each engine once, the first engine first."""
    seen: dict[int, Engine] = {}
    for item in served.values():
        seen.setdefault(id(item.engine), item.engine)
    return list(seen.values())


def model_card(item: Served, created: int) -> dict[str, Any]:
    """The /v1/models entry of a served name (adapters: `parent` is the base model)."""
    return {"id": item.name, "object": "model", "created": created, "owned_by": "bench-sim", "root": item.name,
            "parent": item.parent, "max_model_len": item.profile.max_model_len}
