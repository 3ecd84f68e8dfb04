"""The scenario's `tokens` section: counting each answer's tokens independently of the
server's usage, after the measured run (bench.target.tokencount does the counting)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bench.scenario.base import Strict

__all__ = ["TokenCounting"]


class TokenCounting(Strict):
    """Opting in keeps every answer's generated text in the run's records (text of all output
    kinds, per choice) and counts it once sending has ended, so the counting never loads the
    server while it is measured."""

    server_tokenize: bool | Literal["auto"] = Field(default="auto", description=(
        "Count each answer's text with the server's own POST /tokenize (vLLM, SGLang, llama.cpp) after "
        "the run: true requires it, auto uses it when the server has one, false never asks."))
    tokenizer: str | None = Field(default=None, description=(
        "A Hugging Face tokenizer.json (path relative to the scenario file) to count each answer's text "
        "locally; read with the `tokenizers` library, never from the Hub."))

    @model_validator(mode="after")
    def _something_counts(self) -> TokenCounting:
        if self.server_tokenize is False and self.tokenizer is None:
            raise ValueError("nothing counts the tokens: give tokenizer, or leave server_tokenize on")
        return self
