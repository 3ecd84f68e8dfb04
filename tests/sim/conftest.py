"""Simulator fixtures: real child processes via start_sim, shared per module/session."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from bench.sim import SimHandle, start_sim


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def truth(sim: SimHandle, request_id: str) -> dict[str, Any]:
    return get_json(f"{sim.root_url}/sim/requests/{request_id}")


@pytest.fixture(scope="session")
def sim_default() -> Iterator[SimHandle]:
    with start_sim("default", seed=7) as sim:
        yield sim


@pytest.fixture(scope="session")
def sim_zero() -> Iterator[SimHandle]:
    with start_sim("zero", seed=7) as sim:
        yield sim
