"""The simulator's GET /metrics: Prometheus text with vLLM's metric names, plus its own counters."""

from __future__ import annotations

from collections.abc import Mapping

from bench.sim.engine import Engine

__all__ = ["prometheus_text"]


def prometheus_text(engine: Engine, model: str, requests_total: int, errors_total: Mapping[int, int],
                    faults_total: Mapping[str, int]) -> str:
    """The exposition text: vLLM's gauges and counters for `model`, then `sim:` counters
    (requests, engine steps, idle waits, lag resets, errors by status, faults by kind)."""
    return "\n".join([*_vllm_lines(engine, model),
                      *_sim_lines(engine, requests_total, errors_total, faults_total)]) + "\n"


def _vllm_lines(e: Engine, model: str) -> list[str]:
    lbl = f'{{model_name="{model}"}}'
    lines = [
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{lbl} {e.num_running}",
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{lbl} {e.num_waiting}",
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f"vllm:kv_cache_usage_perc{lbl} {e.kv_usage:.6f}",
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
        "# TYPE vllm:prompt_tokens_total counter",
        f"vllm:prompt_tokens_total{lbl} {e.prompt_tokens_total}",
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
        "# TYPE vllm:generation_tokens_total counter",
        f"vllm:generation_tokens_total{lbl} {e.generation_tokens_total}",
        "# HELP vllm:request_success_total Count of finished requests by reason.",
        "# TYPE vllm:request_success_total counter",
    ]
    for reason, count in sorted(e.finished_total.items()):
        lines.append(
            f'vllm:request_success_total{{model_name="{model}",finished_reason="{reason}"}} {count}'
        )
    if e.prefix_cache is not None:
        lines += [
            "# TYPE vllm:prefix_cache_queries_total counter",
            f"vllm:prefix_cache_queries_total{lbl} {e.prefix_cache.queries}",
            "# TYPE vllm:prefix_cache_hits_total counter",
            f"vllm:prefix_cache_hits_total{lbl} {e.prefix_cache.hits}",
        ]
    return lines


def _sim_lines(e: Engine, requests_total: int, errors_total: Mapping[int, int],
               faults_total: Mapping[str, int]) -> list[str]:
    return [
        "# TYPE sim:requests_total counter",
        f"sim:requests_total {requests_total}",
        "# TYPE sim:steps_total counter",
        f"sim:steps_total {e.steps_total}",
        "# TYPE sim:idle_waits_total counter",
        f"sim:idle_waits_total {e.idle_waits_total}",
        "# HELP sim:lag_resets_total Steps that started > 5 ms late (engine overloaded).",
        "# TYPE sim:lag_resets_total counter",
        f"sim:lag_resets_total {e.lag_resets_total}",
        "# TYPE sim:errors_total counter",
        *(f'sim:errors_total{{status="{s}"}} {c}' for s, c in sorted(errors_total.items())),
        "# TYPE sim:faults_total counter",
        *(f'sim:faults_total{{kind="{k}"}} {c}' for k, c in sorted(faults_total.items())),
    ]
