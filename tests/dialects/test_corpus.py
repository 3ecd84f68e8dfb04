"""The dialect corpus, end to end: each case's scripted stream through a real `bench run`
(client, recorder, runner, store, metrics), its stored row checked against the case's truth.

Cases are grouped by the scenario settings they need (endpoint, n); each group is one run
over a scripted loopback server, made once for the module. One test per case.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from benchtest import run_in_process

from bench.analysis.results import Run
from bench.metrics import scan
from dialects.case import KINDS, UNCHECKED, Case
from dialects.cases import ALL
from dialects.server import ScriptServer

TOL_MS = 25.0  # loopback adds well under 10 ms; scripted times are tens of ms apart
CONCURRENCY = 4
TIMEOUTS = {"connect_s": 2.0, "ttft_s": 2.0, "idle_s": 1.0, "total_s": 4.0}  # cases last < 0.5 s
OUTPUT_KINDS = ("content", "reasoning", "tool_call", "function_call", "refusal")
BY_NAME = {case.name: case for case in ALL}


@dataclass(frozen=True)
class Observed:
    """What bench stored for one request."""

    row: dict[str, Any]
    gaps_ms: list[float]
    chunk_kinds: dict[str, int]


@dataclass(frozen=True)
class Corpus:
    runs: dict[tuple[str, int], Run]
    observed: dict[str, Observed]
    seen: list[str]  # case names in the order the server received them


def _run_group(directory: Path, base_url: str, cases: list[Case]) -> Run:
    endpoint, n = cases[0].group
    scenario: dict[str, Any] = {
        "name": f"dialects-{endpoint}-n{n}",
        "target": {"base_url": base_url, "model": "dialect-model", "endpoint": endpoint,
                   "timeouts": TIMEOUTS, "metrics": {"enabled": False}},
        "requests": {"inline": [case.name for case in cases], "order": "cycle"},
        "load": {"concurrency": CONCURRENCY, "max_requests": len(cases)},
    }
    if n > 1:
        scenario["sampling"] = {"n": n}
    return run_in_process(directory, scenario).run


def _observe(run: Run, names: list[str]) -> Iterator[tuple[str, Observed]]:
    requests = run.requests
    chunks = run.chunks
    # ITL gaps of every request, failed ones included: the truth says what arrived before the failure.
    gaps = scan.scan_frame(chunks, requests["request_id"], times=True).gaps.frame()
    for _, row in requests.iterrows():
        rid = row["request_id"]
        mine = chunks[chunks["request_id"] == rid]
        kinds = {str(k): int(v) for k, v in mine["kind"].value_counts().items() if v}
        yield names[int(row["prompt_index"])], Observed(
            row.to_dict(), gaps.loc[gaps["request_id"] == rid, "itl_ms"].tolist(), kinds)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    groups = sorted({case.group for case in ALL})
    runs: dict[tuple[str, int], Run] = {}
    observed: dict[str, Observed] = {}
    with ScriptServer(ALL) as server:
        for group in groups:
            cases = [case for case in ALL if case.group == group]
            run = _run_group(tmp_path_factory.mktemp(f"{group[0]}-n{group[1]}"), server.base_url, cases)
            runs[group] = run
            observed.update(_observe(run, [case.name for case in cases]))
        seen = list(server.seen)
    return Corpus(runs, observed, seen)


# -- comparing one request with its truth --------------------------------------------------


def _nan(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _close(name: str, want: Any, got: Any, tol: float = TOL_MS) -> list[str]:
    if want is UNCHECKED:
        return []
    if want is None:
        return [] if _nan(got) else [f"{name}: expected none, got {got:.1f}"]
    if _nan(got):
        return [f"{name}: expected ~{want:.1f}, got none"]
    return [] if abs(float(got) - want) <= tol else [f"{name}: expected {want:.1f} +-{tol:g}, got {float(got):.1f}"]


def _equal(name: str, want: Any, got: Any) -> list[str]:
    if want is UNCHECKED:
        return []
    if _nan(want) and _nan(got):
        return []
    if isinstance(want, float) and not _nan(got):
        return [] if abs(float(got) - want) < 1e-9 else [f"{name}: expected {want!r}, got {got!r}"]
    return [] if want == got else [f"{name}: expected {want!r}, got {got!r}"]


def mismatches(case: Case, seen: Observed) -> list[str]:
    """Every way the stored request differs from the case's truth (empty: it matches)."""
    truth, row = case.truth, seen.row
    out = _equal("status", truth.status, row["status"])
    out += _equal("error_kind", truth.error_kind, None if _nan(row["error_kind"]) else row["error_kind"])
    if truth.status == "error" and _nan(row["error_message"]):
        out.append("error_message: a failed request must say why, got none")
    if truth.message is not None and truth.message not in str(row["error_message"]):
        out.append(f"error_message: expected to contain {truth.message!r}, got {row['error_message']!r}")
    out += _close("ttft_ms", truth.ttft_ms, row["ttft_ms"])
    out += _close("e2e_ms", truth.e2e_ms, row["e2e_ms"])
    if truth.tpot_ms is not None:
        out += _close("tpot_ms", truth.tpot_ms, row["tpot_ms"], tol=2.0)
    out += _equal("output_tokens", truth.output_tokens, int(row["output_tokens"]))
    out += _equal("itl_gaps", truth.itl_gaps, len(seen.gaps_ms))
    if truth.gap_ms is not None and truth.itl_gaps is not UNCHECKED and len(seen.gaps_ms) == truth.itl_gaps:
        sizes = truth.gap_ms if isinstance(truth.gap_ms, tuple) else (truth.gap_ms,) * truth.itl_gaps
        observed = sorted(seen.gaps_ms) if not isinstance(truth.gap_ms, tuple) else seen.gaps_ms
        out += [f"itl gap {i}: expected {want:.1f} +-{TOL_MS:g}, got {got:.1f}"
                for i, (want, got) in enumerate(zip(sizes, observed, strict=True)) if abs(got - want) > TOL_MS]
    out += _equal("done_seen", truth.done_seen, bool(row["done_seen"]))
    out += _equal("finish_reason", truth.finish_reason, None if _nan(row["finish_reason"]) else row["finish_reason"])
    if truth.token_kinds is not None:
        want_kinds = dict(truth.token_kinds)
        got_kinds = {k: v for k, v in seen.chunk_kinds.items() if k in OUTPUT_KINDS}
        out += _equal("output chunk kinds", want_kinds, got_kinds)
    for column, value in truth.columns:
        out += _equal(column, value, row.get(column))
    return out


