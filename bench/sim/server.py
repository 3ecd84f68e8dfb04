"""The aiohttp application: OpenAI-compatible endpoints over the simulated engine.

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions, POST /v1/responses
(streamed as typed events), POST /v1/embeddings, GET /health,
GET /metrics (Prometheus text, vLLM names), GET /sim/requests[/{id}] (ground truth;
``?since=PERF_COUNTER`` filters the list), DELETE /sim/requests (forget the records),
GET /sim/profile (the profile in force, as JSON), POST /tokenize (vLLM's and llama.cpp's
shapes; `bench.sim.tokenize`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path
from typing import IO, Any

import orjson
from aiohttp import web

from bench.sim.admission import (
    block_hashes,
    chunk_context,
    max_tokens_of,
    output_key,
    output_plan,
    prompt_token_list,
)
from bench.sim.api import (
    JSON,
    ApiError,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
    parse_request,
)
from bench.sim.embeddings import embedding_answer
from bench.sim.emitter import Emitter
from bench.sim.engine import Engine
from bench.sim.exposition import prometheus_text
from bench.sim.faults import FaultPlan, FaultSpec
from bench.sim.models import Served, engines, model_card, served_models
from bench.sim.profile import Profile
from bench.sim.responses import stream_response, unary_response
from bench.sim.rxstamp import RxStamp
from bench.sim.sequence import Seq, Truth
from bench.sim.text import build_corpus
from bench.sim.tokenize import tokenize_answer
from bench.sim.tools import plan_tool_call

__all__ = ["HTTP_FAULTS", "SimServer"]

HTTP_FAULTS = ("http_429", "http_500", "http_503")

perf_counter = time.perf_counter


class SimServer:
    def __init__(self, profile: Profile, seed: int = 0, faults: list[FaultSpec] | None = None,
                 trace_path: str | Path | None = None) -> None:
        self.profile = profile
        self.seed = seed
        self.served = served_models(profile)
        self.models = set(self.served)
        self.fault_plan = FaultPlan([*profile.faults, *(faults or [])], seed)
        self.corpus = build_corpus(seed)
        self.engine: Engine = self.served[profile.models[0]].engine  # the first; /metrics reports it
        self.engines = engines(self.served)
        # /metrics: each engine under the first name it serves (adapters show in their base model's)
        self.engine_names = [(e, next(s.name for s in self.served.values() if s.engine is e)) for e in self.engines]
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
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/tokenize", self.tokenize)
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
        if request.method != "POST" or not request.path.endswith(("completions", "responses", "embeddings")):
            stamp = self._rx.get(request.transport)
            if stamp is not None:
                stamp.rx = None
        return await handler(request)

    async def _on_startup(self, app: web.Application) -> None:
        if self.trace_path is not None:
            self._trace = open(self.trace_path, "ab")  # noqa: ASYNC230 - once, before serving
        for engine in self.engines:
            engine.start()

    async def _on_shutdown(self, app: web.Application) -> None:
        for engine in self.engines:
            await engine.stop()
        if self._trace is not None:
            self._trace.close()
            self._trace = None

    # -- simple endpoints --------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def list_models(self, request: web.Request) -> web.Response:
        data = [model_card(item, self.created) for item in self.served.values()]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=JSON)

    async def get_model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in self.models:
            return ApiError(404, f"The model `{name}` does not exist.", "model").response()
        return web.Response(body=orjson.dumps(model_card(self.served[name], self.created)), content_type=JSON)

    async def profile_json(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.profile.model_dump(mode="json")),
                            content_type=JSON)

    async def all_truth(self, request: web.Request) -> web.Response:
        """All kept records; ``?since=S`` keeps those received at perf_counter >= S."""
        records: list[Truth] = list(self.truths.values())
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
        text = prometheus_text(self.engine_names, self.requests_total, self.errors_total,
                               self.faults_total)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    # -- completions -------------------------------------------------------------------
    async def tokenize(self, request: web.Request) -> web.Response:
        return tokenize_answer(await request.read(), set(self.models), self.profile.max_model_len)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=False)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True, responses=True)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        received, raw = await self._receive(request)
        self.counter += 1
        self.requests_total += 1
        rid = f"embd-{self.tag}{self.counter:07d}"
        truth = Truth(id=rid, endpoint="embeddings", model="", stream=False, n=0, prompt_tokens=0,
                      received_s=received, body=self._body(raw))
        self._remember(truth)
        try:
            req = parse_request(EmbeddingRequest, raw)
            if req.model not in self.models:
                raise ApiError(404, f"The model `{req.model}` does not exist.", "model")
            truth.model = req.model
            # Faults that fit a JSON answer: an HTTP error, or late headers (the rest are stream faults).
            fault = self.fault_plan.pick(self.counter)
            if fault is not None and fault.kind in (*HTTP_FAULTS, "slow_headers"):
                truth.fault = fault.label()
                self.faults_total[fault.kind] = self.faults_total.get(fault.kind, 0) + 1
                if fault.kind in HTTP_FAULTS:
                    return self._http_fault(fault, truth)
                await asyncio.sleep(fault.seconds)
            return await embedding_answer(request, req, self.served[req.model].profile, truth)
        except ApiError as err:
            truth.status = err.status
            return self._error(err, {"x-request-id": rid})
        finally:
            self._completed(truth, received)

    async def _receive(self, request: web.Request) -> tuple[float, bytes]:
        """(when the request's first bytes reached the process, its body)."""
        # Received = the first bytes of this request reached the process (see RxStamp);
        # after its body is read, later bytes on the connection belong to the next one.
        stamp = self._rx.get(request.transport)
        received = stamp.rx if stamp is not None and stamp.rx is not None else perf_counter()
        raw = await request.read()
        if stamp is not None:
            stamp.rx = None
            request["received_end_s"] = stamp.last  # the body's last bytes: it is all read now
        return received, raw

    def _body(self, raw: bytes) -> Any:
        if not self.profile.record_bodies:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw.decode("utf-8", "replace")

    def _completed(self, truth: Truth, received: float) -> None:
        if truth.completed_s is None:
            truth.completed_s = perf_counter()
        if self._trace is not None:
            self._trace.write(orjson.dumps(truth.to_json()) + b"\n")
            if received - self._trace_flushed > 0.5:  # readable while it runs
                self._trace.flush()
                self._trace_flushed = received

    def _error(self, err: ApiError, headers: dict[str, str] | None = None) -> web.Response:
        self.errors_total[err.status] = self.errors_total.get(err.status, 0) + 1
        return err.response(headers)

    async def _complete(self, request: web.Request, chat: bool, responses: bool = False) -> web.StreamResponse:
        received, raw = await self._receive(request)
        self.counter += 1
        counter = self.counter
        self.requests_total += 1
        endpoint = "responses" if responses else "chat" if chat else "completions"
        rid = f"{'resp' if responses else 'chatcmpl' if chat else 'cmpl'}-{self.tag}{counter:07d}"
        try:
            seq, emitter, req, fault, served = self._prepare(raw, endpoint, counter, received, request, rid)
        except ApiError as err:
            # Rejected requests have a (short) ground-truth record too.
            self._remember(Truth(id=rid, endpoint=endpoint, model="", stream=False, n=0, prompt_tokens=0,
                                 received_s=received, completed_s=perf_counter(), status=err.status,
                                 body=self._body(raw)))
            return self._error(err, {"x-request-id": rid})
        truth = seq.truth
        truth.body = self._body(raw)
        self._remember(truth)
        if fault is not None:
            self.faults_total[fault.kind] = self.faults_total.get(fault.kind, 0) + 1
        try:
            if fault is not None and fault.kind in HTTP_FAULTS:
                return self._http_fault(fault, truth)
            delay = served.profile.header_delay_ms / 1000.0
            if fault is not None and fault.kind == "slow_headers":
                delay += fault.seconds
            if delay > 0:
                await asyncio.sleep(delay)
            if req.stream:
                return await stream_response(request, served.engine, seq, emitter, req, chat)
            return await unary_response(request, served.engine, seq, emitter, req, chat)
        finally:
            self._completed(truth, received)

    def _http_fault(self, fault: FaultSpec, truth: Truth) -> web.Response:
        """The error response of an http_429 / http_500 / http_503 fault."""
        status = int(fault.kind[-3:])
        truth.status = status
        headers = {"x-request-id": truth.id}
        if status in (429, 503):
            headers["Retry-After"] = f"{fault.retry_after:g}"
        msg = {429: "Rate limit reached (simulated fault).",
               500: "Internal server error (simulated fault).",
               503: "Service unavailable (simulated fault)."}[status]
        return self._error(ApiError(status, msg), headers)

    def _remember(self, truth: Truth) -> None:
        self.truths[truth.id] = truth
        if len(self.truths) > self.profile.truth_limit:
            del self.truths[next(iter(self.truths))]

    def _prepare(self, raw: bytes, endpoint: str, counter: int, received: float,
                 request: web.Request, rid: str) -> tuple[Seq, Emitter, Any, FaultSpec | None, Served]:
        chat = endpoint != "completions"
        req: Any
        if endpoint == "responses":
            req = parse_request(ResponsesRequest, raw).as_chat()
        else:
            req = parse_request(ChatRequest if chat else CompletionRequest, raw)
        if req.model not in self.models:
            raise ApiError(404, f"The model `{req.model}` does not exist.", "model")
        served = self.served[req.model]
        p = served.profile
        tokens = prompt_token_list(req, chat, p.image_tokens)
        prompt_tokens = len(tokens)
        max_tokens = max_tokens_of(req, chat, prompt_tokens, p.max_model_len)
        key = output_key(req, tokens, counter)
        reasoning = p.reasoning_tokens if chat else 0
        targets, reasons = output_plan(req, p, self.seed, key, max_tokens, reasoning)
        tool = plan_tool_call(req, p.tool_call_probability, self.seed, key, rid) if endpoint == "chat" else None
        if tool is not None:
            reasons = ["tool_calls" if r == "stop" else r for r in reasons]
        why = served.engine.fits(prompt_tokens, prompt_tokens + sum(targets), req.n)
        if why is not None:
            raise ApiError(400, why)
        fault = self.fault_plan.pick(counter)
        if fault is not None and fault.kind == "no_done" and not req.stream:
            fault = None  # nothing to leave out of a non-streamed response
        truth = Truth(id=rid, endpoint=endpoint, model=req.model,
                      stream=bool(req.stream), n=req.n, prompt_tokens=prompt_tokens,
                      received_s=received, fault=fault.label() if fault else None,
                      received_end_s=request.get("received_end_s"),
                      tool_call=tool.name if tool is not None else None)
        ctx = chunk_context(req, chat, rid, prompt_tokens, self.corpus, self.seed, key, reasoning)
        ctx = dataclasses.replace(ctx, responses=endpoint == "responses", tool_call=tool,
                                  usage_offset=p.usage_completion_offset)
        emitter = Emitter(ctx, truth, request.transport, stream=bool(req.stream), fault=fault,
                          coalescer=served.engine.coalescer if req.stream else None)
        seq = Seq(truth=truth, prompt_tokens=prompt_tokens, targets=targets, reasons=reasons,
                  sink=emitter, done=asyncio.get_running_loop().create_future(),
                  block_hashes=block_hashes(tokens, p))
        if fault is not None and fault.kind == "stall":
            seq.stall_after = max(1, fault.after)
            seq.stall_seconds = fault.seconds
        return seq, emitter, req, fault, served
