"""The percentile ladder shows every series in full: each drawn point lies inside its axes,
and each curve reaches the highest percentile its sample supports."""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics.catalogue import E2E, ITL, TPOT, TTFT
from bench.report import figures
from bench.report.plots import LADDER_MAX_X


def _samples(n: int, seed: int, scale: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # heavy tails: a few requests 50-100x the median, the part the ladder exists for
    heavy = lambda size: scale * np.concatenate([rng.lognormal(3, 0.4, size - size // 100),  # noqa: E731
                                                 rng.uniform(50, 100, size // 100) * np.exp(3)])
    return {TTFT.key: heavy(n), ITL.key: heavy(n * 50), TPOT.key: heavy(n), E2E.key: heavy(n) * 40}


@pytest.mark.parametrize("sizes", [(40,), (120, 5_000), (20_000, 300)])
def test_every_ladder_point_is_inside_its_axes(sizes):
    samples = {f"run {i}": _samples(n, seed=i, scale=1 + i) for i, n in enumerate(sizes)}
    fig = figures.ladder_figure(samples)
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(axes) == 4
    for ax in axes:
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for line, (name, sample) in zip(ax.get_lines(), samples.items(), strict=True):
            x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
            assert ((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).all(), (ax.get_ylabel(), name)
            n = sample[TTFT.key].size if ax.get_ylabel() != ITL.heading else sample[ITL.key].size
            assert x.max() == pytest.approx(min(n, LADDER_MAX_X))  # the curve reaches its top percentile
            top = np.percentile(sample[_key(ax)], 100 * (1 - 1 / x.max()))
            assert y.max() == pytest.approx(top) and y1 >= top


def _key(ax) -> str:
    return next(m.key for m in (TTFT, ITL, TPOT, E2E) if m.heading == ax.get_ylabel())
