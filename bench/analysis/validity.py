"""Validity checks: reasons not to trust a run's numbers, printed with every summary and report.

In pyperf's spirit: the numbers are still shown, but the reader is told what undermines
them. Each check reads the stored run only (manifest, requests, summary).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bench.analysis import results
from bench.analysis.summary_model import Summary
from bench.analysis.token_truth import check_token_counts
from bench.analysis.warm_cache import check_warm_cache
from bench.errors import ValidityWarning
from bench.metrics import catalogue
from bench.metrics.catalogue import E2E, E2E_SCHEDULED, SCHEDULE_LAG, TTFT, TTFT_SCHEDULED
from bench.metrics.scan import TOKEN_KINDS
from bench.store import ClientInfo, WorkerInfo

__all__ = [
    "FROM_SCHEDULE_MARGIN",
    "LAG_FLOOR_MS",
    "MAX_CLOCK_UNCERTAINTY_SHARE_OF_TTFT",
    "MAX_ERROR_RATE",
    "MAX_LAG_P99_SHARE_OF_INTERARRIVAL",
    "MAX_RATE_SHORTFALL",
    "MIN_SAMPLES_P99",
    "MIN_SAMPLES_P999",
    "NOT_SENT_KINDS",
    "SENT_EARLY_MAX_SHARE",
    "SENT_EARLY_MS",
    "SENT_EARLY_P50_MS",
    "check",
    "check_client",
    "check_clock_offsets",
    "check_empty_ok",
    "check_ended",
    "check_error_rate",
    "check_finish_reasons",
    "check_from_schedule",
    "check_overload",
    "check_rate",
    "check_reconnects",
    "check_sample_counts",
    "check_saturation",
    "check_schedule_lag",
    "check_sent_early",
    "check_stage_lag",
    "check_warmup",
    "workload_notes",
]

if TYPE_CHECKING:
    from bench.analysis.results import Run

# A percentile needs enough samples beyond it to mean anything: p99 from fewer than 100
# samples is the maximum or an interpolation towards it.
MIN_SAMPLES_P99 = 100
MIN_SAMPLES_P999 = 1000
# The client fell behind when its p99 send delay is this large a share of the mean gap
# between scheduled arrivals: the offered load was not the one intended.
MAX_LAG_P99_SHARE_OF_INTERARRIVAL = 0.5
# Below this lag the client is on time whatever the rate (timer resolution, event-loop wake-up).
LAG_FLOOR_MS = 2.0
MAX_ERROR_RATE = 0.05
# Achieved send rate may fall short of the offered rate by at most this share.
MAX_RATE_SHORTFALL = 0.05
# Sent early: a request reaches the wire no earlier than its scheduled time (the client holds
# it until then), so a negative schedule lag beyond the clock's resolution (perf_counter and
# the event loop's wake-up: ~0.1 ms) means the send path did not: a median below
# SENT_EARLY_P50_MS, or more than SENT_EARLY_MAX_SHARE of the requests below SENT_EARLY_MS.
SENT_EARLY_P50_MS = -0.1
SENT_EARLY_MS = -0.5
SENT_EARLY_MAX_SHARE = 0.01
# Error kinds of requests that never went out: their sent time is only when they were ready to.
NOT_SENT_KINDS = ("connect_refused", "connect_error", "connect_timeout")
# Open loop: a percentile from the scheduled send may exceed the one from the real send by
# the median schedule lag plus this share of the latter (2 ms at least, LAG_FLOOR_MS); more,
# and the client sent late exactly when the server was slow (coordinated omission).
FROM_SCHEDULE_MARGIN = 0.10
# Ray actors: the clock-offset uncertainty (half the best round trip) against the median TTFT.
MAX_CLOCK_UNCERTAINTY_SHARE_OF_TTFT = 0.1


def check(run: Run) -> list[ValidityWarning]:
    """Every warning that applies to the run, most serious first."""
    summary = run.summary
    scenario = run.manifest.scenario
    warnings: list[ValidityWarning] = []
    warnings += check_saturation(run)
    warnings += check_overload(run.manifest.client, run.manifest.scenario)
    warnings += check_ended(run.manifest.ended, run.manifest.end_reason)
    warnings += check_error_rate(summary)
    warnings += check_empty_ok(run.requests)
    if len(summary.stages) > 1:
        # A sweep: falling short of the offered rate past the knee is its finding, not a flaw;
        # the client falling behind its schedule still is, stage by stage.
        warnings += check_stage_lag(summary, run.manifest.stages)
    else:
        warnings += check_rate(summary)
        warnings += check_schedule_lag(summary)
    if results.is_open_loop(run.manifest):
        warnings += check_from_schedule(summary)
    warnings += check_sent_early(run.requests)
    warnings += check_warm_cache(run.requests)
    warnings += check_token_counts(run.requests)
    warnings += check_warmup(scenario, int((run.requests["phase"] == "warmup").sum()))
    warnings += check_sample_counts(summary)
    warnings += check_reconnects(run.requests)
    warnings += check_finish_reasons(run.requests)
    warnings += check_clock_offsets(run.manifest.client.workers or [], summary.metric(TTFT).p50)
    warnings += check_client(run.manifest.client, run.requests, summary.rate.offered)
    return warnings


def check_empty_ok(requests: Any) -> list[ValidityWarning]:
    """Measured requests marked ok that produced no output at all: no chunk of an output
    kind (`first_token_s` is taken from scan.TOKEN_KINDS) and no or zero
    `usage.completion_tokens`. A server that ends a stream cleanly without generating
    anything (a filter, a template that stops at once, a gateway cutting the answer) has
    these counted as ok in request throughput, with no TTFT or E2E to show for them."""
    needed = {"status", "first_token_s", "usage_completion_tokens"}
    if not needed <= set(requests.columns):
        return []
    ok = catalogue.counted(requests)
    if "body_s" in ok:  # a non-streamed answer (embeddings) generates no tokens by design
        ok = ok[ok["body_s"].isna()]
    completion = ok["usage_completion_tokens"].astype("Float64").fillna(0)
    empty = int((ok["first_token_s"].isna() & (completion == 0)).sum())
    if empty == 0:
        return []
    return [ValidityWarning("empty_ok", f"{empty} of {len(ok)} requests marked ok produced no output at all (no "
                                        f"{'/'.join(TOKEN_KINDS)} chunk and no completion tokens): the server "
                                        "answered without generating anything; they count as ok in request "
                                        "throughput but have no TTFT or E2E")]


def workload_notes(manifest: Any) -> list[str]:
    """What the run's prompt source left out or repeated (run.json `workload`), for the
    summary: records skipped as unusable, and dataset prompts drawn more than once."""
    from bench.scenario.prompts import SKIP_REASONS

    info = getattr(manifest, "workload", None)
    if info is None:
        return []
    notes = []
    if info.skipped:
        why = "; ".join(f"{count} because {SKIP_REASONS.get(reason, reason)}"
                        for reason, count in sorted(info.skipped_reasons.items()))
        notes.append(f"dataset: {info.skipped} of {info.records} records skipped, never sent ({why}); "
                     f"{info.prompts} prompts used")
    if info.repeated:
        order = ((manifest.scenario.get("requests") or {}).get("order")) or "random"
        how = "drawn with replacement" if order == "random" else "cycled past their number"
        notes.append(f"prompts: {info.repeated} of {info.drawn} prompt draws repeated a prompt already sent in this "
                     f"run ({info.prompts} prompts, {how}, order: {order}); a server with a prefix cache may "
                     "answer repeats faster")
    return notes


def check_client(client: ClientInfo, requests: Any, offered_rate: float | None) -> list[ValidityWarning]:
    """The client near its own ceiling (event-loop lag, CPU, growing send lag): then it, not
    the server, shaped the figures (self-calibration from bench.runner.loopmon)."""
    from bench.analysis.clientload import client_warnings

    return client_warnings(client, requests, offered_rate)


def check_clock_offsets(workers: list[WorkerInfo], ttft_p50_ms: float | None) -> list[ValidityWarning]:
    """Ray actors on other machines: each one's clock offset to the driver is known only to
    within half the best round trip. Latencies are measured on one actor's clock and do not
    depend on it; when it is large against the TTFT, the interleaving of the actors' sends
    and any comparison of times across actors are uncertain at the scale of a TTFT."""
    if not ttft_p50_ms or ttft_p50_ms <= 0:
        return []
    limit = MAX_CLOCK_UNCERTAINTY_SHARE_OF_TTFT * ttft_p50_ms
    uncertain = [(i if w.index is None else w.index, w.clock.uncertainty_ms) for i, w in enumerate(workers)
                 if w.clock is not None and w.clock.uncertainty_ms is not None]
    loose = [(index, float(ms)) for index, ms in uncertain if float(ms) > limit]
    if not loose:
        return []
    worst = max(u for _, u in loose)
    which = ", ".join(f"actor {i} ±{u:.2f} ms" for i, u in loose)
    return [ValidityWarning("clock_offset", f"clock offsets to the driver are uncertain by up to {worst:.2f} ms "
                                            f"({which}), more than {MAX_CLOCK_UNCERTAINTY_SHARE_OF_TTFT:.0%} of "
                                            f"the median TTFT ({ttft_p50_ms:.2f} ms): per-request latencies are "
                                            "unaffected (one clock each), but the actors' sends interleave and "
                                            "line up across actors only to within that")]


def check_reconnects(requests: Any) -> list[ValidityWarning]:
    """Requests re-sent once because their pooled keep-alive connection was already closed:
    harmless when the server closes after each response (llama.cpp does), but the request
    may have reached a server that then dropped the connection, so say how many."""
    if "reconnected" not in requests:
        return []
    count = int(requests["reconnected"].fillna(False).astype(bool).sum())
    if count == 0:
        return []
    return [ValidityWarning("reconnects", f"{count} of {len(requests)} requests were sent again on a fresh connection "
                                          "after their pooled keep-alive connection turned out closed "
                                          "(column `reconnected`); TTFT includes the reconnect")]


def check_finish_reasons(requests: Any) -> list[ValidityWarning]:
    """finish_reason values bench does not know: the requests were counted ok (the server
    did not say it cut them off), but what the server meant is unknown, so name them."""
    from bench.runner.recorder import CUT_OFF_REASONS, KNOWN_REASONS

    if "finish_reason" not in requests:
        return []
    ok = requests[requests["status"] == catalogue.STATUS_OK]["finish_reason"].dropna()  # warmup too
    counts: dict[str, int] = {}
    for value, times in ok.value_counts().items():  # per distinct value: a million answers hold a few
        for reason in set(str(value).split(",")):
            if reason.lower() not in KNOWN_REASONS and reason.lower() not in CUT_OFF_REASONS:
                counts[reason] = counts.get(reason, 0) + int(times)
    warnings = []
    filtered = int(ok.str.contains("content_filter", regex=False).sum())
    if filtered:
        warnings.append(ValidityWarning(
            "content_filter", f"{filtered} answers were ended by the server's content filter "
                              "(finish_reason content_filter): counted ok, but cut short, so their E2E "
                              "and output tokens are lower than a full answer's"))
    if counts:
        named = ", ".join(f"{reason!r} ({n} requests)" for reason, n in sorted(counts.items()))
        warnings.append(ValidityWarning(
            "unknown_finish_reason", f"finish_reason values bench does not know: {named}; those requests "
                                     "are counted ok with the raw value in `finish_reason`: check what the "
                                     "server means by them"))
    return warnings


def check_saturation(run: Run) -> list[ValidityWarning]:
    """The server saturated (bench.analysis.saturation): said first, since it changes what every
    latency means. Read from summary.json; computed from the requests for runs stored
    before it was recorded there."""
    from bench.analysis.saturation import stored_verdicts

    verdicts = stored_verdicts(run.summary, run.requests, run.manifest.stages)
    return [ValidityWarning("saturated", v["message"]) for v in verdicts]


def check_overload(client: ClientInfo, scenario: Any) -> list[ValidityWarning]:
    """Scheduled requests that were never sent: every in-flight slot stayed busy past
    load.max_send_lag_s, so the load measured is not the load offered."""
    if not client.not_sent:
        return []
    lag = (scenario.get("load") or {}).get("max_send_lag_s")
    return [ValidityWarning("not_sent", (
        f"overload: {client.not_sent:,} scheduled requests were never sent (each was still waiting for one of "
        f"the {client.in_flight_cap or '?'} in-flight slots {lag} s after its scheduled time); the server "
        "was far slower than the schedule, and the figures describe the requests that were sent"))]


def check_ended(ended: str, reason: str | None) -> list[ValidityWarning]:
    if ended == "completed":
        return []
    if ended == "saturated":
        why = f" ({reason})" if reason else ""
        return [ValidityWarning("ended", f"server saturated: the run was stopped early{why}; "
                                         "requests still queued after the drain were cancelled")]
    why = f" ({reason})" if reason else ""
    return [ValidityWarning("ended", f"the run did not complete: it ended {ended}{why}; "
                                     "the load was cut short and the last requests are missing")]


def check_error_rate(summary: Summary) -> list[ValidityWarning]:
    total = summary.requests.total
    errors = sum(summary.requests.errors.values())
    if total == 0:
        return [ValidityWarning("no_requests", "no measured requests: there is nothing to summarise")]
    rate = errors / total
    if rate <= MAX_ERROR_RATE:
        return []
    return [ValidityWarning("error_rate", f"{errors} of {total} requests failed ({rate:.1%} > "
                                          f"{MAX_ERROR_RATE:.0%}); latencies describe the survivors only")]


def check_rate(summary: Summary) -> list[ValidityWarning]:
    offered, achieved = summary.rate.offered, summary.rate.achieved
    if offered is None or achieved is None or offered <= 0:
        return []
    if achieved >= offered * (1.0 - MAX_RATE_SHORTFALL):
        return []
    return [ValidityWarning("rate_shortfall", f"achieved send rate {achieved:.2f}/s is {1 - achieved / offered:.0%} "
                                              f"below the offered {offered:.2f}/s (more than "
                                              f"{MAX_RATE_SHORTFALL:.0%}); the server saw less load than intended")]


def check_schedule_lag(summary: Summary, offered: float | None = None) -> list[ValidityWarning]:
    """`offered`: the offered rate to judge by (default: the summary's)."""
    offered = summary.rate.offered if offered is None else offered
    lag_p99 = summary.metric(SCHEDULE_LAG).p99
    if offered is None or offered <= 0 or lag_p99 is None:
        return []  # closed loop: sends follow completions, there is no inter-arrival time
    interarrival_ms = 1e3 / offered
    limit = max(MAX_LAG_P99_SHARE_OF_INTERARRIVAL * interarrival_ms, LAG_FLOOR_MS)
    if lag_p99 <= limit:
        return []
    return [ValidityWarning("schedule_lag", f"schedule lag p99 {lag_p99:.1f} ms exceeds "
                                            f"{MAX_LAG_P99_SHARE_OF_INTERARRIVAL:.0%} of the mean inter-arrival time "
                                            f"({interarrival_ms:.1f} ms): the client fell behind its schedule")]


def check_from_schedule(summary: Summary) -> list[ValidityWarning]:
    """Open loop: TTFT or E2E from the scheduled send above the same from the real send by
    more than the median schedule lag suggests (FROM_SCHEDULE_MARGIN), at p50 or p99."""
    lag = summary.metric(SCHEDULE_LAG).p50
    if lag is None:
        return []
    out = []
    for sent_metric, scheduled_metric in ((TTFT, TTFT_SCHEDULED), (E2E, E2E_SCHEDULED)):
        for stat in ("p50", "p99"):
            sent, scheduled = summary.metric(sent_metric).stat(stat), summary.metric(scheduled_metric).stat(stat)
            if sent is None or scheduled is None:
                continue
            if scheduled - sent > max(lag, 0.0) + max(FROM_SCHEDULE_MARGIN * abs(sent), LAG_FLOOR_MS):
                out.append(ValidityWarning("from_schedule", (
                    f"{sent_metric.label} {stat} from the scheduled send is {scheduled:.1f} ms, {scheduled - sent:.1f} ms "
                    f"above the {sent:.1f} ms from the real send, while the median schedule lag is {lag:.2f} ms: the "
                    "client sent late when the server was slow (coordinated omission); a user arriving on schedule "
                    f"waited the {scheduled_metric.label} figures")))
                break
    return out


def check_sent_early(requests: Any) -> list[ValidityWarning]:
    """Measured requests that went out before their scheduled time (negative schedule lag),
    beyond the clock's resolution: the offered schedule was not the one intended."""
    needed = {"sent_s", "scheduled_s"}
    if not needed <= set(requests.columns) or requests.empty:
        return []
    frame = requests[requests["phase"] != "warmup"] if "phase" in requests else requests
    if "error_kind" in frame:
        frame = frame[~frame["error_kind"].isin(NOT_SENT_KINDS)]
    lag_ms = (frame["sent_s"].to_numpy(dtype="float64") - frame["scheduled_s"].to_numpy(dtype="float64")) * 1e3
    lag_ms = lag_ms[np.isfinite(lag_ms)]
    if lag_ms.size == 0:
        return []
    p50 = float(np.median(lag_ms))
    early = float(np.mean(lag_ms < SENT_EARLY_MS))
    if p50 >= SENT_EARLY_P50_MS and early <= SENT_EARLY_MAX_SHARE:
        return []
    return [ValidityWarning("sent_early", f"sent early: schedule lag p50 {p50:.2f} ms, {early:.0%} of requests more "
                                          f"than {-SENT_EARLY_MS:g} ms before their scheduled time; the send path "
                                          "ran ahead of the schedule (the offered load was not the one intended)")]


def check_stage_lag(summary: Summary, declared: list[dict[str, Any]]) -> list[ValidityWarning]:
    out: list[ValidityWarning] = []
    stages = summary.stages
    for i, key in enumerate(sorted(stages, key=lambda k: (len(k), k))):
        info = declared[i] if i < len(declared) and isinstance(declared[i], dict) else {}
        stage = stages[key]
        rate = stage.rate.offered or info.get("rate")
        for warning in check_schedule_lag(stage, rate):
            out.append(ValidityWarning(warning.code, f"stage {key}: {warning.message}"))
    return out


def check_warmup(scenario: dict[str, Any], warmup_requests: int) -> list[ValidityWarning]:
    load = scenario.get("load") or {}
    concurrency = load.get("concurrency") or load.get("max_concurrency")
    if not concurrency or warmup_requests >= concurrency:
        return []
    return [ValidityWarning("short_warmup", f"warmup of {warmup_requests} requests is shorter than the concurrency "
                                            f"({concurrency}): the first measured requests met a cold, filling server")]


def check_sample_counts(summary: Summary) -> list[ValidityWarning]:
    """The percentiles of the catalogue's PLOTTED metrics drawn from too few samples."""
    out: list[ValidityWarning] = []
    for code, pname, minimum in (("few_samples_p99", "p99", MIN_SAMPLES_P99),
                                 ("few_samples_p999", "p99.9", MIN_SAMPLES_P999)):
        thin = [f"{m.label} ({summary.metric(m).count})" for m in catalogue.PLOTTED
                if 0 < summary.metric(m).count < minimum]
        if thin:
            out.append(ValidityWarning(code, f"{pname} from fewer than {minimum} samples is not a {pname}: "
                                             + ", ".join(thin)))
    return out
