"""Request models (the HTTP edge) and OpenAI-style error bodies.

Unknown request fields are ignored, as vLLM does (it logs a warning): OpenAI clients send
fields a server may not know. Known fields are validated strictly (types and ranges).
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "JSON",
    "ApiError",
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "ContentPart",
    "EmbeddingRequest",
    "ImageUrl",
    "ResponsesRequest",
    "StreamOptions",
    "parse_request",
]

JSON = "application/json"


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = headers or {}

    _TYPES: ClassVar[dict[int, str]] = {400: "BadRequestError", 404: "NotFoundError", 429: "RateLimitError",
              500: "InternalServerError", 503: "ServiceUnavailableError"}

    def body(self) -> bytes:
        return orjson.dumps({"error": {
            "message": self.message,
            "type": self._TYPES.get(self.status, "Error"),
            "param": self.param,
            "code": self.status,
        }})

    def response(self, extra_headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=self.status, body=self.body(), content_type=JSON,
                            headers={**self.headers, **(extra_headers or {})})


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool | None = False
    continuous_usage_stats: bool | None = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=128)
    stop: str | list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    min_tokens: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> _Common:
        if self.stream_options is not None and not self.stream:
            raise ValueError("Stream options can only be defined when `stream=True`.")
        return self

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        return tuple(s for s in stops if s)


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="ignore")
    url: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None
    image_url: ImageUrl | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return " ".join(p.text or "" for p in self.content if p.type in ("text", "input_text"))

    def images(self) -> list[str]:
        """The data URIs of this message's image parts."""
        if not isinstance(self.content, list):
            return []
        return [p.image_url.url for p in self.content if p.type == "image_url" and p.image_url is not None]


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check_logprobs(self) -> ChatRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("when using `top_logprobs`, `logprobs` must be set to true")
        return self


class CompletionRequest(_Common):
    prompt: str | list[int] | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False


class ResponsesRequest(BaseModel):
    """POST /v1/responses: `input` is a string or a list of role/content messages (content a
    string or `input_text` parts); served as a chat of those messages (`as_chat`)."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[ChatMessage] = Field(min_length=1)
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stream: bool | None = False
    ignore_eos: bool = False
    min_tokens: int = Field(default=0, ge=0)

    def as_chat(self) -> ChatRequest:
        messages = [ChatMessage(role="user", content=self.input)] if isinstance(self.input, str) else list(self.input)
        if self.instructions:
            messages.insert(0, ChatMessage(role="system", content=self.instructions))
        return ChatRequest(model=self.model, messages=messages, max_tokens=self.max_output_tokens,
                           temperature=self.temperature, top_p=self.top_p, seed=self.seed, stream=self.stream,
                           ignore_eos=self.ignore_eos, min_tokens=self.min_tokens)


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings: one input or a batch (strings, or token id lists)."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: str = "float"
    dimensions: int | None = Field(default=None, ge=1, le=8192)

    def inputs(self) -> list[str | list[int]]:
        if isinstance(self.input, str):
            return [self.input]
        if self.input and isinstance(self.input[0], int):
            return [list(self.input)]  # one input as token ids
        return list(self.input)  # type: ignore[arg-type]


def parse_request(model: type[BaseModel], raw: bytes) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        raise ApiError(400, f"{param}: {msg}" if param else msg, param) from None
