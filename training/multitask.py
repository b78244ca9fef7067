"""The multi-task network: five tasks at their own granularity over shared embeddings and encoders.

Read top to bottom: configs, the impression tower (shared-bottom, MMoE or PLE), the item table and
the module, the ESMM loss, turning Parquet frames into tensors, then saving, loading and scoring.
Training lives in ``training/train_multitask.py``, the encoders in ``training/encoders.py``.

Architecture (d = embedding_dim; shared parts marked *)::

    item vector*     = item_emb*[item] + Linear([softmax(image head(cnn*(image))) | text*(title) | has_image])
    impressions      [user_emb* | item vector | category_emb* | user*item | standardised dense]
                       -> shared-bottom MLP, MMoE or PLE -> click head -> click_logit (p_ctr)
                                                        -> cvr head   -> cvr_logit   (p_cvr)
                       p_ctcvr = p_ctr * p_cvr  (= p_purchase)                          [ESMM]
    reviews          [user_emb* | item vector | category_emb* | user*item | text*(review text)]
                       -> MLP -> negative_logit
    item images      cnn*(image, random crop + flip in training) -> Linear -> category logits
    orders           [user_emb* | one emb per order categorical | standardised dense] -> MLP -> fraud_logit

The CNN is trained by the category task. The impression and review towers read what it says about
each item's image, its predicted category distribution (softmax of the image head), from a table
computed once per epoch for every item, with no gradient back into the CNN: a forward and
backward CNN pass over the ~600 distinct items of every 1,024-impression batch would make a demo
epoch about four times longer on one CPU core, while the table costs one forward pass over the
catalogue per epoch (~0.04 s for the 1.1k demo items). The class probabilities rather than the
pooled CNN features, because the table is up to an epoch stale: raw features of a CNN in training
change meaning from one epoch to the next (measured on the demo: the click AUC after epoch 1 was
0.758 with raw features, 0.780 with class probabilities), while "probability of class k" keeps its
meaning as the CNN improves. The projection of the image
part into the item vector, the title text, the item/user/category embeddings and the text encoder
are trained by every task that reads them.

References:
    - Ma et al., "Entire Space Multi-Task Model: An Effective Approach for Estimating Post-Click
      Conversion Rate", SIGIR 2018 (arXiv:1804.07931): the CVR head is trained only through
      p_ctcvr = p_ctr * p_cvr over all impressions, which removes the sample-selection bias of
      training CVR on clicked impressions alone.
    - Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
      Mixture-of-Experts", KDD 2018: n expert MLPs, one softmax gate per task over the experts.
    - Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model
      for Personalized Recommendations", RecSys 2020: Customized Gate Control (CGC) levels with
      task-specific and shared experts; a task's gate sees its own and the shared experts; a shared
      gate over all experts feeds the next level.
    - Caruana, "Multitask Learning", Machine Learning 28, 1997: hard parameter sharing (shared bottom).
    - He et al., "Neural Collaborative Filtering", WWW 2017: the element-wise user*item product (GMF).

Ids are mapped to embedding rows through vocabularies kept in the state_dict as sorted int64
buffers and looked up with ``torch.searchsorted``; an id not in the vocabulary gets row 0, a learned
default (training replaces a small share of ids by row 0 so that row sees gradient). String
categories use vocabularies stored in ``config.json``, with the same row-0 default. Dense inputs
are standardised inside the module with the training mean and std (buffers, so a reload scores the
same). Item content (images, titles) is an INPUT, read from the features directory's items table
on every scoring run, so an item the model has never seen still gets its image and title.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.nn import functional as F

from training.encoders import ImageEncoder, TextEncoder, TextHashing, decode_images, gather_bags, hash_texts

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
EMBEDDING_INIT_STD = 0.05  # normal std of every embedding table at initialisation
UNSEEN_ROW = 0  # embedding row shared by every id or category value missing from the vocabulary
ARCHITECTURES = ("shared_bottom", "mmoe", "ple")
IMPRESSION_TASKS = 2  # click and conversion share the impression tower
Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class MultiTaskModelConfig:
    """Everything needed to rebuild the module before ``load_state_dict`` (sizes, widths, hashing)."""

    n_users: int  # vocabulary sizes; embedding tables have one more row (row 0 = unseen)
    n_items: int
    n_categories: int
    order_categorical_sizes: tuple[int, ...]  # vocabulary size per order categorical column
    n_impression_dense: int
    n_order_dense: int
    n_item_classes: int = 0  # categories the image head predicts (listed categories of training items)
    embedding_dim: int = 16
    categorical_embedding_dim: int = 4
    architecture: str = "shared_bottom"  # impression tower: "shared_bottom", "mmoe" or "ple"
    hidden_dims: tuple[int, ...] = (64, 32)  # the shared bottom, or each expert's MLP
    n_experts: int = 4  # MMoE experts
    ple_levels: int = 1  # PLE extraction levels (1 = CGC)
    ple_specific_experts: int = 1  # PLE experts per task per level
    ple_shared_experts: int = 2  # PLE shared experts per level
    head_hidden_dim: int = 16
    review_hidden_dims: tuple[int, ...] = (32,)
    fraud_hidden_dims: tuple[int, ...] = (32, 16)
    dropout: float = 0.0
    text_dim: int = 16
    text_buckets: int = 1 << 15
    char_ngram_min: int = 3
    char_ngram_max: int = 5
    word_bigrams: bool = True
    strip_accents: bool = True
    image_size: int = 32
    image_channels: tuple[int, ...] = (16, 32, 32)
    crop_padding: int = 4
    augment: bool = True

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> MultiTaskModelConfig:
        """Rebuild from JSON, where tuples came back as lists."""
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in payload.items()})

    @property
    def text_hashing(self) -> TextHashing:
        """How this model hashes text (titles and reviews)."""
        return TextHashing(
            n_buckets=self.text_buckets,
            char_ngram_min=self.char_ngram_min,
            char_ngram_max=self.char_ngram_max,
            word_bigrams=self.word_bigrams,
            strip_accents=self.strip_accents,
        )


@dataclass(frozen=True)
class FeatureSpec:
    """Input columns and string vocabularies: how a Parquet frame becomes model inputs."""

    impression_dense: list[str]
    order_dense: list[str]
    order_categorical: list[str]
    categories: list[str]  # sorted category values seen in training; index + 1 = embedding row
    order_categorical_values: dict[str, list[str]] = field(default_factory=dict)  # column -> sorted values
    item_categories: list[str] = field(default_factory=list)  # image head classes: listed categories of training items


def make_mlp(in_dim: int, hidden_dims: tuple[int, ...], dropout: float) -> tuple[nn.Sequential, int]:
    """Linear -> ReLU (-> Dropout) per hidden width; returns the stack and its output width."""
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    return nn.Sequential(*layers), width


def make_head(in_dim: int, hidden_dim: int) -> nn.Sequential:
    """One hidden layer and a single logit."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))


