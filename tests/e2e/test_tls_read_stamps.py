"""An https target takes the `read` arrival stamps (TLS needs the loop's own transport): a
loopback TLS server with a CA made in the test streams chunks at known times, and each
stored chunk time must be that chunk's write, read a moment later."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trustme
from benchtest import write_scenario

import bench

CHUNKS = 12
GAP_MS = 40.0  # between the server's chunk writes: a stamp off by one read is off by this much
SERVER = Path(__file__).resolve().parents[1] / "tls_sse_server.py"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(https root URL, CA file) of a loopback TLS server with a certificate for 127.0.0.1."""
    ca = trustme.CA()
    ca_file, server_pem = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    proc = subprocess.Popen([sys.executable, str(SERVER), str(server_pem), str(server_pem), str(CHUNKS),
                             str(GAP_MS)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "" when it exited
        assert line.startswith("ready "), line
        yield f"https://127.0.0.1:{int(line.split()[1])}", ca_file
    finally:
        proc.terminate()
        proc.wait(10)


def _server_writes(root_url: str, ca_file: Path) -> dict[str, list[float]]:
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(f"{root_url}/writes", timeout=10, context=context) as resp:
        return json.load(resp)


def test_https_chunk_stamps_are_the_reads_of_each_server_write(tmp_path, tls_server):
    root_url, ca_file = tls_server
    path = write_scenario(tmp_path, {
        "name": "tls", "target": {"base_url": f"{root_url}/v1", "model": "tls-model"},
        "requests": {"inline": ["hello"]}, "sampling": {"max_tokens": CHUNKS},
        "load": {"concurrency": 2, "max_requests": 6},
    })
    out = tmp_path / "run"
    # A private CA, trusted the way a user trusts one: SSL_CERT_FILE, read when the client starts.
    proc = subprocess.run([sys.executable, "-m", "bench", "run", str(path), "--out", str(out), "--quiet",
                           "--no-report"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SSL_CERT_FILE": str(ca_file)})
    assert proc.returncode == 0, proc.stderr
    writes = _server_writes(root_url, ca_file)
    run = bench.load_run(out)
    assert run.manifest.client.arrival_stamps == "read"
    requests = run.requests
    assert len(requests) == 6 and (requests["status"] == "ok").all()
    assert sorted(requests["server_request_id"]) == sorted(writes)
    chunks = run.chunks[run.chunks["kind"] == "content"]
    t0 = run.manifest.t0_perf_counter
    lags = []
    for row in requests.itertuples():
        stamps = chunks.loc[chunks["request_id"] == row.request_id, "t_s"].to_numpy() + t0
        written = np.asarray(writes[row.server_request_id])
        assert len(stamps) == len(written) == CHUNKS
        lags.extend(stamps - written)
        # TTFT and ITL from those stamps: the server's own spacing, to the read
        assert row.ttft_ms == pytest.approx((stamps[0] - t0 - row.sent_s) * 1e3)
    lags_ms = np.asarray(lags) * 1e3
    print(f"read stamp minus server write, ms: p50 {np.median(lags_ms):.3f} max {lags_ms.max():.3f}")
    # Each stamp follows its own chunk's write, never the one before or after (40 ms apart);
    # on an idle loop the read comes within a few ms of the write.
    assert lags_ms.min() >= 0 and lags_ms.max() < GAP_MS / 2
    assert np.median(lags_ms) < 3.0
