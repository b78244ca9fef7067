"""The multi-task network: click and purchase (ESMM) on impressions, fraud on orders, shared embeddings.

Read top to bottom: vocabularies and the architecture config, the module, the ESMM loss, turning
Parquet frames into tensors, then saving, loading and scoring. Training lives in
``training/train_multitask.py``.

Architecture::

    impressions: [user emb | item emb | category emb | user emb * item emb | standardised dense]
                   -> shared-bottom MLP -> click head  -> click_logit  (p_ctr = sigmoid)
                                        -> cvr head    -> cvr_logit    (p_cvr = sigmoid)
                 p_ctcvr = p_ctr * p_cvr  (= p_purchase, the probability an impression ends in a purchase)
    orders:      [user emb (shared) | one emb per categorical column | standardised dense] -> MLP -> fraud_logit

References:
    - Ma et al., "Entire Space Multi-Task Model: An Effective Approach for Estimating Post-Click
      Conversion Rate", SIGIR 2018 (arXiv:1804.07931): the CVR head is trained only through
      p_ctcvr = p_ctr * p_cvr over all impressions, which removes the sample-selection bias of
      training CVR on clicked impressions alone and lets the sparse conversion task borrow the
      click task's embeddings.
    - Caruana, "Multitask Learning", Machine Learning 28, 1997: hard parameter sharing (shared bottom).
    - He et al., "Neural Collaborative Filtering", WWW 2017: the element-wise user*item product
      (GMF) next to the concatenation, since an MLP alone learns dot-product affinity poorly.

Ids are mapped to embedding rows through vocabularies kept in the state_dict as sorted int64
buffers and looked up with ``torch.searchsorted``; an id not in the vocabulary gets row 0, a learned
default (training replaces a small share of ids by row 0 so that row sees gradient). String
categories use vocabularies stored in ``config.json``, with the same row-0 default. Dense inputs
are standardised inside the module with the training mean and std (buffers, so a reload scores the
same), and the trainer starts each head's output bias at its training base rate.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.nn import functional as F

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
EMBEDDING_INIT_STD = 0.05  # normal std of every embedding table at initialisation
UNSEEN_ROW = 0  # embedding row shared by every id or category value missing from the vocabulary


@dataclass(frozen=True)
class MultiTaskModelConfig:
    """Everything needed to rebuild the module before ``load_state_dict`` (sizes, widths)."""

    n_users: int  # vocabulary sizes; embedding tables have one more row (row 0 = unseen)
    n_items: int
    n_categories: int
    order_categorical_sizes: tuple[int, ...]  # vocabulary size per order categorical column
    n_impression_dense: int
    n_order_dense: int
    embedding_dim: int = 16
    categorical_embedding_dim: int = 4
    hidden_dims: tuple[int, ...] = (64, 32)
    head_hidden_dim: int = 16
    fraud_hidden_dims: tuple[int, ...] = (32, 16)
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> MultiTaskModelConfig:
        """Rebuild from JSON, where tuples came back as lists."""
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in payload.items()})


@dataclass(frozen=True)
class FeatureSpec:
    """Input columns and string vocabularies: how a Parquet frame becomes model inputs."""

    impression_dense: list[str]
    order_dense: list[str]
    order_categorical: list[str]
    categories: list[str]  # sorted category values seen in training; index + 1 = embedding row
    order_categorical_values: dict[str, list[str]] = field(default_factory=dict)  # column -> sorted values


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


def lookup_rows(vocabulary: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Embedding rows of ``ids`` in a sorted int64 ``vocabulary``: position + 1, or 0 when absent."""
    if vocabulary.numel() == 0:
        return torch.zeros_like(ids)
    position = torch.searchsorted(vocabulary, ids)  # [n] in 0..len(vocabulary)
    position = position.clamp(max=vocabulary.numel() - 1)  # [n] valid index to compare against
    found = vocabulary[position] == ids  # [n] bool
    return torch.where(found, position + 1, torch.full_like(position, UNSEEN_ROW))  # [n]