def lookup_rows(vocabulary: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Embedding rows of ``ids`` in a sorted int64 ``vocabulary``: position + 1, or 0 when absent."""
    if vocabulary.numel() == 0:
        return torch.zeros_like(ids)
    position = torch.searchsorted(vocabulary, ids)  # [n] in 0..len(vocabulary)
    position = position.clamp(max=vocabulary.numel() - 1)  # [n] valid index to compare against
    found = vocabulary[position] == ids  # [n] bool
    return torch.where(found, position + 1, torch.full_like(position, UNSEEN_ROW))  # [n]


def mix_experts(gate: nn.Linear, gate_input: torch.Tensor, experts: list[torch.Tensor]) -> torch.Tensor:
    """Softmax-gated sum of expert outputs: [b, width] from a gate over len(experts) experts."""
    weights = torch.softmax(gate(gate_input), dim=-1)  # [b, n_experts]
    stacked = torch.stack(experts, dim=1)  # [b, n_experts, width]
    return (weights.unsqueeze(-1) * stacked).sum(dim=1)  # [b, width]


class ExtractionLevel(nn.Module):
    """One PLE extraction level (a CGC block): task-specific and shared experts, a gate per task and,
    unless it is the last level, a shared gate over all experts for the next level (Tang et al. 2020)."""

    def __init__(
        self, in_dim: int, hidden_dims: tuple[int, ...], n_specific: int, n_shared: int, dropout: float, last: bool
    ) -> None:
        super().__init__()
        self.specific = nn.ModuleList(
            nn.ModuleList(make_mlp(in_dim, hidden_dims, dropout)[0] for _ in range(n_specific))
            for _ in range(IMPRESSION_TASKS)
        )
        self.shared = nn.ModuleList(make_mlp(in_dim, hidden_dims, dropout)[0] for _ in range(n_shared))
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, n_specific + n_shared) for _ in range(IMPRESSION_TASKS))
        n_all = IMPRESSION_TASKS * n_specific + n_shared
        self.shared_gate = None if last else nn.Linear(in_dim, n_all)
        self.out_dim = hidden_dims[-1] if hidden_dims else in_dim

    def forward(
        self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """(per-task outputs [b, out_dim], shared output [b, out_dim] or None at the last level)."""
        shared = [expert(shared_input) for expert in self.shared]  # n_shared x [b, out_dim]
        specific = [
            [expert(task_input) for expert in experts]
            for experts, task_input in zip(self.specific, task_inputs, strict=True)
        ]  # tasks x n_specific x [b, out_dim]
        outputs = [
            mix_experts(gate, task_input, own + shared)
            for gate, task_input, own in zip(self.task_gates, task_inputs, specific, strict=True)
        ]
        if self.shared_gate is None:
            return outputs, None
        everything = [expert for own in specific for expert in own] + shared
        return outputs, mix_experts(self.shared_gate, shared_input, everything)


class ImpressionTower(nn.Module):
    """(click_logit, cvr_logit), each [b], from the impression input, under the configured architecture."""

    def __init__(self, in_dim: int, config: MultiTaskModelConfig) -> None:
        super().__init__()
        self.architecture = config.architecture
        hidden, dropout = tuple(config.hidden_dims), config.dropout
        if config.architecture == "shared_bottom":
            self.bottom, width = make_mlp(in_dim, hidden, dropout)
        elif config.architecture == "mmoe":
            self.experts = nn.ModuleList(make_mlp(in_dim, hidden, dropout)[0] for _ in range(config.n_experts))
            self.gates = nn.ModuleList(nn.Linear(in_dim, config.n_experts) for _ in range(IMPRESSION_TASKS))
            width = hidden[-1] if hidden else in_dim
        elif config.architecture == "ple":
            levels = []
            width = in_dim
            for level in range(config.ple_levels):
                levels.append(
                    ExtractionLevel(
                        width,
                        hidden,
                        config.ple_specific_experts,
                        config.ple_shared_experts,
                        dropout,
                        last=level == config.ple_levels - 1,
                    )
                )
                width = levels[-1].out_dim
            self.levels = nn.ModuleList(levels)
        else:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {config.architecture!r}")
        self.click_head = make_head(width, config.head_hidden_dim)
        self.cvr_head = make_head(width, config.head_hidden_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(click_logit, cvr_logit), each [b], for the impression input x [b, in_dim]."""
        if self.architecture == "shared_bottom":
            click_input = cvr_input = self.bottom(x)  # [b, width]
        elif self.architecture == "mmoe":
            experts = [expert(x) for expert in self.experts]  # n_experts x [b, width]
            click_input, cvr_input = (mix_experts(gate, x, experts) for gate in self.gates)  # [b, width] each
        else:
            task_inputs, shared = [x] * IMPRESSION_TASKS, x
            for level in self.levels:
                task_inputs, shared = level(task_inputs, shared)  # tasks x [b, width], [b, width] or None
            click_input, cvr_input = task_inputs
        return self.click_head(click_input).squeeze(1), self.cvr_head(cvr_input).squeeze(1)  # [b], [b]


@dataclass(frozen=True)
class ItemTable:
    """Item content as tensors, one row per item plus row 0 (no content): what every item vector reads.

    Built once per dataset from ``items.parquet`` (:func:`encode_item_table`); batches carry
    ``content_rows`` into it. ``image_features`` is the image head's output per row, refreshed by the trainer
    once per epoch and by the scorer before scoring (:func:`with_image_features`).
    """

    item_ids: torch.Tensor  # [n] sorted int64
    images: torch.Tensor  # [n + 1, 3, s, s] uint8
    has_image: torch.Tensor  # [n + 1] bool
    title_ids: torch.Tensor  # [n_title_ids] hashed title features
    title_offsets: torch.Tensor  # [n + 2]: row k's title is title_ids[title_offsets[k]:title_offsets[k + 1]]
    image_features: torch.Tensor | None = None  # [n + 1, n_classes] float32 image class probabilities, or None

    def to(self, device: torch.device | str) -> ItemTable:
        """The same table on ``device``."""
        return ItemTable(**{key: None if value is None else value.to(device) for key, value in self.tensors().items()})

    def tensors(self) -> dict[str, torch.Tensor | None]:
        """The fields by name."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    @property
    def n_rows(self) -> int:
        """Rows including row 0."""
        return int(self.images.shape[0])

    def rows_of(self, item_ids: pl.Series) -> torch.Tensor:
        """Table rows [len(item_ids)] of an item id column: position + 1, or 0 when unknown or null."""
        return id_rows(self.item_ids, item_ids)


class MultiTaskNet(nn.Module):
    """Click + conversion (ESMM), review sentiment, image category and fraud over shared parts."""

    def __init__(self, config: MultiTaskModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embedding_dim
        # Sorted raw ids seen in training; filled by the trainer or by load_state_dict.
        self.register_buffer("user_vocabulary", torch.zeros(config.n_users, dtype=torch.int64))
        self.register_buffer("item_vocabulary", torch.zeros(config.n_items, dtype=torch.int64))
        # Training-set mean and std of the dense inputs: the feature builder's log counts and rates
        # span very different ranges (ages ~8, rates ~0.05), which an MLP trains poorly on.
        self.register_buffer("impression_dense_mean", torch.zeros(config.n_impression_dense))
        self.register_buffer("impression_dense_std", torch.ones(config.n_impression_dense))
        self.register_buffer("order_dense_mean", torch.zeros(config.n_order_dense))
        self.register_buffer("order_dense_std", torch.ones(config.n_order_dense))
        self.user_embedding = nn.Embedding(config.n_users + 1, d)
        self.item_embedding = nn.Embedding(config.n_items + 1, d)
        self.category_embedding = nn.Embedding(config.n_categories + 1, d)

        self.text_encoder = TextEncoder(config.text_buckets, config.text_dim)
        self.image_encoder = ImageEncoder(tuple(config.image_channels), config.crop_padding, config.augment)
        image_dim, text_dim = self.image_encoder.out_dim, self.text_encoder.out_dim
        # At least one output so the module builds when no item has a label (the head then goes unused).
        self.category_head = nn.Linear(image_dim, max(config.n_item_classes, 1))
        n_image = self.category_head.out_features
        self.item_content = nn.Linear(n_image + text_dim + 1, d)  # [class probabilities | title | has_image] -> item space

        self.impression_tower = ImpressionTower(4 * d + config.n_impression_dense, config)
        review_mlp, review_width = make_mlp(4 * d + text_dim, tuple(config.review_hidden_dims), config.dropout)
        self.review_tower = nn.Sequential(review_mlp, nn.Linear(review_width, 1))

        c = config.categorical_embedding_dim
        self.order_categorical_embeddings = nn.ModuleList(
            nn.Embedding(size + 1, c) for size in config.order_categorical_sizes
        )
        fraud_in = d + c * len(config.order_categorical_sizes) + config.n_order_dense
        fraud_mlp, fraud_width = make_mlp(fraud_in, tuple(config.fraud_hidden_dims), config.dropout)
        self.fraud_tower = nn.Sequential(fraud_mlp, nn.Linear(fraud_width, 1))
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                # nn.Embedding's N(0, 1) default makes user*item products pure noise at the start;
                # small rows let the MLP learn from the dense features first and overfit later.
                nn.init.normal_(module.weight, std=EMBEDDING_INIT_STD)
        # The content part of the item vector starts as small as the id embedding, for the same reason.
        nn.init.normal_(self.item_content.weight, std=EMBEDDING_INIT_STD)
        nn.init.zeros_(self.item_content.bias)

    def compile_towers(self) -> None:
        """``torch.compile`` the dense towers and the CNN in place (state_dict keys stay the same)."""
        for module in (self.impression_tower, self.review_tower, self.fraud_tower, self.image_encoder.features):
            module.compile(dynamic=True)  # batch sizes vary (the last batch, eval): one graph for all

    # --- shared parts ---

    @torch.no_grad()
    def image_feature_table(self, items: ItemTable, batch_size: int = 2048) -> torch.Tensor:
        """Image class probabilities [items.n_rows, n_classes] of every table row (eval mode, no
        augmentation); zeros for rows without an image."""
        was_training = self.training
        self.eval()
        device = self.item_content.weight.device
        parts = []
        for start in range(0, items.n_rows, batch_size):
            images = items.images[start : start + batch_size].to(device)  # [b, 3, s, s] uint8
            with autocast_for(device):
                logits = self.forward_item_images(images)  # [b, n_classes]
            parts.append(torch.softmax(logits.float(), dim=1))  # [b, n_classes]
        self.train(was_training)
        features = torch.cat(parts) if parts else torch.zeros(0, self.category_head.out_features, device=device)
        return features * items.has_image.to(device)[:, None]  # [n_rows, n_classes]; no image -> zeros

    def item_vectors(self, item_rows: torch.Tensor, content_rows: torch.Tensor, items: ItemTable) -> torch.Tensor:
        """Item vectors [b, d]: id embedding plus the projected image, title and has-image content."""
        if items.image_features is None:
            raise ValueError("the item table's image features are not computed: call with_image_features first")
        image = items.image_features[content_rows]  # [b, n_classes], no gradient into the CNN
        # Each distinct item's title is encoded once per batch (a 1,024-impression batch holds ~600 items).
        unique_rows, inverse = torch.unique(content_rows, return_inverse=True)  # [u], [b]
        title_ids, title_offsets = gather_bags(items.title_ids, items.title_offsets, unique_rows)
        title = self.text_encoder(title_ids, title_offsets)[inverse]  # [b, text_dim]
        has_image = items.has_image[content_rows].to(image.dtype)[:, None]  # [b, 1]
        content = self.item_content(torch.cat([image, title, has_image], dim=1))  # [b, d]
        return self.item_embedding(item_rows) + content  # [b, d]

    # --- task forwards ---

    def forward_impressions(self, batch: Tensors, items: ItemTable) -> tuple[torch.Tensor, torch.Tensor]:
        """(click_logit, cvr_logit), each [b], for a batch of encoded impressions."""
        user = self.user_embedding(batch["user_rows"])  # [b, d]
        item = self.item_vectors(batch["item_rows"], batch["content_rows"], items)  # [b, d]
        category = self.category_embedding(batch["category_rows"])  # [b, d]
        dense = (batch["dense"] - self.impression_dense_mean) / self.impression_dense_std  # [b, n_dense]
        x = torch.cat([user, item, category, user * item, dense], dim=1)  # [b, 4d + n_dense]
        return self.impression_tower(x)

    def forward_reviews(self, batch: Tensors, items: ItemTable) -> torch.Tensor:
        """negative_logit [b] for a batch of encoded reviews (with their gathered text bags)."""
        user = self.user_embedding(batch["user_rows"])  # [b, d]
        item = self.item_vectors(batch["item_rows"], batch["content_rows"], items)  # [b, d]
        category = self.category_embedding(batch["category_rows"])  # [b, d]
        text = self.text_encoder(batch["text_ids"], batch["text_offsets"])  # [b, text_dim]
        x = torch.cat([user, item, category, user * item, text], dim=1)  # [b, 4d + text_dim]
        return self.review_tower(x).squeeze(1)  # [b]

    def forward_item_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Category logits [b, n_item_classes] from uint8 images [b, 3, s, s] (augmented in training mode)."""
        return self.category_head(self.image_encoder(images, generator))  # [b, n_classes]

    def forward_orders(self, batch: Tensors) -> torch.Tensor:
        """fraud_logit [b] for a batch of encoded orders."""
        parts = [self.user_embedding(batch["user_rows"])]  # [b, d]
        categorical_rows = batch["categorical_rows"]  # [b, n_cat]
        for column, embedding in enumerate(self.order_categorical_embeddings):
            parts.append(embedding(categorical_rows[:, column]))  # [b, c]
        dense = (batch["dense"] - self.order_dense_mean) / self.order_dense_std  # [b, n_dense]
        x = torch.cat([*parts, dense], dim=1)  # [b, d + n_cat * c + n_dense]
        return self.fraud_tower(x).squeeze(1)  # [b]


def esmm_probabilities(click_logit: torch.Tensor, cvr_logit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(p_ctr, p_ctcvr) in float32; p_ctcvr = p_ctr * p_cvr <= p_ctr by construction."""
    p_ctr = torch.sigmoid(click_logit.float())  # [batch]
    p_ctcvr = p_ctr * torch.sigmoid(cvr_logit.float())  # [batch]
    return p_ctr, p_ctcvr


def esmm_losses(
    click_logit: torch.Tensor, cvr_logit: torch.Tensor, clicked: torch.Tensor, converted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean BCE(p_ctr, clicked) and BCE(p_ctr * p_cvr, converted) over all impressions, from logits.

    With a = click_logit and b = cvr_logit, p_ctcvr = sigmoid(a) * sigmoid(b), so
    log p_ctcvr = logsigmoid(a) + logsigmoid(b) and
    log(1 - p_ctcvr) = log(e^-a + e^-b + e^-(a+b)) + log p_ctcvr, both finite for any logits
    (the naive log(1 - p) is -inf once p rounds to 1).
    """
    a = click_logit.float()  # [batch]
    b = cvr_logit.float()  # [batch]
    click_loss = F.binary_cross_entropy_with_logits(a, clicked.float())
    log_p = F.logsigmoid(a) + F.logsigmoid(b)  # [batch] log p_ctcvr
    log_not_p = torch.logsumexp(torch.stack([-a, -b, -a - b], dim=1), dim=1) + log_p  # [batch] log(1 - p_ctcvr)
    y = converted.float()  # [batch]
    ctcvr_loss = -(y * log_p + (1.0 - y) * log_not_p).mean()
    return click_loss, ctcvr_loss


# --- Parquet frames -> tensors (columnar: Polars -> numpy -> torch; per-row Python only to hash text) --


def encode_strings(column: pl.Expr, values: list[str]) -> pl.Expr:
    """Map strings to 1-based positions in ``values``; null or unseen -> 0."""
    return column.replace_strict(values, list(range(1, len(values) + 1)), default=UNSEEN_ROW, return_dtype=pl.Int64)


def dense_tensor(frame: pl.DataFrame, columns: list[str]) -> torch.Tensor:
    """Float32 [rows, len(columns)] from frame columns (nulls become 0; NaN or inf is an error)."""
    if not columns:
        return torch.zeros((frame.height, 0), dtype=torch.float32)
    array = np.ascontiguousarray(
        frame.select(pl.col(columns).cast(pl.Float32).fill_null(0.0)).to_numpy(), dtype=np.float32
    )  # [rows, n_dense]
    finite = np.isfinite(array).all(axis=0)  # [n_dense]
    if not finite.all():  # one NaN would turn every weight into NaN: fail here, naming the columns
        bad = [column for column, ok in zip(columns, finite, strict=True) if not ok]
        raise ValueError(f"dense feature columns hold NaN or infinite values: {bad}")
    return torch.from_numpy(array)


def id_rows(vocabulary: torch.Tensor, ids: pl.Series) -> torch.Tensor:
    """Embedding rows [rows] for an id column: its vocabulary position + 1, or 0 when unseen or null."""
    raw = torch.from_numpy(ids.cast(pl.Int64).fill_null(0).to_numpy().copy())  # [rows]
    rows = lookup_rows(vocabulary.cpu(), raw)  # [rows]; encoding happens on the CPU, batches move later
    if ids.null_count():
        rows[torch.from_numpy(ids.is_null().to_numpy().copy())] = UNSEEN_ROW
    return rows


def string_rows(frame: pl.DataFrame, column: str, values: list[str]) -> torch.Tensor:
    """Rows [rows] of a string column in a sorted vocabulary (1-based; null or unseen -> 0)."""
    codes = frame.select(encode_strings(pl.col(column).cast(pl.String), values)).to_series().to_numpy()
    return torch.from_numpy(np.array(codes, dtype=np.int64))  # a writable copy


def label_tensor(frame: pl.DataFrame, column: str) -> torch.Tensor:
    """Float32 [rows] of a 0/1 label column."""
    return torch.from_numpy(frame.get_column(column).cast(pl.Float32).to_numpy().copy())


def encode_item_table(items: pl.DataFrame, hashing: TextHashing, image_size: int) -> ItemTable:
    """An :class:`ItemTable` of an items frame (item_id, title, image): images decoded, titles hashed, once."""
    items = items.unique(subset="item_id", keep="first", maintain_order=True).drop_nulls("item_id").sort("item_id")
    images, has_image = decode_images(
        items.get_column("image").to_list() if "image" in items.columns else [None] * items.height, image_size
    )  # [n, 3, s, s], [n]
    titles = items.get_column("title").to_list() if "title" in items.columns else [None] * items.height
    title_ids, title_offsets = hash_texts([None, *titles], hashing)  # row 0: no title
    return ItemTable(
        item_ids=torch.from_numpy(items.get_column("item_id").cast(pl.Int64).to_numpy().copy()),  # [n]
        images=torch.cat([torch.zeros((1, 3, image_size, image_size), dtype=torch.uint8), images]),  # [n + 1, ...]
        has_image=torch.cat([torch.zeros(1, dtype=torch.bool), has_image]),  # [n + 1]
        title_ids=title_ids,
        title_offsets=title_offsets,  # [n + 2]
    )


def empty_item_table(hashing: TextHashing, image_size: int) -> ItemTable:
    """A table with only row 0: every item scores through its id embedding and the no-content vector."""
    schema = {"item_id": pl.Int64, "title": pl.String, "image": pl.Binary}
    return encode_item_table(pl.DataFrame(schema=schema), hashing, image_size)


def with_image_features(model: MultiTaskNet, items: ItemTable) -> ItemTable:
    """``items`` on the model's device with its CNN features computed now (eval mode, no gradient)."""
    device = model.item_content.weight.device
    items = items.to(device)
    return dataclasses.replace(items, image_features=model.image_feature_table(items))


def encode_impressions(
    model: MultiTaskNet, spec: FeatureSpec, frame: pl.DataFrame, items: ItemTable | None = None
) -> Tensors:
    """Tensors for impression-shaped rows (impressions or candidates): rows, dense, and labels when present."""
    tensors = {
        "user_rows": id_rows(model.user_vocabulary, frame.get_column("user_id")),  # [rows]
        "item_rows": id_rows(model.item_vocabulary, frame.get_column("item_id")),  # [rows]
        "category_rows": string_rows(frame, "category", spec.categories),  # [rows]
        "content_rows": (
            items.rows_of(frame.get_column("item_id")) if items is not None else torch.zeros(frame.height, dtype=torch.int64)
        ),  # [rows] into the item table
        "dense": dense_tensor(frame, spec.impression_dense),  # [rows, n_impression_dense]
    }
    for label in ("clicked", "converted"):
        if label in frame.columns:
            tensors[label] = label_tensor(frame, label)  # [rows]
    return tensors


def encode_reviews(model: MultiTaskNet, spec: FeatureSpec, frame: pl.DataFrame, items: ItemTable | None) -> Tensors:
    """Tensors for review rows: id rows, content rows, the hashed text (flat ids + offsets), and ``negative``."""
    text_ids, text_offsets = hash_texts(frame.get_column("text").to_list(), model.config.text_hashing)
    tensors = {
        "user_rows": id_rows(model.user_vocabulary, frame.get_column("user_id")),  # [rows]
        "item_rows": id_rows(model.item_vocabulary, frame.get_column("item_id")),  # [rows]
        "category_rows": string_rows(frame, "category", spec.categories),  # [rows]
        "content_rows": (
            items.rows_of(frame.get_column("item_id")) if items is not None else torch.zeros(frame.height, dtype=torch.int64)
        ),  # [rows]
        "text_ids": text_ids,  # [n_text_ids], not per row: batches gather their bags
        "text_offsets": text_offsets,  # [rows + 1]
    }
    if "negative" in frame.columns and frame.get_column("negative").null_count() == 0:
        tensors["negative"] = label_tensor(frame, "negative")  # [rows]
    return tensors


def encode_item_labels(spec: FeatureSpec, items: ItemTable, frame: pl.DataFrame) -> Tensors:
    """Tensors for category rows: ``table_rows`` into the item table and ``label`` (class index, -1 if unknown)."""
    label = string_rows(frame, "category", spec.item_categories) - 1  # [rows] 0-based; unknown -> -1
    return {"table_rows": items.rows_of(frame.get_column("item_id")), "label": label}  # [rows] each


def encode_orders(model: MultiTaskNet, spec: FeatureSpec, frame: pl.DataFrame) -> Tensors:
    """Tensors for order rows: user rows, categorical rows [rows, n_cat], dense, and is_fraud when labelled."""
    if spec.order_categorical:
        codes = frame.select(
            encode_strings(pl.col(column).cast(pl.String), spec.order_categorical_values[column]).alias(column)
            for column in spec.order_categorical
        ).to_numpy()  # [rows, n_cat]
    else:
        codes = np.zeros((frame.height, 0), dtype=np.int64)
    tensors = {
        "user_rows": id_rows(model.user_vocabulary, frame.get_column("user_id")),  # [rows]
        "categorical_rows": torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)),  # [rows, n_cat]
        "dense": dense_tensor(frame, spec.order_dense),  # [rows, n_order_dense]
    }
    if "is_fraud" in frame.columns and frame.get_column("is_fraud").null_count() == 0:
        tensors["is_fraud"] = label_tensor(frame, "is_fraud")
    return tensors


