"""Loading a scenario file: read YAML or JSON, apply CLI overrides, validate, check its files.

Every failure is a BenchInputError of one line naming the file, the field and the problem
(`bench.scenario.error_line`); a scenario file can never run code (safe YAML loading only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bench.errors import BenchInputError
from bench.scenario.error_line import first_error_line
from bench.scenario.schema import Scenario

__all__ = ["load_scenario", "read_mapping", "resolve_path", "validate_scenario"]


def _requests_needed(scenario: Scenario, source: str) -> None:
    if scenario.target.launch is not None and scenario.target.base_url is None:
        raise BenchInputError(f"{source}: target.base_url: required with target.launch (the URL it will serve)")
    if scenario.requests is None and scenario.load.trace is None:
        raise BenchInputError(f"{source}: requests: required field is missing")
    if scenario.requests is not None and scenario.requests.conversation and scenario.target.endpoint != "chat":
        raise BenchInputError(f"{source}: requests.conversation: multi-turn chats need target.endpoint: chat")
    if scenario.requests is not None and scenario.requests.images and scenario.target.endpoint != "chat":
        raise BenchInputError(f"{source}: requests.images: images go in chat messages: they need target.endpoint: chat")
    _endpoint_fields(scenario, source)
    _models_and_tools(scenario, source)


def _models_and_tools(scenario: Scenario, source: str) -> None:
    if scenario.target.models is not None:
        for name, variant in scenario.variants.items():
            if variant.model is not None:
                raise BenchInputError(f"{source}: variants.{name}.model: a variant cannot switch the model "
                                      "when target.models splits the traffic")
    requests = scenario.requests
    if requests is None:
        return
    if requests.tools is not None and scenario.target.endpoint not in ("chat", "responses"):
        raise BenchInputError(f"{source}: requests.tools: tools need target.endpoint chat or responses "
                              f"(got {scenario.target.endpoint})")
    if requests.tool_choice is not None and not requests.tools:
        raise BenchInputError(f"{source}: requests.tool_choice: give requests.tools as well")


# Sampling fields each endpoint has no use for: refused rather than silently dropped.
_NOT_SENT = {"embeddings": ("temperature", "top_p", "max_tokens", "n", "stop", "seed", "presence_penalty",
                            "frequency_penalty", "logprobs", "top_logprobs"),
             "responses": ("n", "stop", "logprobs")}


def _endpoint_fields(scenario: Scenario, source: str) -> None:
    endpoint = scenario.target.endpoint
    requests = scenario.requests
    if requests is not None and requests.batch != 1 and endpoint != "embeddings":
        raise BenchInputError(f"{source}: requests.batch: inputs per request are for target.endpoint: embeddings "
                              f"(got {endpoint})")
    synthetic = requests.synthetic if requests is not None else None
    if endpoint == "embeddings" and synthetic is not None and synthetic.output_tokens is not None:
        raise BenchInputError(f"{source}: requests.synthetic.output_tokens: embeddings generate no tokens")
    if endpoint == "embeddings" and scenario.tokens is not None:
        raise BenchInputError(f"{source}: tokens: embeddings generate no tokens to count")
    for section, values in (("sampling", scenario.sampling), *((f"variants.{k}", v) for k, v in scenario.variants.items())):
        for name in _NOT_SENT.get(endpoint, ()):
            if getattr(values, name) is not None and not (name == "n" and getattr(values, name) == 1):
                raise BenchInputError(f"{source}: {section}.{name}: not used by target.endpoint: {endpoint}")


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read, merge CLI overrides (dotted keys) and validate; BenchInputError on bad input."""
    path = Path(path)
    data = read_mapping(path)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    scenario = validate_scenario(data, source=str(path))
    _check_files(scenario, path)
    return scenario


def validate_scenario(data: Any, source: str) -> Scenario:
    """Validate a scenario mapping; BenchInputError (one line, naming `source`) on bad input."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise BenchInputError(first_error_line(exc, source, Scenario)) from None
    _requests_needed(scenario, source)
    return scenario


def resolve_path(scenario_path: Path, relative: str) -> Path:
    """Dataset paths are relative to the scenario file, as users expect."""
    candidate = Path(relative).expanduser()
    return candidate if candidate.is_absolute() else (scenario_path.parent / candidate)


def read_mapping(path: Path, what: str = "scenario") -> dict[str, Any]:
    """A YAML (or .json) file's top-level mapping; BenchInputError of one line naming the
    file and the problem. `what` names the kind of file in those lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchInputError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchInputError(f"{path}: cannot read {what} file: {exc}") from None
    try:
        # safe_load only: a scenario file must never be able to run code.
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchInputError(f"{path}:{where}: YAML syntax error: {problem}") from None
    except json.JSONDecodeError as exc:
        raise BenchInputError(f"{path}: line {exc.lineno}: JSON syntax error: {exc.msg}") from None
    if not isinstance(data, dict):
        raise BenchInputError(f"{path}: a {what} file must be a mapping, got {type(data).__name__}")
    return data


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[leaf] = value


def _check_files(scenario: Scenario, path: Path) -> None:
    if scenario.load.trace is not None:
        trace_path = resolve_path(path, scenario.load.trace.file)
        if not trace_path.is_file():
            raise BenchInputError(f"{path}: load.trace.file: trace file not found: {trace_path}")
    if scenario.requests is not None and scenario.requests.file is not None:
        data_path = resolve_path(path, scenario.requests.file)
        if not (data_path.is_file() or (data_path.is_dir() and scenario.requests.format in ("hf", "auto"))):
            raise BenchInputError(f"{path}: requests.file: dataset file not found: {data_path}")
    if scenario.tokens is not None and scenario.tokens.tokenizer is not None:
        tokenizer_path = resolve_path(path, scenario.tokens.tokenizer)
        if not tokenizer_path.is_file():
            raise BenchInputError(f"{path}: tokens.tokenizer: tokenizer file not found: {tokenizer_path}")
