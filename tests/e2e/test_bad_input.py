"""Bad scenario input: exit code 2, one line naming file, field and problem, no traceback."""

import subprocess
import sys

import pytest

from bench.commands.cli import main

GOOD_REQUESTS = "requests: {synthetic: {prompt_tokens: 10}}\n"
GOOD_LOAD = "load: {rate: 1, max_requests: 1}\n"

CASES = [
    # (id, scenario text, substrings expected in the message)
    ("unknown-top-key", GOOD_REQUESTS + GOOD_LOAD + "lod: {}\n", ["lod", "unknown key", "did you mean 'load'"]),
    ("unknown-load-key", GOOD_REQUESTS + "load: {rate: 1, max_requests: 1, duraton: 3}\n", ["load.duraton", "'duration'"]),
    ("unknown-target-key", GOOD_REQUESTS + GOOD_LOAD + "target: {base_ur: http://x}\n", ["target.base_ur", "'base_url'"]),
    ("negative-rate", GOOD_REQUESTS + "load: {rate: -5, max_requests: 1}\n", ["load.rate", "greater than 0"]),
    ("zero-rate", GOOD_REQUESTS + "load: {rate: 0, max_requests: 1}\n", ["load.rate", "greater than 0"]),
    ("zero-concurrency", GOOD_REQUESTS + "load: {concurrency: 0, max_requests: 1}\n", ["load.concurrency"]),
    ("duration-not-number", GOOD_REQUESTS + "load: {rate: 1, duration: soon}\n", ["load.duration", "number"]),
    ("rate-and-concurrency", GOOD_REQUESTS + "load: {rate: 1, concurrency: 2, max_requests: 1}\n", ["load", "exactly one"]),
    ("no-end", GOOD_REQUESTS + "load: {rate: 1}\n", ["load", "duration"]),
    ("no-load", GOOD_REQUESTS, ["load", "missing"]),
    ("no-requests", GOOD_LOAD, ["requests", "missing"]),
    ("two-sources", "requests: {inline: [hi], synthetic: {prompt_tokens: 3}}\n" + GOOD_LOAD, ["requests", "exactly one"]),
    ("empty-inline", "requests: {inline: []}\n" + GOOD_LOAD, ["requests", "empty"]),
    ("blank-inline", "requests: {inline: [hi, '  ']}\n" + GOOD_LOAD, ["requests.inline", "item 1 (counting from 0)", "the prompt is empty or only whitespace"]),
    ("blank-inline-user", "requests: {inline: [[{role: system, content: s}, {role: user, content: ''}]]}\n" + GOOD_LOAD, ["requests.inline", "item 0", "a user message is empty"]),
    ("bad-role", "requests: {inline: [[{role: robot, content: hi}]]}\n" + GOOD_LOAD, ["role"]),
    ("uniform-min-max", "requests: {synthetic: {prompt_tokens: {dist: uniform, min: 9, max: 3}}}\n" + GOOD_LOAD, ["prompt_tokens", "larger than max"]),
    ("bad-dist", "requests: {synthetic: {prompt_tokens: {dist: zipf, value: 3}}}\n" + GOOD_LOAD, ["prompt_tokens", "zipf"]),
    ("temperature-type", GOOD_REQUESTS + GOOD_LOAD + "sampling: {temperature: hot}\n", ["sampling.temperature", "number"]),
    ("temperature-range", GOOD_REQUESTS + GOOD_LOAD + "sampling: {temperature: 9}\n", ["sampling.temperature"]),
    ("bad-url", GOOD_REQUESTS + GOOD_LOAD + "target: {base_url: localhost:8000}\n", ["target.base_url", "http://"]),
    ("bad-endpoint", GOOD_REQUESTS + GOOD_LOAD + "target: {endpoint: images}\n", ["target.endpoint"]),
    ("batch-not-embeddings", "requests: {synthetic: {prompt_tokens: 10}, batch: 4}\n" + GOOD_LOAD,
     ["requests.batch", "embeddings"]),
    ("embeddings-sampling", GOOD_REQUESTS + GOOD_LOAD + "target: {endpoint: embeddings}\nsampling: {temperature: 0.5}\n",
     ["sampling.temperature", "not used by target.endpoint: embeddings"]),
    ("embeddings-variant-max-tokens", GOOD_REQUESTS + GOOD_LOAD + "target: {endpoint: embeddings}\n"
     "variants: {a: {max_tokens: 5}, b: {}}\n", ["variants.a.max_tokens", "embeddings"]),
    ("embeddings-output-tokens", "requests: {synthetic: {prompt_tokens: 10, output_tokens: 5}}\n" + GOOD_LOAD
     + "target: {endpoint: embeddings}\n", ["requests.synthetic.output_tokens", "no tokens"]),
    ("responses-n", GOOD_REQUESTS + GOOD_LOAD + "target: {endpoint: responses}\nsampling: {n: 2}\n",
     ["sampling.n", "responses"]),
    ("batch-zero", "requests: {synthetic: {prompt_tokens: 10}, batch: 0}\n" + GOOD_LOAD + "target: {endpoint: embeddings}\n",
     ["requests.batch"]),
    ("negative-timeout", GOOD_REQUESTS + GOOD_LOAD + "target: {timeouts: {ttft_s: -1}}\n", ["target.timeouts.ttft_s"]),
    ("missing-dataset", "requests: {file: nowhere.jsonl}\n" + GOOD_LOAD, ["requests.file", "not found"]),
    ("yaml-syntax", "requests: {synthetic: [\n" + GOOD_LOAD, ["YAML syntax error", "line"]),
    ("not-a-mapping", "- just\n- a list\n", ["mapping"]),
    ("bad-name", GOOD_REQUESTS + GOOD_LOAD + "name: 'has spaces/slash'\n", ["name"]),
    ("tokens-unknown-key", GOOD_REQUESTS + GOOD_LOAD + "tokens: {server_tokenise: true}\n",
     ["tokens.server_tokenise", "'server_tokenize'"]),
    ("tokens-nothing-counts", GOOD_REQUESTS + GOOD_LOAD + "tokens: {server_tokenize: false}\n",
     ["tokens", "nothing counts the tokens"]),
    ("tokens-bad-value", GOOD_REQUESTS + GOOD_LOAD + "tokens: {server_tokenize: sometimes}\n", ["tokens.server_tokenize"]),
    ("tokens-missing-tokenizer", GOOD_REQUESTS + GOOD_LOAD + "tokens: {tokenizer: nowhere/tokenizer.json}\n",
     ["tokens.tokenizer", "not found", "nowhere/tokenizer.json"]),
    ("tokens-embeddings", GOOD_REQUESTS + GOOD_LOAD + "target: {endpoint: embeddings}\ntokens: {}\n",
     ["tokens", "embeddings generate no tokens"]),
    ("tokens-bad-tokenizer-file", GOOD_REQUESTS + GOOD_LOAD + "tokens: {tokenizer: scenario.yaml}\n",
     ["tokens.tokenizer", "not a tokenizer.json"]),
    ("python-tag", GOOD_REQUESTS + GOOD_LOAD + "description: !!python/object/apply:os.system ['echo pwned']\n", ["YAML"]),
]


