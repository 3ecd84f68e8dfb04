"""Scenario files: the strict, documented schema of what a run does.

Everything a user writes is validated here, at the edge, by pydantic models with
`extra="forbid"`; the rest of the package only sees validated objects. Errors become one
line naming the file, the field and the problem (see `load_scenario`).
"""

from __future__ import annotations

import difflib
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from bench.errors import BenchInputError
from bench.metric_catalogue import SLO, SLO_KEYS

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- length distributions -------------------------------------------------------------


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


LengthDist = Annotated[Fixed | Uniform | Normal | LogNormal, Field(discriminator="dist")]


def _coerce_length(value: Any) -> Any:
    # A bare integer is the common case: `prompt_tokens: 256`.
    if isinstance(value, int) and not isinstance(value, bool):
        return {"dist": "fixed", "value": value}
    return value


# --- sections ---------------------------------------------------------------------------


class Timeouts(Strict):
    connect_s: PositiveFloat = 10.0
    ttft_s: PositiveFloat = 120.0
    idle_s: PositiveFloat = 60.0
    total_s: PositiveFloat = 900.0


class Launch(Strict):
    """A server command bench starts before the run and stops (by PID) after it."""

    command: str | list[str]
    env: dict[str, str] = Field(default_factory=dict)
    ready_timeout_s: PositiveFloat = 300.0


class ServerMetrics(Strict):
    """Prometheus scraping of the server under test during the run."""

    enabled: bool = True
    url: str | None = Field(default=None, description="Default: the base URL's root + /metrics.")
    interval_s: PositiveFloat = 1.0


class Target(Strict):
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key."
    )
    api_key_file: str | None = Field(default=None, description="Path of a file holding the API key.")
    endpoint: Literal["chat", "completions"] = "chat"
    timeouts: Timeouts = Timeouts()
    sim_profile: str | None = Field(
        default=None, description="Profile of the built-in simulator used when no base_url is set."
    )
    launch: Launch | None = None
    metrics: ServerMetrics = ServerMetrics()

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {value!r})")
        return value.rstrip("/") if value else value


class Message(Strict):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str


class Synthetic(Strict):
    prompt_tokens: LengthDist
    output_tokens: LengthDist | None = None
    seed: int | None = None
    calibrate: bool = Field(
        default=True,
        description="Probe the server's usage.prompt_tokens for two prompt sizes before the run and "
                    "size prompts so they reach the requested token counts on its tokenizer and template.",
    )

    _c1 = field_validator("prompt_tokens", mode="before")(lambda cls, v: _coerce_length(v))
    _c2 = field_validator("output_tokens", mode="before")(lambda cls, v: _coerce_length(v))


class ThinkTime(Strict):
    """Seconds a user waits before the next turn."""

    dist: Literal["fixed", "uniform", "exponential"] = "fixed"
    value: NonNegFloat = 0.0
    min: NonNegFloat = 0.0
    max: NonNegFloat = 0.0
    mean: NonNegFloat = 0.0


