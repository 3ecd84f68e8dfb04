"""The openai SDK seam: the only module that imports `openai` (and `httpx2`, its HTTP library).

Supported range: openai[aiohttp] >=3.0,<4 (`SUPPORTED_OPENAI`, pyproject.toml). 3.0 is the
first release on httpx2 with the vendored aiohttp bridge (2.x and older use httpx and an
external bridge: not supported); 4.0 may change anything. The hooks below are in every 3.x
checked (3.0.0, 3.10.0, 3.20.0, 3.30.0, 3.40.0, 3.45.0, 3.50.0, 3.57.0), and CI runs the
client tests on 3.0.0 as well as on the newest 3.x.

What the SDK does for us: the request for each path (URL, auth and default headers), its
typed 4xx/5xx errors (turned into `ClientError("http_<status>")` with the server's message),
`models.list()`, and, on the fallback path, the whole POST.

The direct path (the default) needs the SDK's private hooks `DIRECT_HOOKS`: the SDK builds
each path's request once per run and the requests go out on our aiohttp session
(`bench.runner.wire`); a 4xx/5xx body is handed to the SDK's own error factory. When any
hook is missing (`missing_hooks`), every request goes through the SDK's public
`AsyncOpenAI.post(..., stream=True)` instead. What that fallback costs:

- CPU: the SDK's layers (options, auth hooks, httpx2, the bridge) run for every request:
  measured with cProfile against benchmarks/_sse_server.py, a 1-token request made 571
  Python calls on the direct path, 2,650 on the fallback with the bridge and 5,040 without
  it (a 256-token stream: 8,990 / 11,170 / 13,480), so a process tops out at a fraction of
  the short requests per second; bodies are read by the request's task, one wake-up per
  socket read, instead of in the socket callback;
- with the bridge there (only a method hook gone) the requests still go out on our session:
  the send hold, the sent time and socket arrival stamps (through the bridge response's
  aiohttp response) are kept; a stale pooled connection is retried through the SDK's pool;
- without the bridge, httpx2's own transport carries them: no send hold (a request is
  written as soon as a connection is ready, so open-loop sends are late by the SDK's build
  time), no sent time (`sent_s` falls back to the scheduled time), chunk stamps are read
  times (late by any event-loop delay), and a stale pooled connection is not retried.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx2
import openai

from bench.runner.streamapi import ChunkFeed, ClientConfig, ClientError, Feed
from bench.runner.wire import REUSED, SENT_BOX, stamp_log, stamped_reads

__all__ = [
    "DIRECT_HOOKS", "SUPPORTED_OPENAI", "RequestTemplate", "SdkClient", "SdkStreamResponse", "StaleConnection",
    "missing_hooks", "openai_version",
]

SUPPORTED_OPENAI = ">=3.0,<4"
# The private SDK names the direct path calls (AsyncOpenAI methods, then modules).
DIRECT_HOOKS = ("_prepare_options", "_build_request", "_prepare_request", "_make_status_error_from_response",
                "openai._models.FinalRequestOptions", "openai._vendor.httpx_aiohttp.AiohttpTransport")
# The SDK refuses to build a client without a key; servers without auth ignore it.
_PLACEHOLDER_KEY = "bench-no-key"
_HEADERS: dict[str, Any] = {"headers": {"Content-Type": "application/json"}}


def openai_version() -> str:
    return str(getattr(openai, "__version__", "unknown"))


def _vendored_transport() -> Any:
    """The SDK's own aiohttp bridge class, None when this SDK has none."""
    try:
        from openai._vendor.httpx_aiohttp import AiohttpTransport
    except ImportError:
        return None
    return AiohttpTransport


def _options_class() -> Any:
    try:
        from openai._models import FinalRequestOptions
    except ImportError:
        return None
    return FinalRequestOptions


def missing_hooks(sdk: Any) -> list[str]:
    """The `DIRECT_HOOKS` this SDK (an AsyncOpenAI) lacks; empty when the direct path works."""
    missing = [name for name in DIRECT_HOOKS[:4] if not callable(getattr(sdk, name, None))]
    if _options_class() is None:
        missing.append(DIRECT_HOOKS[4])
    if _vendored_transport() is None:
        missing.append(DIRECT_HOOKS[5])
    return missing


class StaleConnection(Exception):
    """A reused keep-alive connection was already closed by the server, before any response."""


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """The SDK's POST for one path: absolute URL and headers (auth, defaults), plus the SDK's
    request object, which its error factory needs."""

    url: str
    headers: dict[str, str]
    request: Any


