"""Simulator profiles: the latency model of a continuous-batching engine, as data.

A profile is YAML (or a dict) validated by the strict `Profile` model below. Built-in
profiles live in ``bench/sim/profiles/NAME.yaml`` and are addressed by NAME.

Step-time model (one engine step = one scheduler iteration)::

    step_ms = decode_ms_base
            + decode_ms_per_seq * running_decode_seqs
            + prefill_ms_per_token * prefill_tokens_this_step

`predict()` turns that model into the steady-state figures of a closed-loop load, so that
tests (and later an SLO search) can compare what the simulator does with what its profile
says it should do.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.sim.faults import FaultSpec, parse_fault

__all__ = [
    "FIXED_FIELDS",
    "PROFILES_DIR",
    "REQUEST_FIELDS",
    "OutputLen",
    "Profile",
    "ProfileError",
    "builtin_profiles",
    "check_models",
    "load_profile",
    "max_request_rate",
    "model_profile",
    "predict",
    "predict_reasoning",
]

PROFILES_DIR = Path(__file__).with_name("profiles")


class ProfileError(ValueError):
    """A profile could not be found, parsed or validated (message names file and field)."""


class OutputLen(BaseModel):
    """Distribution of the natural (EOS) output length of one choice, in tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dist: Literal["lognormal", "normal", "uniform", "fixed"] = "lognormal"
    # lognormal: `mean` is the mean of the distribution itself (not of its log) and
    # `sigma` the standard deviation of the log; normal: mean and standard deviation;
    # uniform: integers in [min, max]; fixed: always `mean`.
    mean: float = Field(default=128.0, gt=0)
    sigma: float = Field(default=0.6, ge=0)
    min: int = Field(default=1, ge=1)
    max: int = Field(default=2048, ge=1)

    @model_validator(mode="after")
    def _check_bounds(self) -> OutputLen:
        if self.min > self.max:
            raise ValueError(f"output_len.min ({self.min}) > output_len.max ({self.max})")
        return self


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    description: str = ""
    models: list[str] = Field(default_factory=lambda: ["sim-small"], min_length=1)
    max_model_len: int = Field(default=8192, ge=2)
    max_num_seqs: int = Field(default=64, ge=1)
    kv_cache_tokens: int = Field(default=262_144, ge=2)
    max_num_batched_tokens: int = Field(default=2048, ge=1)
    prefill_ms_per_token: float = Field(default=0.02, ge=0)
    decode_ms_base: float = Field(default=8.0, ge=0)
    decode_ms_per_seq: float = Field(default=0.25, ge=0)
    output_len: OutputLen = Field(default_factory=OutputLen)
    # >1 models speculative decoding: each decode step yields this many tokens per
    # sequence, written as one chunk.
    tokens_per_chunk: int = Field(default=1, ge=1)
    # Chat only: this many tokens are streamed as `reasoning_content` before `content`.
    reasoning_tokens: int = Field(default=0, ge=0)
    # The final usage.completion_tokens says this many tokens more than were generated (negative:
    # fewer; never below 0), so tests can check bench's token-count disagreement against a known
    # error. Running (continuous) usage counts and /tokenize stay true.
    usage_completion_offset: int = 0
    # Chat only: prompt tokens each image part counts for (its prefill cost follows).
    image_tokens: int = Field(default=256, ge=1)
    prefix_cache: bool = False
    prefix_block_tokens: int = Field(default=16, ge=1)
    header_delay_ms: float = Field(default=0.0, ge=0)
    # Zero-latency profiles only: run this many steps per event-loop turn and write each
    # stream's chunks of those steps at once (fewer syscalls; recorded as `coalesced`).
    coalesce_steps: int = Field(default=1, ge=1)
    # Busy-wait (yielding to the event loop) this long before each step deadline: sharper
    # step times on an idle multi-core machine, worse ones when the client shares a core.
    step_spin_ms: float = Field(default=0.0, ge=0, le=5)
    # /v1/embeddings: a request takes embedding_ms_per_input * inputs + embedding_ms_per_token
    # * input tokens (after header_delay_ms), outside the decode engine, concurrently with others.
    embedding_ms_per_input: float = Field(default=0.5, ge=0)
    embedding_ms_per_token: float = Field(default=0.01, ge=0)
    embedding_dims: int = Field(default=8, ge=1, le=8192)
    # Chat requests that carry `tools` (tool_choice auto) answer with one tool call with this
    # probability (tool_choice "required" or naming a function: always; "none": never).
    tool_call_probability: float = Field(default=0.0, ge=0, le=1)
    # LoRA-style adapters: adapter name -> base model (one of `models`); served in the base
    # model's engine (its batch and step costs), listed by /v1/models with `parent`.
    adapters: dict[str, str] = Field(default_factory=dict)
    # Per served name (a model or an adapter): field overrides of this profile. A model with
    # overrides runs its own engine (another deployment behind the same URL); a model without
    # shares the first engine; an adapter may override only per-request fields (REQUEST_FIELDS).
    model_profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Tests: keep each request's JSON body in its ground-truth record (`body`).
    record_bodies: bool = False
    # Stamp request arrival with the kernel's receive time (Linux, SO_TIMESTAMPNS) instead of
    # when the event loop read the bytes: truth for big bodies, which the loop reads late when
    # many arrive at once. Connections then run on a Python transport (slower writes).
    kernel_rx_stamps: bool = False
    faults: list[FaultSpec] = Field(default_factory=list)
    # Ground-truth records kept in memory (oldest dropped first); the --trace file keeps all.
    truth_limit: int = Field(default=20_000, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _parse_fault_strings(cls, data: Any) -> Any:
        # Faults may be written as compact strings ("drop:every=5") in YAML too.
        if isinstance(data, dict) and isinstance(data.get("faults"), list):
            data = dict(data)
            data["faults"] = [parse_fault(f) if isinstance(f, str) else f for f in data["faults"]]
        return data

    @model_validator(mode="after")
    def _check_models(self) -> Profile:
        check_models(self)
        return self

    @property
    def zero_latency(self) -> bool:
        return (
            self.decode_ms_base == 0
            and self.decode_ms_per_seq == 0
            and self.prefill_ms_per_token == 0
        )

    def step_ms(self, decode_seqs: int, prefill_tokens: int) -> float:
        if decode_seqs == 0 and prefill_tokens == 0:
            return 0.0
        return (
            self.decode_ms_base
            + self.decode_ms_per_seq * decode_seqs
            + self.prefill_ms_per_token * prefill_tokens
        )


# Fields no model may override: the server's, not a model's.
FIXED_FIELDS = frozenset({"name", "description", "models", "adapters", "model_profiles", "faults", "record_bodies",
                          "kernel_rx_stamps",
                          "truth_limit", "coalesce_steps", "step_spin_ms"})
# Fields that shape one request, not the engine: what an adapter may change.
REQUEST_FIELDS = frozenset({"output_len", "reasoning_tokens", "usage_completion_offset", "tool_call_probability", "header_delay_ms", "image_tokens",
                            "max_model_len", "embedding_ms_per_input", "embedding_ms_per_token", "embedding_dims"})


def model_profile(profile: Profile, name: str) -> Profile:
    """`profile` with the overrides of served name `name` (and of its base model, for an adapter)."""
    base = profile.adapters.get(name)
    fields = profile.model_dump()
    if base is not None:
        fields.update(profile.model_profiles.get(base, {}))
    fields.update(profile.model_profiles.get(name, {}))
    fields.update(model_profiles={}, adapters={}, models=[name])
    return Profile.model_validate(fields)


def check_models(profile: Profile) -> None:
    """ValueError naming the problem when the adapters or model_profiles do not fit the models."""
    models = set(profile.models)
    for adapter, base in profile.adapters.items():
        if adapter in models:
            raise ValueError(f"adapters: {adapter!r} is also a model")
        if base not in models:
            raise ValueError(f"adapters.{adapter}: base model {base!r} is not one of models")
    for name, overrides in profile.model_profiles.items():
        if name not in models and name not in profile.adapters:
            raise ValueError(f"model_profiles: {name!r} is neither a model nor an adapter")
        fixed = sorted(set(overrides) & FIXED_FIELDS)
        if fixed:
            raise ValueError(f"model_profiles.{name}: {', '.join(fixed)} cannot differ by model")
        if name in profile.adapters:
            engine_fields = sorted(set(overrides) - REQUEST_FIELDS)
            if engine_fields:
                raise ValueError(f"model_profiles.{name}: an adapter runs in its base model's engine; "
                                 f"{', '.join(engine_fields)} cannot differ (only {', '.join(sorted(REQUEST_FIELDS))})")
        try:
            model_profile(profile, name)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"model_profiles.{name}.{where}: {err['msg']}") from None


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _validate(data: Any, source: str) -> Profile:
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile must be a mapping, got {type(data).__name__}")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '<root>'}': {err['msg']}"
            for err in exc.errors()
        )
        raise ProfileError(f"{source}: invalid profile: {problems}") from None
    except ValueError as exc:  # a bad fault string raised while pre-parsing
        raise ProfileError(f"{source}: invalid profile: {exc}") from None


