"""Multimodal chat requests end to end against the simulator: every request carries its
images as decodable data URIs (checked in the bodies the server received), the server's
prompt-token count includes them, and their prefill is charged."""

from __future__ import annotations

import base64
import io

import pytest
from benchtest import run_in_process, sim_truth
from PIL import Image

from bench.commands.cli import main
from bench.scenario.schema import Images
from bench.sim import start_sim
from bench.workload.images import ImagePool

TEXT = "Describe the picture in a few words."
IMAGES = {"count": 2, "width": 96, "height": 64, "format": "png", "distinct": 3}


def _profile(image_tokens: int) -> dict:
    return {"models": ["sim-v"], "record_bodies": True, "image_tokens": image_tokens, "prefill_ms_per_token": 0.05,
            "decode_ms_base": 2.0, "decode_ms_per_seq": 0.0, "max_num_batched_tokens": 8192, "prefix_cache": False,
            "output_len": {"dist": "fixed", "mean": 4}}


def test_each_request_carries_its_images_and_the_server_counts_them(scenario_dir):
    with start_sim(profile=_profile(image_tokens=300), seed=1) as sim:
        result = run_in_process(scenario_dir, {
            "seed": 9, "target": {"base_url": sim.base_url},
            "requests": {"inline": [TEXT], "images": IMAGES}, "sampling": {"max_tokens": 4},
            "load": {"concurrency": 1, "max_requests": 4}})
        truth = sim_truth(sim.root_url)
    bodies = [t["body"] for t in sorted(truth.values(), key=lambda t: t["received_s"])]
    pool = ImagePool(Images(**IMAGES), seed=9)
    for block, body in enumerate(bodies):
        (message,) = body["messages"]
        text, *images = message["content"]
        assert text == {"type": "text", "text": TEXT}
        assert [p["image_url"]["url"] for p in images] == [p["image_url"]["url"] for p in pool.parts_for(block)]
        for part in images:
            image = Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"].partition(",")[2])))
            assert (image.format, image.size) == ("PNG", (96, 64))
    requests = result.run.requests
    assert (requests["status"] == "ok").all()
    # words + 4 template tokens + 300 per image: the server's own count, in every record
    assert requests["prompt_tokens"].tolist() == [len(TEXT.split()) + 4 + 2 * 300] * 4


def test_image_prefill_is_charged(scenario_dir):
    ttft = {}
    for tokens in (16, 1600):
        with start_sim(profile=_profile(image_tokens=tokens), seed=1) as sim:
            result = run_in_process(scenario_dir, {
                "target": {"base_url": sim.base_url},
                "requests": {"inline": [TEXT], "images": IMAGES}, "sampling": {"max_tokens": 4},
                "load": {"concurrency": 1, "max_requests": 5}}, out=f"run{tokens}")
        ttft[tokens] = result.run.requests["ttft_ms"].median()
    # 2 images x (1600 - 16) tokens x 0.05 ms = 158 ms more prefill per request
    assert ttft[1600] - ttft[16] == pytest.approx(2 * (1600 - 16) * 0.05, rel=0.2)


def test_images_outside_chat_are_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("target: {endpoint: completions}\nrequests: {inline: [hi], images: {count: 1}}\n"
                    "load: {concurrency: 1, max_requests: 1}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"bench: error: {path}: requests.images: images go in chat messages: they need target.endpoint: chat"


def test_the_shipped_images_scenario_runs(tmp_path):
    from pathlib import Path

    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "images.yaml"
    assert main(["run", str(scenario), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    import bench

    run = bench.load_run(tmp_path / "run")
    assert (run.requests["status"] == "ok").all() and len(run.requests) == 16
    assert (run.requests["prompt_tokens"] > 2 * 256).all()  # the default profile's 256 tokens an image
