"""Training configs: small frozen dataclasses, every default commented.

``MultiTaskConfig`` (with its nested ``NetworkConfig``) and ``FraudLgbmConfig`` are JSON-serialised
into the model version hash and into ``config.json`` next to the model, so a model directory always
says how it was trained; ``GateConfig`` is the champion/challenger rule.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from etl.contract import OBJECTIVES


@dataclass(frozen=True)
class TextHashing:
    """How texts become hashed feature ids (training/encoders.py); stored with the model so a reload hashes the same way."""

    n_buckets: int = 1 << 15  # embedding rows; collisions are rare at demo vocabulary sizes (~5k distinct features)
    char_ngram_min: int = 3  # character n-grams of each word padded with "<" and ">", from this length...
    char_ngram_max: int = 5  # ...to this one (inclusive); min > max turns character n-grams off
    word_bigrams: bool = True  # "not good" carries what "not" and "good" alone do not
    strip_accents: bool = True  # fold "não" and "nao" together: reviewers often type without accents


@dataclass(frozen=True)
class NetworkConfig:
    """The shape of the multi-task network (training/multitask.py): saved with the model, so a reload
    rebuilds the same module. Sizes that come from the data (vocabularies, feature counts) are not here."""

    embedding_dim: int = 16  # user, item and category embeddings (shared by the impression, review and fraud towers)
    categorical_embedding_dim: int = 4  # one small embedding per order categorical column (payment_method, ...)
    # Impression tower: "shared_bottom" (one MLP), "mmoe" (Ma et al. KDD 2018) or "ple" (Tang et al. RecSys 2020).
    architecture: str = "shared_bottom"
    hidden_dims: tuple[int, ...] = (64, 32)  # the shared-bottom MLP, or each expert's MLP under mmoe/ple
    n_experts: int = 4  # mmoe: experts shared by the click and conversion gates
    ple_levels: int = 1  # ple: extraction levels (1 = a single CGC block)
    ple_specific_experts: int = 1  # ple: experts of each task per level
    ple_shared_experts: int = 2  # ple: shared experts per level
    head_hidden_dim: int = 16  # one hidden layer in each of the click and conversion heads
    # Multi-scenario (STAR, training/multitask.py): the impression's surface (clicks.scenario) is an
    # input of the tower and its gates, the heads' hidden layers are star-topology (shared weights
    # times each scenario's own) and an auxiliary net of [scenario | dense] adds to both logits.
    # False: scenario-blind, every impression reads one scenario row (the ablation's comparison).
    scenarios: bool = True
    scenario_dim: int = 8  # scenario embedding width
    # User behaviour sequence (DIN, Zhou et al. KDD 2018): target attention over the user's newest
    # history_length clicked items (and their categories) before the impression; 0 turns it off.
    # Off by default: on the demo, 10 gave +0.001 click and +0.006 purchase AUC (one seed, noise) for
    # about 1.5x the training time, and at 10x the demo the night went from 120 s to 132 s (README).
    # Turn it on where behaviour is sequential (the features always carry the sequences).
    history_length: int = 0
    attention_hidden_dim: int = 16  # the attention unit's hidden layer
    review_hidden_dims: tuple[int, ...] = (32,)  # review tower MLP over [user | item | category | user*item | text]
    review_text_linear: bool = True  # the review head's wide part: a linear term over the hashed text features
    fraud_hidden_dims: tuple[int, ...] = (32, 16)  # fraud tower MLP
    dropout: float = 0.0  # early stopping already regularises; dropout measured no better on the demo data
    # Text encoder (training/encoders.py): hashed word uni/bigrams and character n-grams, EmbeddingBag mean.
    text_dim: int = 16  # text vector width (titles and review texts)
    # Hash buckets: the demo's titles and reviews hold ~5k distinct features. 2^15 and 2^16 rows made a
    # demo epoch 10% and 25% slower (the dense EmbeddingBag gradient and AdamW touch every row), for
    # the same review AUC; raise n_buckets for a larger vocabulary.
    text: TextHashing = TextHashing(n_buckets=1 << 14)
    # Image encoder: images decoded once to image_size x image_size RGB; a small CNN with these widths,
    # its last feature map averaged over an image_pool x image_pool grid (1: one global average). On
    # Fashion-MNIST (8,000 training images) (16, 32, 32) with a global average reached 0.838 accuracy
    # against a plain two-layer CNN's 0.859 and was still improving at epoch 12; (32, 64, 64) with a
    # 2 x 2 grid reached 0.862 by epoch 6, and on the demo the same accuracy in the same time.
    image_size: int = 32
    image_channels: tuple[int, ...] = (32, 64, 64)
    image_pool: int = 2
    crop_padding: int = 4  # training augmentation: replicate-pad by this many pixels and crop back at random
    augment: bool = True  # random crop + horizontal flip of training images (never at evaluation)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NetworkConfig:
        """Rebuild from JSON, where tuples came back as lists and ``text`` as a dict."""
        fields = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
        if isinstance(fields.get("text"), dict):
            fields["text"] = TextHashing(**fields["text"])
        fields.setdefault("review_text_linear", False)  # models saved before the wide review term have none
        fields.setdefault("image_pool", 1)  # ...and before the pooled grid, a global average
        fields.setdefault("image_channels", (16, 32, 32))  # ...with these widths
        return cls(**fields)


@dataclass(frozen=True)
class ValidationSplit:
    """The training rows held out to choose each objective's epoch (training/loop.py). Day D and the
    fixed item holdout only report, never choose; these rows come from before D and are not trained on."""

    days: int = 2  # impressions and reviews of the last `days` days before D (~2/28 of the window)
    order_share: float = 0.2  # the newest share of the labelled training orders (fraud positives are few)
    # ...and of the reviews, at least this newest share (the demo's 2 days are ~7 % of its reviews;
    # a shop with a few reviews a day, or reviews evaluated over many days, would have almost none)
    min_review_share: float = 0.05
    # Training items whose id % item_modulus == 1 (day D's holdout is id % 5 == 0, so they never
    # overlap): 10 % of the items, so the image head loses few training images.
    item_modulus: int = 10


@dataclass(frozen=True)
class MultiTaskConfig:
    """How the multi-task network (click, purchase via ESMM, review, category, fraud) is shaped and trained."""

    # Objectives to train, of etl.contract.OBJECTIVES. Objectives the features lack (manifest
    # objectives_available, or no training rows) are skipped and logged. ("purchase",) alone trains
    # only the ESMM ctcvr loss; ("review",) only the review head; and so on (the ablation).
    objectives: tuple[str, ...] = OBJECTIVES
    seed: int = 7  # torch, numpy and the shuffling generator are all seeded from this
    network: NetworkConfig = NetworkConfig()
    id_dropout: float = 0.05  # share of training ids replaced by the default row 0, so unseen ids get a trained row
    category_label_smoothing: float = 0.0  # cross-entropy label smoothing of the image head (listed labels are noisy)
    # Multi-task sampler: every step takes one batch of each kind present (see training/sampler.py). An
    # epoch passes ratio x rows of each kind; the kind needing most batches of its batch size sets the
    # number of steps, and the other kinds' rows are spread evenly over those steps.
    batch_size: int = 1024  # impressions per step (at most)
    order_batch_size: int = 256  # orders per step (at most)
    review_batch_size: int = 256  # reviews per step (at most)
    item_batch_size: int = 128  # item images per step (at most)
    # The ratios set how much of each kind an epoch passes. Each kind keeps its own best epoch and
    # stops on its own (see max_epochs), so they need not line the objectives' best epochs up; they
    # keep an epoch's steps mixed: on the demo, click and purchase are best after ~1 pass over 136k
    # impressions, reviews and orders after a few passes, the image head after ~15 passes over 844 images.
    impression_ratio: float = 0.5  # passes over the training impressions per epoch
    order_ratio: float = 2.0  # passes over the training orders per epoch
    review_ratio: float = 2.0  # passes over the training reviews per epoch
    item_ratio: float = 8.0  # passes over the training item images per epoch (with augmentation, each pass differs)
    # Incremental nights (training/incremental.py), used only when the network warm-starts from the
    # champion: train on each kind's newest recent_days days plus a replay_fraction sample of its older
    # rows, so a night's training cost follows the day rather than the window. None: the whole window.
    recent_days: int | None = None
    replay_fraction: float = 0.1  # share of the older training rows replayed on an incremental night
    # An epoch is at most this many steps: with more rows, each epoch passes a random share of every
    # kind's epoch rows (the kinds keep their proportions), so early stopping checks day D every
    # max_steps_per_epoch steps and a night's training has a budget however large the window grows.
    # 1,000 steps is ~1M impressions: the demo (~70 steps) and 10x the demo (~700) are unaffected; at
    # 100x (~6,800 steps of impressions) an epoch passes a seventh of them, and the patience epochs
    # after the best one cost 2 x 1,000 steps instead of 2 x 6,800.
    max_steps_per_epoch: int | None = 1000
    # ...and at least this many: with few rows (hundreds of reviews, no impressions) every kind passes
    # its rows more often an epoch, so max_epochs and patience leave room to converge. The demo's
    # ~70 steps an epoch are unaffected.
    min_steps_per_epoch: int = 50
    # Model selection, per batch kind (click and purchase share the impressions and one epoch, so that
    # p_purchase = p_click * p_cvr comes from one network; review, category and fraud each their own):
    # a kind stops training after `patience` epochs without a lower validation loss, and the saved
    # network serves each objective from its kind's best epoch. Training ends when every kind has
    # stopped, or at max_epochs: 12 lets the image head (still improving after ~15 passes over its
    # images, item_ratio 8 a epoch) converge while the kinds that stopped cost nothing more.
    max_epochs: int = 12
    patience: int = 2  # epochs without a validation-loss improvement before a kind stops
    min_delta: float = 1e-4  # a validation-loss drop smaller than this is not an improvement
    validation: ValidationSplit = ValidationSplit()
    learning_rate: float = 3e-3  # AdamW
    wide_learning_rate: float = 3e-2  # AdamW rate of the review head's wide (linear text) part
    learning_rate_decay: float = 1.0  # multiplies the learning rate after every epoch; 0.5-0.8 measured no better on the demo
    weight_decay: float = 1e-5  # AdamW decoupled weight decay
    grad_clip_norm: float = 1.0  # clip the global gradient norm; keeps early steps with rare positives sane
    # Loss weighting across objectives: "fixed" (the weights below), "uncertainty" (Kendall et al. CVPR 2018)
    # or "gradnorm" (Chen et al. ICML 2018); see training/loss_weighting.py.
    loss_weighting: str = "fixed"
    click_weight: float = 1.0  # fixed loss weight of BCE(p_ctr, clicked)
    ctcvr_weight: float = 1.0  # fixed loss weight of BCE(p_ctr * p_cvr, converted) (objective "purchase")
    review_weight: float = 1.0  # fixed loss weight of the review BCE
    category_weight: float = 1.0  # fixed loss weight of the image category cross-entropy
    fraud_weight: float = 1.0  # fixed loss weight of the fraud BCE
    gradnorm_alpha: float = 1.5  # GradNorm asymmetry alpha (the paper's value for its NYUv2 runs)
    loss_weight_learning_rate: float = 0.025  # Adam step size of the uncertainty s_i or GradNorm w_i
    fraud_pos_weight: float | None = (
        None  # BCE pos_weight for fraud; None keeps p_fraud calibrated; 4 and 15 measured no better AUC, worse log loss
    )
    device: str = "auto"  # "auto": cuda when available, else cpu; or an explicit torch device string
    compile: bool = False  # torch.compile the towers and the CNN; on 2 CPU cores compiling takes ~15 s, longer than a demo run
    # torch intra-op threads. 1 measured fastest at demo size: these matmuls are too small to split,
    # and with 2 threads on a 2-core box shared with other tasks an epoch went from 0.5 s to 5-9 s.
    num_threads: int | None = 1
    # Data-parallel training replicas on the CPU, one torch thread each (training/parallel.py): each
    # takes its own batches every step and their gradients are averaged. None: one per usable core.
    # On an accelerator training runs in one process.
    processes: int | None = None
    # ...but only as many as keep an epoch at least this many steps (training/sampler.py count_replicas):
    # the demo (~70 steps) trains in one process, 10x the demo (~700 steps) in two. Weights are
    # reproducible for a given replica count (logged, and kept in the metrics' history).
    min_steps_per_replica: int = 250
    predict_batch_size: int = 65536  # rows per forward pass when scoring

    def to_json(self) -> str:
        """The config as canonical JSON (sorted keys), as hashed into the model version."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MultiTaskConfig:
        """The inverse of ``to_json``: the nested configs and the tuples rebuilt."""
        values = json.loads(text)
        values["objectives"] = tuple(values["objectives"])
        values["network"] = NetworkConfig.from_dict(values["network"])
        values["validation"] = ValidationSplit(**values["validation"])
        return cls(**values)


