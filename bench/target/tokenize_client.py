"""Counting text tokens with the server's own tokenizer: POST {root}/tokenize.

Two request shapes exist (`TokenizeDialect`):
- vLLM and SGLang: {"model", "prompt", "add_special_tokens": false} -> {"count", "tokens", ...};
- llama.cpp: {"content", "add_special": false} -> {"tokens": [...]}.
A llama.cpp server given the vLLM shape answers 200 with no tokens, so the dialect is found
by a probe text, which must come back with at least one token. Used after a run only: these
requests never overlap the measured ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

import aiohttp
import orjson

from bench.target.resolve import root_url

__all__ = ["PROBE_TEXT", "TokenizeDialect", "TokenizeError", "TokenizeSession", "open_tokenize"]

TokenizeDialect = Literal["vllm", "llama.cpp"]
PROBE_TEXT = "How many tokens is this?"
_PARALLEL = 8  # requests in flight at once: the server is idle by now, this only bounds the wait
_SLICE = 4096  # texts whose tasks exist at once


class TokenizeError(Exception):
    """One text could not be counted (HTTP error, not JSON, no count in the answer)."""


class TokenizeSession:
    """An open session to a server's /tokenize in a known dialect."""

    def __init__(self, session: aiohttp.ClientSession, url: str, model: str, dialect: TokenizeDialect) -> None:
        self._session = session
        self.url = url
        self.model = model
        self.dialect: TokenizeDialect = dialect

    async def count(self, text: str, model: str | None = None) -> int:
        """Tokens in `text` (without special tokens); TokenizeError when the server fails."""
        if not text:
            return 0
        return await _count(self._session, self.url, self._body(text, model or self.model))

    async def count_all(self, texts: Sequence[str], models: Sequence[str | None]) -> list[int | str]:
        """Each text's count, or the error message for a text that failed; `_PARALLEL` at a
        time, the texts taken in slices so a run of a million answers holds a slice of tasks."""
        gate = asyncio.Semaphore(_PARALLEL)

        async def one(text: str, model: str | None) -> int | str:
            async with gate:
                try:
                    return await self.count(text, model)
                except TokenizeError as exc:
                    return str(exc)

        out: list[int | str] = []
        for start in range(0, len(texts), _SLICE):
            part = zip(texts[start:start + _SLICE], models[start:start + _SLICE], strict=True)
            out += await asyncio.gather(*(one(t, m) for t, m in part))
        return out

    async def aclose(self) -> None:
        await self._session.close()

    def _body(self, text: str, model: str) -> dict[str, Any]:
        if self.dialect == "llama.cpp":
            return {"content": text, "add_special": False}
        return {"model": model, "prompt": text, "add_special_tokens": False}


async def open_tokenize(base_url: str, api_key: str | None, model: str, timeout_s: float) -> TokenizeSession | None:
    """A session to the server's /tokenize, its dialect found by probing; None when the
    server has none that counts the probe text (the session is then closed)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s))
    url = f"{root_url(base_url)}/tokenize"
    for dialect in ("vllm", "llama.cpp"):
        candidate = TokenizeSession(session, url, model, dialect)
        try:
            if await candidate.count(PROBE_TEXT) > 0:
                return candidate
        except TokenizeError:
            continue
    await session.close()
    return None


async def _count(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    try:
        async with session.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TokenizeError(f"POST {url}: {type(exc).__name__}: {exc}") from None
    if status != 200:
        raise TokenizeError(f"POST {url}: HTTP {status}: {raw[:200].decode('utf-8', 'replace')}")
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TokenizeError(f"POST {url}: the answer is not JSON: {raw[:80]!r}") from None
    return _answer_count(answer, url)


def _answer_count(answer: Any, url: str) -> int:
    """vLLM and SGLang say `count`; llama.cpp only lists the `tokens`."""
    if isinstance(answer, dict):
        count = answer.get("count")
        if isinstance(count, int) and not isinstance(count, bool):
            return count
        tokens = answer.get("tokens")
        if isinstance(tokens, list):
            return len(tokens)
    raise TokenizeError(f"POST {url}: no count or tokens in the answer")
