"""The only module that imports `openai`: request building, auth and HTTP errors.

The SDK builds and sends the request (`AsyncOpenAI.post`, aiohttp backend, no retries) and
raises its typed errors on 4xx/5xx; the body is read raw, one network read at a time, so
the caller can stamp each read before parsing. Exceptions leave this module as
`ClientError(kind, ...)` so nothing else needs to know the SDK's or httpx's types.
"""

from __future__ import annotations

import asyncio
import functools
import time
from bisect import bisect_left
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import aiohappyeyeballs
import httpx2
import openai
from aiohttp.client_proto import ResponseHandler

from bench.runner.sockstamp import StampedTransport, stamped_transport_supported

try:  # the SDK's own aiohttp bridge; we only give it a session of ours
    from openai._vendor.httpx_aiohttp import AiohttpTransport
except ImportError:  # pragma: no cover - older SDKs: stamps fall back to read time
    AiohttpTransport = None

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
        self.reconnected = False  # failed on the fresh connection after a stale pooled one


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str
    api_key: str | None
    connect_timeout_s: float
    max_connections: int

    def __repr__(self) -> str:  # never show the key
        return (f"ClientConfig(base_url={self.base_url!r}, api_key={'***' if self.api_key else None}, "
                f"connect_timeout_s={self.connect_timeout_s}, max_connections={self.max_connections})")


# Set by open_stream for the duration of one request; the aiohttp trace hooks, which run
# in that request's task, append the time the request finished going out on the socket.
_SENT_BOX: ContextVar[list[float] | None] = ContextVar("bench_sent_box", default=None)
_SEND_LOG: ContextVar[SendLog | None] = ContextVar("bench_send_log", default=None)
_SPIN_S = 0.0015  # sleep until this close to the hold's end, then yield: asyncio rounds timers to 1 ms


@dataclass(slots=True)
class SendLog:
    """What happened to one request on its way out, filled in by `open_stream` as it goes,
    so that a caller whose wait is cut short (a TTFT timeout before any response header,
    as on a saturated server that has not read the request yet) still knows when it went out.

    `not_before` (perf_counter seconds): once a connection is ready (pooled or new), the
    request is held until then before its first byte is written, so it never reaches the wire
    before its scheduled time however early it was handed over. `sent_at`: when its last byte
    was written (the retry's, after a stale pooled connection), None while nothing was.
    `held_s`: time spent held.
    """

    not_before: float = 0.0
    sent_at: float | None = None
    held_s: float = 0.0


class _StampingProtocol(ResponseHandler):
    """aiohttp's connection protocol, stamping each socket read with its arrival time.

    On the kernel-stamped transport (`bench.runner.sockstamp`, plain TCP on Linux) the stamp is
    the time the bytes reached the socket, whenever the loop gets to them; elsewhere (TLS)
    it is taken in `data_received`, before HTTP parsing and before any task runs. Each
    stamp is paired with the response body's byte count after that read.
    """

    def __init__(self, loop: Any) -> None:
        super().__init__(loop)
        self.stamp_payload: Any = None
        self.stamps: list[tuple[float, int]] = []
        self.sink: _Feeder | None = None

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        t = transport.rx_time if type(transport) is StampedTransport else time.perf_counter()
        before = self._payload
        super().data_received(data)
        payload = self._payload or before
        if payload is None:
            return
        sink = self.sink
        if sink is not None and payload is sink.payload:
            sink.pump(t)  # parsed here, in the socket callback: no task wake-up per read
            return
        if payload is not self.stamp_payload:
            self.stamp_payload = payload
            self.stamps = []
        self.stamps.append((t, payload.total_bytes))

    def connection_lost(self, exc: BaseException | None) -> None:
        sink = self.sink
        super().connection_lost(exc)
        if sink is not None:
            sink.lost()


