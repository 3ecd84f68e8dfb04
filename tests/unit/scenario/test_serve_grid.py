"""`--serve-params` files: grid combinations and listed configs, names, one-line errors."""

from __future__ import annotations

import pytest

from bench.errors import BenchInputError
from bench.scenario.serve_grid import MAX_CONFIGS, ServeConfig, config_name, load_serve_grid


def test_a_grid_is_every_combination_in_file_order_then_the_listed_configs(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("grid:\n  max_num_seqs: [16, 64]\n  enable_chunked_prefill: [true, false]\n"
                    "configs:\n  - {name: tp2, params: {tensor_parallel_size: 2}}\n  - {params: {-tp: 4}}\n")
    configs = load_serve_grid(path)
    assert configs == [
        ServeConfig("max_num_seqs=16,enable_chunked_prefill=true", {"max_num_seqs": 16, "enable_chunked_prefill": True}),
        ServeConfig("max_num_seqs=16,enable_chunked_prefill=false", {"max_num_seqs": 16, "enable_chunked_prefill": False}),
        ServeConfig("max_num_seqs=64,enable_chunked_prefill=true", {"max_num_seqs": 64, "enable_chunked_prefill": True}),
        ServeConfig("max_num_seqs=64,enable_chunked_prefill=false", {"max_num_seqs": 64, "enable_chunked_prefill": False}),
        ServeConfig("tp2", {"tensor_parallel_size": 2}),
        ServeConfig("tp=4", {"-tp": 4}),
    ]


def test_names_are_safe_directory_names():
    assert config_name({}) == "default"
    assert config_name({"model": "org/m 7b", "x": None, "--kv": 0.9}) == "model=org_m_7b,x=none,kv=0.9"


@pytest.mark.parametrize(("text", "problem"), [
    ("grid: {max_num_seqs: 16}\n", "grid.max_num_seqs: Input should be a valid list"),
    ("grid: {max_num_seqs: []}\n", "grid.max_num_seqs: List should have at least 1 item"),
    ("grid: {'bad name!': [1]}\n", "grid.bad name!"),
    ("configs: [{name: a, param: {x: 1}}]\n", "configs.0.param: unknown key"),
    ("{}\n", "give grid (parameter: [values]) and/or configs"),
    ("configs: [{name: a}, {name: a}]\n", "configs: two configurations are named 'a'"),
    ("- 1\n", "a serve-params file must be a mapping, got list"),
])
def test_bad_files_get_one_line_naming_the_file_and_field(tmp_path, text, problem):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(BenchInputError) as err:
        load_serve_grid(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_a_grid_past_the_limit_is_refused(tmp_path):
    path = tmp_path / "grid.yaml"
    side = int(MAX_CONFIGS ** 0.5) + 1
    path.write_text(f"grid: {{a: {list(range(side))}, b: {list(range(side))}}}\n")
    with pytest.raises(BenchInputError, match=f"{side * side} configurations"):
        load_serve_grid(path)
    (tmp_path / "missing.yaml").unlink(missing_ok=True)
    with pytest.raises(BenchInputError, match="serve-params file not found"):
        load_serve_grid(tmp_path / "missing.yaml")


def test_the_shipped_serve_params_files_load():
    from pathlib import Path

    shipped = sorted((Path(__file__).resolve().parents[3] / "scenarios" / "serve-params").glob("*.yaml"))
    assert len(shipped) >= 2
    counts = {path.name: len(load_serve_grid(path)) for path in shipped}
    assert counts["vllm.yaml"] == 3 * 2 + 1 and counts["sim.yaml"] == 3
