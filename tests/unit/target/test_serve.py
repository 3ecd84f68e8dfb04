"""Server commands of a config sweep: parameters as flags, placeholders, the URL served."""

from __future__ import annotations

import shlex
import sys

import pytest

from bench.errors import BenchInputError
from bench.scenario.serve_grid import ServeConfig
from bench.target.serve import param_flags, serve_command, sim_serve_template


def test_parameters_become_flags_as_vllm_spells_them():
    params = {"max_num_seqs": 16, "enable_chunked_prefill": True, "enable_prefix_caching": False,
              "quantization": None, "-tp": 2, "--kv-cache-dtype": "fp8"}
    assert param_flags(params) == ["--max-num-seqs", "16", "--enable-chunked-prefill", "--no-enable-prefix-caching",
                                   "-tp", "2", "--kv-cache-dtype", "fp8"]


def test_port_flags_and_named_parameters_are_filled_in():
    config = ServeConfig("c1", {"max_num_seqs": 8, "gpu_memory_utilization": 0.9})
    cmd = serve_command("vllm serve 'my model' --port {port} --gpu-memory-utilization={gpu_memory_utilization} "
                        "--served-model-name m-{name} {flags}", config, None)
    port = cmd.base_url.removeprefix("http://127.0.0.1:").removesuffix("/v1")
    assert port.isdigit() and 0 < int(port) < 65536
    assert cmd.argv == ["vllm", "serve", "my model", "--port", port, "--gpu-memory-utilization=0.9",
                        "--served-model-name", "m-c1", "--max-num-seqs", "8", "--gpu-memory-utilization", "0.9"]


def test_the_url_keeps_the_scenarios_path_and_without_port_is_the_scenarios():
    config = ServeConfig("c", {"x": 1})
    with_port = serve_command("srv --port {port}", config, "http://localhost:9/api/v1")
    assert with_port.base_url.startswith("http://localhost:") and with_port.base_url.endswith("/api/v1")
    assert with_port.base_url != "http://localhost:9/api/v1"
    fixed = serve_command("srv {flags}", config, "http://127.0.0.1:8000/v1")
    assert fixed.base_url == "http://127.0.0.1:8000/v1" and fixed.argv == ["srv", "--x", "1"]


@pytest.mark.parametrize(("template", "problem"), [
    ("srv {flags}", "put {port} in the command, or give the URL"),
    ("srv --port {port} --n {nope}", "{nope} is not a parameter of configuration 'c' (it has x)"),
    ("srv --port {port} --a={flags}", "{flags} must be a word of its own"),
    ("", "empty command"),
])
def test_bad_templates_are_refused_in_one_line(template, problem):
    with pytest.raises(BenchInputError, match=problem.replace("{", r"\{").replace("(", r"\(").replace(")", r"\)")):
        serve_command(template, ServeConfig("c", {"x": 1}), None)


def test_the_simulators_template_starts_this_python_with_profile_fields_as_flags():
    cmd = serve_command(sim_serve_template("default", 7), ServeConfig("c", {"max_num_seqs": 4}), None)
    assert cmd.argv[:3] == [sys.executable, "-m", "bench.sim"]
    assert cmd.argv[-2:] == ["--max-num-seqs", "4"]
    assert shlex.join(cmd.argv).count("--seed 7") == 1
