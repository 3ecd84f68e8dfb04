"""A tiny misbehaving OpenAI-compatible server for fault tests (the simulator cannot do these).

`FaultServer` serves `/v1/models`, `/v1/chat/completions` and `/v1/completions` on
127.0.0.1 (port 0) from a background thread with its own event loop. Each completion
request's behaviour is the first word of its prompt (last message content or `prompt`)
when that word is a behaviour name, else its `model` field, else a `/b/<behaviour>/v1`
path prefix, else "ok". So one server serves a whole scenario that cycles through
behaviours with `requests.inline` + `order: cycle`.

With `api_key` set, every request must carry `Authorization: Bearer <api_key>`; any other
key gets a 401 whose message echoes the key it received (as careless proxies do), which
is what a leak test needs.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from loopback import LoopbackServer

TOKENS = 8  # content chunks of a healthy stream
TOKEN_GAP_S = 0.002
HUGE_LINE_BYTES = 12 * 1024 * 1024  # past the recorder's 8 MiB line limit
MAX_HOLD_S = 10.0  # no handler outlives this, whatever the client does


def _chunk(content: str | None = None, *, role: bool = False, finish: str | None = None,
           text_api: bool = False) -> dict[str, Any]:
    if text_api:
        choice: dict[str, Any] = {"index": 0, "text": content or "", "finish_reason": finish}
        return {"id": "cmpl-fault", "object": "text_completion", "choices": [choice]}
    delta: dict[str, Any] = {}
    if role:
        delta = {"role": "assistant", "content": ""}
    elif content is not None:
        delta = {"content": content}
    return {"id": "chatcmpl-fault", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _usage(tokens: int = TOKENS) -> dict[str, Any]:
    return {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}}


def _event(obj: Any, *, eol: bytes = b"\n", space: bool = True) -> bytes:
    return b"data:" + (b" " if space else b"") + json.dumps(obj).encode() + eol + eol


DONE = b"data: [DONE]\n\n"


def healthy_events(text_api: bool = False, tokens: int = TOKENS) -> list[dict[str, Any]]:
    """role (chat only), `tokens` content chunks, finish chunk, usage chunk."""
    events = [] if text_api else [_chunk(role=True)]
    events += [_chunk(f" t{i}", text_api=text_api) for i in range(tokens)]
    events.append(_chunk(finish="stop", text_api=text_api))
    events.append(_usage(tokens))
    return events


def _error_body(message: str, type_: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


class FaultServer(LoopbackServer):
    """Context manager: `with FaultServer() as fs: fs.base_url ...`."""

    thread_name = "faultserver"

    def __init__(self, api_key: str | None = None, tokens: int = TOKENS) -> None:
        super().__init__()
        self.api_key = api_key
        self.tokens = tokens
        self.seen: list[dict[str, Any]] = []  # one entry per completion request: behaviour, authorized

    def url_for(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.port}/b/{behaviour}/v1"

    def routes(self, app: web.Application) -> None:
        for prefix in ("/v1", "/b/{behaviour}/v1"):
            app.router.add_get(prefix + "/models", self._models)
            app.router.add_post(prefix + "/chat/completions", self._completion)
            app.router.add_post(prefix + "/completions", self._completion)

    # -- auth ------------------------------------------------------------------------------

    def _auth_failure(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {self.api_key}":
            return None
        received = header.removeprefix("Bearer ")
        return web.Response(status=401, content_type="application/json", body=_error_body(
            f"Incorrect API key provided: {received}.", "invalid_request_error", "invalid_api_key"))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth_failure(request)
        if denied is not None:
            return denied
        return web.json_response({"object": "list", "data": [{"id": "fault-model", "object": "model"}]})

    # -- completions -----------------------------------------------------------------------

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        behaviour = _behaviour(body, request.match_info.get("behaviour"))
        denied = self._auth_failure(request)
        self.seen.append({"behaviour": behaviour, "authorized": denied is None})
        if denied is not None:
            return denied
        handler = BEHAVIOURS[behaviour]
        try:
            return await asyncio.wait_for(handler(self, request, "messages" not in body), MAX_HOLD_S)
        except (TimeoutError, ConnectionError):
            # The client gave up (as it should on a timeout or a too-large line).
            return web.Response(status=499)

    async def _sse(self, request: web.Request, *, content_type: str = "text/event-stream") -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": content_type, "Cache-Control": "no-cache",
                                                       "X-Request-Id": f"fault-{len(self.seen)}"})
        await resp.prepare(request)
        return resp

    async def _play(self, request: web.Request, parts: list[bytes | float], **kw: Any) -> web.StreamResponse:
        """Write each bytes item as its own write; a float is a pause in seconds."""
        resp = await self._sse(request, **kw)
        for part in parts:
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                await resp.write(part)
        await resp.write_eof()
        return resp

    def _healthy_parts(self, text_api: bool, *, eol: bytes = b"\n", space: bool = True) -> list[bytes | float]:
        parts: list[bytes | float] = []
        for event in healthy_events(text_api, self.tokens):
            parts += [_event(event, eol=eol, space=space), TOKEN_GAP_S]
        parts.append(b"data: [DONE]" + eol + eol)
        return parts

    # healthy, spelled in every legal way ---------------------------------------------------

    async def b_ok(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return await self._play(request, self._healthy_parts(text_api))

    async def b_comments(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        parts: list[bytes | float] = [b": ping\n\n", b": this is a comment\n", b"retry: 1000\n\n"]
        for i, event in enumerate(healthy_events(text_api, self.tokens)):
            parts += [f"event: message\nid: {i}\n".encode() + _event(event), TOKEN_GAP_S, b": ping\n\n"]
        parts.append(DONE)
        return await self._play(request, parts)

    async def b_crlf(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return await self._play(request, self._healthy_parts(text_api, eol=b"\r\n"))

    async def b_nospace(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return await self._play(request, self._healthy_parts(text_api, space=False))

    async def b_coalesced(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        body = b"".join(_event(e) for e in healthy_events(text_api, self.tokens)) + DONE
        return await self._play(request, [body])

    async def b_split(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """Every event cut in three writes 20 ms apart (lines and the blank line split)."""
        parts: list[bytes | float] = []
        for event in healthy_events(text_api, self.tokens):
            raw = _event(event)
            a, b = len(raw) // 2, len(raw) - 1  # the second cut separates the two newlines
            parts += [raw[:a], 0.02, raw[a:b], 0.02, raw[b:]]
        parts.append(DONE)
        return await self._play(request, parts)

    async def b_keepalive_wait(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """Keep-alives for 0.25 s before the first token: they are not the first token."""
        parts: list[bytes | float] = [b": ping\n\n", 0.05] * 5
        return await self._play(request, parts + self._healthy_parts(text_api))

    # a stream that ends badly -------------------------------------------------------------

    def _first_tokens(self, text_api: bool, count: int = 3) -> list[bytes | float]:
        return [item for event in healthy_events(text_api, self.tokens)[: count + (0 if text_api else 1)]
                for item in (_event(event), TOKEN_GAP_S)]

    async def b_no_done(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """Complete stream with finish_reason and usage, then a clean end without [DONE]."""
        return await self._play(request, self._healthy_parts(text_api)[:-1])

    async def b_eof_mid(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """A few tokens, then a clean end of body: no finish_reason, no [DONE]."""
        return await self._play(request, self._first_tokens(text_api))

    async def b_abort_mid(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """A few tokens, then the connection is closed without ending the chunked body."""
        resp = await self._sse(request)
        for part in self._first_tokens(text_api):
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                await resp.write(part)
        assert request.transport is not None
        request.transport.close()
        return resp

    async def b_malformed(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return await self._play(request, self._first_tokens(text_api) + [b'data: {"choices": [{"index": 0,\n\n'])

    async def b_error_event(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        error = {"error": {"message": "backend crashed while decoding", "type": "server_error", "code": 500}}
        return await self._play(request, self._first_tokens(text_api) + [_event(error), DONE])

    async def b_huge_line(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """One content event whose line is 12 MiB long, written in 1 MiB pieces."""
        resp = await self._sse(request)
        await resp.write(_event(_chunk(role=True)))
        await resp.write(b'data: {"choices": [{"index": 0, "delta": {"content": "')
        piece = b"x" * (1 << 20)
        for _ in range(HUGE_LINE_BYTES // len(piece)):
            await resp.write(piece)
        await resp.write(b'"}}]}\n\n' + DONE)
        await resp.write_eof()
        return resp

    # timeouts -----------------------------------------------------------------------------

    async def b_ttft_silent(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """Headers, then nothing."""
        await self._sse(request)
        await asyncio.sleep(MAX_HOLD_S)
        raise TimeoutError

    async def b_ttft_pings(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """Headers, a role chunk, then only keep-alives every 50 ms."""
        resp = await self._sse(request)
        if not text_api:
            await resp.write(_event(_chunk(role=True)))
        while True:
            await asyncio.sleep(0.05)
            await resp.write(b": ping\n\n")

    async def b_stall(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """Three tokens, then silence."""
        resp = await self._sse(request)
        for part in self._first_tokens(text_api):
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                await resp.write(part)
        await asyncio.sleep(MAX_HOLD_S)
        raise TimeoutError

    async def b_stall_pings(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """Three tokens, then only keep-alives every 50 ms (a stuck backend behind a proxy)."""
        resp = await self._sse(request)
        for part in self._first_tokens(text_api):
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                await resp.write(part)
        while True:
            await asyncio.sleep(0.05)
            await resp.write(b": ping\n\n")

    async def b_trickle(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """A token every 100 ms, forever: only the total timeout ends it."""
        resp = await self._sse(request)
        i = 0
        while True:
            await resp.write(_event(_chunk(f" t{i}", text_api=text_api)))
            i += 1
            await asyncio.sleep(0.1)

    async def b_trickle_edge(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """Tokens every 50 ms to 1.35 s, then from 1.46 s on, forever. With idle_s=1 and
        total_s=2.5 the 1.46 s token re-arms the idle deadline to ~2.46 s; later ones would
        move it to the 2.5 s total deadline, less than the runner's 5 % re-arm slack (50 ms)
        later, so it stays at ~2.46 s: a stream that never paused for more than 110 ms times
        out before its total deadline. Holds for any client-to-server delay under ~39 ms."""
        resp = await self._sse(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        times = [0.05 * k for k in range(28)] + [1.46 + 0.05 * k for k in range(200)]
        for i, at in enumerate(times):
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            await resp.write(_event(_chunk(f" t{i}", text_api=text_api)))
        return resp

    # not a stream at all ------------------------------------------------------------------

    async def b_http_400_json(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return web.Response(status=400, content_type="application/json", body=_error_body(
            "max_tokens is too large: 999999", "invalid_request_error", "context_length_exceeded"))

    async def b_http_404_detail(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """FastAPI's error shape (vLLM's unknown routes)."""
        return web.json_response({"detail": "Not Found"}, status=404)

    async def b_http_422_str(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """TGI's error shape: `error` is a string."""
        return web.json_response({"error": "Input validation error: `inputs` must not be empty",
                                  "error_type": "validation"}, status=422)

    async def b_http_429(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return web.Response(status=429, content_type="application/json", headers={"Retry-After": "2"},
                            body=_error_body("Rate limit reached", "rate_limit_error"))

    async def b_http_500_plain(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return web.Response(status=500, text="Internal Server Error: worker died")

    async def b_http_502_empty(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return web.Response(status=502)

    async def b_http_503_html(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return web.Response(status=503, content_type="text/html", headers={"Retry-After": "7"},
                            text="<html><body><h1>503 Service Unavailable</h1></body></html>")

    async def b_json_200(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """A non-streamed completion although stream=true was asked for."""
        return web.json_response({"id": "chatcmpl-fault", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})

    async def b_json_error_200(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """An error as a JSON body with status 200 (gateways that wrap a backend's failure)."""
        return web.Response(status=200, content_type="application/json", body=_error_body(
            "upstream model is loading, retry later", "server_error", "model_loading"))

    async def b_json_as_sse(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """A JSON body under a text/event-stream content type."""
        return await self._play(request, [b'{"object": "chat.completion", "choices": []}\n'])

    async def b_html_200(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return web.Response(status=200, content_type="text/html", text="<html><body>Gateway login</body></html>\n")

    async def b_text_200(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        return web.Response(status=200, text="upstream unavailable, try later\n")

    async def b_close_early(self, request: web.Request, text_api: bool) -> web.StreamResponse:
        """The connection is closed before any response byte."""
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=499)


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: every connect is refused."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A listening port whose accept queue is full and never drained: connects hang.

    Linux drops a SYN when the listener's accept queue is full (tcp_abort_on_overflow=0,
    the default), so the client's connect stays in SYN_SENT until its own timeout.
    """
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(16):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            filler.connect_ex(("127.0.0.1", port))
            _, writable, _ = select.select([], [filler], [], 0.2)
            if not writable:  # this one hangs: the queue is full
                break
        else:
            raise RuntimeError("could not fill the accept queue of a loopback listener")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


BEHAVIOURS: dict[str, Callable[[FaultServer, web.Request, bool], Awaitable[web.StreamResponse]]] = {
    name[2:]: fn for name, fn in vars(FaultServer).items() if name.startswith("b_")
}


def _behaviour(body: dict[str, Any], from_path: str | None) -> str:
    text = body.get("prompt")
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        text = messages[-1].get("content")
    if isinstance(text, str) and text.split() and text.split()[0] in BEHAVIOURS:
        return text.split()[0]
    if body.get("model") in BEHAVIOURS:
        return str(body["model"])
    if from_path in BEHAVIOURS:
        return str(from_path)
    return "ok"



# --- workload tests: a server that keeps what it received, counts prompt tokens, fails at first ---

PROMPT_TOKENS_PER_WORD = 2  # RecordingServer's stand-in tokenizer: two tokens a word ...
PROMPT_TOKENS_OVERHEAD = 7  # ... plus a chat template's seven


class RecordingServer(FaultServer):
    """A FaultServer for workload tests.

    Keeps every completion request body it received (`bodies`, in arrival order); answers
    healthy streams whose `usage.prompt_tokens` is PROMPT_TOKENS_PER_WORD x (words of the
    prompt) + PROMPT_TOKENS_OVERHEAD, so bench's calibration probe has a tokenizer to find;
    and answers its first `fail_first` completion requests with HTTP `fail_status` and a
    JSON error whose message is `FAIL_MESSAGE` (a server still starting, a gateway hiccup).
    """

    FAIL_MESSAGE = "engine is still loading, try again"

    def __init__(self, fail_first: int = 0, fail_status: int = 503, tokens: int = TOKENS) -> None:
        super().__init__(tokens=tokens)
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.bodies: list[dict[str, Any]] = []

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        if len(self.bodies) <= self.fail_first:
            return web.Response(status=self.fail_status, content_type="application/json",
                                body=_error_body(self.FAIL_MESSAGE, "server_error"))
        text_api = "messages" not in body
        events = healthy_events(text_api, self.tokens)
        events[-1]["usage"]["prompt_tokens"] = prompt_tokens_of(body)
        parts: list[bytes | float] = [_event(e) for e in events] + [DONE]
        return await self._play(request, parts)


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt a request body carries: its messages' contents, one a line, or `prompt`."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return "\n".join(str(m.get("content", "")) for m in messages)
    return str(body.get("prompt", ""))


def prompt_tokens_of(body: dict[str, Any]) -> int:
    return PROMPT_TOKENS_PER_WORD * len(prompt_text(body).split()) + PROMPT_TOKENS_OVERHEAD
