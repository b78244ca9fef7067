"""Training configs: small frozen dataclasses, every default commented.

Both configs are JSON-serialised into the model version hash and into ``config.json`` next to the
model, so a model directory always says how it was trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MultiTaskConfig:
    """How the multi-task network (click, purchase via ESMM, fraud) is shaped and trained."""

    seed: int = 7  # torch, numpy and the shuffling generator are all seeded from this
    embedding_dim: int = 16  # user, item and category embeddings (shared by the impression and fraud towers)
    categorical_embedding_dim: int = 4  # one small embedding per order categorical column (payment_method, ...)
    hidden_dims: tuple[int, ...] = (64, 32)  # shared-bottom MLP of the impression tower
    head_hidden_dim: int = 16  # one hidden layer in each of the click and conversion heads
    fraud_hidden_dims: tuple[int, ...] = (32, 16)  # fraud tower MLP
    dropout: float = 0.0  # early stopping already regularises; dropout measured no better on the demo data
    id_dropout: float = 0.05  # share of training ids replaced by the default row 0, so unseen ids get a trained row
    batch_size: int = 1024  # impressions per step; the orders are spread over the same number of steps
    max_epochs: int = 8  # upper bound; early stopping usually ends sooner
    patience: int = 2  # epochs without an eval-loss improvement before stopping (best weights are restored)
    min_delta: float = 1e-4  # an eval-loss drop smaller than this is not an improvement
    learning_rate: float = 3e-3  # AdamW
    weight_decay: float = 1e-5  # AdamW decoupled weight decay
    grad_clip_norm: float = 1.0  # clip the global gradient norm; keeps early steps with rare positives sane
    click_weight: float = 1.0  # loss weight of BCE(p_ctr, clicked)
    ctcvr_weight: float = 1.0  # loss weight of BCE(p_ctr * p_cvr, converted)
    fraud_weight: float = 1.0  # loss weight of the fraud BCE
    fraud_pos_weight: float | None = (
        None  # BCE pos_weight for fraud; None keeps p_fraud calibrated; 4 and 15 measured no better AUC, worse log loss
    )
    device: str = "auto"  # "auto": cuda when available, else cpu; or an explicit torch device string
    # torch intra-op threads. 1 measured fastest at demo size: these matmuls are too small to split,
    # and with 2 threads on a 2-core box shared with other tasks an epoch went from 0.5 s to 5-9 s.
    num_threads: int | None = 1
    predict_batch_size: int = 65536  # rows per forward pass when scoring

    def to_json(self) -> str:
        """The config as canonical JSON (sorted keys), as hashed into the model version."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class FraudBaselineConfig:
    """How the LightGBM fraud baseline is trained (a gradient-boosted tree on the order features)."""

    seed: int = 7  # LightGBM seed (bagging, feature fraction)
    num_boost_round: int = 500  # upper bound on trees; early stopping on the eval orders picks the count
    early_stopping_rounds: int = 30  # rounds without eval log-loss improvement before stopping
    no_eval_num_boost_round: int = 100  # trees to grow when there are no labelled eval orders to stop on
    learning_rate: float = 0.05
    num_leaves: int = 15  # small trees: a few thousand orders a night
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    min_data_per_group: int = 20  # LightGBM's default 100 is too coarse for a few thousand orders
    cat_smooth: float = 10.0
    max_cat_to_onehot: int = 4  # categoricals with <= 4 values are split one-vs-rest
    num_threads: int = 1  # fixed, so runs are reproducible; a few thousand orders train in ~0.1 s on one thread
    scale_pos_weight: float = 1.0  # 1.0 keeps p_fraud calibrated

    def to_json(self) -> str:
        """The config as canonical JSON (sorted keys), as hashed into the model version."""
        return json.dumps(asdict(self), sort_keys=True)
