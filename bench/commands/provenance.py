"""What made a run, for run.json `provenance`: the command line (secrets masked), bench's
source revision, the versions of the packages that shape the numbers, and the client machine.

Every probe is best effort and bounded (git and nvidia-smi get 5 s each): a field that
cannot be read is left out, never guessed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from bench.redact import redact_argv
from bench.store import Provenance

__all__ = ["PACKAGES", "collect_provenance", "cpu_model", "gpus", "source_revision"]

# The distributions whose versions change what bench measures or how fast it can send.
PACKAGES = ("llm-bench-harness", "openai", "aiohttp", "uvloop", "orjson", "numpy", "pandas", "pyarrow",
            "pydantic", "ray")
SOURCE = Path(__file__).resolve().parents[2]  # the tree bench is imported from
PROBE_TIMEOUT_S = 5.0


def collect_provenance(command: list[str] | None) -> Provenance:
    revision, dirty = source_revision(SOURCE)
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    fields = {"command": redact_argv(command) if command else None, "git_revision": revision, "git_dirty": dirty,
              "packages": found, "cpu_model": cpu_model(), "logical_cores": os.cpu_count(),
              "physical_cores": psutil.cpu_count(logical=False),
              "memory_gib": round(psutil.virtual_memory().total / 2**30, 2), "gpus": gpus()}
    return Provenance(**{k: v for k, v in fields.items() if v is not None})


def _run(argv: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_revision(tree: Path) -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes) of `tree` when it is a git checkout, else (None, None)."""
    if shutil.which("git") is None or not (tree / ".git").exists():
        return None, None
    revision = _run(["git", "rev-parse", "HEAD"], tree)
    if revision is None:
        return None, None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], tree)
    return revision, None if status is None else bool(status)


def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None


def gpus() -> list[str]:
    """One line per GPU (name, memory, driver) from nvidia-smi; empty without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    return [line.strip() for line in (out or "").splitlines() if line.strip()]