@dataclass(frozen=True)
class FraudLgbmConfig:
    """How the LightGBM fraud baseline is trained (a gradient-boosted tree on the order features)."""

    seed: int = 7  # LightGBM seed (bagging, feature fraction)
    num_boost_round: int = 500  # upper bound on trees; early stopping on the validation orders picks the count
    early_stopping_rounds: int = 30  # rounds without validation log-loss improvement before stopping
    # The newest share of the labelled training orders stops the boosting (ValidationSplit.order_share:
    # the network's fraud validation rows); the evaluation holdout only reports.
    validation_share: float = ValidationSplit.order_share
    no_eval_num_boost_round: int = 100  # trees to grow when the validation orders hold one class
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


@dataclass(frozen=True)
class GateConfig:
    """The champion/challenger gate (training/promotion.py): per objective, a paired comparison of the
    two models on the same rows, with a confidence interval (training/comparison.py)."""

    # Non-inferiority margin, in the main metric's units (AUC; accuracy for the category): the
    # challenger is rejected when the whole interval of (challenger - champion) lies below -tolerance,
    # i.e. when it is worse by more than this with the interval's confidence. A difference the rows
    # cannot tell from noise never rejects: on the demo a seed alone moves click AUC by ~0.005.
    tolerance: float = 0.01
    confidence: float = 0.95  # two-sided interval; the rejection is one-sided, at (1 + confidence) / 2 = 97.5 %
    # Below this many positives (or negatives) of a binary objective, or rows of the category, the
    # interval is not trusted ("not enough evidence"): the champion keeps serving, unless it is older
    # than max_champion_age_days, when the newer data outweighs an untested model and the challenger
    # serves. (A day-D fraud holdout with 11 frauds decides nothing; 30 is the usual rule of thumb for
    # a normal approximation.)
    min_positives: int = 30
    min_rows: int = 100  # the category: holdout items with a listed category
    max_champion_age_days: int = 7
