"""Text hashing and image decoding/augmentation of the multi-task network's content encoders."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from training.encoders import (
    ImageEncoder,
    TextEncoder,
    TextHashing,
    augment_images,
    decode_image,
    decode_images,
    gather_bags,
    hash_texts,
    stable_bucket,
    text_features,
    tokenize,
)

# Bucket ids of "Não gostei" under the default hashing (2^15 buckets, char 3-5-grams, bigrams), written
# out literally: they must never change between processes, Python versions or library versions,
# or every saved model's text embeddings would silently point at other rows.
NAO_GOSTEI_IDS = [
    4866, 26966, 8768, 10641, 31596, 14228, 13230,  # "nao": word, then its character n-grams
    27490, 32536, 26638, 29000, 7529, 25815, 9931, 12578, 8391, 25609, 30096, 3893, 9469, 7913, 17585, 17559,  # "gostei"
    23377,  # the bigram "nao gostei"
]  # fmt: skip


def test_text_hashing_is_stable_and_literal() -> None:
    ids, offsets = hash_texts(["Não gostei"], TextHashing())
    assert ids.tolist() == NAO_GOSTEI_IDS and offsets.tolist() == [0, len(NAO_GOSTEI_IDS)]
    assert stable_bucket("w:nao", 1 << 15) == 4866  # CRC-32 of the UTF-8 bytes, not Python's salted hash()
    assert text_features("Não gostei")[:3] == ["w:nao", "c:<na", "c:nao"]
    assert text_features("Não gostei")[-1] == "b:nao gostei"


def test_tokenisation_is_unicode_aware_and_folds_case_and_portuguese_accents() -> None:
    assert tokenize("Ótimo produto, NÃO recomendo! Straße 3x") == ["otimo", "produto", "nao", "recomendo", "strasse", "3x"]
    assert tokenize("Ótimo, não!", strip_accents=False) == ["ótimo", "não"]
    assert tokenize("电脑很好用 😀 ok") == ["电脑很好用", "ok"]  # other scripts tokenise too; symbols are dropped
    assert tokenize(None) == [] and tokenize("") == [] and tokenize(" . ") == []
    # Reviewers type "nao" for "não": both hash to the same features.
    assert hash_texts(["NÃO chegou"])[0].tolist() == hash_texts(["nao chegou"])[0].tolist()
    assert hash_texts(["não"], TextHashing(strip_accents=False))[0].tolist() != hash_texts(["nao"])[0].tolist()


def test_hashed_texts_form_bags_and_empty_texts_give_zero_vectors() -> None:
    hashing = TextHashing(n_buckets=64, char_ngram_min=3, char_ngram_max=3, word_bigrams=False)
    ids, offsets = hash_texts(["ab", None, "", "ab ab"], hashing)
    # "ab": its word and the 3-grams of "<ab>" ("<ab", "ab>"); nothing for None or "".
    assert offsets.tolist() == [0, 3, 3, 3, 9]
    assert ids[:3].tolist() == ids[3:6].tolist() == ids[6:9].tolist()
    assert (0 <= ids).all() and (ids < 64).all()
    encoder = TextEncoder(64, 4)
    vectors = encoder(ids, offsets)  # [4, 4]
    assert torch.equal(vectors[1], torch.zeros(4)) and torch.equal(vectors[2], torch.zeros(4))
    assert torch.allclose(vectors[0], vectors[3])  # the mean of a repeated word equals the word


def test_gather_bags_matches_slicing_for_any_rows() -> None:
    ids, offsets = hash_texts(["one two", "", "three", "four five six", None], TextHashing(n_buckets=1000))
    rows = torch.tensor([3, 1, 0, 3, 4, 2])
    batch_ids, batch_offsets = gather_bags(ids, offsets, rows)
    assert batch_offsets[-1] == batch_ids.numel() and batch_offsets.numel() == rows.numel() + 1
    for k, row in enumerate(rows.tolist()):
        expected = ids[offsets[row] : offsets[row + 1]]
        assert torch.equal(batch_ids[batch_offsets[k] : batch_offsets[k + 1]], expected)
    empty_ids, empty_offsets = gather_bags(ids, offsets, torch.tensor([1, 4]))
    assert empty_ids.numel() == 0 and empty_offsets.tolist() == [0, 0, 0]


def encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def test_png_and_jpeg_grey_and_rgb_decode_to_fixed_size_rgb() -> None:
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)  # not square, not the target size
    pixels[:, :15] = (200, 30, 30)  # left half red
    rgb = Image.fromarray(pixels)
    grey = rgb.convert("L")
    for data in (encode(rgb, "PNG"), encode(rgb, "JPEG"), encode(grey, "PNG"), encode(grey, "JPEG")):
        decoded = decode_image(data, 16)
        assert decoded.shape == (3, 16, 16) and decoded.dtype == np.uint8
    red = decode_image(encode(rgb, "PNG"), 16)
    assert red[0, 8, 2] > 150 and red[1, 8, 2] < 80 and red[0, 8, 13] < 30  # red left, black right
    grey_decoded = decode_image(encode(grey, "PNG"), 16)
    assert (grey_decoded[0] == grey_decoded[1]).all() and (grey_decoded[1] == grey_decoded[2]).all()
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # a cut-out photo goes on white, not black
    assert (decode_image(encode(transparent, "PNG"), 8) == 255).all()

    images, has_image = decode_images([encode(rgb, "PNG"), None, b"not an image", encode(grey, "JPEG")], 16)
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8
    assert has_image.tolist() == [True, False, False, True]
    assert int(images[1].sum()) == 0 and int(images[2].sum()) == 0


def test_augmentation_flips_and_crops_within_the_padding() -> None:
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    generator = torch.Generator().manual_seed(0)
    flipped_or_not = augment_images(images, 0, generator)  # no padding: only flips
    for original, out in zip(images, flipped_or_not, strict=True):
        assert torch.equal(out, original) or torch.equal(out, original.flip(-1))
    cropped = augment_images(images, 2, torch.Generator().manual_seed(1))
    assert cropped.shape == images.shape
    again = augment_images(images, 2, torch.Generator().manual_seed(1))
    assert torch.equal(cropped, again)  # the seeded generator decides everything


def test_image_encoder_augments_only_in_training_mode() -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder((4, 8, 8), crop_padding=4)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    encoder.eval()
    first = encoder(images, torch.Generator().manual_seed(1))
    second = encoder(images, torch.Generator().manual_seed(2))
    assert first.shape == (6, 8) and torch.equal(first, second)  # eval: no augmentation, generator unused
    encoder.train()
    augmented = encoder(images, torch.Generator().manual_seed(1))
    assert not torch.allclose(augmented, first)
    assert torch.equal(augmented, encoder(images, torch.Generator().manual_seed(1)))
    assert not torch.allclose(augmented, encoder(images, torch.Generator().manual_seed(2)))
    encoder.augment = False
    assert torch.equal(encoder(images, torch.Generator().manual_seed(1)), first)


@pytest.mark.parametrize("size", [16, 32])
def test_image_encoder_gives_one_vector_per_image_at_any_size(size: int) -> None:
    encoder = ImageEncoder((4, 8, 8)).eval()
    assert encoder(torch.zeros((3, 3, size, size), dtype=torch.uint8)).shape == (3, 8)
