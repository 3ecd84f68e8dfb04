"""Schedule lag against a server that, like llama.cpp, closes the connection after every
stream and serves one connection at a time: every request opens a new connection, and most
wait unread past their TTFT timeout. No request may reach the wire before its schedule."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from benchtest import run_in_process
from closeserver import CloseServer
from faultserver import FaultServer

from bench.runner.client import ClientConfig, SendLog, StreamClient


def test_open_loop_lag_against_a_server_that_closes_every_connection(scenario_dir):
    # 50 req/s against a server that completes ~14/s: most requests time out (TTFT 0.3 s)
    # before a response header, as 62 of 115 did on llama.cpp where the lag p50 was -0.46 ms.
    with CloseServer("close") as server:
        result = run_in_process(scenario_dir, {
            "seed": 3, "target": {"base_url": server.base_url, "model": "m", "timeouts": {"ttft_s": 0.3}},
            "requests": {"synthetic": {"prompt_tokens": 16, "output_tokens": 4}},
            "load": {"rate": 50, "arrival": "poisson", "duration": 2.5}})
    req = result.run.requests
    assert server.connections >= len(req)  # one connection per request (plus the model list)
    assert (req["error_kind"] == "ttft_timeout").sum() > len(req) / 2  # the llama.cpp condition
    lag = req["schedule_lag_ms"]
    assert 0 <= lag.median() < 1.0, lag.describe()
    assert lag.min() >= 0, lag.describe()
    summary_lag = result.run.summary.to_json()["schedule_lag_ms"]
    assert summary_lag["p50"] >= 0


async def _held(client: StreamClient, hold_s: float) -> tuple[SendLog, float]:
    log = SendLog(not_before=time.perf_counter() + hold_s)
    response = await client.open_stream("/chat/completions", orjson.dumps({"model": "m", "stream": True}), log)
    async for _ in response.reads():
        pass
    await response.aclose()
    return log, log.not_before


async def _held_sends(base_url: str) -> list[tuple[SendLog, float]]:
    client = StreamClient(ClientConfig(base_url, None, 2.0, 4))
    try:
        return [await _held(client, hold_s) for hold_s in (0.004, 0.0, 0.002, 0.010)]
    finally:
        await client.aclose()


def test_the_client_holds_a_request_until_its_not_before_time():
    with CloseServer("stale") as server:
        results = asyncio.run(_held_sends(server.base_url))
        arrivals = list(server.request_arrivals)
    assert len(arrivals) >= len(results)
    for (log, not_before), arrived in zip(results, arrivals[-len(results):], strict=True):
        assert log.sent_at is not None and log.sent_at >= not_before
        assert arrived >= not_before  # the server read the request head no earlier
    assert any(log.held_s > 0.001 for log, _ in results)


async def _cancel_a_held_request_then_send(base_url: str) -> bool:
    client = StreamClient(ClientConfig(base_url, None, 2.0, 1))  # a pool of one connection
    body = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "ok"}]})
    try:
        first = await client.open_stream("/chat/completions", body)  # the pool's connection, opened
        async for _ in first.reads():
            pass
        await first.aclose()
        held = asyncio.create_task(client.open_stream("/chat/completions", body,
                                                      SendLog(not_before=time.perf_counter() + 30)))
        await asyncio.sleep(0.2)  # connection in hand, held
        held.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held
        response = await asyncio.wait_for(client.open_stream("/chat/completions", body), 5)
        async for _ in response.reads():
            pass
        await response.aclose()
        return response.reused_connection
    finally:
        await client.aclose()


def test_a_request_cancelled_while_held_gives_its_connection_back():
    # Nothing of it was written: the next request goes out on that same pooled connection
    # (a pool of one would wait forever for a connection the held request kept).
    with FaultServer() as server:
        assert asyncio.run(_cancel_a_held_request_then_send(server.base_url)) is True


def test_send_lead_settles_high_in_the_spread_of_the_overhead():
    import numpy as np

    from bench.runner.attempt import SendLead

    lead = SendLead()
    rng = np.random.default_rng(0)
    # Uniform 0.1-1.1 ms: 4 * E[(x - L)+] = E[(L - x)+] at L = 0.1 + 2/3 ms.
    for value in rng.uniform(0.1e-3, 1.1e-3, 4000):
        lead.observe(float(value))
    assert abs(lead.seconds - (0.1e-3 + 2e-3 / 3)) < 0.1e-3
    before = lead.seconds
    lead.observe(0.5)  # beyond any plausible overhead: ignored, not a 5 ms lead
    assert lead.seconds == before
