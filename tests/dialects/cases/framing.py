"""SSE framing (WHATWG event-stream rules): line ends, BOM, fields, comments, split reads, JSON."""

from __future__ import annotations

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, data, dumps, fin, plain_stream, role, script, tok, tokens_at, usage_chunk

_BOM = b"\xef\xbb\xbf"
_OK3 = dict(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True, finish_reason="stop")


def _cr(obj: object) -> bytes:
    return data(obj, eol="\r")


def _two_line_event(obj: dict, cut: str) -> tuple[bytes, bytes]:
    """One event whose JSON is split over two `data:` lines after `cut`; the first line's CRLF
    is split between its CR (end of the first write) and its LF (start of the second)."""
    text = dumps(obj)
    at = text.index(cut) + len(cut)
    return f"data: {text[:at]}\r".encode(), f"\ndata: {text[at:]}\r\n\r\n".encode()


def _split_events(times: list[float]) -> list[tuple[float, bytes]]:
    writes: list[tuple[float, bytes]] = []
    for i, at in enumerate(times):
        first, second = _two_line_event(tok(f" t{i}"), '"object":"chat.completion.chunk",')
        writes += [(at - 0.02, first), (at, second)]
    return writes


def _in_three(times: list[float]) -> list[tuple[float, bytes]]:
    writes: list[tuple[float, bytes]] = []
    for i, at in enumerate(times):
        raw = data(tok(f" t{i}"))
        a, b = len(raw) // 3, len(raw) - 1  # the last cut separates the two newlines
        writes += [(at - 0.02, raw[:a]), (at - 0.01, raw[a:b]), (at, raw[b:])]
    return writes


def _multiline(obj: dict) -> bytes:
    # One JSON object over several data lines (joined with "\n": JSON whitespace).
    lines = dumps(obj).replace(',"', ',\n"').split("\n")
    return "".join(f"data: {line}\n" for line in lines).encode() + b"\n"


def _logprob_chunk(text: str) -> dict:
    # Python's json.dumps writes a -inf logprob as -Infinity (not JSON; orjson refuses it).
    return chunk({"content": text}, choice={"logprobs": {"content": [
        {"token": text, "logprob": -0.01, "top_logprobs": [{"token": text, "logprob": -0.01},
                                                            {"token": "<unk>", "logprob": float("-inf")}]}]}})


_TAIL = [(0.155, fin()), (0.155, usage_chunk(3)), (0.155, DONE)]