class MultiTaskNet(nn.Module):
    """Shared-bottom ESMM (click, conversion) plus a fraud tower over shared user embeddings."""

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

        self.shared_bottom, bottom_width = make_mlp(
            4 * d + config.n_impression_dense, config.hidden_dims, config.dropout
        )
        self.click_head = nn.Sequential(
            nn.Linear(bottom_width, config.head_hidden_dim), nn.ReLU(), nn.Linear(config.head_hidden_dim, 1)
        )
        self.cvr_head = nn.Sequential(
            nn.Linear(bottom_width, config.head_hidden_dim), nn.ReLU(), nn.Linear(config.head_hidden_dim, 1)
        )

        c = config.categorical_embedding_dim
        self.order_categorical_embeddings = nn.ModuleList(
            nn.Embedding(size + 1, c) for size in config.order_categorical_sizes
        )
        fraud_in = d + c * len(config.order_categorical_sizes) + config.n_order_dense
        fraud_mlp, fraud_width = make_mlp(fraud_in, config.fraud_hidden_dims, config.dropout)
        self.fraud_tower = nn.Sequential(fraud_mlp, nn.Linear(fraud_width, 1))
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                # nn.Embedding's N(0, 1) default makes user*item products pure noise at the start;
                # small rows let the MLP learn from the dense features first and overfit later.
                nn.init.normal_(module.weight, std=EMBEDDING_INIT_STD)

    def forward_impressions(
        self, user_rows: torch.Tensor, item_rows: torch.Tensor, category_rows: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(click_logit, cvr_logit), each [batch], for impressions given embedding rows and dense features."""
        user = self.user_embedding(user_rows)  # [batch, d]
        item = self.item_embedding(item_rows)  # [batch, d]
        category = self.category_embedding(category_rows)  # [batch, d]
        dense = (dense - self.impression_dense_mean) / self.impression_dense_std  # [batch, n_dense]
        x = torch.cat([user, item, category, user * item, dense], dim=1)  # [batch, 4d + n_dense]
        shared = self.shared_bottom(x)  # [batch, hidden_dims[-1]]
        click_logit = self.click_head(shared).squeeze(1)  # [batch]
        cvr_logit = self.cvr_head(shared).squeeze(1)  # [batch]
        return click_logit, cvr_logit

    def forward_orders(
        self, user_rows: torch.Tensor, categorical_rows: torch.Tensor, dense: torch.Tensor
    ) -> torch.Tensor:
        """fraud_logit [batch] for orders given user rows, categorical rows [batch, n_cat] and dense features."""
        parts = [self.user_embedding(user_rows)]  # [batch, d]
        for column, embedding in enumerate(self.order_categorical_embeddings):
            parts.append(embedding(categorical_rows[:, column]))  # [batch, c]
        dense = (dense - self.order_dense_mean) / self.order_dense_std  # [batch, n_dense]
        x = torch.cat([*parts, dense], dim=1)  # [batch, d + n_cat * c + n_dense]
        return self.fraud_tower(x).squeeze(1)  # [batch]


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


# --- Parquet frames -> tensors (columnar: Polars -> numpy -> torch, no per-row Python) ---------------


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


def encode_impressions(model: MultiTaskNet, spec: FeatureSpec, frame: pl.DataFrame) -> dict[str, torch.Tensor]:
    """Tensors for impression-shaped rows (impressions or candidates): rows, dense, and labels when present."""
    category_rows = (
        frame.select(encode_strings(pl.col("category").cast(pl.String), spec.categories)).to_series().to_numpy()
    )
    tensors = {
        "user_rows": id_rows(model.user_vocabulary, frame.get_column("user_id")),  # [rows]
        "item_rows": id_rows(model.item_vocabulary, frame.get_column("item_id")),  # [rows]
        "category_rows": torch.from_numpy(category_rows.copy()),  # [rows]
        "dense": dense_tensor(frame, spec.impression_dense),  # [rows, n_impression_dense]
    }
    for label in ("clicked", "converted"):
        if label in frame.columns:
            tensors[label] = torch.from_numpy(frame.get_column(label).cast(pl.Float32).to_numpy().copy())  # [rows]
    return tensors


def encode_orders(model: MultiTaskNet, spec: FeatureSpec, frame: pl.DataFrame) -> dict[str, torch.Tensor]:
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
        tensors["is_fraud"] = torch.from_numpy(frame.get_column("is_fraud").cast(pl.Float32).to_numpy().copy())
    return tensors


# --- saving, loading, scoring -----------------------------------------------------------------------


@dataclass
class MultiTaskBundle:
    """A trained network with what it needs to score new frames."""

    model: MultiTaskNet
    spec: FeatureSpec
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # the rest of config.json (training config, ds)


def save_multitask(bundle: MultiTaskBundle, output_dir: Path) -> None:
    """Write ``model.pt`` (state_dict only) and ``config.json`` (enough to rebuild the module)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in bundle.model.state_dict().items()}
    torch.save(state, output_dir / MODEL_FILE)
    payload = {
        **bundle.extra,
        "model_version": bundle.model_version,
        "model": asdict(bundle.model.config),
        "features": asdict(bundle.spec),
    }
    (output_dir / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_multitask(output_dir: Path, device: str | torch.device = "cpu") -> MultiTaskBundle:
    """Rebuild the network from ``config.json`` and load ``model.pt`` with ``weights_only=True``."""
    output_dir = Path(output_dir)
    payload = json.loads((output_dir / CONFIG_FILE).read_text())
    model = MultiTaskNet(MultiTaskModelConfig.from_dict(payload.pop("model")))
    state = torch.load(output_dir / MODEL_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    spec = FeatureSpec(**payload.pop("features"))
    return MultiTaskBundle(model=model, spec=spec, model_version=payload.pop("model_version", ""), extra=payload)


@torch.inference_mode()
def predict_impression_tensors(
    model: MultiTaskNet, tensors: dict[str, torch.Tensor], batch_size: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """(p_click, p_purchase) as float32 numpy arrays for encoded impression rows."""
    model.eval()
    device = next(model.parameters()).device
    n = tensors["user_rows"].shape[0]
    p_click, p_purchase = [], []
    for start in range(0, n, batch_size):
        batch = {key: value[start : start + batch_size].to(device) for key, value in tensors.items()}
        with autocast_for(device):
            click_logit, cvr_logit = model.forward_impressions(
                batch["user_rows"], batch["item_rows"], batch["category_rows"], batch["dense"]
            )
        p_ctr, p_ctcvr = esmm_probabilities(click_logit, cvr_logit)  # [batch] each
        p_click.append(p_ctr.cpu())
        p_purchase.append(p_ctcvr.cpu())
    if not p_click:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    return torch.cat(p_click).numpy(), torch.cat(p_purchase).numpy()


@torch.inference_mode()
def predict_order_tensors(model: MultiTaskNet, tensors: dict[str, torch.Tensor], batch_size: int = 65536) -> np.ndarray:
    """p_fraud as a float32 numpy array for encoded order rows."""
    model.eval()
    device = next(model.parameters()).device
    n = tensors["user_rows"].shape[0]
    p_fraud = []
    for start in range(0, n, batch_size):
        batch = {key: value[start : start + batch_size].to(device) for key, value in tensors.items()}
        with autocast_for(device):
            logit = model.forward_orders(batch["user_rows"], batch["categorical_rows"], batch["dense"])
        p_fraud.append(torch.sigmoid(logit.float()).cpu())  # [batch]
    if not p_fraud:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(p_fraud).numpy()


def predict_impressions(bundle: MultiTaskBundle, frame: pl.DataFrame, batch_size: int = 65536) -> pl.DataFrame:
    """``frame`` with p_click and p_purchase (= p_ctcvr) appended, for impression or candidate rows."""
    tensors = encode_impressions(bundle.model, bundle.spec, frame)
    p_click, p_purchase = predict_impression_tensors(bundle.model, tensors, batch_size)
    return frame.with_columns(
        pl.Series("p_click", p_click, dtype=pl.Float64), pl.Series("p_purchase", p_purchase, dtype=pl.Float64)
    )


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
