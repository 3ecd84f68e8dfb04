"""Admitting one completion request: its prompt tokens, token limits, output plan and chunk context.

Pure helpers of `SimServer`: each raises ApiError (the OpenAI-style error the server sends)
when the request cannot be served as asked. Tokens follow the convention of bench.sim.text.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from typing import Any

from PIL import Image

from bench.sim.api import ApiError
from bench.sim.emitter import ChunkContext
from bench.sim.faults import mix
from bench.sim.profile import Profile
from bench.sim.text import Corpus, choice_offset, draw_output_len, stable_hash

__all__ = ["block_hashes", "check_image", "chunk_context", "max_tokens_of", "output_key", "output_plan", "prompt_token_list"]

COMPLETIONS_MAX_TOKENS = 16  # OpenAI / vLLM default for completions


def prompt_token_list(req: Any, chat: bool, image_tokens: int = 256) -> list[Any]:
    """The prompt as a token list, per the convention in bench.sim.text; each image part
    is `image_tokens` tokens named by its content (so a prefix cache tells images apart)."""
    if chat:
        tokens: list[Any] = []
        for m in req.messages:
            keys = [_digest(check_image(url)) for url in m.images()]
            images = [f"<image:{key}:{k}>" for key in keys for k in range(image_tokens)]
            # CHAT_TEMPLATE_TOKENS_PER_MESSAGE (4) template tokens around each message.
            tokens += ["<|im_start|>", m.role, "\n", *m.text().split(), *images, "<|im_end|>"]
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


def _digest(data: str) -> str:
    return hashlib.blake2b(data.encode("ascii", "replace"), digest_size=8).hexdigest()


def check_image(url: str) -> str:
    """The image's bytes as a string key; ApiError 400 unless `url` is a base64 data URI of
    a PNG or JPEG that decodes (the simulator fetches nothing)."""
    head, _, data = url.partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        raise ApiError(400, "image_url: the simulator takes base64 data URIs only (data:image/...;base64,...)",
                       "messages")
    try:
        raw = base64.b64decode(data, validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
            kind = image.format
    except (ValueError, OSError) as exc:
        raise ApiError(400, f"image_url: not a decodable image: {exc}", "messages") from None
    if kind not in ("PNG", "JPEG"):
        raise ApiError(400, f"image_url: unsupported image format {kind}", "messages")
    return data


def max_tokens_of(req: Any, chat: bool, prompt_tokens: int, max_model_len: int) -> int:
    """The request's output limit (the context left when it gives none); ApiError when the
    prompt and the limit overflow the context or min_tokens exceeds the limit."""
    if chat:
        max_tokens = req.max_completion_tokens or req.max_tokens
    else:
        max_tokens = req.max_tokens or COMPLETIONS_MAX_TOKENS
    if max_tokens is None:
        max_tokens = max_model_len - prompt_tokens
    if prompt_tokens + max_tokens > max_model_len or max_tokens < 1:
        raise ApiError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, "
            f"you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
            f"messages, {max_tokens} in the completion). Please reduce the length of the "
            "messages or completion.",
            "max_tokens",
        )
    if req.min_tokens > max_tokens:
        raise ApiError(400, f"min_tokens ({req.min_tokens}) must be <= max_tokens "
                       f"({max_tokens})", "min_tokens")
    return max_tokens


def output_key(req: Any, tokens: list[Any], counter: int) -> int:
    """Seed material of the output: the request's seed, else greedy (temperature 0) output
    depends on the prompt only, else a per-request counter."""
    if req.seed is not None:
        return mix(1, req.seed)
    if req.temperature == 0:
        return mix(2, stable_hash(" ".join(map(str, tokens))))
    return mix(3, counter)


def output_plan(req: Any, profile: Profile, seed: int, key: int, max_tokens: int,
                reasoning: int) -> tuple[list[int], list[str]]:
    """(output tokens, finish reason) planned for each choice: the natural length drawn from
    the profile (plus reasoning tokens), cut to `max_tokens` ("length") or not ("stop")."""
    targets, reasons = [], []
    for c in range(req.n):
        natural = reasoning + max(req.min_tokens, draw_output_len(profile.output_len, seed, key, c))
        if req.ignore_eos or natural >= max_tokens:
            targets.append(max_tokens)
            reasons.append("length")
        else:
            targets.append(max(natural, req.min_tokens))
            reasons.append("stop")
    return targets, reasons


def chunk_context(req: Any, chat: bool, rid: str, prompt_tokens: int, corpus: Corpus, seed: int, key: int,
                  reasoning: int) -> ChunkContext:
    """What the emitter needs to write this request's chunks."""
    logprobs = bool(req.logprobs) if chat else req.logprobs is not None
    top = (req.top_logprobs or 0) if chat else (req.logprobs or 0)
    so = req.stream_options
    return ChunkContext(
        id=rid, created=int(time.time()), model=req.model, chat=chat, n=req.n,
        prompt_tokens=prompt_tokens, corpus=corpus,
        offsets=tuple(choice_offset(seed, key, c) for c in range(req.n)),
        server_seed=seed, key=key, stops=req.stops(), min_tokens=req.min_tokens,
        logprobs=logprobs, top_logprobs=top,
        # vLLM adds per-chunk usage only when include_usage is on as well.
        continuous_usage=bool(so and so.include_usage and so.continuous_usage_stats),
        reasoning_tokens=reasoning,
    )


def block_hashes(tokens: list[Any], profile: Profile) -> tuple[int, ...]:
    """Chained hashes of the prompt's whole prefix blocks (empty without a prefix cache)."""
    if not profile.prefix_cache:
        return ()
    block = profile.prefix_block_tokens
    h, out = 0, []
    for i in range(len(tokens) // block):
        h = hash((h, tuple(tokens[i * block:(i + 1) * block])))
        out.append(h)
    return tuple(out)