class Conversation(Strict):
    """Multi-turn chats: each turn sends the history with the replies actually received."""

    turns: Annotated[int, Field(ge=2, le=1000)]
    think_time_s: ThinkTime = ThinkTime()

    @field_validator("think_time_s", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return {"dist": "fixed", "value": value} if isinstance(value, (int, float)) else value


class SharedPrefix(Strict):
    """A system prompt of `tokens` tokens shared by each of `groups` groups of requests."""

    tokens: Annotated[int, Field(ge=1)]
    groups: Annotated[int, Field(ge=1)] = 1


class Requests(Strict):
    """Exactly one source: `inline`, `file` (JSONL or ShareGPT JSON) or `synthetic`."""

    inline: list[list[Message] | str] | None = None
    file: str | None = None
    format: Literal["auto", "jsonl", "sharegpt"] = "auto"
    synthetic: Synthetic | None = None
    order: Literal["random", "cycle"] = "random"
    conversation: Conversation | None = None
    shared_prefix: SharedPrefix | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Requests:
        given = [k for k in ("inline", "file", "synthetic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of inline, file, synthetic (got {given or 'none'})")
        if self.inline is not None and not self.inline:
            raise ValueError("inline is empty")
        return self

    @field_validator("inline")
    @classmethod
    def _no_blank_prompt(cls, inline: list[list[Message] | str] | None) -> list[list[Message] | str] | None:
        # An empty prompt or user turn is never sent; in a scenario it can only be a slip.
        for i, item in enumerate(inline or ()):
            if isinstance(item, str):
                problem = "the prompt is empty or only whitespace" if not item.strip() else None
            elif any(m.role == "user" and not m.content.strip() for m in item):
                problem = "a user message is empty or only whitespace"
            elif all(not m.content.strip() for m in item):
                problem = "every message is empty or only whitespace"
            else:
                problem = None
            if problem:
                raise ValueError(f"item {i} (counting from 0): {problem}; bench never sends an empty prompt")
        return inline


class Sampling(Strict):
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)


class Variant(Sampling):
    """Sampling overrides for one arm of a paired comparison; may also switch the model."""

    model: str | None = None


class Warmup(Strict):
    requests: Annotated[int, Field(ge=0)] = 0
    seconds: NonNegFloat = 0.0


Arrival = Literal["constant", "poisson", "gamma"]


class Ramp(Strict):
    """Rate rising (or falling) linearly from `from_rate` to `to_rate` over `duration` s."""

    from_rate: NonNegFloat
    to_rate: NonNegFloat
    duration: PositiveFloat
    arrival: Literal["constant", "poisson"] = "poisson"

    @model_validator(mode="after")
    def _moves(self) -> Ramp:
        if self.from_rate == 0 and self.to_rate == 0:
            raise ValueError("from_rate and to_rate cannot both be 0")
        return self


class Stage(Strict):
    """One step of a load shape: a rate (open loop) or a concurrency (closed loop) for a while."""

    rate: PositiveFloat | None = None
    concurrency: Annotated[int, Field(ge=1)] | None = None
    duration: PositiveFloat
    arrival: Arrival = "poisson"
    burstiness: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _one(self) -> Stage:
        if (self.rate is None) == (self.concurrency is None):
            raise ValueError("give exactly one of rate or concurrency")
        return self


class Trace(Strict):
    """Replay of a request trace: Azure LLM inference CSV or Mooncake-style JSONL."""

    file: str
    format: Literal["auto", "azure", "mooncake"] = "auto"
    speedup: PositiveFloat = Field(default=1.0, description="Time-scale factor (2 = twice as fast).")
    target_rate: PositiveFloat | None = Field(
        default=None, description="Re-rate to this mean rate by thinning or superposing the trace."
    )
    block_tokens: Annotated[int, Field(ge=1)] = Field(default=512, description="Tokens per hash_id block.")


class Load(Strict):
    """Exactly one load shape: `concurrency` (closed loop), `rate` (+ `arrival`), `ramp`,
    `stages` or `trace`."""

    concurrency: Annotated[int, Field(ge=1)] | None = None
    rate: PositiveFloat | None = None
    arrival: Arrival = "poisson"
    burstiness: PositiveFloat = 1.0
    ramp: Ramp | None = None
    stages: list[Stage] | None = None
    trace: Trace | None = None
    think_time: NonNegFloat = Field(default=0.0, description="Closed loop: seconds a slot waits between requests.")
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    send_rate_limit: PositiveFloat | None = Field(
        default=None, description="Hard ceiling on sends per second (aiolimiter)."
    )
    duration: PositiveFloat | None = Field(default=None, description="Seconds.")
    max_requests: Annotated[int, Field(ge=1)] | None = None
    stop_on_saturation: bool = Field(
        default=False, description="Open loop: stop sending once the server is certainly saturated (in-flight "
                                   "rising, completions well below arrivals; bench.analysis.saturation), drain, and end "
                                   "the run as `saturated` (exit code 3).")
    warmup: Warmup = Warmup()
    workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        default=1, description="Client processes sharing the schedule (`auto`: enough for the load, one per core)."
    )

    @model_validator(mode="after")
    def _shape(self) -> Load:
        shapes = [k for k in ("concurrency", "rate", "ramp", "stages", "trace") if getattr(self, k) is not None]
        if len(shapes) != 1:
            raise ValueError(
                "give exactly one of concurrency (closed loop), rate, ramp, stages or trace "
                f"(got {', '.join(shapes) or 'none'})"
            )
        if self.stages is not None and not self.stages:
            raise ValueError("stages is empty")
        bounded = self.ramp is not None or self.stages is not None or self.trace is not None
        if not bounded and self.duration is None and self.max_requests is None:
            raise ValueError("give duration and/or max_requests, or the run never ends")
        return self


class _SloBase(Strict):
    """Latency limits; a request meets the SLO when it meets every limit given."""

    @model_validator(mode="after")
    def _some(self) -> _SloBase:
        if all(getattr(self, key) is None for key in SLO_KEYS):
            raise ValueError(f"give at least one of {', '.join(SLO_KEYS)}")
        return self


# One optional limit per SLO metric of the catalogue (bench.metric_catalogue), in its unit,
# then the percentile the limits hold at.
_SLO_FIELDS: dict[str, Any] = {
    m.key: (PositiveFloat | None, Field(default=None, description=f"Limit on {m.label} ({m.unit}).")) for m in SLO}
_SLO_FIELDS["percentile"] = (Annotated[float, Field(gt=0, lt=100)], 99.0)
Slo = create_model("Slo", __base__=_SloBase, __doc__=_SloBase.__doc__, **_SLO_FIELDS)


