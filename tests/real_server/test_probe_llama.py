"""`bench probe` against a real llama.cpp server (tier `-m real_server`).

Each row is checked against what the server does, seen independently of bench: raw HTTP
with `http.client` and `json` (no recorder, no client adapter), plus the facts recorded in
shared/FACTS.md: a role-only first chunk with `content: null`, usage in a final chunk with
`choices: []`, `n=2` interleaved, `timings` present, the connection closed after each stream
although the server advertises keep-alive.
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from test_llama_smoke import llama_command, llama_paths

from bench.commands.cli import main
from bench.target.launch import LaunchedServer, free_port

pytestmark = pytest.mark.real_server

MODEL = "gemma3-270m"


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log = tmp_path_factory.mktemp("llama") / "llama-server.log"
    with LaunchedServer(llama_command(*llama_paths(), port), base_url, log, ready_timeout_s=120):
        yield base_url


def raw_stream(base_url: str, body: dict[str, Any]) -> tuple[dict[str, str], list[Any], bool, int]:
    """POST a streamed chat request with http.client: (headers, data payloads in order,
    whether the server had closed the connection 0.3 s after the body ended, comment lines)."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request("POST", f"{url.path}/chat/completions", json.dumps(body),
                     {"Content-Type": "application/json", "Connection": "keep-alive"})
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        text = resp.read().decode()
        payloads = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
        events = [p if p == "[DONE]" else json.loads(p) for p in payloads]
        time.sleep(0.3)
        sock = conn.sock
        closed = True
        if sock is not None:  # http.client keeps the socket when the response allows reuse
            sock.setblocking(False)
            try:
                closed = sock.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                closed = False  # open, nothing to read
        return headers, events, closed, sum(1 for line in text.splitlines() if line.startswith(":"))
    finally:
        conn.close()


def chat(max_tokens: int = 16, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Name three rivers."}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True, **extra}


def test_probe_rows_match_llama_cpp(llama_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["probe", "--base-url", llama_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["probe", "--base-url", llama_url]) == 0  # the table, for the log
    print(capsys.readouterr().out)
    rows = {key: row["value"] for key, row in report["dialect"].items()}
    assert report["model"] == MODEL

    headers, events, closed, comments = raw_stream(llama_url, chat(stream_options={"include_usage": True}))
    objects = [e for e in events if isinstance(e, dict)]
    first = objects[0]["choices"][0]["delta"]
    assert first.get("role") == "assistant" and first.get("content") is None
    assert rows["role_first_chunk"]["role_only"] is True and rows["role_first_chunk"]["content"] == "null"

    assert objects[-1]["choices"] == [] and "usage" in objects[-1]
    assert rows["usage_final"]["with_include_usage"] == "final"
    _, plain_events, _, _ = raw_stream(llama_url, chat())
    unasked = any(isinstance(e, dict) and e.get("usage") for e in plain_events)
    assert (rows["usage_final"]["without_include_usage"] is not None) == unasked

    _, cont_events, _, _ = raw_stream(llama_url, chat(stream_options={"include_usage": True,
                                                                   "continuous_usage_stats": True}))
    content_chunks = [e for e in cont_events if isinstance(e, dict) and e.get("choices")
                      and e["choices"][0].get("delta", {}).get("content")]
    per_chunk_usage = all(e.get("usage") for e in content_chunks)
    assert rows["usage_continuous"]["supported"] == per_chunk_usage

    assert (rows["done"]["with_done"] == rows["done"]["streams"]) == (events[-1] == "[DONE]")

    tokens = objects[-1]["usage"]["completion_tokens"]
    contents = [e for e in objects if e.get("choices") and e["choices"][0].get("delta", {}).get("content")]
    assert rows["tokens_per_chunk"]["mean"] == pytest.approx(tokens / len(contents), abs=0.15)

    _, n2_events, _, _ = raw_stream(llama_url, chat(n=2, stream_options={"include_usage": True}))
    order = [c["index"] for e in n2_events if isinstance(e, dict) for c in e.get("choices") or []
             if (c.get("delta") or {}).get("content")]
    assert sorted(set(order)) == [0, 1]
    interleaved = sum(1 for a, b in itertools.pairwise(order) if a != b) > 1
    assert rows["n2"]["choices"] == 2 and rows["n2"]["interleaved"] is interleaved is True

    assert rows["stop"]["honoured"] in (True, None)  # None: greedy output changed between requests
    assert rows["completions"]["supported"] is True

    timings = [e["timings"] for e in objects if isinstance(e.get("timings"), dict)]
    assert timings and set(rows["server_timings"]["fields"]) == set(timings[-1])

    # llama.cpp advertises keep-alive but closes after each stream: no later request reuses it
    assert closed, f"connection still open after the stream; headers {headers}"
    ka = rows["http_keepalive"]
    assert ka["reused"] == 0 and ka["later_requests"] == len(report["requests"]) - 1
    assert rows["sse_keepalive"]["comment_lines"] == 0 == comments

    ids = [h for h in ("x-request-id", "request-id", "x-ms-request-id", "apim-request-id") if h in headers]
    assert rows["request_id"]["headers"] == ids
