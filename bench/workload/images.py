"""Synthetic images for multimodal chat requests (`requests.images`), made with Pillow.

Each image is drawn from the scenario seed and its pool index alone: a colour gradient and
a few filled shapes, so it compresses like a picture rather than like noise (a 512 x 512
PNG is tens of KiB, not the 770 KiB of random pixels) while no two pool images are alike.
The pool is encoded once, before the run starts, so the send path only joins strings.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench.scenario.schema import Images

__all__ = ["ImagePool", "draw_image", "with_images"]

_SHAPES = 6


def draw_image(width: int, height: int, seed: int, index: int) -> Image.Image:
    """Pool image `index` for `seed`: the same pixels on every machine and every run."""
    rng = np.random.default_rng([seed, 0x1A6E, index])
    start, end = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
    ramp = np.linspace(0.0, 1.0, width)[None, :, None]
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    pixels = (start + (end - start) * (0.7 * ramp + 0.3 * rows)).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(_SHAPES):
        x0, x1 = sorted(rng.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, height, size=2).tolist())
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1 + 1, y1 + 1), fill=colour)
    return image


class ImagePool:
    """`spec.distinct` images encoded as data URIs; request `block` gets `spec.count` of them
    from position block x count on (cycling)."""

    def __init__(self, spec: Images, seed: int) -> None:
        self.spec = spec
        mime = "image/png" if spec.format == "png" else "image/jpeg"
        self.uris = [f"data:{mime};base64,{_encode(draw_image(spec.width, spec.height, seed, i), spec.format)}"
                     for i in range(spec.distinct)]

    def parts_for(self, block: int) -> list[dict[str, Any]]:
        first = max(block, 0) * self.spec.count
        return [{"type": "image_url", "image_url": {"url": self.uris[(first + k) % len(self.uris)]}}
                for k in range(self.spec.count)]


def with_images(messages: list[dict[str, Any]], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with `parts` after the text of the last user turn (OpenAI content parts)."""
    out = list(messages)
    for i in range(len(out) - 1, -1, -1):
        if out[i]["role"] == "user":
            out[i] = {"role": "user", "content": [{"type": "text", "text": out[i]["content"]}, *parts]}
            return out
    return [*out, {"role": "user", "content": parts}]


def _encode(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if fmt == "png" else "JPEG", **({"quality": 85} if fmt == "jpeg" else {}))
    return base64.b64encode(buffer.getvalue()).decode("ascii")