class SdkClient:
    """One AsyncOpenAI for the run (no retries; it bounds connecting only: read timeouts are
    the runner's), on our aiohttp session under the SDK's bridge when the SDK has one."""

    def __init__(self, config: ClientConfig, session: Callable[[], aiohttp.ClientSession]) -> None:
        limits = httpx2.Limits(max_connections=config.max_connections,
                               max_keepalive_connections=config.max_connections, keepalive_expiry=60.0)
        timeout = httpx2.Timeout(connect=config.connect_timeout_s, read=None, write=30.0, pool=None)
        bridge = _vendored_transport()
        if bridge is not None:
            http: Any = openai.DefaultAioHttpClient(limits=limits, timeout=timeout,
                                                    transport=bridge(client=session, limits=limits))
        else:
            http = openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout)
        self._sdk = openai.AsyncOpenAI(base_url=config.base_url, api_key=config.api_key or _PLACEHOLDER_KEY,
                                       max_retries=0, timeout=timeout, http_client=http)
        self.missing = missing_hooks(self._sdk)
        self.direct = not self.missing

    async def template(self, path: str) -> RequestTemplate:
        """The SDK's request for `path` (direct path only: needs the private hooks)."""
        sdk: Any = self._sdk
        options = _options_class().construct(method="post", url=path, content=b"", **_HEADERS)
        options = await sdk._prepare_options(options)
        request = sdk._build_request(options)
        await sdk._prepare_request(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")}
        return RequestTemplate(str(request.url), headers, request)

    def status_error(self, status: int, raw_headers: list[tuple[str, str]], content: bytes,
                     template: RequestTemplate) -> ClientError:
        """A 4xx/5xx response read by us, as the SDK's typed error would describe it."""
        response = httpx2.Response(status, headers=raw_headers, content=content, request=template.request)
        sdk: Any = self._sdk
        return _status_error(sdk._make_status_error_from_response(response))

    async def post_stream(self, path: str, body: bytes, fresh: bool) -> SdkStreamResponse:
        """The public path: POST through the SDK. Raises ClientError, or StaleConnection when a
        pooled connection (not `fresh`) turned out closed before any response."""
        box: list[float] = []
        token = SENT_BOX.set(box)
        try:
            sdk: Any = self._sdk  # `options` as a plain dict: the SDK's TypedDict is not exported alike in 3.x
            response = await sdk.post(path, cast_to=httpx2.Response, content=body, options=_HEADERS, stream=True)
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            kind = _connection_kind(exc)
            if not fresh and kind == "server_disconnected" and REUSED in box:
                raise StaleConnection from None
            raise ClientError(kind, _describe(exc)) from None
        finally:
            SENT_BOX.reset(token)
        sent = [t for t in box if t != REUSED]
        return SdkStreamResponse(response, sent[-1] if sent else None, reused=REUSED in box)

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


class SdkStreamResponse:
    """A streamed response of the public path (an httpx2 response from the SDK)."""

    def __init__(self, response: httpx2.Response, sent_at: float | None, reused: bool = False) -> None:
        self._response = response
        self.sent_at = sent_at
        self.reconnected = False
        self.reused_connection = reused  # sent on a pooled keep-alive connection, not a new one
        self.status = response.status_code
        self.server_request_id = response.headers.get("x-request-id")
        self.content_type = response.headers.get("content-type", "")
        # Under the bridge the aiohttp response (its private attribute) gives socket stamps.
        self._content, self._stamps = stamp_log(getattr(response.stream, "_aiohttp_response", None))

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    def start_feeding(self, feed: Feed, whole_chunk: ChunkFeed | None = None) -> None:
        return None  # read with `reads()` only

    async def reads(self) -> AsyncIterator[tuple[float, bytes]]:
        if self._stamps is not None and self._content is not None:
            async for item in stamped_reads(self._content, self._stamps):
                yield item
            return
        try:
            async for data in self._response.aiter_raw():
                yield time.perf_counter(), data
        except httpx2.TimeoutException as exc:
            raise ClientError("read_timeout", _describe(exc)) from None
        except (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.NetworkError) as exc:
            raise ClientError("stream_dropped", _describe(exc)) from None

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        except (httpx2.HTTPError, OSError):
            pass  # closing an already broken stream: its error was recorded when reading


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
        for text in (inner, body.get("detail")):  # {"error": "..."} (TGI), {"detail": "..."} (FastAPI)
            if isinstance(text, str) and text:
                return f"{exc.message} - {text}"[:500]
    elif isinstance(body, str) and body.strip():  # a plain-text or HTML error page, on one line
        return f"{exc.message} - {' '.join(body.split())}"[:500]
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
    # ... and a connection the server closed before answering to ConnectTimeout too.
    if any(isinstance(e, (aiohttp.ServerDisconnectedError, ConnectionResetError)) for e in chain):
        return "server_disconnected"
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
