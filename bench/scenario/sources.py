"""Where prompts come from: the scenario's `requests` section to a `PromptSet`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scenario.loader import resolve_path
from bench.scenario.prompts import Prompt, PromptSet, SyntheticPrompts, TokenModel, read_jsonl_prompts
from bench.scenario.schema import Scenario

__all__ = ["load_prompts"]


def load_prompts(scenario: Scenario, scenario_path: Path, token_model: TokenModel | None = None) -> PromptSet:
    req = scenario.requests
    assert req is not None, "validated: requests is only absent with a trace"
    if req.inline is not None:
        # validated: scenario.Requests refuses an empty inline prompt (one line, exit 2)
        return PromptSet("inline", [_inline_prompt(item) for item in req.inline], len(req.inline))
    if req.file is not None:
        path = resolve_path(scenario_path, req.file)
        if req.format == "hf" or (req.format == "auto" and (path.is_dir() or path.suffix in (".parquet", ".arrow"))):
            from bench.scenario.hf_datasets import read_hf_prompts

            return read_hf_prompts(path, req.columns)
        if req.format == "sharegpt" or (req.format == "auto" and path.suffix == ".json"):
            from bench.scenario.datasets import sharegpt_dataset

            return sharegpt_dataset(path)
        return read_jsonl_prompts(path)
    assert req.synthetic is not None
    seed = req.synthetic.seed if req.synthetic.seed is not None else scenario.seed
    if token_model is not None and req.synthetic.prompt_basis == "raw":
        # Text tokens only, as the peers count them: the server's template comes on top.
        token_model = TokenModel(overhead=0.0, per_word=token_model.per_word)
    synthetic = SyntheticPrompts(req.synthetic.prompt_tokens, req.synthetic.output_tokens, seed, token_model)
    return PromptSet("synthetic", [], synthetic=synthetic)


def _inline_prompt(item: Any) -> Prompt:
    if isinstance(item, str):
        return Prompt(messages=None, text=item)
    return Prompt(messages=[m.model_dump() for m in item], text=None)
