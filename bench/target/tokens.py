"""The prompt-token probe: how many prompt tokens the server counts for synthetic text,
so synthetic prompts are sized in the server's own tokens (tokenizer and chat template)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson

from bench.runner.client import StreamClient
from bench.scenario.schema import Scenario
from bench.runner.recorder import StreamRecorder
from bench.scenario.prompts import TokenModel, synthetic_text
from bench.workload.plan import ENDPOINT_PATHS
from bench.target.resolve import with_retries


CALIBRATION_WORDS = (64, 512)


async def calibrate_prompts(scenario: Scenario, client: StreamClient, model: str,
                            base_url: str) -> TokenModel | None:
    """Probe how many prompt tokens the server counts for two synthetic prompt sizes, so
    synthetic prompts can be sized in the server's own tokens (tokenizer and template).

    TargetUnusable (one line, exit 2) when the server cannot be reached, or fails every
    one of PROBE_ATTEMPTS tries of a probe (with its HTTP status and message)."""
    req = scenario.requests
    if req is None or req.synthetic is None or not req.synthetic.calibrate:
        return None
    what = "the prompt-token calibration probe (requests.synthetic.calibrate; false skips it)"
    # (a probe that outlasts target.timeouts.ttft_s is not tried again: it would only wait as long again)
    counts = [await with_retries(base_url, what, lambda w=words: _probe_prompt_tokens(scenario, client, model, w))
              for words in CALIBRATION_WORDS]
    if any(c is None for c in counts):
        return None  # the server gives no usage: prompts stay one word per requested token
    (w1, w2), (t1, t2) = CALIBRATION_WORDS, counts
    per_word = (t2 - t1) / (w2 - w1)
    if per_word <= 0:
        return None
    return TokenModel(overhead=t1 - per_word * w1, per_word=per_word)


async def _probe_prompt_tokens(scenario: Scenario, client: StreamClient, model: str, words: int) -> int | None:
    rng = np.random.default_rng([scenario.seed, words, 0xCA1])
    text = synthetic_text(words, rng, "calibration")
    body: dict[str, Any] = {"model": model, "max_tokens": 1, "stream": True, "stream_options": {"include_usage": True}}
    if scenario.target.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    recorder = StreamRecorder(0.0)
    async with asyncio.timeout(scenario.target.timeouts.ttft_s):
        response = await client.open_stream(ENDPOINT_PATHS[scenario.target.endpoint], orjson.dumps(body))
        try:
            async for t, data in response.reads():
                recorder.feed(t, data)
        finally:
            await response.aclose()
    return recorder.usage_tokens()[0]
