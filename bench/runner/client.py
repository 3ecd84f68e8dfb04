"""The HTTP client the runner sends through: `StreamClient`.

The openai SDK (behind `bench.runner.sdk`, the only module that imports it) builds each
path's request once per run and turns every 4xx/5xx into its typed error; the requests go
out on our aiohttp session (`bench.runner.wire`), and each body is read raw, one network
read at a time, so every read is stamped before parsing. When the SDK lacks a private hook
the direct path needs, every request goes through the SDK's public path instead (see
`bench.runner.sdk` for what that costs). Exceptions leave as `ClientError(kind, ...)` so
nothing else needs to know the SDK's, httpx2's or aiohttp's types.
"""

from __future__ import annotations

import aiohttp

from bench.runner.sdk import RequestTemplate, SdkClient, StaleConnection
from bench.runner.streamapi import ClientConfig, ClientError, SendLog, StreamResponse
from bench.runner.wire import (
    REUSED,
    SEND_LOG,
    SENT_BOX,
    AioStreamResponse,
    arrival_stamp_source,
    describe_aio,
    session_factory,
)

__all__ = ["ClientConfig", "ClientError", "SendLog", "StreamClient", "StreamResponse", "arrival_stamp_source"]


class StreamClient:
    """One client for the whole run, its pool sized above the peak in flight."""

    def __init__(self, config: ClientConfig) -> None:
        self._sdk = SdkClient(config, session_factory(config.max_connections))
        self._secret = config.api_key
        # Per request the SDK's layers (options, auth hooks, httpx2, the aiohttp bridge) cost
        # ~0.7 ms of CPU, 5x the HTTP exchange itself. What they produce for a POST does not
        # change during a run, so the SDK builds each path's request once (URL, auth and
        # default headers) and the requests go out on our aiohttp session.
        self._direct = self._sdk.direct
        # keyed by `fresh`: the pooled session, and the one that opens a connection per request
        stamped = arrival_stamp_source(config.base_url) == "kernel"  # plain TCP: writes are stamped
        self._session_makers = {fresh: session_factory(config.max_connections, fresh, stamped)
                                for fresh in (False, True)}
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._templates: dict[str, RequestTemplate] = {}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout_s)

    @property
    def direct(self) -> bool:
        """Whether requests take the direct path (False: the SDK's public path, a fallback)."""
        return self._direct

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
        token = SEND_LOG.set(log)
        try:
            try:
                return await self._open(path, body, fresh=False)
            except StaleConnection:
                pass
            try:
                response = await self._open(path, body, fresh=True)
            except ClientError as exc:
                exc.reconnected = True
                raise
            response.reconnected = True
            return response
        finally:
            SEND_LOG.reset(token)

    async def _open(self, path: str, body: bytes, fresh: bool) -> StreamResponse:
        if self._direct:
            return await self._open_direct(path, body, fresh)
        try:
            return await self._sdk.post_stream(path, body, fresh)
        except ClientError as exc:
            raise self._redact(exc) from None

    async def _open_direct(self, path: str, body: bytes, fresh: bool) -> StreamResponse:
        template = self._templates.get(path)
        if template is None:
            template = self._templates[path] = await self._sdk.template(path)
        session = self._sessions.get(fresh)
        if session is None:
            session = self._sessions[fresh] = self._session_makers[fresh]()
        box: list[float] = []
        token = SENT_BOX.set(box)
        try:
            aio = await session.post(template.url, data=body, headers=template.headers, timeout=self._timeout)
        except aiohttp.ClientConnectorError as exc:  # before ClientOSError: it is one
            refused = isinstance(exc.os_error, ConnectionRefusedError) or "connect call failed" in str(exc).lower()
            raise self._redact(ClientError("connect_refused" if refused else "connect_error",
                                           describe_aio(exc))) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # "Server disconnected" or "Can not write request body": on a reused keep-alive
            # connection this is the server having closed it while it sat in the pool.
            if not fresh and REUSED in box:
                raise StaleConnection from None
            raise self._redact(ClientError("server_disconnected", describe_aio(exc))) from None
        except TimeoutError as exc:  # aiohttp's connect timeout
            raise self._redact(ClientError("connect_timeout", describe_aio(exc))) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise self._redact(ClientError("stream_dropped", describe_aio(exc))) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._redact(ClientError("connect_error", describe_aio(exc))) from None
        finally:
            SENT_BOX.reset(token)
        if aio.status >= 400:
            raise self._redact(await self._status_error(aio, template)) from None
        sent = [t for t in box if t != REUSED]
        return AioStreamResponse(aio, sent[-1] if sent else None, reused=REUSED in box)

    async def _status_error(self, aio: aiohttp.ClientResponse, template: RequestTemplate) -> ClientError:
        try:
            content = await aio.read()
        except (aiohttp.ClientError, OSError):
            content = b""
        finally:
            aio.release()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in aio.raw_headers]
        return self._sdk.status_error(aio.status, headers, content, template)

    async def list_models(self) -> list[str]:
        """The ids of GET /models; raises ClientError."""
        try:
            return await self._sdk.list_models()
        except ClientError as exc:
            raise self._redact(exc) from None

    def _redact(self, error: ClientError) -> ClientError:
        """Servers and proxies echo a rejected key in their error text: never store or print it."""
        message = str(error)
        if self._secret and self._secret in message:
            error.args = (message.replace(self._secret, "***"),)
        return error

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.close()
        await self._sdk.aclose()
