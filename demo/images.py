"""Product photos for the demo warehouse: small procedurally drawn PNGs whose shape and colour follow
the item's TRUE category, with jitter in position, size, colour and pixel noise.

A small CNN can learn the category from them, which is what lets the category objective catch the ~3% of
items listed under the wrong category.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

IMAGE_SIZE = 32
# Per category (demo.world.CATEGORIES order): foreground RGB colour and shape kind.
CATEGORY_COLOURS = np.array(
    [
        (40, 70, 160),  # electronics: blue square
        (190, 40, 150),  # fashion: magenta vertical stripes
        (170, 100, 40),  # home: brown triangle
        (235, 110, 160),  # beauty: pink disc
        (40, 150, 60),  # sports: green horizontal stripes
        (230, 200, 30),  # toys: yellow dots
        (130, 25, 35),  # books: dark red tall rectangle
        (140, 200, 60),  # grocery: lime ring
        (30, 100, 70),  # garden: dark green diamond
        (70, 70, 80),  # auto: grey cross
    ],
    dtype=np.float64,
)
SHAPES = ("square", "vstripes", "triangle", "disc", "hstripes", "dots", "tall", "ring", "diamond", "cross")


def _shape_masks(cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Boolean masks (len(SHAPES), n, H, W): every shape drawn for every item; the caller picks one."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    r = radius[:, None, None]
    p = phase[:, None, None]
    box = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    dist2 = dx**2 + dy**2
    masks = {
        "square": box,
        "vstripes": box & (((xx[None] + p) // 3) % 2 == 0),
        "triangle": (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2),
        "disc": dist2 <= r**2,
        "hstripes": box & (((yy[None] + p) // 3) % 2 == 0),
        "dots": box & (((xx[None] + p) % 6) < 3) & (((yy[None] + p) % 6) < 3),
        "tall": (np.abs(dx) <= 0.55 * r) & (np.abs(dy) <= 1.25 * r),
        "ring": (dist2 <= r**2) & (dist2 >= (0.55 * r) ** 2),
        "diamond": np.abs(dx) + np.abs(dy) <= 1.25 * r,
        "cross": ((np.abs(dx) <= 0.3 * r) & (np.abs(dy) <= r)) | ((np.abs(dy) <= 0.3 * r) & (np.abs(dx) <= r)),
    }
    return np.stack([masks[name] for name in SHAPES])


def render_item_pixels(category: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB pixels (n, 32, 32, 3) uint8 for items of the given TRUE category codes."""
    n = len(category)
    if n == 0:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    centre = IMAGE_SIZE / 2 - 0.5
    cx = centre + rng.uniform(-5, 5, n)
    cy = centre + rng.uniform(-5, 5, n)
    radius = rng.uniform(6.5, 10.5, n)
    phase = rng.integers(0, 6, n).astype(np.float64)
    masks = _shape_masks(cx, cy, radius, phase)[category, np.arange(n)]
    foreground = np.clip(CATEGORY_COLOURS[category] + rng.normal(0, 22, (n, 3)), 0, 255)
    background = rng.uniform(190, 250, (n, 3))
    pixels = np.where(masks[..., None], foreground[:, None, None, :], background[:, None, None, :])
    pixels = pixels + rng.normal(0, 10, pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of one (H, W, 3) uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def render_item_images(category: np.ndarray, rng: np.random.Generator, chunk: int = 1024) -> list[bytes]:
    """One PNG per item, drawn for its TRUE category (in chunks, to bound the memory of the masks)."""
    images: list[bytes] = []
    for begin in range(0, len(category), chunk):
        images.extend(encode_png(image) for image in render_item_pixels(category[begin : begin + chunk], rng))
    return images
