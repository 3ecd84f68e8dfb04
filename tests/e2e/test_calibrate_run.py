"""`bench calibrate` end to end on small points: a closed loop (the ceiling) and an open-loop
rate against the zero-latency simulator, one line each, and the safe range drawn from them."""

from __future__ import annotations

import pytest

from bench.commands.calibrate import calibrate, safe_range

TOKENS = 16


def test_calibrate_measures_the_ceiling_and_judges_each_rate():
    lines: list[str] = []
    points = calibrate(seconds=1.0, streams=(4,), rates=(20.0,), tokens=TOKENS, echo=lines.append)
    streams, rate = points
    assert (streams.kind, streams.value, rate.kind, rate.value) == ("streams", 4, "rate", 20.0)
    assert len(lines) == 2 and lines[0].strip().startswith("4 streams:") and lines[0].endswith("(ceiling)")
    assert lines[1].strip().startswith("20 req/s Poisson:")
    # every closed-loop request streams exactly TOKENS chunks (zero profile, ignore_eos): the
    # chunk rate is TOKENS times the request rate, but for the few cut off at the end
    assert streams.chunks_per_s == pytest.approx(TOKENS * streams.achieved_rps, rel=0.03)
    assert streams.achieved_rps > 20 and not streams.clean  # unpaced: never a safe point
    assert streams.cpu_percent is not None and streams.loop_lag_p99_ms is not None
    # The rate's verdict is its own warnings and achieved rate; which way it goes depends on
    # this machine's load, so the line must say what the point says.
    assert rate.achieved_rps == pytest.approx(20.0, rel=0.35)  # 20 Poisson arrivals in 1 s
    assert lines[1].endswith("ok") == rate.clean
    if not rate.clean:
        assert "CLIENT-BOUND" in lines[1] and all(w in lines[1] for w in rate.warnings)
    safe = safe_range(points)
    assert safe["rate"] == (20.0 if rate.clean else None)
    assert safe["ceiling_chunks_per_s"] == streams.chunks_per_s
    assert safe["safe_chunks_per_s"] == streams.chunks_per_s / 2
