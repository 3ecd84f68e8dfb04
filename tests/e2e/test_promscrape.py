"""bench.target.promscrape: text-format parsing on captured server output, the scraper against a real
loopback aiohttp server, and the engine -> common series mapping."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from aiohttp import web

from bench.target.launch import free_port
from bench.target.promscrape import MetricsScraper, PromSample, key_series, parse_prometheus_text

DATA = Path(__file__).resolve().parents[1] / "data"


# -- parsing --------------------------------------------------------------------------------


def by_name(samples: list[PromSample]) -> dict[str, list[PromSample]]:
    out: dict[str, list[PromSample]] = {}
    for s in samples:
        out.setdefault(s.name, []).append(s)
    return out


def test_parses_real_llama_server_metrics() -> None:
    samples = parse_prometheus_text((DATA / "llamacpp_metrics.txt").read_text())
    names = by_name(samples)
    for name in (
        "llamacpp:prompt_tokens_total",
        "llamacpp:tokens_predicted_total",
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
    ):
        assert len(names[name]) == 1 and names[name][0].labels == ()
    assert names["llamacpp:tokens_predicted_total"][0].value > 0
    assert all(not s.name.startswith("#") for s in samples)


def test_parses_vllm_format_with_labels_and_histograms() -> None:
    samples = parse_prometheus_text((DATA / "vllm_metrics.txt").read_text())
    names = by_name(samples)
    running = names["vllm:num_requests_running"][0]
    assert running.value == 3.0
    assert running.labels == (("engine", "0"), ("model_name", "Qwen/Qwen2.5-0.5B-Instruct"))  # sorted
    buckets = names["vllm:time_to_first_token_seconds_bucket"]
    assert [dict(b.labels)["le"] for b in buckets] == ["0.001", "0.04", "2.5", "+Inf"]
    assert names["vllm:time_to_first_token_seconds_count"][0].value == 16.0
    assert names["vllm:time_to_first_token_seconds_sum"][0].value == pytest.approx(0.7312345)
    assert names["vllm:prompt_tokens_created"][0].value == pytest.approx(1.7321456789e9)
    assert len(names["vllm:request_success_total"]) == 2


def test_escaped_quotes_backslashes_newlines_and_tricky_characters() -> None:
    text = 'm{path="C:\\\\dir",msg="say \\"hi\\"\\nbye",odd="a}b,c # d"} 1\n'
    (s,) = parse_prometheus_text(text)
    labels = dict(s.labels)
    assert labels == {"path": "C:\\dir", "msg": 'say "hi"\nbye', "odd": "a}b,c # d"}
    assert s.value == 1.0


def test_special_values_timestamps_and_spacing() -> None:
    text = "\n".join(
        [
            "# a free comment",
            "# HELP x_total help with \\n escape",
            "# TYPE x_total counter",
            "x_total 1.5e3 1712345678901",
            "inf_pos +Inf",
            "inf_neg -Inf",
            "not_a_number NaN",
            "empty_labels{} 2",
            'trailing_comma{a="b",} 3',
            'spaced { a = "b" , c="d" }   4   ',
            "openmetrics_ts 5 1712345678.5",
            'with_exemplar_total 6 # {trace_id="abc"} 1.0',
            "",
            "# EOF",
        ]
    )
    s = {x.name: x for x in parse_prometheus_text(text)}
    assert s["x_total"].value == 1500.0 and s["x_total"].timestamp_ms == 1712345678901
    assert s["inf_pos"].value == math.inf and s["inf_neg"].value == -math.inf
    assert math.isnan(s["not_a_number"].value)
    assert s["empty_labels"].labels == () and s["empty_labels"].timestamp_ms is None
    assert s["trailing_comma"].labels == (("a", "b"),)
    assert s["spaced"].labels == (("a", "b"), ("c", "d")) and s["spaced"].value == 4.0
    assert s["openmetrics_ts"].timestamp_ms == 1712345678500
    assert s["with_exemplar_total"].value == 6.0


@pytest.mark.parametrize(
    "line",
    ["m{a=b} 1", 'm{a="b} 1', "m one", "m 1 2 3", "9bad 1", 'm{a="b"}1', "m"],
)
def test_malformed_lines_raise_with_line_number(line: str) -> None:
    with pytest.raises(ValueError, match="metrics line 2"):
        parse_prometheus_text(f"ok 1\n{line}\n")


# -- key series -----------------------------------------------------------------------------


def test_key_series_vllm_fixture() -> None:
    samples = parse_prometheus_text((DATA / "vllm_metrics.txt").read_text())
    frame = pd.DataFrame(
        [(0.0, s.name, json.dumps(dict(s.labels)), s.value) for s in samples],
        columns=["t", "metric", "labels", "value"],
    )
    ks = key_series(frame)
    row = ks.iloc[0]
    assert (row.running, row.waiting, row.kv_cache_usage) == (3.0, 1.0, 0.0421875)
    assert (row.prompt_tokens_total, row.generation_tokens_total) == (1536.0, 4096.0)
    assert ks.attrs["sources"]["kv_cache_usage"] == "vllm:kv_cache_usage_perc"


def test_key_series_llamacpp_sums_rates_and_missing() -> None:
    rows = []
    for t, predicted, processing in [(1.0, 100, 2), (2.0, 150, 3), (3.0, 10, 0)]:  # reset at t=3
        rows += [
            (t, "llamacpp:tokens_predicted_total", "{}", float(predicted)),
            (t, "llamacpp:prompt_tokens_total", "{}", 40.0 * t),
            (t, "llamacpp:requests_processing", "{}", float(processing)),
            (t, "llamacpp:requests_deferred", "{}", 0.0),
        ]
    ks = key_series(pd.DataFrame(rows, columns=["t", "metric", "labels", "value"]))
    assert list(ks["t"]) == [1.0, 2.0, 3.0]
    assert list(ks["running"]) == [2.0, 3.0, 0.0]
    assert ks["kv_cache_usage"].isna().all()  # recent llama.cpp exports no KV-cache gauge
    gen = ks["generation_tokens_per_s"]
    assert math.isnan(gen[0]) and gen[1] == 50.0 and math.isnan(gen[2])
    assert ks["prompt_tokens_per_s"][1] == 40.0


def test_key_series_sums_label_sets_and_averages_usage() -> None:
    frame = pd.DataFrame(
        [
            (0.5, "sglang:num_running_reqs", '{"dp":"0"}', 2.0),
            (0.5, "sglang:num_running_reqs", '{"dp":"1"}', 5.0),
            (0.5, "sglang:token_usage", '{"dp":"0"}', 0.2),
            (0.5, "sglang:token_usage", '{"dp":"1"}', 0.4),
        ],
        columns=["t", "metric", "labels", "value"],
    )
    ks = key_series(frame)
    assert ks["running"][0] == 7.0 and ks["kv_cache_usage"][0] == pytest.approx(0.3)
    assert ks["waiting"].isna().all()


def test_key_series_empty_frame() -> None:
    ks = key_series(pd.DataFrame(columns=["t", "metric", "labels", "value"]))
    assert len(ks) == 0 and "running" in ks.columns


# -- scraper against a real loopback server -------------------------------------------------


@dataclass
class FakeExporter:
    mode: str = "ok"  # ok | error | garbage
    delay_s: float = 0.0
    hits: int = 0
    times: list[float] = field(default_factory=list)


@pytest.fixture
async def exporter() -> AsyncIterator[tuple[FakeExporter, str]]:
    state = FakeExporter()

    async def metrics(request: web.Request) -> web.Response:
        state.hits += 1
        state.times.append(asyncio.get_running_loop().time())
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        if state.mode == "error":
            return web.Response(status=500, text="boom")
        if state.mode == "garbage":
            return web.Response(text="<html>not metrics</html>")
        body = (
            "# TYPE llamacpp:tokens_predicted_total counter\n"
            f"llamacpp:tokens_predicted_total {10 * state.hits}\n"
            'labelled{kind="a \\"q\\""} 1\n'
        )
        return web.Response(text=body, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield state, f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()


async def test_scraper_collects_rows_and_frame(exporter: tuple[FakeExporter, str]) -> None:
    state, url = exporter
    scraper = MetricsScraper(url, interval_s=0.05)
    await scraper.start()
    await asyncio.sleep(0.3)
    await scraper.stop()
    stats = scraper.stats
    assert stats.errors == 0 and stats.ok >= 4
    assert stats.ok == state.hits  # includes the final scrape taken by stop()
    frame = scraper.to_frame()
    assert list(frame.columns) == ["t", "metric", "labels", "value"]
    assert len(frame) == 2 * stats.ok
    tokens = frame[frame.metric == "llamacpp:tokens_predicted_total"]
    assert tokens["t"].is_monotonic_increasing and tokens["value"].is_monotonic_increasing
    assert json.loads(frame[frame.metric == "labelled"]["labels"].iloc[0]) == {"kind": 'a "q"'}
    assert scraper.rows()[0][1:] == ("llamacpp:tokens_predicted_total", "{}", 10.0)
    await scraper.stop()  # idempotent


async def test_scraper_survives_errors_and_recovers(exporter: tuple[FakeExporter, str]) -> None:
    state, url = exporter
    state.mode = "error"
    async with MetricsScraper(url, interval_s=0.04) as scraper:
        await asyncio.sleep(0.15)
        assert scraper.stats.errors >= 2 and "500" in (scraper.stats.last_error or "")
        state.mode = "garbage"
        await asyncio.sleep(0.15)
        assert "ValueError" in (scraper.stats.last_error or "")
        state.mode = "ok"
        await asyncio.sleep(0.15)
    assert scraper.stats.ok >= 2
    assert len(scraper.rows()) == 2 * scraper.stats.ok


async def test_scraper_connection_refused_is_counted() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"  # nobody listens there
    async with MetricsScraper(url, interval_s=0.05) as scraper:
        await asyncio.sleep(0.2)
    assert scraper.stats.ok == 0 and scraper.stats.errors >= 3
    assert scraper.to_frame().empty


async def test_scraper_timeout_is_counted(exporter: tuple[FakeExporter, str]) -> None:
    state, url = exporter
    state.delay_s = 1.0
    scraper = MetricsScraper(url, interval_s=0.1, timeout_s=0.1, final_scrape=False)
    await scraper.start()
    await asyncio.sleep(0.35)
    await scraper.stop()
    assert scraper.stats.ok == 0 and scraper.stats.errors >= 2
    assert "TimeoutError" in (scraper.stats.last_error or "")


async def test_scraper_keeps_absolute_deadlines(exporter: tuple[FakeExporter, str]) -> None:
    # Each scrape takes 60 % of the interval: sleeping a full interval after each scrape
    # would give ~6 scrapes in 1 s; absolute deadlines give ~10.
    state, url = exporter
    state.delay_s = 0.06
    scraper = MetricsScraper(url, interval_s=0.1, final_scrape=False)
    await scraper.start()
    await asyncio.sleep(1.0)
    await scraper.stop()
    assert scraper.stats.ok >= 8


async def test_scraper_skips_overrun_deadlines(exporter: tuple[FakeExporter, str]) -> None:
    # A scrape slower than the interval must not be followed by a burst of catch-up scrapes.
    state, url = exporter
    state.delay_s = 0.25
    scraper = MetricsScraper(url, interval_s=0.1, timeout_s=1.0, final_scrape=False)
    await scraper.start()
    await asyncio.sleep(0.9)
    await scraper.stop()
    gaps = [b - a for a, b in itertools.pairwise(state.times)]
    assert gaps and min(gaps) >= 0.24
