"""Scenario fields of multi-model runs and tool calls: what the loader accepts and the one
line it gives for what it refuses."""

from __future__ import annotations

import copy

import pytest

from bench.errors import BenchInputError
from bench.scenario.loader import validate_scenario
from bench.scenario.routing import model_split

BASE = {"requests": {"inline": ["hi"]}, "load": {"concurrency": 1, "max_requests": 1}}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def _with(**sections):
    data = copy.deepcopy(BASE)
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return data


def test_models_as_weights_or_a_list():
    weighted = validate_scenario(_with(target={"models": {"a": 7, "b": 3}}), "s.yaml")
    split = model_split(weighted.target.models)
    assert split is not None and split.names == ("a", "b") and split.weights == pytest.approx((0.7, 0.3))
    listed = model_split(validate_scenario(_with(target={"models": ["a", "b"]}), "s.yaml").target.models)
    assert listed is not None and listed.weights is None and listed.first == "a"
    assert model_split(None) is None


@pytest.mark.parametrize(("sections", "message"), [
    ({"target": {"model": "a", "models": ["b"]}}, "give model or models, not both"),
    ({"target": {"models": []}}, "give at least one model"),
    ({"target": {"models": ["a", "a"]}}, "a model is named twice"),
    ({"target": {"models": {"a": 0}}}, "target.models"),
    ({"target": {"models": ["a"]}, "variants": {"v": {"model": "b"}}}, "variants.v.model"),
    ({"requests": {"tools": [{"function": {"name": "f"}}]}}, "needs a `type`"),
    ({"requests": {"tools": [{"type": "function", "function": {"name": "bad name!"}}]}}, "needs a name"),
    ({"requests": {"tool_choice": "auto"}}, "requests.tool_choice: give requests.tools as well"),
    ({"requests": {"tools": [TOOL], "tool_choice": "sometimes"}}, "requests.tool_choice"),
    ({"requests": {"tools": [TOOL]}, "target": {"endpoint": "completions"}}, "tools need target.endpoint chat"),
])
def test_bad_model_and_tool_fields_are_one_line(sections, message):
    with pytest.raises(BenchInputError) as exc:
        validate_scenario(_with(**sections), "s.yaml")
    text = str(exc.value)
    assert message in text and text.startswith("s.yaml") and "\n" not in text


def test_tools_and_choice_are_kept_as_written():
    choice = {"type": "function", "function": {"name": "get_weather"}}
    scenario = validate_scenario(_with(requests={"tools": [TOOL], "tool_choice": choice}), "s.yaml")
    assert scenario.requests is not None
    assert scenario.requests.tools == [TOOL] and scenario.requests.tool_choice == choice
    responses = {"type": "function", "name": "lookup", "parameters": {}}
    ok = validate_scenario(_with(requests={"tools": [responses]}, target={"endpoint": "responses"}), "s.yaml")
    assert ok.requests is not None and ok.requests.tools == [responses]
