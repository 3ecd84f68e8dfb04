"""Validity warnings: each check has a case that triggers it and one that does not.

Runs are built in memory (no server): the checks read only the stored frames, the manifest
and the summary, so a synthetic run exercises exactly what a real one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.analysis import summary as aggregate
from bench.analysis import validity
from bench.analysis.results import Run
from bench.errors import ValidityWarning
from bench.metrics import derive as metrics
from bench.metrics.scan import TOKEN_KINDS
from bench.store import SCHEMA_VERSION, ClientInfo, Manifest, WorkerInfo


def make_run(*, n: int = 2000, rate: float | None = 10.0, achieved: float | None = None, lag_ms: float = 0.5,
             errors: int = 0, concurrency: int | None = None, warmup: int = 0, ended: str = "completed",
             tokens: int = 3) -> Run:
    """n measured requests (+ warmup), open loop at `rate` (closed loop when concurrency is set)."""
    total = n + warmup
    spacing = 1.0 / (achieved or rate or 10.0)
    scheduled = np.arange(total) * (1.0 / (rate or 10.0))
    sent = np.arange(total) * spacing + lag_ms / 1e3
    if rate is None:
        scheduled = sent.copy()
    status = np.array(["ok"] * total, dtype=object)
    kind = np.array([None] * total, dtype=object)
    failed = np.arange(warmup, warmup + errors)
    status[failed], kind[failed] = "error", "http_500"
    raw = pd.DataFrame({
        "request_id": np.arange(total, dtype="int64"), "stage": 0,
        "phase": ["warmup"] * warmup + ["measure"] * n, "variant": "",
        "scheduled_s": scheduled, "submitted_s": sent, "sent_s": sent, "end_s": sent + 0.05 + 0.01 * tokens,
        "status": pd.array(status, dtype="string"), "error_kind": pd.array(kind, dtype="string"),
        "usage_prompt_tokens": pd.array([10] * total, dtype="Int64"),
        "usage_completion_tokens": pd.array([tokens] * total, dtype="Int64"), "n": 1,
    })
    ok_ids = raw.loc[raw["status"] == "ok", "request_id"].to_numpy()
    t = (sent[ok_ids][:, None] + 0.05 + 0.01 * np.arange(tokens)[None, :]).ravel()
    chunks = pd.DataFrame({"request_id": np.repeat(ok_ids, tokens), "t_s": t,
                           "kind": pd.Categorical(["content"] * t.size), "tokens": pd.array([1] * t.size, dtype="Int32"),
                           "choice": np.zeros(t.size, dtype="int32")})
    requests = metrics.per_request(raw, chunks)
    load: dict[str, Any] = {"rate": rate, "concurrency": concurrency, "warmup": {"requests": warmup, "seconds": 0.0}}
    summary = aggregate.summarize(requests, chunks, rate)
    manifest = Manifest.model_validate({
        "schema_version": SCHEMA_VERSION, "bench_version": "test", "name": "synthetic", "scenario": {"load": load},
        "target": {}, "model": "m", "seed": 0, "t0_perf_counter": 0.0, "started_at": "now", "ended": ended,
        "end_reason": "signal SIGINT" if ended == "interrupted" else None,
        "python": "3", "platform": "test", "host": "test",
    })
    return Run(Path("synthetic"), manifest, requests, chunks, summary)


def codes(run: Run) -> set[str]:
    return {w.code for w in validity.check(run)}


def test_a_clean_run_has_no_warnings():
    assert validity.check(make_run()) == []


def test_p99_from_fewer_than_100_samples():
    run = make_run(n=60)
    assert "few_samples_p99" in codes(run)
    message = next(w.message for w in validity.check(run) if w.code == "few_samples_p99")
    assert "TTFT (60)" in message and "ITL" not in message  # 60 x 2 gaps = 120 ITL samples is enough
    assert "few_samples_p99" not in codes(make_run(n=validity.MIN_SAMPLES_P99))


def test_p999_from_fewer_than_1000_samples():
    assert "few_samples_p999" in codes(make_run(n=500))
    assert "few_samples_p999" not in codes(make_run(n=validity.MIN_SAMPLES_P999))


def test_schedule_lag_large_against_interarrival_time():
    # 10 req/s: 100 ms between arrivals; a 70 ms late client is behind, a 2 ms late one is not.
    assert "schedule_lag" in codes(make_run(lag_ms=70.0))
    assert "schedule_lag" not in codes(make_run(lag_ms=2.0))
    # closed loop has no inter-arrival time: never flagged
    assert "schedule_lag" not in codes(make_run(rate=None, concurrency=1, warmup=1, lag_ms=70.0))


def test_error_rate_above_threshold():
    assert "error_rate" in codes(make_run(errors=200))  # 10 %
    assert "error_rate" not in codes(make_run(errors=40))  # 2 %


def test_warmup_shorter_than_concurrency():
    assert "short_warmup" in codes(make_run(rate=None, concurrency=8, warmup=4))
    assert "short_warmup" not in codes(make_run(rate=None, concurrency=8, warmup=8))
    assert "short_warmup" not in codes(make_run())  # open loop without a concurrency cap


def test_achieved_rate_below_offered():
    run = make_run(achieved=9.0)  # 10 % short
    assert "rate_shortfall" in codes(run)
    assert "rate_shortfall" not in codes(make_run(achieved=9.8))


def test_run_ended_by_interruption_or_failure():
    warnings = validity.check(make_run(ended="interrupted"))
    assert warnings[0].code == "ended" and "interrupted (signal SIGINT)" in warnings[0].message
    assert "ended" in codes(make_run(ended="failed"))
    assert "ended" not in codes(make_run(ended="completed"))


def test_warnings_are_frozen_with_a_code_and_a_message():
    warning = ValidityWarning("ended", "text")
    with pytest.raises(AttributeError):
        warning.code = "other"  # type: ignore[misc]
    assert str(warning) == "text"


def test_sweep_stages_are_checked_for_lag_stage_by_stage_and_not_for_shortfall():
    base = make_run(n=400, lag_ms=30.0)  # 30 ms late: fine at 10/s, far behind at 50/s
    requests = base.requests.copy()
    requests["stage"] = np.repeat([0, 1], 200)
    summary = aggregate.summarize(requests, base.chunks, 10.0)
    manifest = base.manifest.model_copy(update={"stages": [{"rate": 10.0}, {"rate": 50.0}]})
    warnings = validity.check(Run(base.path, manifest, requests, base.chunks, summary))
    assert [(w.code, w.message.split(":")[0]) for w in warnings if w.code != "few_samples_p999"] == [
        ("schedule_lag", "stage 1")]


def test_reconnects_are_reported_only_when_they_happened():
    import pandas as pd

    from bench.analysis.validity import check_reconnects

    assert check_reconnects(pd.DataFrame({"reconnected": [False, False]})) == []
    warnings = check_reconnects(pd.DataFrame({"reconnected": [True, False, True]}))
    assert [w.code for w in warnings] == ["reconnects"] and "2 of 3" in warnings[0].message


def test_clock_offset_uncertainty_large_against_ttft():
    from bench.analysis.validity import check_clock_offsets

    actors = [WorkerInfo.model_validate(w) for w in ({"index": 0, "clock": {"offset_ms": 3.1, "uncertainty_ms": 0.05}},
                                                     {"index": 1, "clock": {"offset_ms": -812.4, "uncertainty_ms": 4.0}})]
    assert check_clock_offsets(actors, ttft_p50_ms=80.0) == []  # 4 ms is 5 % of 80 ms
    warnings = check_clock_offsets(actors, ttft_p50_ms=20.0)
    assert [w.code for w in warnings] == ["clock_offset"]
    assert "actor 1 ±4.00 ms" in warnings[0].message and "actor 0" not in warnings[0].message
    assert check_clock_offsets([WorkerInfo(index=0, pid=1)], ttft_p50_ms=1.0) == []  # local worker processes
    assert check_clock_offsets(actors, ttft_p50_ms=None) == []


def test_client_near_its_ceiling_is_a_validity_warning():
    import pandas as pd

    from bench.analysis.validity import check_client

    calm = ClientInfo.model_validate({"loop_lag_ms": {"p50": 0.1, "p99": 0.5, "max": 1.0},
                                      "cpu_percent": {"mean": 10.0, "max": 20.0}})
    busy = ClientInfo.model_validate({"loop_lag_ms": {"p50": 5.0, "p99": 80.0, "max": 120.0},
                                      "cpu_percent": {"mean": 97.0, "max": 100.0}})
    frame = pd.DataFrame({"phase": ["measure"] * 3, "scheduled_s": [0.0, 1.0, 2.0], "sent_s": [0.0, 1.0, 2.0]})
    assert check_client(calm, frame, 10.0) == []
    warnings = check_client(busy, frame, 10.0)
    assert [w.code for w in warnings] == ["client_loop_lag", "client_cpu"]
    assert warnings[0].message.startswith("client: event-loop lag p99 80.0 ms (max 120 ms) > 5 ms: the client was "
                                          "busy (client-bound; use --workers or a lighter load)")
    assert warnings[1].message.startswith("client: client CPU 97 % of a core on average (> 85 %)")

    def codes(lag: dict, cpu: dict, requests: pd.DataFrame = frame) -> list[str]:
        info = ClientInfo.model_validate({"loop_lag_ms": lag, "cpu_percent": cpu})
        return [w.code for w in check_client(info, requests, 10.0)]

    # each threshold exactly: loop lag p99 5 ms, a stall of 50 ms, CPU 85 % mean, 95 % peak
    assert codes({"p99": 5.0, "max": 50.0}, {"mean": 85.0, "max": 95.0}) == []
    assert codes({"p99": 5.01, "max": 6.0}, {"mean": 10.0, "max": 20.0}) == ["client_loop_lag"]
    assert codes({"p99": 1.0, "max": 50.5}, {"mean": 10.0, "max": 20.0}) == ["client_loop_stall"]
    assert codes({"p99": 1.0, "max": 2.0}, {"mean": 85.5, "max": 90.0}) == ["client_cpu"]
    assert codes({"p99": 1.0, "max": 2.0}, {"mean": 40.0, "max": 95.5}) == ["client_cpu_peak"]
    idle = check_client(ClientInfo.model_validate({"loop_lag_ms": {"p99": 9.0, "max": 12.0},
                                                   "cpu_percent": {"mean": 20.0, "max": 30.0}}), frame, 10.0)
    assert "waited for a CPU (other processes)" in idle[0].message  # lag, but not its own work
    # Send lag growing by more than half an inter-arrival gap (50 ms at 10/s) between the first
    # and the last third of 60 sends is the client falling behind; by less, it is not.
    for growth_ms, expected in ((50.5, ["send_lag_growing"]), (49.5, [])):
        scheduled = np.arange(60) / 10.0
        lag_s = np.where(np.arange(60) >= 40, growth_ms / 1e3, 0.0)
        sends = pd.DataFrame({"phase": ["measure"] * 60, "scheduled_s": scheduled, "sent_s": scheduled + lag_s})
        assert codes({"p99": 1.0, "max": 2.0}, {"mean": 10.0, "max": 20.0}, sends) == expected


def _outputs_run(cases: list[tuple[str, str, list[str], int | None]]) -> Run:
    """One request per case: (phase, status, chunk kinds it streamed, usage completion tokens)."""
    base = make_run(n=len(cases))
    raw = base.requests[["request_id", "stage", "phase", "variant", "scheduled_s", "submitted_s", "sent_s",
                         "end_s", "status", "error_kind", "usage_prompt_tokens", "usage_completion_tokens", "n"]].copy()
    raw["phase"] = [c[0] for c in cases]
    raw["status"] = pd.array([c[1] for c in cases], dtype="string")
    raw["usage_completion_tokens"] = pd.array([c[3] for c in cases], dtype="Int64")
    ids = [i for i, c in enumerate(cases) for _ in c[2]]
    kinds = [k for c in cases for k in c[2]]
    t = raw["sent_s"].to_numpy()[ids] + 0.05 + 0.001 * np.arange(len(ids))
    chunks = pd.DataFrame({"request_id": np.asarray(ids, dtype="int64"), "t_s": t,
                           "kind": pd.Categorical(kinds, categories=["role", *TOKEN_KINDS, "usage", "other"]),
                           "tokens": pd.array([1] * len(ids), dtype="Int32"), "choice": np.zeros(len(ids), "int32")})
    requests = metrics.per_request(raw, chunks)
    return Run(base.path, base.manifest, requests, chunks, aggregate.summarize(requests, chunks, 10.0))


@pytest.mark.parametrize("kind", TOKEN_KINDS)
def test_ok_requests_without_any_output_are_flagged(kind):
    run = _outputs_run([
        ("measure", "ok", ["role", "content", "content", "usage"], 2),
        ("measure", "ok", ["role", "usage"], 0),  # role, usage 0: nothing generated
        ("measure", "ok", ["role", "other"], None),  # a finish-only stream, no usage
        ("measure", "ok", ["role", kind], None),  # any output kind is output
        ("measure", "ok", [], 5),  # the server counts 5 tokens it did not stream: not "no output"
        ("measure", "error", [], None),  # failed requests are counted as errors already
        ("warmup", "ok", ["role"], 0),  # not measured
    ])
    warnings = [w for w in validity.check(run) if w.code == "empty_ok"]
    assert len(warnings) == 1
    assert warnings[0].message.startswith("2 of 5 requests marked ok produced no output at all (no "
                                          + "/".join(TOKEN_KINDS) + " chunk and no completion tokens)")
    assert "empty_ok" not in codes(make_run())


def test_workload_notes_read_run_json_and_runs_without_them_still_load():
    from bench.analysis.validity import workload_notes

    base = make_run(n=10)
    assert base.manifest.workload is None and workload_notes(base.manifest) == []  # runs stored before
    manifest = Manifest.model_validate({**base.manifest.model_dump(), "workload": {
        "source": "file", "records": 10, "prompts": 7, "skipped": 3,
        "skipped_reasons": {"empty_text": 2, "malformed": 1}, "drawn": 50, "repeated": 43}})
    assert workload_notes(manifest) == [
        "dataset: 3 of 10 records skipped, never sent (2 because its user text is empty or only whitespace; "
        "1 because it is not a readable conversation); 7 prompts used",
        "prompts: 43 of 50 prompt draws repeated a prompt already sent in this run (7 prompts, drawn with "
        "replacement, order: random); a server with a prefix cache may answer repeats faster"]
    with pytest.raises(ValueError):
        Manifest.model_validate({**base.manifest.model_dump(), "workload": {"source": "file", "skiped": 1}})


def test_unknown_finish_reasons_are_named_with_their_counts():
    import pandas as pd

    from bench.analysis.validity import check_finish_reasons

    known = pd.DataFrame({"status": ["ok"] * 4 + ["error"],
                          "finish_reason": ["stop", "length", "tool_calls", "eos", "abort"]})
    assert check_finish_reasons(known) == []
    filtered = check_finish_reasons(pd.DataFrame({"status": ["ok"] * 3,
                                                  "finish_reason": ["content_filter", "stop", "content_filter"]}))
    assert [w.code for w in filtered] == ["content_filter"] and filtered[0].message.startswith("2 answers")
    odd = pd.DataFrame({"status": ["ok", "ok", "ok", "error"],
                        "finish_reason": ["eos_reached", "stop,eos_reached", None, "weird"]})
    (warning,) = check_finish_reasons(odd)
    assert warning.code == "unknown_finish_reason"
    assert "'eos_reached' (2 requests)" in warning.message and "weird" not in warning.message


@pytest.mark.parametrize(("lag_ms", "message"), [(0.3, None), (-0.05, None), (-0.46, "p50 -0.46 ms, 0% of"),
                                                 (-0.8, "p50 -0.80 ms, 100% of requests more than 0.5 ms")])
def test_negative_schedule_lag_beyond_clock_resolution_is_sent_early(lag_ms, message):
    found = [w.message for w in validity.check(make_run(lag_ms=lag_ms)) if w.code == "sent_early"]
    assert found == ([] if message is None else [found[0]])
    if message is not None:
        assert message in found[0] and found[0].startswith("sent early")


def test_a_few_early_requests_pass_but_a_share_of_them_is_sent_early():
    requests = make_run(n=1000, lag_ms=0.2).requests.copy()
    requests.loc[:4, "sent_s"] -= 1e-3  # 5 of 1000 (0.5 %) a millisecond early: within the allowance
    assert validity.check_sent_early(requests) == []
    requests.loc[:49, "sent_s"] -= 1e-3  # 50 of 1000 (5 %)
    assert [w.code for w in validity.check_sent_early(requests)] == ["sent_early"]


def test_requests_that_never_went_out_are_not_sent_early():
    requests = make_run(n=200, lag_ms=-2.0).requests.copy()
    requests["error_kind"] = pd.array(["connect_refused"] * len(requests), dtype="string")
    assert validity.check_sent_early(requests) == []
