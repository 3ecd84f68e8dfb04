"""The only module that imports `openai`: request building, auth and HTTP errors.

The SDK builds and sends the request (`AsyncOpenAI.post`, aiohttp backend, no retries) and
raises its typed errors on 4xx/5xx; the body is read raw, one network read at a time, so
the caller can stamp each read before parsing. Exceptions leave this module as
`ClientError(kind, ...)` so nothing else needs to know the SDK's or httpx's types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

# The SDK refuses to build a client without a key; servers without auth ignore it.
_PLACEHOLDER_KEY = "bench-no-key"


class ClientError(Exception):
    """A request failed before or while its body was read; `kind` is the error_kind."""

    def __init__(self, kind: str, message: str, http_status: int | None = None,
                 retry_after_s: float | None = None, server_request_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.server_request_id = server_request_id


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str
    api_key: str | None
    connect_timeout_s: float
    max_connections: int

    def __repr__(self) -> str:  # never show the key
        return (f"ClientConfig(base_url={self.base_url!r}, api_key={'***' if self.api_key else None}, "
                f"connect_timeout_s={self.connect_timeout_s}, max_connections={self.max_connections})")


class StreamResponse:
    """An open streamed response: status, headers, and the raw body reads."""

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.server_request_id = response.headers.get("x-request-id")
        self.content_type = response.headers.get("content-type", "")

    async def reads(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.aiter_raw():
                yield data
        except httpx2.TimeoutException as exc:
            raise ClientError("read_timeout", _describe(exc)) from None
        except (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.NetworkError) as exc:
            raise ClientError("stream_dropped", _describe(exc)) from None

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        except (httpx2.HTTPError, OSError):
            pass  # closing an already broken stream: its error was recorded when reading


class StreamClient:
    """One AsyncOpenAI client for the whole run, its pool sized above the peak in flight."""

    def __init__(self, config: ClientConfig) -> None:
        limits = httpx2.Limits(max_connections=config.max_connections,
                               max_keepalive_connections=config.max_connections,
                               keepalive_expiry=60.0)
        # Read timeouts are the runner's (TTFT, idle, total): the SDK only bounds connecting.
        timeout = httpx2.Timeout(connect=config.connect_timeout_s, read=None, write=30.0, pool=None)
        self._http = openai.DefaultAioHttpClient(limits=limits, timeout=timeout)
        self._sdk = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or _PLACEHOLDER_KEY,
            max_retries=0,
            timeout=timeout,
            http_client=self._http,
        )
        self._options: Any = {"headers": {"Content-Type": "application/json"}}

    async def open_stream(self, path: str, body: bytes) -> StreamResponse:
        """POST `body` (JSON bytes) to `path`; raise ClientError on any failure to start."""
        try:
            response = await self._sdk.post(path, cast_to=httpx2.Response, content=body,
                                             options=self._options, stream=True)
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise ClientError(_connection_kind(exc), _describe(exc)) from None
        return StreamResponse(response)

    async def list_models(self) -> list[str]:
        try:
            page = await self._sdk.models.list()
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        except openai.APIConnectionError as exc:
            raise ClientError(_connection_kind(exc), _describe(exc)) from None
        return [m.id for m in page.data]

    async def aclose(self) -> None:
        await self._sdk.close()


def _status_error(exc: openai.APIStatusError) -> ClientError:
    headers = exc.response.headers
    return ClientError(
        f"http_{exc.status_code}",
        _error_message(exc),
        http_status=exc.status_code,
        retry_after_s=_retry_after(headers.get("retry-after")),
        server_request_id=headers.get("x-request-id"),
    )


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:500]
    return str(exc.message)[:500]


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: rare from inference servers, not worth parsing


def _connection_kind(exc: openai.APIConnectionError) -> str:
    # The aiohttp bridge maps a refused connection to ConnectTimeout, so look at the root.
    chain = _chain(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connect call failed" in str(chain[-1]).lower():
        return "connect_refused"
    if any(isinstance(e, (TimeoutError, httpx2.TimeoutException)) for e in chain[1:]):
        return "connect_timeout"
    if any(isinstance(e, (httpx2.RemoteProtocolError, httpx2.ReadError)) for e in chain):
        return "stream_dropped"
    return "connect_error"


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = [exc]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 10:
        chain.append(nxt)
    return chain


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return f"{type(exc).__name__}: {detail}"[:500]
