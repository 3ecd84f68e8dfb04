"""Mutation testing (mutmut 3) of the modules that define the numbers; not run by CI.

For each module below, in a scratch copy of the repo (so the work tree is never touched), runs
`mutmut run` with only that module mutated and only its fast unit tests selected, then prints
per module: mutants, killed, survived (+ "no tests", counted as survived), equivalent, and
score = killed / (mutants - listed equivalents), plus every surviving mutant's name. Survivors
listed as equivalent in docs/mutation.md (a backquoted mutant name on a table row) are left out of
the score; a listed name that no longer survives is reported as stale. Exit status 1 if any
module (or the total) scores below --target (90 %), 2 on a setup error.

    pip install -e '.[test,mutation]'
    python benchmarks/mutation.py [--modules recorder sse ...] [--children 2] [--workdir DIR]
    python benchmarks/mutation.py --show bench.runner.sse.x_parse__mutmut_3   # print a diff

Mutant names (`bench.<module>.x_<function>__mutmut_<n>`) are stable while the function's
source is unchanged; after an edit, re-run and re-check the list in docs/mutation.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODULES", "Score", "main"]

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENTS = ROOT / "docs" / "mutation.md"

# tests/dialects is left out: it is end to end, its timing tolerances fail on a loaded
# machine (a false kill, or a failed clean run) and it restarts its server for every mutant.
RUNNER_TESTS = [
    "tests/unit/runner/test_sse.py",
    "tests/unit/runner/test_recorder.py",
    "tests/unit/runner/test_recorder_dialects.py",
    "tests/unit/runner/test_recorder_properties.py",
    "tests/unit/runner/test_recorder_exact.py",
    "tests/unit/runner/test_sse_exact.py",
    "tests/unit/runner/test_recorder_tool_calls.py",
    "tests/unit/runner/test_recorder_usage_details.py",
    "tests/unit/runner/test_output_texts.py",
    "tests/unit/runner/test_sse_field_case.py",
    "tests/unit/runner/test_recorder_templates.py",
    "tests/unit/metrics/test_cached_tokens.py",
    "tests/unit/metrics/test_dialects_phases.py",
]
METRICS_TESTS = ["tests/unit/metrics"]  # test_metrics, test_scan_batches, test_derive_exact, the oracle
COMPARE_TESTS = ["tests/unit/report/test_compare_rules.py", "tests/unit/report/test_stats_exact.py",
                 "tests/unit/report/test_compare_exact.py", "tests/unit/report/test_compare_reasoned.py",
                 "tests/unit/analysis"]

# name -> (file to mutate, tests that exercise it)
MODULES: dict[str, tuple[str, list[str]]] = {
    "recorder": ("bench/runner/recorder.py", RUNNER_TESTS),
    "sse": ("bench/runner/sse.py", RUNNER_TESTS),
    "chunk_template": ("bench/runner/chunk_template.py", RUNNER_TESTS),
    "scan": ("bench/metrics/scan.py", METRICS_TESTS),
    "scan_rows": ("bench/metrics/scan_rows.py", METRICS_TESTS),
    "derive": ("bench/metrics/derive.py", METRICS_TESTS),
    "summary": ("bench/analysis/summary.py", METRICS_TESTS + ["tests/unit/analysis"]),
    "compare": ("bench/report/compare.py", COMPARE_TESTS),
    "stats": ("bench/analysis/stats.py", COMPARE_TESTS),
    "schedule": ("bench/workload/schedule.py", ["tests/unit/workload", "tests/unit/scenario/test_traces.py"]),
}

# Functions left unmutated: compare.py's rendering (tables, console, HTML, Markdown) prints
# the numbers and defines none of them; its logic (verdicts, samples, seeds, mismatches) is mutated.
SKIPPED_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "compare": ("table", "console_tables", "_console_cells", "_console_table", "_largest", "_signed", "_width",
                "_style", "render_markdown", "render_html", "write_compare", "_method_note"),
}

# mutmut's exit-code meaning (mutmut/stats.py): a timeout is a kill, "no tests" is a survivor.
KILLED_CODES = {1, 3, 36, -24, 24, 152, 255, 37}
SURVIVED_CODES = {0, 5, 33}


@dataclass(frozen=True)
class Score:
    """One module's result: counts of mutants, and the survivors' names."""

    module: str
    total: int
    killed: int
    survivors: tuple[str, ...]
    equivalent: tuple[str, ...]
    other: tuple[str, ...]  # not checked, skipped, suspicious, segfault: counted as not killed

    @property
    def scored(self) -> int:
        return self.total - len(self.equivalent)

    @property
    def score(self) -> float:
        return 100.0 * self.killed / self.scored if self.scored else 100.0


def listed_equivalents(path: Path = EQUIVALENTS) -> set[str]:
    """Mutant names on the table rows of docs/mutation.md (rows start with `|`)."""
    if not path.exists():
        return set()
    names: set[str] = set()
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            names.update(re.findall(r"`(bench\.[\w.]+__mutmut_\d+)`", line))
    return names


def mutmut_config(module: str, tests: list[str]) -> str:
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["bench"]\n'
        f"only_mutate = [{json.dumps(module)}]\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]\n'
        "use_git_change_detection = false\n"
        'also_copy = ["scenarios"]\n'  # the shipped traces some tests read
    )


def skip_functions(path: Path, names: tuple[str, ...]) -> None:
    """Mark the named top-level functions `# pragma: no mutate block` (in the scratch copy)."""
    lines = path.read_text().splitlines()
    found = set()
    for node in ast.parse("\n".join(lines)).body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            header = node.body[0].lineno - 2  # the line ending the signature (0-based)
            if header >= node.lineno - 1 and lines[header].rstrip().endswith(":"):
                lines[header] += "  # pragma: no mutate block"
                found.add(node.name)
    if found != set(names):
        raise SystemExit(f"mutation.py: cannot mark {sorted(set(names) - found)} in {path} as not mutated")
    path.write_text("\n".join(lines) + "\n")


def prepare(workdir: Path, name: str) -> None:
    """A scratch copy of bench/, tests/ and pyproject.toml with the [tool.mutmut] section."""
    module, tests = MODULES[name]
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    shutil.copytree(ROOT / "bench", workdir / "bench", ignore=ignore)
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=ignore)
    shutil.copytree(ROOT / "scenarios", workdir / "scenarios", ignore=ignore)
    pyproject = (ROOT / "pyproject.toml").read_text()
    (workdir / "pyproject.toml").write_text(pyproject + mutmut_config(module, tests))
    if name in SKIPPED_FUNCTIONS:
        skip_functions(workdir / module, SKIPPED_FUNCTIONS[name])


def _mutant_order(name: str) -> tuple[str, int]:
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number) if number.isdigit() else 0


def read_results(workdir: Path, name: str, module: str, equivalents: set[str]) -> Score:
    meta = workdir / "mutants" / (module + ".meta")
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    killed = sum(1 for c in codes.values() if c in KILLED_CODES)
    survivors = sorted((k for k, c in codes.items() if c in SURVIVED_CODES), key=_mutant_order)
    other = sorted((k for k, c in codes.items() if c not in KILLED_CODES | SURVIVED_CODES), key=_mutant_order)
    equivalent = tuple(k for k in survivors if k in equivalents)
    return Score(name, len(codes), killed, tuple(survivors), equivalent, tuple(other))


def run_module(name: str, workdir: Path, children: int, timeout: float, equivalents: set[str]) -> Score | None:
    """One module's mutmut run and result; None (after printing why) when mutmut failed."""
    module = MODULES[name][0]
    prepare(workdir, name)
    log = workdir / "mutmut.log"
    mutmut = Path(sys.executable).with_name("mutmut")
    with log.open("w") as out:
        proc = subprocess.run([str(mutmut), "run", "--max-children", str(children)], cwd=workdir,
                              stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = log.read_text()[-1500:]
        print(f"{name:<9} {module}: mutmut failed (exit {proc.returncode}), see {log}:\n{tail}", flush=True)
        return None
    return read_results(workdir, name, module, equivalents)


def print_score(s: Score, seconds: float, workdir: Path) -> None:
    print(f"{s.module:<9} {MODULES[s.module][0]:<28} mutants {s.total:4d}  killed {s.killed:4d}  "
          f"survived {len(s.survivors):3d} (equivalent {len(s.equivalent):3d})  other {len(s.other):2d}  "
          f"score {s.score:5.1f} %  ({seconds:.0f} s)", flush=True)
    for k in s.survivors:
        print(f"    {'equivalent' if k in s.equivalent else 'SURVIVED  '} {k}")
    for k in s.other:
        print(f"    OTHER      {k}")
    if s.survivors:
        print(f"    (diffs: cd {workdir} && mutmut show NAME)")


def show(names: list[str], workroot: Path) -> int:
    for full in names:
        hits = [n for n, (path, _) in MODULES.items() if full.startswith(path[:-3].replace("/", ".") + ".")]
        if not hits:
            print(f"mutation.py: {full}: not a mutant of the listed modules", file=sys.stderr)
            return 2
        mutmut = Path(sys.executable).with_name("mutmut")
        subprocess.run([str(mutmut), "show", full], cwd=workroot / hits[0], check=False)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=list(MODULES))
    p.add_argument("--children", type=int, default=2, help="parallel mutmut workers (default 2)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench-mutation"),
                   help="scratch root; each module runs in WORKDIR/<name> (wiped first)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per module")
    p.add_argument("--target", type=float, default=90.0, help="minimum score in percent")
    p.add_argument("--show", nargs="+", metavar="MUTANT", help="print the diffs of these mutants (after a run)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.show:
        return show(args.show, args.workdir)
    if shutil.which("mutmut", path=str(Path(sys.executable).parent)) is None:
        print("mutation.py: mutmut is not installed: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    equivalents = listed_equivalents()
    scores: list[Score] = []
    failed: list[str] = []
    for name in args.modules:
        start = time.monotonic()
        s = run_module(name, args.workdir / name, args.children, args.timeout, equivalents)
        if s is None:
            failed.append(name)
            continue
        print_score(s, time.monotonic() - start, args.workdir / name)
        scores.append(s)
    found = {k for s in scores for k in s.survivors}
    mutated = {MODULES[n][0][:-3].replace("/", ".") for n in args.modules}
    stale = sorted(k for k in equivalents if k not in found and k.rsplit(".", 1)[0] in mutated)
    for k in stale:
        print(f"stale entry in docs/mutation.md (not a survivor now): {k}")
    total = sum(s.scored for s in scores)
    killed = sum(s.killed for s in scores)
    overall = 100.0 * killed / total if total else 100.0
    print(f"overall: {killed} killed of {total} non-equivalent mutants: {overall:.1f} % (target {args.target:g} %)")
    ok = not failed and overall >= args.target and all(s.score >= args.target for s in scores)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