# -- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [case.name for case in ALL])
def test_case_is_recorded_as_its_truth(corpus: Corpus, name: str) -> None:
    case = BY_NAME[name]
    assert name in corpus.observed, f"{name}: no request recorded"
    problems = mismatches(case, corpus.observed[name])
    assert not problems, f"{name} [{case.source}]: " + "; ".join(problems)


def test_no_request_waits_out_a_deadline(corpus: Corpus) -> None:
    """Every case ends when its body or `[DONE]` does (cases last < 0.5 s): none waits for the
    idle deadline. In the cases without `[DONE]` only the body's end can wake the wait."""
    without_done = {case.name for case in ALL if case.truth.done_seen is False}
    assert len(without_done) >= 20  # of several servers' dialects, not one
    slow = [(name, round(float(seen.row["end_s"] - seen.row["sent_s"]), 3)) for name, seen in corpus.observed.items()
            if seen.row["end_s"] - seen.row["sent_s"] >= TIMEOUTS["idle_s"]]
    assert not slow, slow


def test_every_case_was_requested_once(corpus: Corpus) -> None:
    assert Counter(corpus.seen) == Counter(case.name for case in ALL)


@pytest.mark.parametrize("group", sorted({case.group for case in ALL}), ids=lambda g: f"{g[0]}-n{g[1]}")
def test_failed_requests_are_counted_as_errors_and_left_out_of_latency(corpus: Corpus, group: tuple[str, int]) -> None:
    cases = [case for case in ALL if case.group == group]
    summary = corpus.runs[group].summary.to_json()
    kinds = Counter(case.truth.error_kind for case in cases if case.truth.status == "error")
    assert summary["requests"]["errors"] == dict(sorted(kinds.items()))
    ok = [case for case in cases if case.truth.status == "ok"]
    assert summary["ttft_ms"]["count"] == sum(case.truth.ttft_ms is not None for case in ok)
    assert summary["e2e_ms"]["count"] == sum(case.truth.e2e_ms is not None for case in ok)
    assert summary["itl_ms"]["count"] == sum(case.truth.itl_gaps for case in ok)


def test_each_kind_has_cases_beyond_the_issue_conditions() -> None:
    further = Counter(kind for case in ALL if case.family != "condition" for kind in case.kinds)
    assert all(further[kind] >= 2 for kind in KINDS), further
    families = {case.family for case in ALL}
    assert families >= {"vllm", "sglang", "tgi", "llamacpp", "ollama", "litellm", "openrouter", "azure", "openai"}
