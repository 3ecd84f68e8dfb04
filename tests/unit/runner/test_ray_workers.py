"""Ray load generation: the pure parts (no Ray needed) and the missing-Ray message."""

from __future__ import annotations

import sys

import pytest
import yaml

from bench.runner.ray_workers import actor_cpus, clock_offset


def test_actors_ask_for_cpus_so_that_they_spread():
    assert actor_cpus(3, [8.0, 8.0, 16.0]) == 8.0  # one per node: a whole node's worth each
    assert actor_cpus(2, [2.0]) == 1.0  # two on one 2-core node
    assert actor_cpus(6, [4.0, 4.0]) == 1.0
    assert actor_cpus(1, []) == 1.0


def test_clock_offset_takes_the_round_trip_with_the_smallest_rtt():
    # (driver send, actor clock, driver receive); the actor's clock runs 100 s ahead
    samples = [(0.0, 100.004, 0.010), (1.0, 101.0006, 1.001), (2.0, 102.003, 2.004)]
    clock = clock_offset(samples)
    assert clock["offset_s"] == pytest.approx(100.0001)
    assert clock["uncertainty_ms"] == pytest.approx(0.5)
    assert clock["rtt_min_ms"] == pytest.approx(1.0) and clock["round_trips"] == 3


def test_ray_flag_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    from bench.commands.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 4}},
                                    "load": {"rate": 5, "duration": 1}}))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["run", str(path), "--ray", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'llm-bench-harness[ray]'" in err[0]
    assert not (tmp_path / "run").exists()


def test_ray_section_is_strict_and_the_flag_sets_the_address():
    from bench.commands.parser import build_parser, run_overrides
    from bench.errors import BenchInputError
    from bench.scenario.loader import validate_scenario

    base = {"requests": {"synthetic": {"prompt_tokens": 8, "output_tokens": 4}}, "load": {"rate": 5, "duration": 1}}
    assert validate_scenario({**base, "ray": {"address": "auto", "workers": 3}}, "x").ray.workers == 3
    with pytest.raises(BenchInputError, match="ray"):
        validate_scenario({**base, "ray": {"adress": "auto"}}, "x")
    assert run_overrides(build_parser().parse_args(["run", "x.yaml", "--ray"]))["ray.address"] is None
    assert run_overrides(build_parser().parse_args(["run", "x.yaml", "--ray", "auto"]))["ray.address"] == "auto"
    assert "ray.address" not in run_overrides(build_parser().parse_args(["run", "x.yaml"]))


def test_report_shows_the_load_of_each_actor():
    import pandas as pd

    from bench.report.document import client_workers_table
    from bench.store import ClientInfo

    assert client_workers_table(ClientInfo()) is None
    client = ClientInfo.model_validate({"workers": [
        {"index": 0, "host": "gen-a", "cpu_percent": {"mean": 97.0, "max": 100.0},
         "loop_lag_ms": {"p99": 31.0, "max": 80.0}, "clock": {"offset_ms": 12.5, "uncertainty_ms": 0.21}},
        {"index": 1, "pid": 42, "lost": "died", "cpu_percent": {"mean": 20.0}, "loop_lag_ms": {"p99": 1.0}},
    ]})
    table = client_workers_table(client, pd.DataFrame({"request_id": [0, 1, 2, 4]}))
    assert table.rows[0][:4] == ["0", "gen-a", "3", "97.00"] and table.rows[0][-1] == "+12.500 ± 0.210"
    assert table.rows[1][:3] == ["1", "pid 42 (lost)", "1"] and table.rows[1][-1] == "-"


def test_client_warnings_name_the_overloaded_actor_and_its_host():
    from bench.analysis.clientload import client_warnings
    from bench.store import ClientInfo

    actor = {"index": 1, "host": "gen-b", "clock": {"offset_ms": 0.1, "uncertainty_ms": 0.2},
             "loop_lag_ms": {"p99": 40.0, "max": 90.0}, "cpu_percent": {"mean": 99.0, "max": 100.0}}
    messages = [w.message for w in client_warnings(ClientInfo.model_validate({"workers": [actor]}))]
    assert messages and all(m.startswith("ray actor 1 on gen-b:") for m in messages)
    assert client_warnings(ClientInfo.model_validate({"workers": [{**actor, "clock": None}]}))[0].message.startswith("client worker 1:")