class _Feeder:
    """Hands each socket read of one response body to `feed(t, data)` from `data_received`.

    `done` resolves at the end of the body, or with the error that `feed` raised or that
    broke the connection (as a `ClientError("stream_dropped")`).
    """

    __slots__ = ("protocol", "payload", "feed", "done", "_busy", "_again")

    def __init__(self, protocol: _StampingProtocol, payload: Any, feed: Any, done: Any) -> None:
        self.protocol = protocol
        self.payload = payload
        self.feed = feed
        self.done = done
        self._busy = False
        self._again: float | None = None

    def pump(self, t: float) -> None:
        if self._busy:  # re-entered: draining the buffer resumed reading, which read more
            self._again = t
            return
        payload = self.payload
        self._busy = True
        try:
            while True:
                data = payload.read_nowait(-1)
                if data:
                    self.feed(t, data)
                if self._again is None:
                    break
                t, self._again = self._again, None
        except Exception as exc:  # noqa: BLE001 - handed to the waiting task, raised there
            self.end(exc)
            return
        finally:
            self._busy = False
        if payload.is_eof():
            self.end(None)

    def lost(self) -> None:
        if self.payload.exception() is None:
            self.pump(time.perf_counter())
        if not self.done.done():
            self.end(self.payload.exception() or ClientError("stream_dropped", "connection closed mid-body"))

    def end(self, exc: BaseException | None) -> None:
        if self.protocol.sink is self:
            self.protocol.sink = None
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
            return
        if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError)):
            exc = ClientError("stream_dropped", f"{type(exc).__name__}: {exc}"[:500])
        self.done.set_exception(exc)


async def _on_sent(_session: Any, _ctx: SimpleNamespace, _params: Any) -> None:
    now = time.perf_counter()
    box = _SENT_BOX.get()
    if box is not None:
        box.append(now)
    log = _SEND_LOG.get()
    if log is not None:
        log.sent_at = now


async def _hold(_session: Any, _ctx: SimpleNamespace, _params: Any) -> None:
    """Connection in hand (pooled or new), nothing written yet: wait for `not_before`."""
    log = _SEND_LOG.get()
    if log is None:
        return
    start = time.perf_counter()
    target = log.not_before
    if start >= target:
        return
    if target - start > _SPIN_S:
        await asyncio.sleep(target - start - _SPIN_S)
    while time.perf_counter() < target:
        await asyncio.sleep(0)
    log.held_s += time.perf_counter() - start


_REUSED = -1.0  # marker in the sent box: this attempt went out on a pooled keep-alive connection


async def _on_reuse(_session: Any, _ctx: SimpleNamespace, _params: Any) -> None:
    box = _SENT_BOX.get()
    if box is not None:
        box.append(_REUSED)


def arrival_stamp_source(base_url: str) -> str:
    """Where chunk arrival stamps for `base_url` come from: "kernel" (the socket's receive
    time) or "read" (taken in data_received, late by any event-loop delay)."""
    return "kernel" if stamped_transport_supported() and base_url.lower().startswith("http://") else "read"


class _StampingConnector(aiohttp.TCPConnector):
    """aiohttp's connector, opening plain-TCP connections on a kernel-stamped transport."""

    async def _wrap_create_connection(self, *args: Any, addr_infos: Any, req: Any, timeout: Any,
                                      client_error: type[Exception] = aiohttp.ClientConnectorError,
                                      **kwargs: Any) -> tuple[asyncio.Transport, ResponseHandler]:
        if kwargs.get("ssl"):  # TLS needs the loop's transport: stamps come from data_received
            return await super()._wrap_create_connection(*args, addr_infos=addr_infos, req=req, timeout=timeout,
                                                         client_error=client_error, **kwargs)
        try:
            async with asyncio.timeout(timeout.sock_connect):
                sock = await aiohappyeyeballs.start_connection(
                    addr_infos=addr_infos, loop=self._loop,
                    # the connector's own settings, as aiohttp passes them (absent in older aiohttp)
                    local_addr_infos=getattr(self, "_local_addr_infos", None),
                    happy_eyeballs_delay=getattr(self, "_happy_eyeballs_delay", None),
                    interleave=getattr(self, "_interleave", None))
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc
        protocol = args[0]()
        return StampedTransport(self._loop, sock, protocol), protocol


def _session_factory(max_connections: int, fresh: bool = False) -> Any:
    """`fresh`: every request on a new connection, closed after its response (no pool)."""

    def make() -> aiohttp.ClientSession:
        kind = _StampingConnector if stamped_transport_supported() else aiohttp.TCPConnector
        pooling: dict[str, Any] = {"force_close": True} if fresh else {"keepalive_timeout": 60.0}
        connector = kind(limit=max_connections, limit_per_host=0, **pooling)
        connector._factory = functools.partial(_StampingProtocol, loop=connector._loop)  # noqa: SLF001
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_on_sent)
        trace.on_request_chunk_sent.append(_on_sent)
        trace.on_connection_reuseconn.append(_on_reuse)
        trace.on_connection_reuseconn.append(_hold)
        trace.on_connection_create_end.append(_hold)
        return aiohttp.ClientSession(connector=connector, trace_configs=[trace])

    return make


