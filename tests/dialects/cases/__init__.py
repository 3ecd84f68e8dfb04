"""Every case of the corpus, from one module per server family or quirk kind."""

from __future__ import annotations

from dialects.case import Case
from dialects.cases import (
    azure,
    bodies,
    choices,
    conditions,
    ending,
    errors,
    finish,
    framing,
    litellm,
    llamacpp,
    ollama,
    openai,
    openrouter,
    output,
    sglang,
    tgi,
    vllm,
)

_MODULES = (conditions, framing, errors, bodies, output, finish, choices, ending,
            vllm, sglang, tgi, llamacpp, ollama, litellm, openrouter, azure, openai)


def _collect() -> tuple[Case, ...]:
    cases = tuple(case for module in _MODULES for case in module.CASES)
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise ValueError(f"two cases are named {case.name!r}")
        seen.add(case.name)
    return cases


ALL: tuple[Case, ...] = _collect()
