"""Prometheus `/metrics` capture: a text-format parser, a periodic scraper, and a mapping of
engine-specific series (vLLM, SGLang, TGI, llama.cpp) to a few common ones.

Times are in the harness's clock (`time.perf_counter` by default) so the server series line
up with the per-request records on one timeline.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "KEY_SERIES",
    "MetricsScraper",
    "PromSample",
    "ScrapeStats",
    "key_series",
    "parse_prometheus_text",
]

Labels = tuple[tuple[str, str], ...]
ScrapeRow = tuple[float, str, str, float]

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class PromSample:
    """One sample line. `labels` is sorted by name so equal label sets compare equal."""

    name: str
    labels: Labels
    value: float
    timestamp_ms: int | None = None


# -- parsing ------------------------------------------------------------------------------------


def parse_prometheus_text(text: str) -> list[PromSample]:
    """Parse the Prometheus text exposition format (0.0.4, and OpenMetrics' common subset).

    Comments, HELP/TYPE lines and `# EOF` are skipped; histogram and summary lines
    (`_bucket{le=...}`, `_sum`, `_count`) are ordinary samples. Raises ValueError naming the
    line on malformed input, because a half-understood scrape is worse than a counted error.
    """
    samples: list[PromSample] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            samples.append(_parse_sample_line(line))
        except ValueError as exc:
            raise ValueError(f"metrics line {lineno}: {exc}: {raw[:200]!r}") from None
    return samples


def _parse_sample_line(line: str) -> PromSample:
    m = _NAME_RE.match(line)
    if not m:
        raise ValueError("no metric name")
    name = m.group(0)
    pos = m.end()
    labels: Labels = ()
    brace = _skip_spaces(line, pos)  # Prometheus' own parser allows blanks before "{"
    if brace < len(line) and line[brace] == "{":
        labels, pos = _parse_labels(line, brace + 1)
    rest = line[pos:]
    if rest and not rest[0].isspace():
        raise ValueError("expected a space after the name/labels")
    # OpenMetrics exemplars follow " # "; they are not part of the sample.
    rest = rest.split(" # ", 1)[0]
    fields = rest.split()
    if len(fields) not in (1, 2):
        raise ValueError("expected a value and an optional timestamp")
    value = _parse_value(fields[0])
    timestamp_ms = _parse_timestamp(fields[1]) if len(fields) == 2 else None
    return PromSample(name, tuple(sorted(labels)), value, timestamp_ms)


def _parse_labels(line: str, pos: int) -> tuple[Labels, int]:
    """Parse `a="x",b="y\\"z"}` starting after the `{`; return labels and the index after `}`."""
    labels: list[tuple[str, str]] = []
    n = len(line)
    while True:
        pos = _skip_spaces(line, pos)
        if pos < n and line[pos] == "}":
            return tuple(labels), pos + 1
        m = _LABEL_NAME_RE.match(line, pos)
        if not m:
            raise ValueError("bad label name")
        pos = _skip_spaces(line, m.end())
        if pos >= n or line[pos] != "=":
            raise ValueError("expected '=' after label name")
        pos = _skip_spaces(line, pos + 1)
        if pos >= n or line[pos] != '"':
            raise ValueError("expected a quoted label value")
        value, pos = _parse_quoted(line, pos + 1)
        labels.append((m.group(0), value))
        pos = _skip_spaces(line, pos)
        if pos < n and line[pos] == ",":
            pos += 1
        elif pos < n and line[pos] == "}":
            continue
        else:
            raise ValueError("expected ',' or '}' after a label")


def _parse_quoted(line: str, pos: int) -> tuple[str, int]:
    """Read a label value after its opening quote, undoing \\\\, \\" and \\n escapes."""
    out: list[str] = []
    n = len(line)
    while pos < n:
        ch = line[pos]
        if ch == '"':
            return "".join(out), pos + 1
        if ch == "\\" and pos + 1 < n:
            nxt = line[pos + 1]
            # Unknown escapes are kept verbatim, as Prometheus itself does.
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            pos += 2
            continue
        out.append(ch)
        pos += 1
    raise ValueError("unterminated label value")


def _skip_spaces(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos


def _parse_value(token: str) -> float:
    # float() accepts +Inf, -Inf, Inf, NaN (any case) and Go's exponent forms.
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"bad sample value {token!r}") from None


def _parse_timestamp(token: str) -> int:
    try:
        return int(token)
    except ValueError:
        pass
    # OpenMetrics writes seconds with a fraction; keep milliseconds like the classic format.
    try:
        return round(float(token) * 1000)
    except ValueError:
        raise ValueError(f"bad timestamp {token!r}") from None


# -- scraping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrapeStats:
    ok: int
    errors: int
    last_error: str | None


class MetricsScraper:
    """Scrape `url` every `interval_s` seconds on absolute deadlines until stopped.

    Deadlines are `t0 + k * interval_s`; a slow scrape skips the deadlines it overran
    instead of drifting or bunching up. Each scrape's rows carry one time: the midpoint of
    request and response in `clock`, the best guess of when the server read its counters.
    Scrape failures (connection refused, timeouts, non-200, unparsable text) are counted and
    the last message kept; the scraper carries on.
    """

    def __init__(
        self,
        url: str,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
        *,
        timeout_s: float | None = None,
        final_scrape: bool = True,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.url = url
        self.interval_s = interval_s
        self.clock = clock
        # A scrape must not outlive its slot, or one hung server blocks the whole series.
        self.timeout_s = timeout_s if timeout_s is not None else max(0.5, min(5.0, interval_s))
        self.final_scrape = final_scrape
        self._rows: list[ScrapeRow] = []
        self._labels_json: dict[Labels, str] = {}
        self._ok = 0
        self._errors = 0
        self._last_error: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    # -- results --

    def rows(self) -> list[ScrapeRow]:
        """(t_s, metric name, labels as sorted compact JSON, value) for every sample so far."""
        return list(self._rows)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self._rows, columns=["t", "metric", "labels", "value"]).astype(
            {"t": "float64", "metric": "string", "labels": "string", "value": "float64"}
        )

    @property
    def stats(self) -> ScrapeStats:
        return ScrapeStats(ok=self._ok, errors=self._errors, last_error=self._last_error)

    # -- lifecycle --

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("MetricsScraper already started")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._task = asyncio.create_task(self._loop(), name=f"scrape {self.url}")

    async def stop(self) -> None:
        """Cancel the loop, take one last scrape (end-of-run counter totals), close the session."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._session is not None:
            if self.final_scrape and task is not None:
                await self.scrape_once()
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> MetricsScraper:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _loop(self) -> None:
        t0 = self.clock()
        k = 0
        while True:
            await self.scrape_once()
            k = max(k + 1, math.floor((self.clock() - t0) / self.interval_s) + 1)
            delay = t0 + k * self.interval_s - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)

    async def scrape_once(self) -> bool:
        """One scrape; True when it produced rows. Never raises for a server-side failure."""
        if self._session is None:
            raise RuntimeError("MetricsScraper not started")
        t_send = self.clock()
        try:
            async with self._session.get(self.url) as resp:
                resp.raise_for_status()
                text = await resp.text()
            t_s = (t_send + self.clock()) / 2
            samples = parse_prometheus_text(text)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self._errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            return False
        self._add(t_s, samples)
        self._ok += 1
        return True

    def _add(self, t_s: float, samples: Iterable[PromSample]) -> None:
        for s in samples:
            labels = self._labels_json.get(s.labels)
            if labels is None:
                labels = json.dumps(dict(s.labels), sort_keys=True, separators=(",", ":"))
                self._labels_json[s.labels] = labels
            self._rows.append((t_s, s.name, labels, s.value))


# -- common series ------------------------------------------------------------------------------

# Common name -> engine series, in order of preference; the first one present in a frame wins.
# Label sets of one series are summed (several vLLM engines, several models), except for
# cache usage, a ratio, which is averaged.
KEY_SERIES: dict[str, tuple[str, ...]] = {
    "running": (
        "vllm:num_requests_running",
        "sglang:num_running_reqs",
        "tgi_batch_current_size",
        "llamacpp:requests_processing",
    ),
    "waiting": (
        "vllm:num_requests_waiting",
        "sglang:num_queue_reqs",
        "tgi_queue_size",
        "llamacpp:requests_deferred",
    ),
    "kv_cache_usage": (
        "vllm:kv_cache_usage_perc",  # vLLM >= 0.10 (a 0..1 ratio despite the name)
        "vllm:gpu_cache_usage_perc",  # older vLLM
        "sglang:token_usage",
        "llamacpp:kv_cache_usage_ratio",  # older llama.cpp only; recent builds drop it
    ),
    "prompt_tokens_total": (
        "vllm:prompt_tokens_total",
        "sglang:prompt_tokens_total",
        "tgi_request_input_length_sum",  # histogram sum == total input tokens
        "llamacpp:prompt_tokens_total",  # excludes prompt tokens reused from the cache
    ),
    "generation_tokens_total": (
        "vllm:generation_tokens_total",
        "sglang:generation_tokens_total",
        "tgi_request_generated_tokens_sum",
        "llamacpp:tokens_predicted_total",
    ),
}

_MEAN_SERIES = {"kv_cache_usage"}
_RATE_OF = {"prompt_tokens_total": "prompt_tokens_per_s", "generation_tokens_total": "generation_tokens_per_s"}


def key_series(frame: pd.DataFrame) -> pd.DataFrame:
    """Common series from a scraped frame (columns t, metric, labels, value).

    Returns one row per scrape time with columns `t`, the KEY_SERIES names and the rates
    `prompt_tokens_per_s` / `generation_tokens_per_s` (counter deltas over time, NaN for
    the first scrape and after a counter reset); NaN where the engine has no such series.
    The `sources` attribute (`result.attrs["sources"]`) names the engine series used.
    """
    import numpy as np
    import pandas as pd

    times = np.sort(frame["t"].unique()) if len(frame) else np.array([], dtype="float64")
    out = pd.DataFrame({"t": times.astype("float64")})
    sources: dict[str, str | None] = {}
    present = set(frame["metric"].unique()) if len(frame) else set()
    for common, candidates in KEY_SERIES.items():
        name = next((c for c in candidates if c in present), None)
        sources[common] = name
        if name is None:
            out[common] = np.nan
            continue
        rows = frame[frame["metric"] == name]
        grouped = rows.groupby("t")["value"]
        series = grouped.mean() if common in _MEAN_SERIES else grouped.sum()
        out[common] = out["t"].map(series).astype("float64")
    for total, rate in _RATE_OF.items():
        dv = out[total].diff()
        dt = out["t"].diff()
        out[rate] = (dv / dt).where(dv >= 0)  # a negative delta is a restart, not a rate
    out.attrs["sources"] = sources
    return out
