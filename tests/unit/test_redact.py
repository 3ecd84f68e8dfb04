from bench.redact import MASK, redact_argv, redact_command_string, redact_scenario


def test_keys_in_server_commands_are_masked():
    argv = ["vllm", "serve", "m", "--api-key", "sk-123", "--port", "8000", "--hf-token=hf_abc", "HF_TOKEN=hf_x"]
    assert redact_argv(argv) == ["vllm", "serve", "m", "--api-key", MASK, "--port", "8000",
                                 f"--hf-token={MASK}", f"HF_TOKEN={MASK}"]
    assert "sk-123" not in redact_command_string("vllm serve m --api-key sk-123 --port 1")


def test_scenario_dump_masks_launch_command_and_env():
    data = {"target": {"launch": {"command": "srv --api-key sk-9", "env": {"HF_TOKEN": "hf_1", "OMP_NUM_THREADS": "1"}}},
            "load": {"rate": 1}}
    out = redact_scenario(data)
    assert "sk-9" not in str(out) and "hf_1" not in str(out)
    assert out["target"]["launch"]["env"]["OMP_NUM_THREADS"] == "1" and out["load"] == {"rate": 1}
    assert data["target"]["launch"]["command"] == "srv --api-key sk-9"  # the input is not changed