class StreamResponse:
    """An open streamed response: status, headers, and the raw body reads with arrival stamps."""

    def __init__(self, response: httpx2.Response, sent_at: float | None, reused: bool = False) -> None:
        self._response = response
        self.sent_at = sent_at
        self.reconnected = False
        self.reused_connection = reused  # sent on a pooled keep-alive connection, not a new one
        self.status = response.status_code
        self.server_request_id = response.headers.get("x-request-id")
        self.content_type = response.headers.get("content-type", "")
        self._content, self._stamps = _stamp_log(response)

    def header(self, name: str) -> str | None:
        """A response header's value (case-insensitive name), None when absent."""
        return self._response.headers.get(name)

    def start_feeding(self, feed: Any) -> Any:
        """Call `feed(arrival perf_counter, bytes)` for every read, from the socket callback.

        Returns a future resolved at the end of the body (or failed with the error), or None
        when this response can only be read with `reads()`.
        """
        return None

    async def reads(self) -> AsyncIterator[tuple[float, bytes]]:
        """Yield (arrival perf_counter, bytes), split where the bytes arrived in separate reads."""
        if self._stamps is None or self._content is None:
            async for item in self._reads_via_httpx():
                yield item
            return
        stamps, content = self._stamps, self._content
        consumed = 0
        try:
            while True:
                # Straight from aiohttp's buffer: the httpx bridge's generator layers cost
                # more per chunk than parsing the chunk does.
                data = await content.readany()
                if not data:
                    return
                for item in _split_by_arrival(stamps, consumed, data):
                    yield item
                consumed += len(data)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
            raise ClientError("stream_dropped", f"{type(exc).__name__}: {exc}"[:500]) from None

    async def _reads_via_httpx(self) -> AsyncIterator[tuple[float, bytes]]:
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


class _AioStreamResponse(StreamResponse):
    """A streamed response read straight from our aiohttp session (the direct path)."""

    def __init__(self, response: aiohttp.ClientResponse, sent_at: float | None,  # noqa: D107
                 reused: bool = False) -> None:
        self._aio = response
        self.sent_at = sent_at
        self.reconnected = False
        self.reused_connection = reused
        self.status = response.status
        headers = response.headers
        self.server_request_id = headers.get("x-request-id")
        self.content_type = headers.get("content-type", "")
        self._content, self._stamps = _aio_stamp_log(response)
        self._feeder: _Feeder | None = None

    def header(self, name: str) -> str | None:
        return self._aio.headers.get(name)

    def start_feeding(self, feed: Any) -> Any:
        content, stamps = self._content, self._stamps
        protocol = getattr(self._aio.connection, "protocol", None)
        if content is None or stamps is None or not isinstance(protocol, _StampingProtocol):
            return None
        done = asyncio.get_running_loop().create_future()
        feeder = self._feeder = _Feeder(protocol, content, feed, done)
        try:  # what arrived before now, each piece with its own read's stamp
            buffered = content.read_nowait(-1)
            for t, piece in _split_by_arrival(stamps, 0, buffered) if buffered else ():
                feed(t, piece)
        except Exception as exc:  # noqa: BLE001
            feeder.end(exc)
            return done
        if content.is_eof():
            feeder.end(None)
        elif content.exception() is not None:
            feeder.end(content.exception())
        else:
            protocol.sink = feeder
        return done

    async def _reads_via_httpx(self) -> AsyncIterator[tuple[float, bytes]]:
        try:
            async for data in self._aio.content.iter_any():
                yield time.perf_counter(), data
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
            raise ClientError("stream_dropped", f"{type(exc).__name__}: {exc}"[:500]) from None

    async def aclose(self) -> None:
        aio = self._aio
        feeder = self._feeder
        if feeder is not None:
            if feeder.protocol.sink is feeder:
                feeder.protocol.sink = None
            if feeder.done.done() and not feeder.done.cancelled():
                feeder.done.exception()  # retrieved: no "never retrieved" log after a cancel
        if aio.content.at_eof():
            aio.release()  # read to its end: the connection goes back to the pool
        else:
            aio.close()  # cut short: the connection cannot be reused