CASES = (
    Case(
        name="bom_before_first_token",
        family="generic", kinds=("framing",),
        source="WHATWG event-stream: one leading UTF-8 BOM is skipped (servers writing with a BOM-emitting "
               "UTF-8 encoder); here it precedes the first token event, so a parser that does not strip it "
               "loses that token",
        writes=((0.05, _BOM + data(tok(" a"))),) + script(*tokens_at([0.10, 0.15]), *_TAIL),
        truth=Truth(**_OK3),
    ),
    Case(
        name="cr_only_line_ends",
        family="generic", kinds=("framing",),
        source="lone CR line ends are legal SSE (stalwartlabs/jmap-client#23, a2aproject/a2a-js#714)",
        writes=tuple((at, _cr(obj)) for at, obj in [(0.0, role()), *tokens_at([0.05, 0.10, 0.15, 0.20]),
                                                    (0.205, fin()), (0.205, usage_chunk(4)), (0.205, "[DONE]")]),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="cr_blank_line_in_next_read",
        family="generic", kinds=("framing",),
        source="lone CR split across reads: `data: {...}\\r` then, 30 ms later, the blank line's `\\r`; the "
               "event completes with the second read, and a CR at the end of a read needs no next byte",
        writes=tuple(w for at, obj in [(0.05, tok(" a")), (0.10, tok(" b")), (0.15, tok(" c"))]
                     for w in ((at - 0.03, f"data: {dumps(obj)}\r".encode()), (at, b"\r")))
        + ((0.155, _cr(fin())), (0.155, _cr(usage_chunk(3))), (0.155, _cr("[DONE]"))),
        truth=Truth(**_OK3),
    ),
    Case(
        name="crlf_split_between_cr_and_lf",
        family="generic", kinds=("framing",),
        source="CRLF split across reads inside a two-line data event must end one line, not two "
               "(rexxars/eventsource-parser#17)",
        writes=script((0.0, role())) + tuple(_split_events([0.05, 0.10, 0.15])) + script(*_TAIL),
        truth=Truth(**_OK3),
    ),
    Case(
        name="multiline_data_json",
        family="generic", kinds=("framing",),
        source="WHATWG: several data lines of one event are joined with LF (sse-starlette splits a "
               "payload with newlines into data lines)",
        writes=((0.0, _multiline(role())),) + tuple((at, _multiline(tok(f" t{i}")))
                                                    for i, at in enumerate([0.05, 0.10, 0.15])) + script(*_TAIL),
        truth=Truth(**_OK3),
    ),
    Case(
        name="fields_unknown_and_without_colon",
        family="generic", kinds=("framing",),
        source="WHATWG field parsing: id/event/retry, unknown fields and a colon-less line (a field with an "
               "empty value) carry no data; an event without data is not dispatched",
        writes=((0.0, b"retry: 3000\nping\n\n" + b"id: 0\nevent: message\n" + data(role())),)
        + tuple((at, f"id: {i + 1}\nx-trace: abc\nevent: message\n".encode() + data(tok(f" t{i}")) + b"ping\n\n")
                for i, at in enumerate([0.05, 0.10, 0.15])) + script(*_TAIL),
        truth=Truth(**_OK3),
    ),
    Case(
        name="crlf_with_ping_comments",
        family="generic", kinds=("framing",),
        source="sse-starlette's default CRLF line ends and `: ping` comments (hey-api/hey-api#3054); "
               "comments before the first token are not the first token",
        writes=((0.0, data(role(), eol="\r\n")),) + tuple((at, b": ping - 2024-01-01 00:00:00\r\n\r\n")
                                                          for at in (0.05, 0.10, 0.15))
        + tuple((at, data(tok(f" t{i}"), eol="\r\n")) for i, at in enumerate([0.20, 0.25, 0.30]))
        + tuple((0.305, data(obj, eol="\r\n")) for obj in (fin(), usage_chunk(3), "[DONE]")),
        truth=Truth(ttft_ms=200, e2e_ms=300, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="event_split_in_three_reads",
        family="generic", kinds=("framing",),
        source="an event counts when its blank line arrives: each event in three writes 10 ms apart",
        writes=script((0.0, role())) + tuple(_in_three([0.05, 0.10, 0.15])) + script(*_TAIL),
        truth=Truth(**_OK3),
    ),
    Case(
        name="lone_surrogate_escapes",
        family="generic", kinds=("framing",),
        source="an emoji's UTF-16 surrogate pair split over two chunks, each a lone \\udXXX escape "
               "(elizaOS/eliza#30919); Python's json accepts it, orjson does not",
        writes=script((0.0, role()), (0.05, tok("Hi ")), (0.10, tok("\ud83d")), (0.15, tok("\ude00")),
                      (0.20, tok("!")), (0.205, fin()), (0.205, usage_chunk(4)), (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="non_finite_logprob",
        family="generic", kinds=("framing",),
        source="a -inf top logprob written as -Infinity by a Python server's json.dumps "
               "(madroidmaq/mlx-omni-server#56, dphnAI/sonar#183)",
        writes=script((0.0, role()), *((at, _logprob_chunk(f" t{i}")) for i, at in enumerate([0.05, 0.10, 0.15])),
                      *_TAIL),
        truth=Truth(**_OK3),
    ),
    Case(
        name="nan_in_payload",
        family="generic", kinds=("framing",),
        source="a float field a Python server wrote as NaN with json.dumps' allow_nan default (not JSON; "
               "orjson refuses it, Python's json takes it)",
        writes=script((0.0, role()),
                      (0.05, b'data: {"choices": [{"index": 0, "delta": {"content": " t0"}, "finish_reason": null}],'
                             b' "queue_ms": NaN}\n\n'),
                      *tokens_at([0.10, 0.15], prefix="u"), *_TAIL),
        truth=Truth(**_OK3),
    ),
    Case(
        name="invalid_json_mid_stream",
        family="generic", kinds=("framing",),
        source="an event cut inside its JSON (a proxy truncating a long line): the request fails, what "
               "arrived before stays",
        writes=script((0.0, role()), (0.05, tok(" t0")),
                      (0.10, b'data: {"choices": [{"index": 0, "delta": {"content": "x"\n\n'), (0.10, DONE)),
        truth=Truth(status="error", error_kind="malformed_chunk", message="invalid JSON", ttft_ms=50, e2e_ms=50,
                    output_tokens=1, itl_gaps=0),
    ),
)


def _crlf_blank_split(times: list[float]) -> list[tuple[float, bytes]]:
    """Each event ends `\\r\\n\\r` in its own write; the blank line's `\\n` opens the next write."""
    writes: list[tuple[float, bytes]] = []
    lead = b""
    for i, at in enumerate(times):
        writes.append((at, lead + f"data: {dumps(tok(f' t{i}'))}\r\n\r".encode()))
        lead = b"\n"
    return writes


def _utf8_split(at: float, obj: dict, char: str) -> list[tuple[float, bytes]]:
    raw = data(dumps(obj, ascii_only=False))  # the character as raw UTF-8 bytes
    cut = raw.index(char.encode()) + 1  # inside the character's two UTF-8 bytes
    return [(at - 0.02, raw[:cut]), (at, raw[cut:])]


def _empty_chunk() -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m", "choices": []}


CASES = CASES + (
    Case(
        name="crlf_blank_line_lf_in_next_read",
        family="generic", kinds=("framing",),
        source="a CRLF blank line cut after its CR: the event is complete at the CR (an empty line either "
               "way); the LF that opens the next read ends nothing (rexxars/eventsource-parser#17)",
        writes=script((0.0, role())) + tuple(_crlf_blank_split([0.05, 0.10, 0.15]))
        + ((0.155, b"\n" + data(fin()) + data(usage_chunk(3)) + DONE),),
        truth=Truth(**_OK3),
    ),
    Case(
        name="bom_split_across_reads",
        family="generic", kinds=("framing",),
        source="the leading BOM cut between two reads (two bytes, then the third with the first token)",
        writes=((0.02, _BOM[:2]), (0.05, _BOM[2:] + data(tok(" a")))) + script(*tokens_at([0.10, 0.15]), *_TAIL),
        truth=Truth(**_OK3),
    ),
    Case(
        name="utf8_char_split_across_reads",
        family="generic", kinds=("framing",),
        source="a multi-byte UTF-8 character cut between two reads inside a token's JSON",
        writes=script((0.0, role())) + tuple(w for i, at in enumerate([0.05, 0.10, 0.15])
                                             for w in _utf8_split(at, tok(f" caf\u00e9{i}"), "\u00e9"))
        + script(*_TAIL),
        truth=Truth(**_OK3),
    ),
    Case(
        name="stream_without_content_type",
        family="generic", kinds=("framing",),
        source="an SSE body sent without Content-Type (Starlette StreamingResponse without media_type, "
               "nearai/private-ml-sdk#20); aiohttp fills in application/octet-stream",
        writes=plain_stream([0.05, 0.10, 0.15]),
        content_type="",
        truth=Truth(**_OK3),
    ),
    Case(
        name="keepalive_empty_chunks",
        family="generic", kinds=("framing", "output"),
        source="keep-alive as an empty chat.completion.chunk (choices []) every 50 ms before the first token "
               "(jundot/omlx#1011): not output",
        writes=script((0.0, role()), *((at, _empty_chunk()) for at in (0.05, 0.10, 0.15)),
                      *tokens_at([0.20, 0.25, 0.30]), (0.305, fin()), (0.305, usage_chunk(3)), (0.305, DONE)),
        truth=Truth(ttft_ms=200, e2e_ms=300, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
)
