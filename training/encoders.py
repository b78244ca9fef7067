"""Content encoders of the multi-task network: hashed n-gram text bags and a small image CNN.

Text (any language, no downloads, no vocabulary to ship): a text is normalised (Unicode NFKC,
case-folded, accents stripped by default so Portuguese "não" and the common unaccented "nao" meet),
split into Unicode word tokens (``\\w+``), and turned into hashed features: word unigrams
(``w:word``), word bigrams (``b:word word``) and character n-grams of each word padded with ``<``
and ``>`` (``c:<wo``, fastText style: Bojanowski et al., "Enriching Word Vectors with Subword
Information", TACL 2017). Each feature is hashed with CRC-32 of its UTF-8 bytes (``zlib.crc32``:
a fixed, documented function, so bucket ids are the same in every process, Python version and
library version; Python's ``hash()`` is salted per process) modulo ``n_buckets`` (the hashing
trick: Weinberger et al., "Feature Hashing for Large Scale Multitask Learning", ICML 2009). Texts
are hashed once per dataset into one flat id tensor plus offsets; batches gather their bags with
tensor ops (:func:`gather_bags`), and :class:`TextEncoder` averages the bucket embeddings
(``nn.EmbeddingBag(mode="mean")``: Joulin et al., "Bag of Tricks for Efficient Text
Classification", EACL 2017).

Images: PNG or JPEG bytes of any size, RGB, grey, palette or with alpha, are decoded once with
Pillow into a fixed-size RGB uint8 tensor kept in memory (:func:`decode_images`). :class:`ImageEncoder`
is a small CNN (strided conv-ReLU blocks, then averages over a grid) that, in training mode only,
augments each batch with a random crop (replicate-pad, then crop back) and a horizontal flip drawn
from the caller's seeded generator.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from training.config import TextHashing

log = logging.getLogger(__name__)

WORD_PATTERN = re.compile(r"\w+")  # str patterns are Unicode-aware: letters of every script, digits, "_"
IMAGE_MEAN = 0.5  # pixels are scaled to [0, 1], then centred and scaled with these constants
IMAGE_STD = 0.25


def normalize_text(text: str, strip_accents: bool = True) -> str:
    """NFKC-normalised, case-folded text, with combining accents removed when ``strip_accents``."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if strip_accents:
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(char for char in decomposed if not unicodedata.combining(char))
    return text


def tokenize(text: str | None, strip_accents: bool = True) -> list[str]:
    """Unicode word tokens of a normalised text; None or empty gives []."""
    if not text:
        return []
    return WORD_PATTERN.findall(normalize_text(text, strip_accents))


def stable_bucket(feature: str, n_buckets: int) -> int:
    """Bucket of one feature string: CRC-32 of its UTF-8 bytes modulo ``n_buckets`` (stable everywhere)."""
    return zlib.crc32(feature.encode("utf-8")) % n_buckets


def word_features(word: str, hashing: TextHashing) -> list[str]:
    """The unigram and character n-gram feature strings of one token."""
    features = [f"w:{word}"]
    padded = f"<{word}>"
    for n in range(hashing.char_ngram_min, hashing.char_ngram_max + 1):
        features.extend(f"c:{padded[start : start + n]}" for start in range(len(padded) - n + 1))
    return features


def text_features(text: str | None, hashing: TextHashing = TextHashing()) -> list[str]:
    """Every feature string of a text, in order: per word its unigram and n-grams, then the bigrams."""
    words = tokenize(text, hashing.strip_accents)
    features = [feature for word in words for feature in word_features(word, hashing)]
    if hashing.word_bigrams:
        features.extend(f"b:{first} {second}" for first, second in zip(words, words[1:], strict=False))
    return features


def hash_texts(texts: Iterable[str | None], hashing: TextHashing = TextHashing()) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, offsets): all texts' bucket ids in one flat int64 tensor and offsets [n_texts + 1] into it.

    Text ``k`` owns ``ids[offsets[k]:offsets[k + 1]]`` (empty for None or ""), the layout
    ``nn.EmbeddingBag(include_last_offset=True)`` takes. Per-row Python runs here, once per dataset;
    words repeat, so each distinct word is hashed once.
    """
    word_cache: dict[str, list[int]] = {}
    ids: list[int] = []
    offsets = [0]
    for text in texts:
        words = tokenize(text, hashing.strip_accents)
        for word in words:
            buckets = word_cache.get(word)
            if buckets is None:
                buckets = [stable_bucket(feature, hashing.n_buckets) for feature in word_features(word, hashing)]
                word_cache[word] = buckets
            ids.extend(buckets)
        if hashing.word_bigrams:
            ids.extend(
                stable_bucket(f"b:{first} {second}", hashing.n_buckets)
                for first, second in zip(words, words[1:], strict=False)
            )
        offsets.append(len(ids))
    return torch.tensor(ids, dtype=torch.int64), torch.tensor(offsets, dtype=torch.int64)


def gather_bags(ids: torch.Tensor, offsets: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bags of ``rows`` as (ids, offsets [len(rows) + 1]), gathered with tensor ops (no Python loop)."""
    starts = offsets[rows]  # [b] where each selected bag begins in ids
    lengths = offsets[rows + 1] - starts  # [b]
    batch_offsets = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, dim=0)])  # [b + 1]
    total = int(batch_offsets[-1])
    if total == 0:
        return ids.new_zeros(0), batch_offsets
    # Position j of the output comes from starts[bag(j)] + (j - batch_offsets[bag(j)]).
    shift = torch.repeat_interleave(starts - batch_offsets[:-1], lengths, output_size=total)  # [total]
    return ids[torch.arange(total, device=ids.device) + shift], batch_offsets  # [total], [b + 1]


