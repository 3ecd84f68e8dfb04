"""Synthetic request images: deterministic pools, decodable data URIs of the asked size and
format, each request's share of the pool, and where the parts go in the messages."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from bench.scenario.schema import Images
from bench.sim.admission import check_image
from bench.sim.api import ApiError
from bench.workload.images import ImagePool, with_images


def _decode(uri: str) -> Image.Image:
    data = uri.partition(",")[2]
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


@pytest.mark.parametrize(("fmt", "mime", "pil"), [("png", "image/png", "PNG"), ("jpeg", "image/jpeg", "JPEG")])
def test_pool_images_decode_at_the_asked_size_and_format(fmt, mime, pil):
    pool = ImagePool(Images(width=200, height=120, format=fmt, distinct=3), seed=5)
    assert len(pool.uris) == 3 and len(set(pool.uris)) == 3  # no two alike
    for uri in pool.uris:
        assert uri.startswith(f"data:{mime};base64,")
        image = _decode(uri)
        assert (image.format, image.size, image.mode) == (pil, (200, 120), "RGB")
        check_image(uri)  # the simulator accepts it
    assert ImagePool(Images(width=200, height=120, format=fmt, distinct=3), seed=5).uris == pool.uris
    assert ImagePool(Images(width=200, height=120, format=fmt, distinct=3), seed=6).uris != pool.uris


def test_a_512_png_compresses_like_a_picture_not_like_noise():
    uri = ImagePool(Images(distinct=1), seed=1).uris[0]
    assert len(base64.b64decode(uri.partition(",")[2])) < 100_000  # random pixels: ~790 KB


def test_request_i_takes_count_images_from_position_i_times_count():
    pool = ImagePool(Images(count=2, width=16, height=16, distinct=5), seed=1)
    urls = [[p["image_url"]["url"] for p in pool.parts_for(block)] for block in range(4)]
    assert urls == [[pool.uris[(2 * b) % 5], pool.uris[(2 * b + 1) % 5]] for b in range(4)]
    assert all(p["type"] == "image_url" for p in pool.parts_for(0))


def test_parts_join_the_last_user_turn_after_its_text():
    parts = [{"type": "image_url", "image_url": {"url": "data:x"}}]
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "look"}]
    assert with_images(messages, parts) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}]
    assert messages[1]["content"] == "look"  # not changed in place


@pytest.mark.parametrize(("url", "problem"), [
    ("https://example.com/cat.png", "base64 data URIs only"),
    ("data:image/png;base64,!!!!", "not a decodable image"),
    ("data:image/png;base64," + base64.b64encode(b"not an image").decode(), "not a decodable image"),
])
def test_the_simulator_refuses_what_it_cannot_decode(url, problem):
    with pytest.raises(ApiError) as err:
        check_image(url)
    assert err.value.status == 400 and problem in err.value.message