class RaySettings(Strict):
    """Load from a Ray cluster (`bench run --ray`): the schedule's shards run in Ray actors."""

    address: str | None = Field(
        default=None, description="`auto`, `ray://HOST:10001` or HOST:PORT of a running cluster; "
                                  "unset: start a local Ray for the run.")
    workers: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        default=None, description="Load-generator actors (default: one per node); replaces load.workers.")
    continue_on_actor_failure: bool = Field(
        default=False, description="An actor that dies: go on with the others (default: the run fails).")


class Scenario(Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")] = "scenario"
    description: str = ""
    seed: int = 0
    target: Target = Target()
    requests: Requests | None = Field(
        default=None, description="Required unless load.trace gives the requests.")
    sampling: Sampling = Sampling()
    variants: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], Variant] = Field(
        default_factory=dict,
        description="Named sampling overrides; every prompt is sent once per variant (paired).",
    )
    load: Load
    slo: Slo | None = None  # type: ignore[valid-type]
    ray: RaySettings | None = Field(default=None, description="Run the load from a Ray cluster's actors.")


# --- loading ----------------------------------------------------------------------------


def _requests_needed(scenario: Scenario, source: str) -> None:
    if scenario.target.launch is not None and scenario.target.base_url is None:
        raise BenchInputError(f"{source}: target.base_url: required with target.launch (the URL it will serve)")
    if scenario.requests is None and scenario.load.trace is None:
        raise BenchInputError(f"{source}: requests: required field is missing")
    if scenario.requests is not None and scenario.requests.conversation and scenario.target.endpoint != "chat":
        raise BenchInputError(f"{source}: requests.conversation: multi-turn chats need target.endpoint: chat")


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read, merge CLI overrides (dotted keys) and validate; BenchInputError on bad input."""
    path = Path(path)
    data = _read_mapping(path)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    scenario = validate_scenario(data, source=str(path))
    _check_files(scenario, path)
    return scenario


def validate_scenario(data: Any, source: str) -> Scenario:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise BenchInputError(_first_error(exc, source)) from None
    _requests_needed(scenario, source)
    return scenario


def resolve_path(scenario_path: Path, relative: str) -> Path:
    """Dataset paths are relative to the scenario file, as users expect."""
    candidate = Path(relative).expanduser()
    return candidate if candidate.is_absolute() else (scenario_path.parent / candidate)


def scenario_json_schema() -> dict[str, Any]:
    return Scenario.model_json_schema()


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchInputError(f"{path}: scenario file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchInputError(f"{path}: cannot read scenario file: {exc}") from None
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
        raise BenchInputError(f"{path}: a scenario must be a mapping of sections, got {type(data).__name__}")
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
        if not data_path.is_file():
            raise BenchInputError(f"{path}: requests.file: dataset file not found: {data_path}")


def _first_error(exc: ValidationError, source: str) -> str:
    err = _most_specific(exc.errors())
    loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
    field = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{source}: {field}: unknown key{_suggest(exc, tuple(err['loc']))}"
    if err["type"] == "missing":
        return f"{source}: {field}: required field is missing"
    message = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    plain = isinstance(got, (dict, list)) or got is None or repr(got) in message
    shown = "" if plain else f" (got {got!r})"
    return f"{source}: {field}: {message}{shown}"


def _most_specific(errors: list[Any]) -> Any:
    # For unions pydantic reports one error per member; prefer an unknown key, then the
    # deepest location, which is what the user actually mistyped.
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    pool = extra or errors
    return max(pool, key=lambda e: len(e["loc"]))


def _is_union_tag(part: Any) -> bool:
    # pydantic adds union member tags ("list[...]", "fixed", "function-after[...]") to locations.
    return isinstance(part, str) and (
        "[" in part or part in {"fixed", "uniform", "normal", "lognormal", "str"}
    )


def _suggest(exc: ValidationError, raw_loc: tuple[Any, ...]) -> str:
    model = _model_at(Scenario, list(raw_loc[:-1]))
    if model is None:
        return ""
    valid = list(model.model_fields)
    close = difflib.get_close_matches(str(raw_loc[-1]), valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (valid: {', '.join(valid)})"


def _model_at(model: type[BaseModel], loc: list[Any]) -> type[BaseModel] | None:
    """Walk a pydantic error location (with its list indexes and union tags) to a model."""
    current: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int) or "[" in str(part):
            continue
        by_tag = [m for m in current if _tag_of(m) == part]
        if by_tag:
            current = by_tag
            continue
        fields = [m.model_fields[part] for m in current if part in m.model_fields]
        if not fields:
            return None
        current = _models_in(fields[0].annotation)
        if not current:
            return None
    return current[0] if len(current) == 1 else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("dist")
    tags = typing.get_args(field.annotation) if field is not None else ()
    return tags[0] if tags else None
