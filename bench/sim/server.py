"""The aiohttp application: OpenAI-compatible endpoints over the simulated engine.

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions, GET /health,
GET /metrics (Prometheus text, vLLM names), GET /sim/requests[/{id}] (ground truth;
``?since=PERF_COUNTER`` filters the list), DELETE /sim/requests (forget the records),
GET /sim/profile (the profile in force, as JSON).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import IO, Any

import orjson
from aiohttp import web

from bench.sim.api import JSON, ApiError, ChatRequest, CompletionRequest, parse_request
from bench.sim.emitter import ChunkContext, Emitter
from bench.sim.engine import Engine
from bench.sim.sequence import Seq, Truth
from bench.sim.faults import FaultPlan, FaultSpec, _mix
from bench.sim.profile import Profile
from bench.sim.text import (
    build_corpus,
    choice_offset,
    draw_output_len,
    stable_hash,
)

perf_counter = time.perf_counter
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class RxStamp(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol to stamp when a request's first bytes
    arrive. Stamping in the handler instead would miss the time a request waits behind
    others (64 requests arriving together are handled one after another: ~10 ms)."""

    def __init__(self, inner: asyncio.Protocol, registry: dict[Any, "RxStamp"]) -> None:
        self.inner = inner
        self.registry = registry
        self.transport: asyncio.BaseTransport | None = None
        self.rx: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.registry[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.rx is None:
            self.rx = perf_counter()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class SimServer:
    def __init__(self, profile: Profile, seed: int = 0, faults: list[FaultSpec] | None = None,
                 trace_path: str | Path | None = None) -> None:
        self.profile = profile
        self.seed = seed
        self.models = set(profile.models)
        self.fault_plan = FaultPlan([*profile.faults, *(faults or [])], seed)
        self.corpus = build_corpus(seed)
        self.engine = Engine(profile)
        self.counter = 0
        self.tag = f"{os.getpid() & 0xFFFF:04x}"
        self.truths: dict[str, Truth] = {}
        self.trace_path = Path(trace_path) if trace_path else None
        self._trace: IO[bytes] | None = None
        self._trace_flushed = 0.0
        self.requests_total = 0
        self.errors_total: dict[int, int] = {}
        self.faults_total: dict[str, int] = {}
        self.created = int(time.time())
        self._rx: dict[Any, RxStamp] = {}

    def protocol_factory(self, inner: Any) -> Any:
        """Wrap aiohttp's protocol factory (`AppRunner.server`) with arrival stamping."""
        registry = self._rx
        return lambda: RxStamp(inner(), registry)

    # -- app ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024,
                              middlewares=[self._forget_rx_stamp])
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/v1/models/{model}", self.get_model)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/sim/requests", self.all_truth)
        app.router.add_delete("/sim/requests", self.clear_truth)
        app.router.add_get("/sim/requests/{id}", self.one_truth)
        app.router.add_get("/sim/profile", self.profile_json)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    @web.middleware
    async def _forget_rx_stamp(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # Only the completion handlers use the arrival stamp; any other request on the
        # connection must not leave its stamp to the next one.
        if request.method != "POST" or not request.path.endswith("completions"):
            stamp = self._rx.get(request.transport)
            if stamp is not None:
                stamp.rx = None
        return await handler(request)

    async def _on_startup(self, app: web.Application) -> None:
        if self.trace_path is not None:
            self._trace = open(self.trace_path, "ab")
        self.engine.start()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.engine.stop()
        if self._trace is not None:
            self._trace.close()
            self._trace = None

    # -- simple endpoints --------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def list_models(self, request: web.Request) -> web.Response:
        data = [
            {"id": m, "object": "model", "created": self.created, "owned_by": "bench-sim",
             "root": m, "parent": None, "max_model_len": self.profile.max_model_len}
            for m in self.profile.models
        ]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=JSON)

    async def get_model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in self.models:
            return ApiError(404, f"The model `{name}` does not exist.", "model").response()
        return web.Response(body=orjson.dumps(
            {"id": name, "object": "model", "created": self.created, "owned_by": "bench-sim",
             "root": name, "parent": None, "max_model_len": self.profile.max_model_len}),
            content_type=JSON)

    async def profile_json(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.profile.model_dump(mode="json")),
                            content_type=JSON)

    async def all_truth(self, request: web.Request) -> web.Response:
        """All kept records; ``?since=S`` keeps those received at perf_counter >= S."""
        records = self.truths.values()
        since = request.query.get("since")
        if since is not None:
            try:
                t0 = float(since)
            except ValueError:
                return ApiError(400, "since must be a number (perf_counter seconds)",
                                "since").response()
            records = [t for t in records if t.received_s >= t0]
        return web.Response(body=orjson.dumps([t.to_json() for t in records]),
                            content_type=JSON)

    async def clear_truth(self, request: web.Request) -> web.Response:
        self.truths.clear()
        return web.Response(status=204)

    async def one_truth(self, request: web.Request) -> web.Response:
        truth = self.truths.get(request.match_info["id"])
        if truth is None:
            return ApiError(404, f"no request {request.match_info['id']!r}").response()
        return web.Response(body=orjson.dumps(truth.to_json()), content_type=JSON)

    async def metrics(self, request: web.Request) -> web.Response:
        e = self.engine
        model = self.profile.models[0]
        lbl = f'{{model_name="{model}"}}'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{lbl} {e.num_running}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{lbl} {e.num_waiting}",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{lbl} {e.kv_usage:.6f}",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{lbl} {e.prompt_tokens_total}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{lbl} {e.generation_tokens_total}",
            "# HELP vllm:request_success_total Count of finished requests by reason.",
            "# TYPE vllm:request_success_total counter",
        ]
        for reason, count in sorted(e.finished_total.items()):
            lines.append(
                f'vllm:request_success_total{{model_name="{model}",finished_reason="{reason}"}} {count}'
            )
        if e.prefix_cache is not None:
            lines += [
                "# TYPE vllm:prefix_cache_queries_total counter",
                f"vllm:prefix_cache_queries_total{lbl} {e.prefix_cache.queries}",
                "# TYPE vllm:prefix_cache_hits_total counter",
                f"vllm:prefix_cache_hits_total{lbl} {e.prefix_cache.hits}",
            ]
        lines += [
            "# TYPE sim:requests_total counter",
            f"sim:requests_total {self.requests_total}",
            "# TYPE sim:steps_total counter",
            f"sim:steps_total {e.steps_total}",
            "# TYPE sim:idle_waits_total counter",
            f"sim:idle_waits_total {e.idle_waits_total}",
            "# HELP sim:lag_resets_total Steps that started > 5 ms late (engine overloaded).",
            "# TYPE sim:lag_resets_total counter",
            f"sim:lag_resets_total {e.lag_resets_total}",
            "# TYPE sim:errors_total counter",
            *(f'sim:errors_total{{status="{s}"}} {c}' for s, c in sorted(self.errors_total.items())),
            "# TYPE sim:faults_total counter",
            *(f'sim:faults_total{{kind="{k}"}} {c}' for k, c in sorted(self.faults_total.items())),
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain",
                            charset="utf-8")

    # -- completions -------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=False)

    def _error(self, err: ApiError, headers: dict[str, str] | None = None) -> web.Response:
        self.errors_total[err.status] = self.errors_total.get(err.status, 0) + 1
        return err.response(headers)

    async def _complete(self, request: web.Request, chat: bool) -> web.StreamResponse:
        # Received = the first bytes of this request reached the process (see RxStamp);
        # after its body is read, later bytes on the connection belong to the next one.
        stamp = self._rx.get(request.transport)
        received = stamp.rx if stamp is not None and stamp.rx is not None else perf_counter()
        raw = await request.read()
        if stamp is not None:
            stamp.rx = None
        self.counter += 1
        counter = self.counter
        self.requests_total += 1
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{self.tag}{counter:07d}"
        try:
            seq, emitter, req, fault = self._prepare(raw, chat, counter,
                                                     received, request, rid)
        except ApiError as err:
            # Rejected requests have a (short) ground-truth record too.
            self._remember(Truth(id=rid, endpoint="chat" if chat else "completions",
                                 model="", stream=False, n=0, prompt_tokens=0,
                                 received_s=received, completed_s=perf_counter(),
                                 status=err.status))
            return self._error(err, {"x-request-id": rid})
        truth = seq.truth
        rid_header = {"x-request-id": truth.id}
        self._remember(truth)
        if fault is not None:
            self.faults_total[fault.kind] = self.faults_total.get(fault.kind, 0) + 1
        try:
            if fault is not None and fault.kind in ("http_429", "http_500", "http_503"):
                status = int(fault.kind[-3:])
                truth.status = status
                headers = dict(rid_header)
                if status in (429, 503):
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                msg = {429: "Rate limit reached (simulated fault).",
                       500: "Internal server error (simulated fault).",
                       503: "Service unavailable (simulated fault)."}[status]
                return self._error(ApiError(status, msg), headers)
            delay = self.profile.header_delay_ms / 1000.0
            if fault is not None and fault.kind == "slow_headers":
                delay += fault.seconds
            if delay > 0:
                await asyncio.sleep(delay)
            if req.stream:
                return await self._stream(request, seq, emitter, req, chat)
            return await self._unary(request, seq, emitter, req, chat)
        finally:
            if truth.completed_s is None:
                truth.completed_s = perf_counter()
            if self._trace is not None:
                self._trace.write(orjson.dumps(truth.to_json()) + b"\n")
                if received - self._trace_flushed > 0.5:  # readable while it runs
                    self._trace.flush()
                    self._trace_flushed = received

    def _remember(self, truth: Truth) -> None:
        self.truths[truth.id] = truth
        if len(self.truths) > self.profile.truth_limit:
            del self.truths[next(iter(self.truths))]

    def _prepare(self, raw: bytes, chat: bool, counter: int, received: float,
                 request: web.Request, rid: str) -> tuple[Seq, Emitter, Any, FaultSpec | None]:
        p = self.profile
        req: Any = parse_request(ChatRequest if chat else CompletionRequest, raw)
        if req.model not in self.models:
            raise ApiError(404, f"The model `{req.model}` does not exist.", "model")
        tokens = self._prompt_tokens(req, chat)
        prompt_tokens = len(tokens)
        if chat:
            max_tokens = req.max_completion_tokens or req.max_tokens
        else:
            max_tokens = req.max_tokens or 16  # OpenAI / vLLM default for completions
        if max_tokens is None:
            max_tokens = p.max_model_len - prompt_tokens
        if prompt_tokens + max_tokens > p.max_model_len or max_tokens < 1:
            raise ApiError(
                400,
                f"This model's maximum context length is {p.max_model_len} tokens. However, "
                f"you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                f"messages, {max_tokens} in the completion). Please reduce the length of the "
                "messages or completion.",
                "max_tokens",
            )
        if req.min_tokens > max_tokens:
            raise ApiError(400, f"min_tokens ({req.min_tokens}) must be <= max_tokens "
                           f"({max_tokens})", "min_tokens")
        # Seed material: the request's seed, else greedy (temperature 0) output depends on
        # the prompt only, else a per-request counter.
        if req.seed is not None:
            key = _mix(1, req.seed)
        elif req.temperature == 0:
            key = _mix(2, stable_hash(" ".join(map(str, tokens))))
        else:
            key = _mix(3, counter)
        reasoning = p.reasoning_tokens if chat else 0
        targets, reasons = [], []
        for c in range(req.n):
            natural = reasoning + max(req.min_tokens,
                                      draw_output_len(p.output_len, self.seed, key, c))
            if req.ignore_eos or natural >= max_tokens:
                targets.append(max_tokens)
                reasons.append("length")
            else:
                targets.append(max(natural, req.min_tokens))
                reasons.append("stop")
        why = self.engine.fits(prompt_tokens, prompt_tokens + sum(targets), req.n)
        if why is not None:
            raise ApiError(400, why)
        fault = self.fault_plan.pick(counter)
        if fault is not None and fault.kind == "no_done" and not req.stream:
            fault = None  # nothing to leave out of a non-streamed response
        truth = Truth(id=rid, endpoint="chat" if chat else "completions", model=req.model,
                      stream=bool(req.stream), n=req.n, prompt_tokens=prompt_tokens,
                      received_s=received, fault=fault.label() if fault else None)
        logprobs = bool(req.logprobs) if chat else req.logprobs is not None
        top = (req.top_logprobs or 0) if chat else (req.logprobs or 0)
        so = req.stream_options
        ctx = ChunkContext(
            id=rid, created=int(time.time()), model=req.model, chat=chat, n=req.n,
            prompt_tokens=prompt_tokens, corpus=self.corpus,
            offsets=tuple(choice_offset(self.seed, key, c) for c in range(req.n)),
            server_seed=self.seed, key=key, stops=req.stops(), min_tokens=req.min_tokens,
            logprobs=logprobs, top_logprobs=top,
            # vLLM adds per-chunk usage only when include_usage is on as well.
            continuous_usage=bool(so and so.include_usage and so.continuous_usage_stats),
            reasoning_tokens=reasoning,
        )
        emitter = Emitter(ctx, truth, request.transport, stream=bool(req.stream), fault=fault,
                          coalescer=self.engine.coalescer if req.stream else None)
        block = p.prefix_block_tokens
        hashes: tuple[int, ...] = ()
        if p.prefix_cache:
            h, out = 0, []
            for i in range(prompt_tokens // block):
                h = hash((h, tuple(tokens[i * block:(i + 1) * block])))
                out.append(h)
            hashes = tuple(out)
        seq = Seq(truth=truth, prompt_tokens=prompt_tokens, targets=targets, reasons=reasons,
                  sink=emitter, done=asyncio.get_running_loop().create_future(),
                  block_hashes=hashes)
        if fault is not None and fault.kind == "stall":
            seq.stall_after = max(1, fault.after)
            seq.stall_seconds = fault.seconds
        return seq, emitter, req, fault

    @staticmethod
    def _prompt_tokens(req: Any, chat: bool) -> list[Any]:
        """The prompt as a token list, per the convention in bench.sim.text."""
        if chat:
            tokens: list[Any] = []
            for m in req.messages:
                # CHAT_TEMPLATE_TOKENS_PER_MESSAGE (4) template tokens around each message.
                tokens += ["<|im_start|>", m.role, "\n", *m.text().split(), "<|im_end|>"]
            return tokens
        prompt = req.prompt
        if isinstance(prompt, str):
            return prompt.split()
        if prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise ApiError(400, "batched prompts (a list of several strings) are not "
                               "supported by the simulator", "prompt")
            return prompt[0].split()
        return list(prompt)

    async def _stream(self, request: web.Request, seq: Seq, emitter: Emitter, req: Any,
                      chat: bool) -> web.StreamResponse:
        truth = seq.truth
        resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, "x-request-id": truth.id})
        if request.version >= (1, 1):
            resp.enable_chunked_encoding()
        else:  # HTTP/1.0: no chunked framing; the end of the body is the connection's end
            resp.force_close()
        await resp.prepare(request)
        truth.response_start_s = perf_counter()
        emitter.transport = request.transport
        emitter.framed = resp.chunked
        self.engine.submit(seq)
        try:
            await seq.done
        except asyncio.CancelledError:
            self.engine.cancel(seq)
            raise
        if truth.cancelled or emitter.dropped or not emitter.alive():
            return resp
        tail = b""
        so = req.stream_options
        if so is not None and so.include_usage:
            ctx = emitter.ctx
            out = truth.output_tokens
            usage = {"id": ctx.id, "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": ctx.created, "model": ctx.model, "choices": [],
                     "usage": {"prompt_tokens": truth.prompt_tokens, "total_tokens":
                               truth.prompt_tokens + out, "completion_tokens": out}}
            if truth.cached_tokens:
                usage["usage"]["prompt_tokens_details"] = {"cached_tokens": truth.cached_tokens}
            tail += b"data: " + orjson.dumps(usage) + b"\n\n"
        if not (emitter.fault is not None and emitter.fault.kind == "no_done"):
            tail += b"data: [DONE]\n\n"
        try:
            await resp.write_eof(tail)  # one write: usage, [DONE] and the chunked end
        except ConnectionResetError:
            truth.cancelled = True
        return resp

    async def _unary(self, request: web.Request, seq: Seq, emitter: Emitter, req: Any,
                     chat: bool) -> web.StreamResponse:
        truth = seq.truth
        self.engine.submit(seq)
        try:
            await seq.done
        except asyncio.CancelledError:
            self.engine.cancel(seq)
            raise
        ctx = emitter.ctx
        if truth.cancelled or emitter.dropped:
            return web.Response(status=499)  # never sent: the connection is gone
        choices = []
        for c in range(ctx.n):
            text = "".join(emitter.texts[c])
            entries = emitter.logprob_entries[c]
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if ctx.reasoning_tokens:
                    message["reasoning_content"] = "".join(emitter.reasoning[c])
                lp = {"content": [e for chunk in entries for e in chunk]} if ctx.logprobs else None
                choices.append({"index": c, "message": message, "logprobs": lp,
                                "finish_reason": truth.finish_reasons[c]})
            else:
                lp = None
                if ctx.logprobs:
                    lp = {key: [v for chunk in entries for v in chunk[key]]
                          for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}
                choices.append({"index": c, "text": text, "logprobs": lp,
                                "finish_reason": truth.finish_reasons[c]})
        out = truth.output_tokens
        usage: dict[str, Any] = {"prompt_tokens": truth.prompt_tokens,
                                 "total_tokens": truth.prompt_tokens + out,
                                 "completion_tokens": out}
        if truth.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": truth.cached_tokens}
        body = orjson.dumps({"id": ctx.id, "object": "chat.completion" if chat else
                             "text_completion", "created": ctx.created, "model": ctx.model,
                             "choices": choices, "usage": usage})
        if emitter.fault is not None and emitter.fault.kind == "malformed":
            body = body[: len(body) // 2]
        truth.response_start_s = perf_counter()
        return web.Response(body=body, content_type=JSON, headers={"x-request-id": truth.id})

