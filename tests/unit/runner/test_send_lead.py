"""The early-submit lead: the runner hands a request to the client `SendLead.seconds` before
its time, so that the client's own build-and-write time is spent before it, and the client
holds it, connection in hand, until the scheduled time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from fakestreams import FakeResponse, FakeStreams, Script, healthy
from test_runner import Sink, Source

from bench.records import Progress
from bench.runner.attempt import SendLead
from bench.runner.runner import Runner
from bench.runner.streamapi import SendLog
from bench.scenario.schema import Timeouts
from bench.workload.plan import RunPlan, StagePlan

PREP_S = 0.003  # the client's time from being handed a request to reaching the hold


def test_the_first_overhead_is_taken_whole_and_capped():
    lead = SendLead()
    lead.observe(0.002)
    assert lead.seconds == 0.002
    capped = SendLead()
    capped.observe(0.02)
    assert capped.seconds == SendLead.MAX_S


def test_impossible_overheads_are_ignored():
    lead = SendLead()
    for bad in (-0.001, 0.1, 3.0):
        lead.observe(bad)
    assert lead.seconds == 0.0
    lead.observe(0.001)
    assert lead.seconds == 0.001  # still the first observation


def test_steps_up_four_times_faster_than_down_then_slower_after_twenty():
    lead = SendLead()
    lead.observe(0.002)
    lead.observe(0.004)
    assert lead.seconds == pytest.approx(0.002 + 0.3 * 0.002, abs=1e-15)
    lead.observe(0.001)
    assert lead.seconds == pytest.approx(0.0026 - 0.075 * 0.0016, abs=1e-15)
    for _ in range(17):  # 20 observations so far
        lead.observe(lead.seconds)
    before = lead.seconds
    lead.observe(before + 0.001)
    assert lead.seconds == pytest.approx(before + 0.05 * 0.001, abs=1e-15)
    lead.observe(lead.seconds - 0.001)
    assert lead.seconds == pytest.approx(before + 0.05 * 0.001 - 0.0125 * 0.001, abs=1e-15)


def test_settles_two_thirds_up_a_uniform_spread():
    # where the mean excess above it is a quarter of the mean shortfall below: s = 2/3 of the spread
    lead = SendLead()
    for overhead in np.random.default_rng(7).uniform(0.0, 0.003, 20_000):
        lead.observe(float(overhead))
    assert lead.seconds == pytest.approx(0.002, rel=0.05)


class SlowClient(FakeStreams):
    """A client that spends PREP_S (building, pool checkout) before it reaches its hold; notes
    when it was handed each request."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.handed: list[float] = []

    async def open_stream(self, path: str, body: bytes, log: SendLog | None = None) -> FakeResponse:
        self.handed.append(time.perf_counter())
        end = self.handed[-1] + PREP_S
        while time.perf_counter() < end:  # CPU time: never shorter, whatever the machine's load
            pass
        return await super().open_stream(path, body, log)


async def test_requests_are_handed_to_the_client_early_by_its_learned_overhead():
    offsets = [0.02 * i for i in range(25)]
    streams = SlowClient(lambda _: Script(healthy(2, 0.002, 0.001)))
    sink = Sink()
    runner = Runner(RunPlan("/chat/completions", Timeouts()), Source(), streams, sink, time.perf_counter() + 0.05,
                    Progress())
    assert await runner.run([StagePlan(0, offsets=np.array(offsets))], asyncio.Event()) == "completed"
    # Every observed overhead is at least PREP_S, so the lead is too, up to its cap.
    assert PREP_S <= runner._lead.seconds <= SendLead.MAX_S
    early_ms = np.array([(o.not_before - t) * 1e3 for o, t in zip(streams.opened, streams.handed, strict=True)])
    # The first request teaches the lead: handed over at its time, not before. Later ones are
    # handed over up to the lead early (a timer never fires early: never more than the cap),
    # by about PREP_S when the loop wakes on time (on a loaded machine it often does not, so
    # only some are counted); without the lead none would be early at all.
    assert early_ms[0] <= 0
    assert early_ms.max() <= SendLead.MAX_S * 1e3
    assert (early_ms[1:] > 0).sum() >= 5 and early_ms[1:].max() > 0.8 * PREP_S * 1e3
    assert all(r.scheduled_s <= r.sent_s for r in sink.records)  # the hold: never on the wire early
