"""The prompt-token probe: how many prompt tokens the server counts for synthetic text,
so synthetic prompts are sized in the server's own tokens (tokenizer and chat template)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import orjson

from bench.runner.attempt import make_recorder
from bench.runner.client import StreamClient
from bench.runner.unary import EmbeddingsReader
from bench.scenario.prompts import TokenModel, synthetic_text
from bench.scenario.schema import Scenario
from bench.target.resolve import with_retries
from bench.workload.bodies import ENDPOINT_PATHS, base_body, prompt_fields

__all__ = ["PROBE_PROMPT_WORDS", "probe_prompt_tokens"]

PROBE_PROMPT_WORDS = (64, 512)  # the two synthetic prompt sizes the probe sends, in words
# The first word of every probe prompt (what servers see; tests pick the probes out by it).
PROBE_LABEL = "calibration"


async def probe_prompt_tokens(scenario: Scenario, client: StreamClient, model: str,
                              base_url: str) -> TokenModel | None:
    """Probe how many prompt tokens the server counts for two synthetic prompt sizes, so
    synthetic prompts can be sized in the server's own tokens (tokenizer and template).

    None when the scenario asks for no probe (`requests.synthetic.calibrate: false`), or the
    server gives no usage. TargetUnusable (one line, exit 2) when the server cannot be
    reached, or fails every one of PROBE_ATTEMPTS tries of a probe (with its HTTP status and
    message)."""
    req = scenario.requests
    if req is None or req.synthetic is None or not req.synthetic.calibrate:
        return None
    what = "the prompt-token calibration probe (requests.synthetic.calibrate; false skips it)"

    def attempt(words: int) -> Callable[[], Awaitable[int | None]]:
        return lambda: _server_prompt_tokens(scenario, client, model, words)

    # (a probe that outlasts target.timeouts.ttft_s is not tried again: it would only wait as long again)
    counts = [await with_retries(base_url, what, attempt(words)) for words in PROBE_PROMPT_WORDS]
    (w1, w2), (t1, t2) = PROBE_PROMPT_WORDS, counts
    if t1 is None or t2 is None:
        return None  # the server gives no usage: prompts stay one word per requested token
    per_word = (t2 - t1) / (w2 - w1)
    if per_word <= 0:
        return None
    return TokenModel(overhead=t1 - per_word * w1, per_word=per_word)


async def _server_prompt_tokens(scenario: Scenario, client: StreamClient, model: str, words: int) -> int | None:
    rng = np.random.default_rng([scenario.seed, words, 0xCA1])
    text = synthetic_text(words, rng, PROBE_LABEL)
    endpoint = scenario.target.endpoint
    body = base_body({"max_tokens": 16 if endpoint == "responses" else 1}, model, endpoint)
    body.update(prompt_fields(endpoint, [{"role": "user", "content": text}], text))
    recorder = make_recorder(endpoint, 0.0)
    async with asyncio.timeout(scenario.target.timeouts.ttft_s):
        response = await client.open_stream(ENDPOINT_PATHS[endpoint], orjson.dumps(body))
        try:
            async for t, data in response.reads():
                recorder.feed(t, data)
            if isinstance(recorder, EmbeddingsReader):
                recorder.close(0.0)
        finally:
            await response.aclose()
    return recorder.usage_tokens()[0]