@pytest.mark.parametrize("case_id,text,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_scenario_exits_2_with_one_line(tmp_path, capsys, case_id, text, expected):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    code = main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_bad_dataset_lines(tmp_path, capsys):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "ok"}\n{"promt": "typo"}\n')
    scenario = tmp_path / "s.yaml"
    scenario.write_text("requests: {file: prompts.jsonl}\n" + GOOD_LOAD)
    assert main(["run", str(scenario), "--quiet", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert "prompts.jsonl: line 2" in err and len(err.splitlines()) == 1


def test_empty_dataset(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("\n")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("requests: {file: empty.jsonl}\n" + GOOD_LOAD)
    assert main(["run", str(scenario), "--quiet", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]) == 2
    assert "dataset is empty" in capsys.readouterr().err


@pytest.mark.parametrize("name,text", [("blank.jsonl", '{"prompt": " "}\n{"messages": [{"role": "user", "content": ""}]}\n'),
                                       ("blank.json", '[{"conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": "?"}]}]')])
def test_a_dataset_of_blank_prompts_only_is_one_line_naming_it(tmp_path, capsys, name, text):
    (tmp_path / name).write_text(text)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"requests: {{file: {name}}}\n" + GOOD_LOAD)
    assert main(["run", str(scenario), "--quiet", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / name) in err[0] and "no usable" in err[0], err


@pytest.mark.parametrize("workers", [["--workers", "2"], ["--workers", "auto"]])
def test_a_sweep_refuses_workers_instead_of_ignoring_them(tmp_path, capsys, workers):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD_REQUESTS + GOOD_LOAD)
    code = main(["sweep", str(path), "--rates", "1,2", "--quiet", "--base-url", "http://127.0.0.1:9/v1",
                 "--model", "m", "--out", str(tmp_path / "run"), *workers])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "s.yaml" in err[0] and "load.workers" in err[0] and "bench run" in err[0]
    assert not (tmp_path / "run").exists()


def test_cli_flag_errors_are_one_line(tmp_path, capsys):
    assert main(["run"]) == 2
    assert main(["run", "x.yaml", "--rate", "fast"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("bench: error:") for line in lines)


def test_real_process_prints_no_traceback(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD_REQUESTS + "load: {rate: -1, max_requests: 1}\n")
    proc = subprocess.run([sys.executable, "-m", "bench", "run", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