BAG_KEYS = {"text_ids": "text_offsets"}  # flat bag tensors (not one entry per row) and their offsets


def n_rows(tensors: Tensors) -> int:
    """Rows of an encoded frame (0 for an empty dict)."""
    for key, value in tensors.items():
        if key not in BAG_KEYS and key not in BAG_KEYS.values():
            return int(value.shape[0])
    return 0


def select_rows(tensors: Tensors, index: torch.Tensor) -> Tensors:
    """Rows ``index`` of every per-row tensor; text bags are gathered for those rows."""
    batch = {
        key: value[index] for key, value in tensors.items() if key not in BAG_KEYS and key not in BAG_KEYS.values()
    }
    for ids_key, offsets_key in BAG_KEYS.items():
        if ids_key in tensors:
            batch[ids_key], batch[offsets_key] = gather_bags(tensors[ids_key], tensors[offsets_key], index)
    return batch


# --- saving, loading, scoring -----------------------------------------------------------------------


@dataclass
class MultiTaskBundle:
    """A trained network with what it needs to score new frames."""

    model: MultiTaskNet
    spec: FeatureSpec
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # the rest of config.json (training config, ds, tasks)


def save_multitask(bundle: MultiTaskBundle, output_dir: Path) -> None:
    """Write ``model.pt`` (state_dict only) and ``config.json`` (enough to rebuild the module)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in bundle.model.state_dict().items()}
    # Write, then rename: another day's gate may be loading this champion while the day is re-run.
    partial = output_dir / (MODEL_FILE + ".partial")
    torch.save(state, partial)
    partial.replace(output_dir / MODEL_FILE)
    payload = {
        **bundle.extra,
        "model_version": bundle.model_version,
        "model": asdict(bundle.model.config),
        "features": asdict(bundle.spec),
    }
    (output_dir / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_saved_model(output_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config.json payload, state_dict) of a saved model; the weights load with ``weights_only=True``."""
    output_dir = Path(output_dir)
    payload = json.loads((output_dir / CONFIG_FILE).read_text())
    state = torch.load(output_dir / MODEL_FILE, map_location="cpu", weights_only=True)
    return payload, state


