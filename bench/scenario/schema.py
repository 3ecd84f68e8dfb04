"""Scenario files: the strict, documented schema of what a run does.

Everything a user writes is validated here, at the edge, by pydantic models with
`extra="forbid"`; the rest of the package only sees validated objects. Errors become one
line naming the file, the field and the problem (`bench.scenario.loader.load_scenario`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, create_model, field_validator, model_validator

from bench.metric_catalogue import SLO, SLO_KEYS
from bench.scenario.base import NonNegFloat, OrBare, PositiveFloat, Strict
from bench.scenario.lengths import Fixed, LengthDist, LogNormal, Normal, Uniform, coerce_length
from bench.scenario.routing import ModelWeights
from bench.scenario.token_counts import TokenCounting
from bench.scenario.tools import DEFAULT_TOOL_RESULT, ToolChoice, ToolSchema

__all__ = [
    "Arrival", "Conversation", "DatasetColumns", "Fixed", "Images", "Launch", "LengthDist", "Load", "LogNormal", "Message",
    "NonNegFloat", "Normal", "OrBare", "PositiveFloat", "Ramp", "RaySettings", "Requests",
    "Sampling", "Scenario", "ServerMetrics", "SharedPrefix", "Slo", "Stage", "Strict", "Synthetic",
    "Target", "ThinkTime", "Timeouts", "TokenCounting", "Trace", "Uniform", "Variant", "Warmup",
    "scenario_json_schema",
]

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
    models: ModelWeights | None = Field(
        default=None, description="Several models: {name: weight} (each prompt goes to one, a seeded draw) "
                                  "or [name, ...] (in turn). Replaces model.")
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key."
    )
    api_key_file: str | None = Field(default=None, description="Path of a file holding the API key.")
    endpoint: Literal["chat", "completions", "embeddings", "responses"] = Field(
        default="chat", description="chat: /v1/chat/completions; completions: /v1/completions; embeddings: "
                                    "/v1/embeddings (not streamed); responses: /v1/responses (streamed events).")
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

    @model_validator(mode="after")
    def _one_model_field(self) -> Target:
        if self.model is not None and self.models is not None:
            raise ValueError("give model or models, not both")
        return self


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
                    "size prompts in its tokens (its tokenizer; its chat template too with prompt_basis: server).",
    )
    prompt_basis: Literal["raw", "server"] = Field(default="raw", description=(
        "raw: prompt_tokens of text, as vLLM bench serve and GuideLLM send them (the server adds its chat "
        "template); server: the server's usage.prompt_tokens, template included."))

    _c1 = field_validator("prompt_tokens", mode="before")(lambda cls, v: coerce_length(v))
    _c2 = field_validator("output_tokens", mode="before")(lambda cls, v: coerce_length(v))


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
    think_time_s: Annotated[ThinkTime, OrBare("number", 0)] = ThinkTime()
    tool_result: str = Field(default=DEFAULT_TOOL_RESULT, description=(
        "With requests.tools: an answer with tool calls is followed by a turn sending this as each "
        "call's `tool` message (a turn of its own, counted in turns)."))

    @field_validator("think_time_s", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return {"dist": "fixed", "value": value} if isinstance(value, (int, float)) else value


class SharedPrefix(Strict):
    """A system prompt of `tokens` tokens shared by each of `groups` groups of requests."""

    tokens: Annotated[int, Field(ge=1)]
    groups: Annotated[int, Field(ge=1)] = 1


class Images(Strict):
    """Synthetic images in each chat request (base64 data URIs in the user turn's content
    parts), drawn from a pool of `distinct` images made from the seed before the run."""

    count: Annotated[int, Field(ge=1, le=16)] = 1
    width: Annotated[int, Field(ge=16, le=4096)] = 512
    height: Annotated[int, Field(ge=16, le=4096)] = 512
    format: Literal["png", "jpeg"] = "png"
    distinct: Annotated[int, Field(ge=1, le=10_000)] = Field(default=64, description=(
        "Images in the pool; request i takes its count from position i * count on. A server's multimodal "
        "cache can hit when requests outnumber them."))


class DatasetColumns(Strict):
    """Which columns of a local Hugging Face dataset (`requests.format: hf`) hold what."""

    prompt: str | None = Field(default=None, description="A text column (default: prompt, text, instruction, ...).")
    messages: str | None = Field(default=None, description="A column of [{role, content}] lists.")
    output_tokens: str | None = Field(default=None, description="max_tokens per row (default: output_tokens).")
    split: str = "train"


class Requests(Strict):
    """Exactly one source: `inline`, `file` (JSONL, ShareGPT JSON or a local Hugging Face
    dataset) or `synthetic`."""

    inline: list[list[Message] | str] | None = None
    file: str | None = None
    format: Literal["auto", "jsonl", "sharegpt", "hf"] = Field(default="auto", description=(
        "auto: .json ShareGPT, .parquet/.arrow or a directory a Hugging Face dataset, else JSONL."))
    columns: DatasetColumns | None = None
    images: Images | None = None
    synthetic: Synthetic | None = None
    order: Literal["random", "cycle"] = "random"
    conversation: Conversation | None = None
    shared_prefix: SharedPrefix | None = None
    batch: Annotated[int, Field(ge=1, le=4096)] = Field(
        default=1, description="target.endpoint: embeddings only: inputs per request (the batch size).")
    tools: list[ToolSchema] | None = Field(default=None, description="OpenAI tool schemas, sent as written.")
    tool_choice: ToolChoice | None = Field(default=None, description="auto | none | required | an object; sent as written.")

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
    format: Literal["auto", "azure", "mooncake", "burstgpt"] = "auto"
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
    max_concurrency: Annotated[int, Field(ge=1)] | None = Field(default=None, description=(
        "Most requests in flight; later sends wait (lag recorded). Default: run.json client.in_flight_cap."))
    max_send_lag_s: PositiveFloat | None = Field(default=10.0, description=(
        "Open loop: a request not sent this late is never sent (counted: client.not_sent). null: no bound."))
    drain_s: PositiveFloat | None = Field(default=None, description=(
        "In-flight time after sending; then cancelled. Default: own timeouts (30 s if requests went unsent)."))
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
    tokens: TokenCounting | None = Field(default=None, description=(
        "Count output tokens independently of the server's usage (its /tokenize, a local tokenizer.json), "
        "after the run; keeps each answer's text."))


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (what `bench scenario-schema` prints)."""
    return Scenario.model_json_schema()
