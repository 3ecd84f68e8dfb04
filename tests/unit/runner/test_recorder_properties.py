"""Property: however a stream is cut into reads (any byte, any line-ending style, a BOM),
the recorder records the same chunks, kinds, tokens, text, finish reasons and usage as
from one read; each chunk is stamped with a read's time, in order."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.runner.recorder import StreamRecorder

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


def _delta(kind: str, text: str) -> dict:
    if kind == "tool":
        return {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
    return {"content": text} if kind == "content" else {"reasoning_content": text}


@st.composite
def streams(draw) -> tuple[bytes, int]:
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    events = [orjson.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    pieces = draw(st.lists(st.tuples(st.sampled_from(["content", "reasoning", "tool"]), TEXT), min_size=1,
                           max_size=12))
    for kind, text in pieces:
        events.append(orjson.dumps({"choices": [{"index": 0, "delta": _delta(kind, text)}]}))
    events.append(orjson.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append(orjson.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces)}}))
    body = b""
    for data in events:
        if draw(st.booleans()):
            body += b": keep-alive" + newline + newline
        body += b"data: " + data + newline + newline
    body += b"data: [DONE]" + newline + newline
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return bom + body, len(pieces)


def _record(parts: list[bytes]) -> StreamRecorder:
    rec = StreamRecorder(0.0)
    rec.keep_text = True
    for i, part in enumerate(parts, start=1):
        rec.feed(float(i), part)
    rec.close(float(len(parts) + 1))
    return rec


def _observed(rec: StreamRecorder) -> tuple:
    c = rec.chunks
    return (list(c.kind), list(c.tokens), list(c.choice), rec.output_chars, "".join(rec.text_parts),
            rec.finish_reason(), rec.usage_tokens(), rec.done_seen, rec.incomplete())


@settings(max_examples=150, deadline=None)
@given(streams(), st.data())
def test_any_cut_into_reads_records_the_same_answer(stream, data):
    body, outputs = stream
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=20)))
    parts = [body[i:j] for i, j in zip([0, *cuts], [*cuts, len(body)], strict=True) if body[i:j]]
    whole, split = _record([body]), _record(parts)
    assert _observed(split) == _observed(whole)
    assert whole.usage_tokens() == (5, outputs) and whole.finish_reason() == "stop" and whole.done_seen
    times = list(split.chunks.t)
    assert times == sorted(times) and set(times) <= {float(i) for i in range(1, len(parts) + 1)}
