"""The README's real-server recipe, word for word, against llama.cpp (tier `-m real_server`).

The command is read from README.md, between the `<!-- recipe` and `<!-- /recipe -->`
markers of "Benchmarking a real server", so the documented command and the tested one
cannot drift. It runs in a scratch directory holding links to the repository's
`scripts/` and `scenarios/` (its run directory lands there, not in the checkout), through
`bash` as a reader would paste it. Acceptance (issue 20): it completes, no request fails
or times out, and it takes under two minutes, measured around the whole command (the
cached `scripts/llama_server.sh`, the server's start, the run, the server's stop).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_llama_smoke import BUILD_TIMEOUT_S, REPO, SCRIPT, pid_gone

from bench.analysis.results import load_run
from bench.commands.parser import build_parser
from bench.scenario.loader import load_scenario
from bench.scenario.schema import Fixed

README = REPO / "README.md"
WALL_LIMIT_S = 120.0  # the acceptance bound for the whole command
HARD_TIMEOUT_S = 600.0  # a hung run still ends the test


def recipe_command(readme: Path | None = None) -> str:
    """The shell text between the recipe markers of README.md (or `readme`), without the code fence."""
    readme = readme or README
    found = re.search(r"^<!-- recipe\b.*?-->\n(.*?)^<!-- /recipe -->", readme.read_text(), re.M | re.S)
    assert found, f"{readme}: no <!-- recipe --> ... <!-- /recipe --> block"
    lines = [line for line in found.group(1).splitlines() if not line.startswith("```")]
    return "\n".join(lines).strip() + "\n"


def recipe_scenario(command: str) -> Path:
    found = re.search(r"\bbench run (\S+\.ya?ml)\b", command)
    assert found, f"the recipe runs no scenario file: {command}"
    return REPO / found.group(1)


def recipe_port(command: str) -> int:
    found = re.search(r"--base-url http://127\.0\.0\.1:(\d+)/", command)
    assert found, f"the recipe names no loopback --base-url: {command}"
    return int(found.group(1))


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_readme_recipe_block_parses() -> None:
    """Default tier (no server): the block is there, its bench command parses with bench's own
    parser, names a scenario that loads, and launches the server on the port it benchmarks."""
    command = recipe_command()
    assert command.startswith('eval "$(scripts/llama_server.sh)"')
    logical = command.replace("\\\n", " ")
    bench_line = next(line for line in logical.splitlines() if line.startswith("bench run "))
    args = build_parser(with_sim=False).parse_args(shlex.split(bench_line)[1:])
    assert REPO / args.scenario == recipe_scenario(command)
    load_scenario(REPO / args.scenario)
    launch = shlex.split(args.launch)
    assert launch[0] == "$LLAMA_SERVER" and "--no-repack" in launch
    assert int(launch[launch.index("--port") + 1]) == recipe_port(command)


@pytest.mark.real_server
def test_readme_recipe_completes_without_timeouts_in_two_minutes(tmp_path: Path) -> None:
    command = recipe_command()
    scenario = load_scenario(recipe_scenario(command))
    port = recipe_port(command)
    assert port_free(port), f"port {port} is in use; the README recipe needs it free"
    # A cold build takes minutes: do it first, outside the measured command.
    subprocess.run(["bash", str(SCRIPT)], check=True, stdout=subprocess.DEVNULL, timeout=BUILD_TIMEOUT_S)

    for name in ("scripts", "scenarios"):
        (tmp_path / name).symlink_to(REPO / name)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", COLUMNS="100")
    start = time.monotonic()
    done = subprocess.run(["bash", "-e", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=HARD_TIMEOUT_S)
    wall_s = time.monotonic() - start
    print(f"README recipe: {wall_s:.1f} s, exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert wall_s < WALL_LIMIT_S, f"the README recipe took {wall_s:.1f} s"

    run_dirs = list((tmp_path / "results").iterdir())
    assert len(run_dirs) == 1, run_dirs
    run = load_run(run_dirs[0])
    req, summary, load = run.requests, run.summary.to_json(), scenario.load
    assert run.manifest.ended == "completed"
    # Every request, warm-up included: ok, no error of any kind (timeouts are errors).
    assert (req["status"] == "ok").all() and req["error_kind"].isna().all(), req["error_message"].dropna().tolist()
    measured = req[req["phase"] == "measure"]
    planned = load.max_requests - load.warmup.requests
    assert summary["requests"] == {"total": len(measured), "ok": len(measured), "errors": {}}
    # The duration bound may cut a slow machine's run short, but not by half.
    assert planned // 2 <= len(measured) <= planned
    assert summary["concurrency"]["peak"] == load.concurrency

    timeouts = scenario.target.timeouts
    for metric in ("ttft_ms", "tpot_ms", "e2e_ms"):
        assert summary[metric]["count"] == len(measured), metric
        assert 0 < summary[metric]["p50"] <= summary[metric]["max"], metric
    assert summary["ttft_ms"]["max"] < timeouts.ttft_s * 1000
    assert (measured["e2e_ms"] > measured["ttft_ms"]).all()
    # Answers are the scenario's length (ignore_eos): the server's own count says so.
    target = scenario.requests.synthetic.output_tokens
    assert isinstance(target, Fixed)
    assert (req["token_source"] == "usage").all()
    assert abs(summary["output_tokens_per_request"]["mean"] - target.value) <= 0.1 * target.value
    # TPOT is the server's decode time per token after the first (llama.cpp's own timings).
    server_tpot = measured["server_predicted_ms"] / (measured["server_predicted_n"] - 1)
    ratio = float((measured["tpot_ms"] / server_tpot).median())
    assert abs(ratio - 1) < 0.05, f"TPOT / llama.cpp's decode time per token: {ratio:.3f}"
    assert summary["throughput"]["output_tokens_per_s"] > 0

    assert (run.path / "server.log").stat().st_size > 0
    assert pid_gone(run.manifest.target["launched"]["pid"])
    assert port_free(port)
