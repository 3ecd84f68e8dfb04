"""Turns engine tokens into SSE chunks on the socket (or a collected JSON response).

The hot path (no logprobs, no stop strings, no per-chunk usage) concatenates pre-encoded
byte templates with pre-encoded words and writes the HTTP chunk straight to the asyncio
transport, then stamps ``time.perf_counter()``: that stamp is the ground-truth write time.
Each engine emission is one write: one chunk per choice per step (``tokens_per_chunk``
tokens in it), never several steps coalesced.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.sim.faults import FaultSpec, uniform
from bench.sim.responses_api import delta_events
from bench.sim.sequence import CHOICE_DONE, GONE, OK, Coalescer, Truth
from bench.sim.text import Corpus, logprob_of
from bench.sim.tools import ToolPlan, ToolStream

__all__ = ["ChunkContext", "Emitter", "perf_counter"]

perf_counter = time.perf_counter


@dataclass(frozen=True)
class ChunkContext:
    """Everything about one request that shapes its chunks."""

    id: str
    created: int
    model: str
    chat: bool
    n: int
    prompt_tokens: int
    corpus: Corpus
    offsets: tuple[int, ...]
    server_seed: int
    key: int
    stops: tuple[str, ...] = ()
    min_tokens: int = 0
    logprobs: bool = False
    top_logprobs: int = 0
    continuous_usage: bool = False
    reasoning_tokens: int = 0
    responses: bool = False  # /v1/responses: typed events (bench.sim.responses_api)
    tool_call: ToolPlan | None = None  # the answer is this tool call (bench.sim.tools)
    usage_offset: int = 0  # the profile's usage_completion_offset: added to the final usage only


@dataclass(eq=False)
class Emitter:
    ctx: ChunkContext
    truth: Truth
    transport: asyncio.Transport | None
    stream: bool
    framed: bool = True
    fault: FaultSpec | None = None
    coalescer: Coalescer | None = None
    written: int = 0
    # Per-choice accumulated text (stop strings need it; non-streamed output is built
    # from it) and, non-streamed, reasoning text and logprob entries.
    texts: list[list[str]] = field(default_factory=list)
    reasoning: list[list[str]] = field(default_factory=list)
    logprob_entries: list[list[Any]] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)  # recent text, for stop checks
    text_len: list[int] = field(default_factory=list)  # characters so far (text_offset)
    dropped: bool = False
    sequence: int = 0  # /v1/responses: the next event's sequence_number
    tool: ToolStream | None = None  # a tool-call answer's state

    def __post_init__(self) -> None:
        ctx = self.ctx
        n = ctx.n
        self.texts = [[] for _ in range(n)]
        self.reasoning = [[] for _ in range(n)]
        self.logprob_entries = [[] for _ in range(n)]
        self.tail = [""] * n
        self.text_len = [0] * n
        self.tool = ToolStream(ctx.tool_call, n) if ctx.tool_call is not None else None
        self.fast = (
            self.stream
            and self.tool is None
            and not ctx.responses
            and not ctx.stops
            and not ctx.logprobs
            and not ctx.continuous_usage
        )
        obj = "chat.completion.chunk" if ctx.chat else "text_completion"
        head = (
            f'data: {{"id":"{ctx.id}","object":"{obj}","created":{ctx.created},'
            f'"model":{orjson.dumps(ctx.model).decode()},"choices":[{{"index":'
        ).encode()
        self.head = head
        if ctx.chat:
            self.pre = [head + b'%d,"delta":{"content":"' % c for c in range(n)]
            self.pre_reason = [head + b'%d,"delta":{"reasoning_content":"' % c for c in range(n)]
            close = b'"}'
            self.role = [
                head + b'%d,"delta":{"role":"assistant","content":""},"logprobs":null,'
                b'"finish_reason":null}]}\n\n' % c
                for c in range(n)
            ]
        else:
            self.pre = [head + b'%d,"text":"' % c for c in range(n)]
            self.pre_reason = self.pre
            close = b'"'
            self.role = [b""] * n
        self.mid = close + b',"logprobs":null,"finish_reason":null}]}\n\n'
        self.end = {
            r: close + b',"logprobs":null,"finish_reason":"%s"}]}\n\n' % r.encode()
            for r in ("stop", "length")
        }
        self.mask = len(ctx.corpus.encoded) - 1
        self.pending: list[bytes] = []
        self.pending_choices: list[int] = []
        self.mid_fault = self.fault is not None and self.fault.kind in ("drop", "malformed")

    # -- Sink protocol -----------------------------------------------------------------
    def alive(self) -> bool:
        tr = self.transport
        return tr is not None and not tr.is_closing()

    def backlog(self) -> int:
        tr = self.transport
        return tr.get_write_buffer_size() if tr is not None and self.stream else 0

    def emit(self, c: int, pos: int, count: int, reason: str | None, now: float) -> int:
        ctx = self.ctx
        if self.mid_fault and self.written >= self.fault.after:  # type: ignore[union-attr]
            if self._apply_fault():
                return GONE
        R = ctx.reasoning_tokens
        if self.fast and (pos >= R or pos + count <= R):
            words = ctx.corpus.encoded
            off = ctx.offsets[c] + pos
            if count == 1:
                text = words[off & self.mask]
            else:
                text = b"".join(words[(off + i) & self.mask] for i in range(count))
            pre = self.pre[c] if pos >= R else self.pre_reason[c]
            body = pre + text + (self.mid if reason is None else self.end[reason])
            if pos == 0:
                body = self.role[c] + body
            self._write(body, c)
            if reason is not None:
                self.truth.finish_reasons[c] = reason
            return OK
        return self._emit_general(c, pos, count, reason)

    # -- internals ---------------------------------------------------------------------
    def _write(self, body: bytes, c: int) -> None:
        data = b"%x\r\n%b\r\n" % (len(body), body) if self.framed else body
        self.written += 1
        co = self.coalescer
        if co is not None and co.active:
            if not self.pending:
                co.dirty.append(self)
            self.pending.append(data)
            self.pending_choices.append(c)
            return
        tr = self.transport
        assert tr is not None
        tr.write(data)
        truth = self.truth
        truth.chunk_write_times.append(perf_counter())
        truth.chunk_choice.append(c)

    def flush(self) -> None:
        """Write the chunks buffered by the coalescer in one write, stamping each."""
        if not self.pending:
            return
        tr = self.transport
        data, choices = self.pending, self.pending_choices
        self.pending, self.pending_choices = [], []
        if tr is None or tr.is_closing():
            return  # never written: not in the ground truth
        tr.write(b"".join(data))
        t = perf_counter()
        truth = self.truth
        truth.chunk_write_times.extend((t,) * len(choices))
        truth.chunk_choice.extend(choices)
        if len(choices) > 1:
            truth.coalesced = True

    def _apply_fault(self) -> bool:
        """Mid-stream fault due now; True if the connection is gone."""
        fault = self.fault
        assert fault is not None
        self.mid_fault = False
        tr = self.transport
        if tr is None:
            return True
        if fault.kind == "drop":
            self.flush()  # what was emitted before the drop did reach the wire
            self.dropped = True
            tr.abort()
            return True
        if self.stream:  # malformed: one event whose JSON is cut short
            bad = self.head + b'0,"delta":{"content":"oops\n\n'
            data = b"%x\r\n%b\r\n" % (len(bad), bad) if self.framed else bad
            if self.pending:
                self.pending[-1] += data
            else:
                self.flush()
                tr.write(data)
        return False

    def _emit_general(self, c: int, pos: int, count: int, reason: str | None) -> int:
        ctx = self.ctx
        corpus = ctx.corpus
        mask = self.mask
        off = ctx.offsets[c] + pos
        pieces = [corpus.words[(off + i) & mask] for i in range(count)]
        code = OK
        # Split the tokens between the reasoning and the content phases.
        R = ctx.reasoning_tokens if ctx.chat else 0
        n_reason = max(0, min(count, R - pos))
        reason_text = "".join(pieces[:n_reason])
        content = "".join(pieces[n_reason:])
        tool = self.tool.delta(c, pieces[n_reason:], reason is not None) if self.tool is not None else None
        if ctx.stops and tool is None:
            content, stopped = self._cut_at_stop(c, content, may_stop=pos + count > ctx.min_tokens)
            if stopped:
                reason = "stop"
                code = CHOICE_DONE
        lp = self._logprobs(c, pos, pieces) if ctx.logprobs else None
        self.text_len[c] += len(content)
        if reason is not None:
            self.truth.finish_reasons[c] = reason
        if ctx.responses and self.stream:  # the final response object repeats the text
            self.reasoning[c].append(reason_text)
            self.texts[c].append(content)
        if not self.stream:
            self.written += 1  # counts emissions, for `after` of mid-stream faults
            self.reasoning[c].append(reason_text)
            self.texts[c].append(content)
            if lp is not None:
                self.logprob_entries[c].append(lp)
            return code
        self._write(self._chunk_events(c, pos, count, reason, reason_text, content, lp, tool), c)
        return code

    def _cut_at_stop(self, c: int, content: str, may_stop: bool) -> tuple[str, bool]:
        """(content cut before the first stop sequence, whether one came); the choice's recent
        text (`tail`) lets a stop sequence span two emissions."""
        if not (content and may_stop):
            self.tail[c] = (self.tail[c] + content)[-64:]
            return content, False
        prev = self.tail[c]
        combined = prev + content
        start = len(prev)
        cut = -1
        for s in self.ctx.stops:
            i = combined.find(s, max(0, start - len(s) + 1))
            if i != -1 and (cut == -1 or i < cut):
                cut = i
        self.tail[c] = combined[-64:]
        if cut == -1:
            return content, False
        return (combined[start:cut] if cut > start else ""), True

    def _chunk_events(self, c: int, pos: int, count: int, reason: str | None, reason_text: str, content: str,
                      lp: Any, tool: dict[str, Any] | None = None) -> bytes:
        """The SSE event(s) of one emission: a role-only chunk first on a chat's first token."""
        ctx = self.ctx
        if ctx.responses:
            body, self.sequence = delta_events(ctx, self.sequence, pos, reason_text, content)
            return body
        choice: dict[str, Any] = {"index": c}
        if ctx.chat:
            delta: dict[str, Any] = {}
            if reason_text:
                delta["reasoning_content"] = reason_text
            if tool is not None:
                delta.update(tool)
            elif content or not reason_text:
                delta["content"] = content if self.tool is None else ""
            choice["delta"] = delta
            choice["logprobs"] = {"content": lp} if lp is not None else None
        else:
            choice["text"] = content
            choice["logprobs"] = lp
        choice["finish_reason"] = reason
        event: dict[str, Any] = {
            "id": ctx.id,
            "object": "chat.completion.chunk" if ctx.chat else "text_completion",
            "created": ctx.created,
            "model": ctx.model,
            "choices": [choice],
        }
        body = b""
        if pos == 0 and ctx.chat:
            first = dict(event, choices=[{"index": c, "delta": {"role": "assistant", "content": ""},
                                          "logprobs": None, "finish_reason": None}])
            if ctx.continuous_usage:
                first["usage"] = self._usage(0)
            body = b"data: " + orjson.dumps(first) + b"\n\n"
        if ctx.continuous_usage:
            event["usage"] = self._usage(pos + count)
        return body + b"data: " + orjson.dumps(event) + b"\n\n"

    def _usage(self, completion: int) -> dict[str, int]:
        p = self.ctx.prompt_tokens
        return {"prompt_tokens": p, "total_tokens": p + completion, "completion_tokens": completion}

    def _logprobs(self, c: int, pos: int, pieces: list[str]) -> Any:
        """Chat: a list of {token, logprob, bytes, top_logprobs}; completions: the
        legacy {tokens, token_logprobs, top_logprobs, text_offset} object."""
        ctx = self.ctx
        words = ctx.corpus.words
        k = ctx.top_logprobs
        entries = []
        for i, tok in enumerate(pieces):
            p = pos + i
            lp = logprob_of(ctx.server_seed, ctx.key, c, p)
            alts = [(tok, lp)]
            j = 1
            while len(alts) < k and j < 4 * k + 8:
                alt = words[(ctx.offsets[c] + p + 7919 * j) & self.mask]
                if all(alt != a for a, _ in alts):
                    drop = 0.5 + uniform(ctx.server_seed, ctx.key, c, p, j)
                    alts.append((alt, round(alts[-1][1] - drop, 6)))
                j += 1
            entries.append((tok, lp, alts[:k]))
        if ctx.chat:
            return [
                {"token": t, "logprob": lp, "bytes": list(t.encode()),
                 "top_logprobs": [{"token": a, "logprob": alp, "bytes": list(a.encode())}
                                  for a, alp in alts]}
                for t, lp, alts in entries
            ]
        offset = self.text_len[c]
        text_offset = []
        for t, _, _ in entries:
            text_offset.append(offset)
            offset += len(t)
        return {
            "tokens": [t for t, _, _ in entries],
            "token_logprobs": [lp for _, lp, _ in entries],
            "top_logprobs": [{a: alp for a, alp in alts} for _, _, alts in entries],
            "text_offset": text_offset,
        }