def load_profile(profile: str | Path | dict[str, Any] | Profile) -> Profile:
    """Load a profile from a built-in NAME, a YAML/JSON file path, a dict or a Profile."""
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, dict):
        return _validate(profile, "<dict profile>")
    path = Path(profile)
    if not path.suffix and not path.exists():
        candidate = PROFILES_DIR / f"{profile}.yaml"
        if not candidate.exists():
            raise ProfileError(
                f"unknown profile {str(profile)!r}: not a file and not one of "
                f"{', '.join(builtin_profiles())}"
            )
        path = candidate
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc}") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and "name" not in data:
        data["name"] = path.stem
    return _validate(data, str(path))


def predict(
    profile: Profile, concurrency: int, prompt_tokens: int, output_tokens: int
) -> dict[str, float]:
    """Steady-state figures of a closed loop (no think time) of `concurrency` streams.

    Every request has `prompt_tokens` prompt tokens and exactly `output_tokens` output
    tokens (ignore_eos). Returns ttft_ms, itl_ms (gap between chunks), e2e_ms,
    tokens_per_s (aggregate output), requests_per_s and batch (sequences running).
    It is a mean-value model, good to ~20 % away from the knees, not a simulation.
    """
    if concurrency < 1 or output_tokens < 1 or prompt_tokens < 0:
        raise ValueError("concurrency and output_tokens must be >= 1, prompt_tokens >= 0")
    k = profile.tokens_per_chunk
    kv_limit = max(1, profile.kv_cache_tokens // max(1, prompt_tokens + output_tokens))
    batch = min(concurrency, profile.max_num_seqs, kv_limit)
    base, per_seq, pf = (
        profile.decode_ms_base, profile.decode_ms_per_seq, profile.prefill_ms_per_token
    )
    # A request's first chunk (1 token) comes out of the step that ends its prefill; then
    # ceil((O-1)/k) decode steps follow, each emitting k tokens.
    decode_steps = math.ceil(max(0, output_tokens - 1) / k)
    room = max(1, profile.max_num_batched_tokens - (batch - 1))
    prefill_steps = max(1, math.ceil(prompt_tokens / room))
    life_steps = prefill_steps + decode_steps
    arrivals_per_step = batch / life_steps
    decode_seqs = batch * decode_steps / life_steps
    prefill_per_step = arrivals_per_step * prompt_tokens
    step_ms = base + per_seq * decode_seqs + pf * prefill_per_step
    if step_ms <= 0:
        inf = math.inf
        return {"ttft_ms": 0.0, "itl_ms": 0.0, "e2e_ms": 0.0, "tokens_per_s": inf,
                "requests_per_s": inf, "batch": float(batch), "step_ms": 0.0}
    # The gap seen by one stream: its own decode plus the others' decodes and prefills.
    others = (batch - 1) / batch
    itl_ms = base + per_seq * max(1.0, decode_seqs) + pf * prefill_per_step * others
    # The step that holds this request's prefill carries its whole prompt chunk.
    own_step_ms = base + per_seq * decode_seqs * others + pf * (
        min(prompt_tokens, room) + prefill_per_step * others
    )
    # Closed loop: with other streams running, a new request lands just after a step
    # began and waits for it; alone, it finds the engine idle.
    wait_ms = itl_ms if batch > 1 else 0.0
    prefill_ms = own_step_ms * prefill_steps
    ttft_ms = wait_ms + prefill_ms
    e2e_ms = ttft_ms + decode_steps * itl_ms
    requests_per_s = concurrency / e2e_ms * 1000.0
    if concurrency > batch:
        # Queueing: the batch slots bound the rate; Little's law puts the wait in TTFT.
        requests_per_s = batch / (prefill_ms + decode_steps * itl_ms) * 1000.0
        e2e_ms = concurrency / requests_per_s * 1000.0
        ttft_ms = e2e_ms - decode_steps * itl_ms
    return {
        "ttft_ms": ttft_ms,
        "itl_ms": itl_ms,
        "e2e_ms": e2e_ms,
        "tokens_per_s": requests_per_s * output_tokens,
        "requests_per_s": requests_per_s,
        "batch": float(batch),
        "step_ms": step_ms,
    }


def predict_reasoning(
    profile: Profile, concurrency: int, prompt_tokens: int, output_tokens: int
) -> dict[str, float]:
    """The reasoning phases `predict()`'s closed loop shows for a chat model that streams its
    first `profile.reasoning_tokens` tokens as `reasoning_content` (bench.metrics.phases).

    Chunk 0 carries token 0; chunk j >= 1 carries tokens (j-1)k+1 .. jk (k tokens per
    chunk), one decode step (predict's `itl_ms`) apart. The first answer token, number R,
    opens chunk ceil(R/k) (a chunk carrying both phases counts as answer); the last chunk is
    ceil((O-1)/k). Returns ttft_reasoning_ms (= predict's TTFT), ttft_answer_ms,
    reasoning_ms, reasoning_tokens and answer_tpot_ms (NaN with fewer than 2 answer
    tokens); ValueError without reasoning tokens or when they fill the whole output.
    """
    reasoning, k = profile.reasoning_tokens, profile.tokens_per_chunk
    if not 0 < reasoning < output_tokens:
        raise ValueError(f"reasoning_tokens ({reasoning}) must be between 1 and output_tokens - 1")
    base = predict(profile, concurrency, prompt_tokens, output_tokens)
    first_answer = math.ceil(reasoning / k)
    last = math.ceil((output_tokens - 1) / k)
    answer_tokens = output_tokens - reasoning
    reasoning_ms = first_answer * base["itl_ms"]
    answer_tpot = (last - first_answer) * base["itl_ms"] / (answer_tokens - 1) if answer_tokens > 1 else math.nan
    return {
        "ttft_reasoning_ms": base["ttft_ms"],
        "ttft_answer_ms": base["ttft_ms"] + reasoning_ms,
        "reasoning_ms": reasoning_ms,
        "reasoning_tokens": float(reasoning),
        "answer_tpot_ms": answer_tpot,
    }


def max_request_rate(profile: Profile, prompt_tokens: int, output_tokens: int) -> float:
    """Predicted saturation throughput in requests/s (the batch full: by max_num_seqs or
    by the KV budget), for requests of the given shape. Offered rates above it queue."""
    kv_limit = max(1, profile.kv_cache_tokens // max(1, prompt_tokens + output_tokens))
    full = min(profile.max_num_seqs, kv_limit)
    return predict(profile, full, prompt_tokens, output_tokens)["requests_per_s"]
