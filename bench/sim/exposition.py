"""The simulator's GET /metrics: Prometheus text with vLLM's metric names, plus its own counters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.sim.engine import Engine

__all__ = ["prometheus_text"]


def prometheus_text(engines: Sequence[tuple[Engine, str]], requests_total: int, errors_total: Mapping[int, int],
                    faults_total: Mapping[str, int]) -> str:
    """The exposition text: vLLM's gauges and counters for each (engine, model name) pair,
    one series per model under one HELP/TYPE per metric (a profile with several deployments
    has several engines), then `sim:` counters over all engines (requests, engine steps,
    idle waits, lag resets, errors by status, faults by kind)."""
    return "\n".join([*_vllm_lines(engines),
                      *_sim_lines([e for e, _ in engines], requests_total, errors_total, faults_total)]) + "\n"


_VLLM = (  # name, type, help, value of an engine
    ("num_requests_running", "gauge", "Number of requests in model execution batches.", lambda e: e.num_running),
    ("num_requests_waiting", "gauge", "Number of requests waiting to be processed.", lambda e: e.num_waiting),
    ("kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", lambda e: f"{e.kv_usage:.6f}"),
    ("prompt_tokens_total", "counter", "Number of prefill tokens processed.", lambda e: e.prompt_tokens_total),
    ("generation_tokens_total", "counter", "Number of generation tokens processed.",
     lambda e: e.generation_tokens_total),
)


def _vllm_lines(engines: Sequence[tuple[Engine, str]]) -> list[str]:
    lines: list[str] = []
    for name, kind, text, value in _VLLM:
        lines += [f"# HELP vllm:{name} {text}", f"# TYPE vllm:{name} {kind}"]
        lines += [f'vllm:{name}{{model_name="{model}"}} {value(e)}' for e, model in engines]
    lines += ["# HELP vllm:request_success_total Count of finished requests by reason.",
              "# TYPE vllm:request_success_total counter"]
    for e, model in engines:
        lines += [f'vllm:request_success_total{{model_name="{model}",finished_reason="{reason}"}} {count}'
                  for reason, count in sorted(e.finished_total.items())]
    cached = [(e.prefix_cache, model) for e, model in engines if e.prefix_cache is not None]
    if cached:
        lines.append("# TYPE vllm:prefix_cache_queries_total counter")
        lines += [f'vllm:prefix_cache_queries_total{{model_name="{model}"}} {c.queries}' for c, model in cached]
        lines.append("# TYPE vllm:prefix_cache_hits_total counter")
        lines += [f'vllm:prefix_cache_hits_total{{model_name="{model}"}} {c.hits}' for c, model in cached]
    return lines


def _sim_lines(engines: Sequence[Engine], requests_total: int, errors_total: Mapping[int, int],
               faults_total: Mapping[str, int]) -> list[str]:
    return [
        "# TYPE sim:requests_total counter",
        f"sim:requests_total {requests_total}",
        "# TYPE sim:steps_total counter",
        f"sim:steps_total {sum(e.steps_total for e in engines)}",
        "# TYPE sim:idle_waits_total counter",
        f"sim:idle_waits_total {sum(e.idle_waits_total for e in engines)}",
        "# HELP sim:lag_resets_total Steps that started > 5 ms late (engine overloaded).",
        "# TYPE sim:lag_resets_total counter",
        f"sim:lag_resets_total {sum(e.lag_resets_total for e in engines)}",
        "# TYPE sim:errors_total counter",
        *(f'sim:errors_total{{status="{s}"}} {c}' for s, c in sorted(errors_total.items())),
        "# TYPE sim:faults_total counter",
        *(f'sim:faults_total{{kind="{k}"}} {c}' for k, c in sorted(faults_total.items())),
    ]