class _StaleConnection(Exception):
    """A reused keep-alive connection was already closed by the server, before any response."""


class StreamClient:
    """One AsyncOpenAI client for the whole run, its pool sized above the peak in flight."""

    def __init__(self, config: ClientConfig) -> None:
        limits = httpx2.Limits(max_connections=config.max_connections,
                               max_keepalive_connections=config.max_connections,
                               keepalive_expiry=60.0)
        # Read timeouts are the runner's (TTFT, idle, total): the SDK only bounds connecting.
        timeout = httpx2.Timeout(connect=config.connect_timeout_s, read=None, write=30.0, pool=None)
        transport = (AiohttpTransport(client=_session_factory(config.max_connections), limits=limits)
                     if AiohttpTransport is not None else None)
        self._http = openai.DefaultAioHttpClient(limits=limits, timeout=timeout, transport=transport)
        self._sdk = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or _PLACEHOLDER_KEY,
            max_retries=0,
            timeout=timeout,
            http_client=self._http,
        )
        self._options: Any = {"headers": {"Content-Type": "application/json"}}
        self._secret = config.api_key
        # Per request the SDK's layers (options, auth hooks, httpx, the aiohttp bridge) cost
        # ~0.7 ms of CPU, 5x the HTTP exchange itself. What they produce for a POST does not
        # change during a run, so the SDK builds each path's request once (URL, auth and
        # default headers) and the requests go out on our aiohttp session; the SDK still
        # turns every 4xx/5xx into its typed error. The SDK's own path remains for an openai
        # without its vendored aiohttp bridge; there a stale retry goes through its pool.
        self._direct = AiohttpTransport is not None
        # keyed by `fresh`: the pooled session, and the one that opens a connection per request
        self._session_makers = {fresh: _session_factory(config.max_connections, fresh) for fresh in (False, True)}
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._templates: dict[str, tuple[str, dict[str, str], httpx2.Request]] = {}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout_s)

    async def open_stream(self, path: str, body: bytes, log: SendLog | None = None) -> StreamResponse:
        """POST `body` (JSON bytes) to `path`; raise ClientError on any failure to start.

        `log`, when given, holds the request until `log.not_before` and records when it
        went out, also when this call fails or is cancelled (see SendLog).

        A pooled keep-alive connection the server closed without a byte of response
        (llama.cpp advertises keep-alive but closes after every stream, and a closed loop
        that sends at once races that close) gets one retry, marked `reconnected`, on a
        connection opened for it: the other pooled ones may be stale too, as streams that
        end together leave several.
        """
        token = _SEND_LOG.set(log)
        try:
            try:
                return await self._open(path, body, fresh=False)
            except _StaleConnection:
                pass
            try:
                response = await self._open(path, body, fresh=True)
            except ClientError as exc:
                exc.reconnected = True
                raise
            response.reconnected = True
            return response
        finally:
            _SEND_LOG.reset(token)

    async def _open(self, path: str, body: bytes, fresh: bool) -> StreamResponse:
        if self._direct:
            return await self._open_direct(path, body, fresh)
        box: list[float] = []
        token = _SENT_BOX.set(box)
        try:
            response = await self._sdk.post(path, cast_to=httpx2.Response, content=body,
                                             options=self._options, stream=True)
        except openai.APIStatusError as exc:
            raise self._redact(_status_error(exc)) from None
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            kind = _connection_kind(exc)
            if not fresh and kind == "server_disconnected" and _REUSED in box:
                raise _StaleConnection from None
            raise self._redact(ClientError(kind, _describe(exc))) from None
        finally:
            _SENT_BOX.reset(token)
        sent = [t for t in box if t != _REUSED]
        return StreamResponse(response, sent[-1] if sent else None, reused=_REUSED in box)

    async def _template(self, path: str) -> tuple[str, dict[str, str], httpx2.Request]:
        """The SDK's request for `path` (URL, auth, default headers), built once per run."""
        from openai._models import FinalRequestOptions

        sdk: Any = self._sdk
        options = FinalRequestOptions.construct(method="post", url=path, content=b"", **self._options)
        options = await sdk._prepare_options(options)  # noqa: SLF001
        request = sdk._build_request(options)  # noqa: SLF001
        await sdk._prepare_request(request)  # noqa: SLF001
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")}
        template = (str(request.url), headers, request)
        self._templates[path] = template
        return template

    async def _open_direct(self, path: str, body: bytes, fresh: bool) -> StreamResponse:
        url, headers, request = self._templates.get(path) or await self._template(path)
        session = self._sessions.get(fresh)
        if session is None:
            session = self._sessions[fresh] = self._session_makers[fresh]()
        box: list[float] = []
        token = _SENT_BOX.set(box)
        try:
            aio = await session.post(url, data=body, headers=headers, timeout=self._timeout)
        except aiohttp.ClientConnectorError as exc:  # before ClientOSError: it is one
            refused = isinstance(exc.os_error, ConnectionRefusedError) or "connect call failed" in str(exc).lower()
            raise self._redact(ClientError("connect_refused" if refused else "connect_error",
                                           _describe_aio(exc))) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # "Server disconnected" or "Can not write request body": on a reused keep-alive
            # connection this is the server having closed it while it sat in the pool.
            if not fresh and _REUSED in box:
                raise _StaleConnection from None
            raise self._redact(ClientError("server_disconnected", _describe_aio(exc))) from None
        except TimeoutError as exc:  # aiohttp's connect timeout
            raise self._redact(ClientError("connect_timeout", _describe_aio(exc))) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise self._redact(ClientError("stream_dropped", _describe_aio(exc))) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._redact(ClientError("connect_error", _describe_aio(exc))) from None
        finally:
            _SENT_BOX.reset(token)
        if aio.status >= 400:
            raise self._redact(await self._status_error(aio, request)) from None
        sent = [t for t in box if t != _REUSED]
        return _AioStreamResponse(aio, sent[-1] if sent else None, reused=_REUSED in box)

    async def _status_error(self, aio: aiohttp.ClientResponse, request: httpx2.Request) -> ClientError:
        try:
            content = await aio.read()
        except (aiohttp.ClientError, OSError):
            content = b""
        finally:
            aio.release()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in aio.raw_headers]
        response = httpx2.Response(aio.status, headers=headers, content=content, request=request)
        return _status_error(self._sdk._make_status_error_from_response(response))  # noqa: SLF001

    async def list_models(self) -> list[str]:
        try:
            page = await self._sdk.models.list()
        except openai.APIStatusError as exc:
            raise self._redact(_status_error(exc)) from None
        except openai.APIConnectionError as exc:
            raise self._redact(ClientError(_connection_kind(exc), _describe(exc))) from None
        return [m.id for m in page.data]

    def _redact(self, error: ClientError) -> ClientError:
        """Servers and proxies echo a rejected key in their error text: never store or print it."""
        message = str(error)
        if self._secret and self._secret in message:
            error.args = (message.replace(self._secret, "***"),)
        return error

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.close()
        await self._sdk.close()