class TextEncoder(nn.Module):
    """Mean of hashed feature embeddings per text: [n_texts, dim]; an empty text gives zeros."""

    def __init__(self, n_buckets: int, dim: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(n_buckets, dim, mode="mean", include_last_offset=True)
        nn.init.normal_(self.bag.weight, std=0.05)
        self.out_dim = dim

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Text vectors [len(offsets) - 1, dim] for flat bucket ``ids`` and ``offsets`` (last = len(ids))."""
        return self.bag(ids, offsets)  # [n_texts, dim]


# --- images -------------------------------------------------------------------------------------------


def decode_image(data: bytes, size: int) -> np.ndarray:
    """RGB uint8 pixels [3, size, size] of PNG/JPEG/... bytes; grey and palette images become RGB."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Transparent product cut-outs go on white, as a shop shows them (a plain convert would make them black).
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        image = image.convert("RGB")
        if image.size != (size, size):
            # A plain resize (aspect ratio not kept): cheap, and product photos are close to square.
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()  # [3, size, size]


def decode_images(values: Sequence[bytes | None], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [n, 3, size, size], has_image bool [n]); None or undecodable bytes give a blank, False."""
    images = np.zeros((len(values), 3, size, size), dtype=np.uint8)  # [n, 3, size, size]
    has_image = np.zeros(len(values), dtype=bool)
    failed = 0
    for row, data in enumerate(values):
        if data is None or len(data) == 0:
            continue
        try:
            images[row] = decode_image(data, size)
            has_image[row] = True
        except (OSError, ValueError, Image.DecompressionBombError):
            failed += 1  # one broken upload must not stop the nightly run; it scores as an item without image
    if failed:
        log.warning("%d of %d images could not be decoded and are treated as missing", failed, len(values))
    return torch.from_numpy(images), torch.from_numpy(has_image)


def augment_images(images: torch.Tensor, padding: int, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop (replicate-pad by ``padding``, crop back) and horizontal flip, per image; [b, c, s, s]."""
    b, _, s, _ = images.shape
    if b == 0:
        return images
    # Random numbers come from the CPU generator, so CPU and CUDA runs draw the same crops.
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator)  # [b, 2] (row, column) crop corner
    flip = torch.rand(b, generator=generator) < 0.5  # [b]
    positions = torch.arange(s)  # [s]
    rows = offsets[:, :1] + positions  # [b, s]
    columns = offsets[:, 1:] + positions  # [b, s]
    columns = torch.where(flip[:, None], columns.flip(1), columns)  # reading columns backwards = a mirror image
    padded = F.pad(images, (padding, padding, padding, padding), mode="replicate")  # [b, c, s + 2p, s + 2p]
    device = images.device
    batch_index = torch.arange(b, device=device)[:, None, None, None]  # [b, 1, 1, 1]
    channel_index = torch.arange(images.shape[1], device=device)[None, :, None, None]  # [1, c, 1, 1]
    return padded[
        batch_index, channel_index, rows.to(device)[:, None, :, None], columns.to(device)[:, None, None, :]
    ]  # [b, c, s, s]


class ImageEncoder(nn.Module):
    """Small CNN: a 5x5 stride-2 conv, then 3x3 convs (stride 2 but the last), each with ReLU, then
    average pooling over a pool x pool grid to [batch, channels[-1] * pool^2] (pool 1: the global
    average). Augments (random crop + flip) in training mode only.

    Strided convolutions instead of max-pooling, and channels-last tensors: on one CPU core a pass
    over 1,088 32x32 images takes ~0.04 s, against ~0.33 s for conv + 2x2 max-pool blocks of the
    same widths, which matters because the trainer runs the CNN over the whole catalogue once per
    epoch. With 32x32 inputs and three widths the feature maps are 16x16, 8x8, 8x8.
    """

    def __init__(
        self, channels: tuple[int, ...] = (16, 32, 32), crop_padding: int = 4, augment: bool = True, pool: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for index, out_channels in enumerate(channels):
            if index == 0:
                layers.append(nn.Conv2d(width, out_channels, kernel_size=5, stride=2, padding=2))
            else:
                stride = 2 if index < len(channels) - 1 else 1
                layers.append(nn.Conv2d(width, out_channels, kernel_size=3, stride=stride, padding=1))
            layers.append(nn.ReLU())
            width = out_channels
        self.features = nn.Sequential(*layers)
        self.crop_padding = crop_padding
        self.augment = augment
        self.pool = pool
        self.out_dim = width * pool * pool

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image vectors [b, out_dim] from uint8 pixels [b, 3, s, s]."""
        x = (images.float() / 255.0 - IMAGE_MEAN) / IMAGE_STD  # [b, 3, s, s]
        if self.training and self.augment:
            x = augment_images(x, self.crop_padding, generator)  # [b, 3, s, s]
        x = self.features(x.contiguous(memory_format=torch.channels_last))  # [b, channels[-1], s', s']
        if self.pool == 1:
            return x.mean(dim=(2, 3))  # [b, channels[-1]]
        # A pool x pool grid of averages keeps where things are (a sleeve, a heel), which the global
        # average loses: on Fashion-MNIST the global average lost to a plain two-layer CNN.
        return F.adaptive_avg_pool2d(x, self.pool).flatten(1)  # [b, channels[-1] * pool * pool]
