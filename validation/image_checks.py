"""Day D's item images must be pictures a model can read: PNG or JPEG, within size bounds.

GX has no notion of an image, and the trainer would otherwise meet a 0-byte file or a PDF as "no
image" with only a log line. Each of day D's images is opened with Pillow (the header and size only,
``Image.open``, then ``verify`` for the file's integrity: no pixel decoding) and judged against
``ImageLimits``. The outcome reads like a GX result: ``expect_column_values_to_be_decodable_images``
on ``item_images.image``, unexpected count, and as samples the item ids with why each failed.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd
from PIL import Image, UnidentifiedImageError

from validation.results import ExpectationOutcome, rule_outcome

SAMPLE_LIMIT = 20
EVALUATED_ON = "day rows"
EXPECTATION = "expect_column_values_to_be_decodable_images"


@dataclass(frozen=True)
class ImageLimits:
    """What an item image may be."""

    formats: tuple[str, ...] = ("PNG", "JPEG")
    max_bytes: int = 20 * 1024 * 1024  # a product photo, not a video or a print file
    min_side: int = 8  # pixels: smaller is a tracking pixel or a placeholder, not a product
    max_side: int = 10_000  # pixels: larger is a decompression bomb or a scan


def image_problem(data: bytes | None, limits: ImageLimits = ImageLimits()) -> str | None:
    """Why ``data`` is not a usable image, or None. Null images are the null rule's business."""
    if data is None:
        return None
    if len(data) == 0:
        return "0 bytes"
    if len(data) > limits.max_bytes:
        return f"{len(data)} bytes, over {limits.max_bytes}"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"not a readable image ({type(error).__name__})"
    if image_format not in limits.formats:
        return f"{image_format}, not one of {list(limits.formats)}"
    if min(width, height) < limits.min_side or max(width, height) > limits.max_side:
        return f"{width}x{height} pixels, outside {limits.min_side}..{limits.max_side}"
    return None


def check_images(frame: pd.DataFrame, limits: ImageLimits = ImageLimits()) -> ExpectationOutcome:
    """The image rule on day D's ``item_images`` rows (critical)."""
    problems = [
        (item_id, problem)
        for item_id, data in zip(frame["item_id"].tolist(), frame["image"].tolist(), strict=True)
        if (problem := image_problem(None if data is None or data is pd.NA else bytes(data), limits)) is not None
    ]
    return rule_outcome(
        "item_images", "image", EXPECTATION, critical=True,
        kwargs={"column": "image", "formats": list(limits.formats), "max_bytes": limits.max_bytes,
                "min_side": limits.min_side, "max_side": limits.max_side},
        element_count=len(frame), unexpected_count=len(problems),
        unexpected_values=[f"item {item_id}: {problem}" for item_id, problem in problems[:SAMPLE_LIMIT]],
        evaluated_on=EVALUATED_ON,
    )  # fmt: skip


__all__ = ["ImageLimits", "check_images", "image_problem"]