def _stamp_log(response: httpx2.Response) -> tuple[Any, list[tuple[float, int]] | None]:
    """The aiohttp body reader and its arrival stamps, when the SDK runs on our session."""
    aio = getattr(response.stream, "_aiohttp_response", None)
    connection = getattr(aio, "connection", None)
    protocol = getattr(connection, "protocol", None)
    if not isinstance(protocol, _StampingProtocol) or protocol.stamp_payload is not aio.content:
        return None, None
    return aio.content, protocol.stamps


def _aio_stamp_log(aio: aiohttp.ClientResponse) -> tuple[Any, list[tuple[float, int]] | None]:
    connection = aio.connection
    protocol = getattr(connection, "protocol", None)
    if not isinstance(protocol, _StampingProtocol) or protocol.stamp_payload is not aio.content:
        return None, None
    return aio.content, protocol.stamps


def _describe_aio(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _split_by_arrival(stamps: list[tuple[float, int]], start: int,
                      data: bytes) -> list[tuple[float, bytes]]:
    """Cut `data` (body bytes start..start+len) where one socket read ended and the next began."""
    end = start + len(data)
    i = bisect_left(stamps, start + 1, key=lambda s: s[1])
    pieces = []
    pos = start
    while pos < end:
        if i >= len(stamps):  # not stamped (should not happen): the read time is next best
            pieces.append((time.perf_counter(), data[pos - start:]))
            break
        t, total = stamps[i]
        cut = min(total, end)
        pieces.append((t, data[pos - start:cut - start]))
        pos = cut
        i += 1
    return pieces


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
