"""API keys reach the server and nowhere else: not the run directory, not the console,
not error messages, not `repr` of config objects.

The test server requires `Authorization: Bearer <key>`, so a passing run proves the key was
sent; its 401 message echoes a wrong key back (as careless proxies do).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from benchtest import run_in_process, write_scenario
from faultserver import FaultServer

from bench.commands.cli import main
from bench.runner.client import ClientConfig

REPO = Path(__file__).resolve().parents[2]
KEY_ENV = "BENCH_TEST_SECRET_KEY"


def _key() -> str:
    return "sk-test-" + secrets.token_hex(16)


def _scenario(base_url: str, **target) -> dict:
    return {
        "name": "secrets",
        "target": {"base_url": base_url, **target},  # no model: GET /models must authenticate too
        "requests": {"inline": ["ok"], "order": "cycle"},
        "load": {"concurrency": 2, "max_requests": 6},
    }


def _leaks(root: Path, key: str) -> list[str]:
    """Every file under `root` whose bytes contain the key (or a credential header)."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if key.encode() in data or b"Bearer" in data:
                found.append(str(path.relative_to(root)))
    return found


def _bench_run(scenario: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Not --quiet: the summary table goes to stdout and is searched too.
    return subprocess.run([sys.executable, "-m", "bench", "run", str(scenario), "--out", str(out)],
                          cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("source", ["env", "file"])
def test_key_is_sent_but_never_stored_or_printed(tmp_path, source):
    key = _key()
    env = {}
    with FaultServer(api_key=key) as server:
        if source == "env":
            target = {"api_key_env": KEY_ENV}
            env[KEY_ENV] = key
        else:
            key_file = tmp_path / "keys" / "api_key"
            key_file.parent.mkdir()
            key_file.write_text(key + "\n")
            target = {"api_key_file": str(key_file)}
        path = write_scenario(tmp_path, _scenario(server.base_url, **target))
        out = tmp_path / "run"
        proc = _bench_run(path, out, env)
        seen = list(server.seen)
    assert proc.returncode == 0, proc.stderr
    assert len(seen) == 6 and all(s["authorized"] for s in seen)  # the key was sent
    assert "ok" in proc.stdout  # the summary was printed
    assert key not in proc.stdout and key not in proc.stderr
    assert {p.name for p in out.iterdir()} >= {"run.json", "requests.jsonl", "requests.parquet",
                                                "chunks.parquet", "summary.json"}
    assert _leaks(out, key) == []
    assert _leaks(tmp_path, key) == (["keys/api_key"] if source == "file" else [])


def test_a_rejected_key_echoed_by_the_server_is_redacted(tmp_path, monkeypatch, capsys):
    wrong = _key()
    monkeypatch.setenv(KEY_ENV, wrong)
    with FaultServer(api_key=_key()) as server:
        # 401 on every request: error records, the run still completes
        result = run_in_process(tmp_path, {**_scenario(server.base_url, api_key_env=KEY_ENV, model="fault-model")})
        # 401 on GET /models while resolving the model: one line on stderr, exit 2
        path = write_scenario(tmp_path, _scenario(server.base_url, api_key_env=KEY_ENV), name="no_model.yaml")
        code = main(["run", str(path), "--out", str(tmp_path / "run2"), "--quiet"])
        seen = list(server.seen)
    req = result.run.requests
    assert result.ended == "completed" and len(req) == 6 and not any(s["authorized"] for s in seen)
    assert (req["error_kind"] == "http_401").all()
    message = req["error_message"].iloc[0]
    assert message == "Incorrect API key provided: ***."  # the server did echo the key
    assert _leaks(tmp_path / "run", wrong) == []
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "HTTP 401" in err and "***" in err, err
    assert wrong not in err
    assert not (tmp_path / "run2").exists()


def test_repr_of_config_objects_hides_the_key(tmp_path, monkeypatch):
    key = _key()
    config = ClientConfig("http://127.0.0.1:1/v1", key, 1.0, 8)
    assert key not in repr(config) and key not in str(config) and "***" in repr(config)
    assert "api_key=None" in repr(ClientConfig("http://127.0.0.1:1/v1", None, 1.0, 8))
    from bench.scenario.loader import load_scenario
    from bench.target.resolve import read_api_key

    monkeypatch.setenv(KEY_ENV, key)
    scenario = load_scenario(write_scenario(tmp_path, _scenario("http://127.0.0.1:1/v1", api_key_env=KEY_ENV)))
    assert read_api_key(scenario) == key  # the scenario holds the variable's name only
    assert key not in repr(scenario) and key not in scenario.model_dump_json()
