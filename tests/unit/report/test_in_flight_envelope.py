"""The in-flight step line of a big run is drawn through its envelope: every level reached
in each bin of time is on the drawn line, with far fewer points; a small run is drawn whole."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metrics import derive
from bench.report import plots
from bench.report.figures import new_figure


def _requests(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sent = np.sort(rng.uniform(0.0, 100.0, n))
    return pd.DataFrame({"request_id": np.arange(n), "sent_s": sent, "end_s": sent + rng.exponential(2.0, n),
                         "status": "ok", "phase": "measure", "error_kind": None})


def _drawn(requests: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    ax = new_figure(6, 4).subplots(1, 1)
    plots.plot_in_flight(ax, requests)
    line = ax.get_lines()[0]
    return np.asarray(line.get_xdata(), dtype="float64"), np.asarray(line.get_ydata())


def test_a_big_step_series_keeps_every_bins_levels():
    requests = _requests(40_000)
    steps = derive.in_flight_over_time(requests)
    t, y = _drawn(requests)
    assert len(t) < 4 * plots.STEP_BINS < len(steps)
    full_t, full_y = steps["t_s"].to_numpy(), steps["in_flight"].to_numpy()
    bins = np.minimum(((full_t - full_t[0]) / (full_t[-1] - full_t[0]) * plots.STEP_BINS).astype(int),
                      plots.STEP_BINS - 1)
    drawn_bins = np.minimum(((t - full_t[0]) / (full_t[-1] - full_t[0]) * plots.STEP_BINS).astype(int),
                            plots.STEP_BINS - 1)
    whole = pd.Series(full_y).groupby(bins).agg(["min", "max", "first", "last"])
    envelope = pd.Series(y).groupby(drawn_bins).agg(["min", "max", "first", "last"])
    assert whole.equals(envelope)


def test_a_small_step_series_is_drawn_whole():
    requests = _requests(300)
    steps = derive.in_flight_over_time(requests)
    t, y = _drawn(requests)
    assert np.array_equal(t, steps["t_s"].to_numpy()) and np.array_equal(y, steps["in_flight"].to_numpy())
