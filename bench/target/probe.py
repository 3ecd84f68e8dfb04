"""`bench probe`: a few short streamed requests that show how a server speaks the stream format.

`run_probe` sends the requests (`bench.target.probe_requests`), reads the server's dialect
from them (`bench.target.dialect`) and what bench will measure on it
(`bench.target.measures`); `bench.report.probe` prints the result.

Errors: a server that cannot be reached raises `ProbeConnectError`; a request that fails in
any other way (HTTP 4xx/5xx, an error event, a timeout) is kept as that exchange's `error`
and shows up in the rows that needed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.runner.client import ClientConfig, StreamClient
from bench.target.dialect import Finding, analyse
from bench.target.measures import measures
from bench.target.probe_requests import DEFAULT_TIMEOUT_S, Exchange, ProbeConnectError, first_model, send_probe_requests

__all__ = ["ProbeConnectError", "ProbeReport", "run_probe"]


@dataclass(frozen=True)
class ProbeReport:
    """What `bench probe` found: the dialect rows, what bench will measure, the exchanges."""

    base_url: str
    target: str
    model: str
    dialect: tuple[Finding, ...]
    measures: tuple[Finding, ...]
    exchanges: tuple[Exchange, ...]

    def to_json(self) -> dict[str, Any]:
        def rows(findings: tuple[Finding, ...]) -> dict[str, Any]:
            return {f.key: {"label": f.label, "summary": f.summary, "value": f.value} for f in findings}

        requests = [{"name": e.name, "path": e.path, "error": e.error, "events": len(e.events),
                     "done_seen": e.done_seen, "finish_reasons": {str(k): v for k, v in e.finish_reasons.items()},
                     "usage_tokens": list(e.usage_tokens), "reused_connection": e.reused_connection,
                     "reconnected": e.reconnected} for e in self.exchanges]
        return {"base_url": self.base_url, "target": self.target, "model": self.model,
                "dialect": rows(self.dialect), "measures": rows(self.measures), "requests": requests}


async def run_probe(base_url: str, model: str | None, api_key: str | None, target: str,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> ProbeReport:
    """Send the probe's requests to `base_url` (…/v1) and analyse them.

    `model` None: the first model the server lists. Raises ProbeConnectError when the server
    cannot be reached, and ValueError (one line) when it lists no model to use or answers
    no request with a stream (a wrong model, key or URL, usually).
    """
    client = StreamClient(ClientConfig(base_url, api_key, connect_timeout_s=min(5.0, timeout_s), max_connections=4))
    try:
        model = model or await first_model(client, base_url)
        exchanges = await send_probe_requests(client, base_url, model, timeout_s)
    finally:
        await client.aclose()
    if not any(e.events for e in exchanges):
        failures = "; ".join(sorted({e.error or "" for e in exchanges}))
        raise ValueError(f"the server at {base_url} answered no probe request with a stream: {failures}"[:600])
    by_name = {e.name: e for e in exchanges}
    dialect = analyse(by_name)
    return ProbeReport(base_url, target, model, dialect, measures(dialect), tuple(exchanges))