def load_multitask(output_dir: Path, device: str | torch.device = "cpu") -> MultiTaskBundle:
    """Rebuild the network from ``config.json`` and load ``model.pt`` with ``weights_only=True``."""
    payload, state = read_saved_model(output_dir)
    model = MultiTaskNet(MultiTaskModelConfig.from_dict(payload.pop("model")))
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    spec = FeatureSpec(**payload.pop("features"))
    return MultiTaskBundle(model=model, spec=spec, model_version=payload.pop("model_version", ""), extra=payload)


def batched(tensors: Tensors, batch_size: int, device: torch.device) -> list[Tensors]:
    """Consecutive batches of encoded rows, moved to ``device``."""
    total = n_rows(tensors)
    return [
        {key: value.to(device) for key, value in select_rows(tensors, torch.arange(start, min(start + batch_size, total))).items()}
        for start in range(0, total, batch_size)
    ]


@torch.inference_mode()
def predict_impression_tensors(
    model: MultiTaskNet, tensors: Tensors, items: ItemTable, batch_size: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """(p_click, p_purchase) as float32 numpy arrays for encoded impression rows (items with features)."""
    model.eval()
    device = model.item_content.weight.device
    p_click, p_purchase = [], []
    for batch in batched(tensors, batch_size, device):
        with autocast_for(device):
            click_logit, cvr_logit = model.forward_impressions(batch, items)
        p_ctr, p_ctcvr = esmm_probabilities(click_logit, cvr_logit)  # [batch] each
        p_click.append(p_ctr.cpu())
        p_purchase.append(p_ctcvr.cpu())
    if not p_click:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    return torch.cat(p_click).numpy(), torch.cat(p_purchase).numpy()


@torch.inference_mode()
def predict_review_tensors(model: MultiTaskNet, tensors: Tensors, items: ItemTable, batch_size: int = 65536) -> np.ndarray:
    """p_negative as a float32 numpy array for encoded review rows."""
    model.eval()
    device = model.item_content.weight.device
    parts = []
    for batch in batched(tensors, batch_size, device):
        with autocast_for(device):
            logit = model.forward_reviews(batch, items)  # [batch]
        parts.append(torch.sigmoid(logit.float()).cpu())
    return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.float32)


@torch.inference_mode()
def predict_item_tensors(model: MultiTaskNet, tensors: Tensors, items: ItemTable, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities [rows, n_item_classes] (float32 numpy) from the images of item table rows."""
    model.eval()
    device = model.item_content.weight.device
    rows = tensors["table_rows"]
    parts = []
    for start in range(0, rows.numel(), batch_size):
        images = items.images[rows[start : start + batch_size].to(items.images.device)].to(device)  # [b, 3, s, s]
        with autocast_for(device):
            logits = model.forward_item_images(images)  # [b, n_classes]
        parts.append(torch.softmax(logits.float(), dim=1).cpu())
    if not parts:
        return np.zeros((0, model.category_head.out_features), dtype=np.float32)
    return torch.cat(parts).numpy()


@torch.inference_mode()
def predict_order_tensors(model: MultiTaskNet, tensors: Tensors, batch_size: int = 65536) -> np.ndarray:
    """p_fraud as a float32 numpy array for encoded order rows."""
    model.eval()
    device = model.item_content.weight.device
    p_fraud = []
    for batch in batched(tensors, batch_size, device):
        with autocast_for(device):
            logit = model.forward_orders(batch)
        p_fraud.append(torch.sigmoid(logit.float()).cpu())  # [batch]
    if not p_fraud:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(p_fraud).numpy()


def prepare_items(bundle: MultiTaskBundle, items: pl.DataFrame | ItemTable | None) -> ItemTable:
    """An item table with current image features for ``bundle`` from a frame, a table, or nothing."""
    config = bundle.model.config
    if items is None:
        table = empty_item_table(config.text_hashing, config.image_size)
    elif isinstance(items, pl.DataFrame):
        table = encode_item_table(items, config.text_hashing, config.image_size)
    else:
        table = items
    return with_image_features(bundle.model, table)


def predict_impressions(
    bundle: MultiTaskBundle,
    frame: pl.DataFrame,
    batch_size: int = 65536,
    items: pl.DataFrame | ItemTable | None = None,
) -> pl.DataFrame:
    """``frame`` with p_click and p_purchase (= p_ctcvr) appended, for impression or candidate rows.

    ``items`` (the features directory's items frame) gives item vectors their image and title;
    without it every item scores as one without content.
    """
    table = prepare_items(bundle, items)
    tensors = encode_impressions(bundle.model, bundle.spec, frame, table)
    p_click, p_purchase = predict_impression_tensors(bundle.model, tensors, table, batch_size)
    return frame.with_columns(
        pl.Series("p_click", p_click, dtype=pl.Float64), pl.Series("p_purchase", p_purchase, dtype=pl.Float64)
    )


def predict_reviews(
    bundle: MultiTaskBundle, frame: pl.DataFrame, items: pl.DataFrame | ItemTable | None = None
) -> pl.DataFrame:
    """``frame`` with p_negative appended, for review rows."""
    table = prepare_items(bundle, items)
    tensors = encode_reviews(bundle.model, bundle.spec, frame, table)
    return frame.with_columns(
        pl.Series("p_negative", predict_review_tensors(bundle.model, tensors, table), dtype=pl.Float64)
    )


def predict_categories(bundle: MultiTaskBundle, items: pl.DataFrame) -> pl.DataFrame:
    """Items that have a decodable image, with listed_category, predicted_category and confidence."""
    table = prepare_items(bundle, items)
    with_image = items.filter(pl.col("image").is_not_null())
    rows = table.rows_of(with_image.get_column("item_id"))  # [n]
    keep = table.has_image.cpu()[rows]  # [n] decodable images only
    with_image = with_image.filter(pl.Series(keep.numpy()))
    probabilities = predict_item_tensors(bundle.model, {"table_rows": rows[keep]}, table)  # [n, n_classes]
    return with_image.select("item_id", "split", pl.col("category").alias("listed_category")).with_columns(
        category_predictions(probabilities, bundle.spec.item_categories)
    )


def category_predictions(probabilities: np.ndarray, classes: list[str]) -> list[pl.Series]:
    """predicted_category (the most likely class) and its probability, as Series."""
    if probabilities.shape[0] == 0 or not classes:
        n = probabilities.shape[0]
        return [pl.Series("predicted_category", [None] * n, dtype=pl.String), pl.Series("confidence", [None] * n, dtype=pl.Float64)]
    best = probabilities.argmax(axis=1)  # [n]
    return [
        pl.Series("predicted_category", np.asarray(classes, dtype=object)[best], dtype=pl.String),
        pl.Series("confidence", probabilities[np.arange(best.size), best], dtype=pl.Float64),
    ]


def predict_orders(bundle: MultiTaskBundle, frame: pl.DataFrame, batch_size: int = 65536) -> pl.DataFrame:
    """``frame`` with p_fraud appended."""
    tensors = encode_orders(bundle.model, bundle.spec, frame)
    return frame.with_columns(
        pl.Series("p_fraud", predict_order_tensors(bundle.model, tensors, batch_size), dtype=pl.Float64)
    )


def autocast_for(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA, a no-op elsewhere."""
    # bf16 autocast on CUDA only: CPU stays in float32 so CPU runs are bitwise reproducible.
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
