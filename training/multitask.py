"""The multi-task network: five objectives at their own granularity over shared embeddings and encoders.

The network only, read top to bottom: its config, the impression tower (shared-bottom, MMoE or
PLE), the module, the ESMM loss. Turning Parquet frames into tensors is ``training/data.py``, the
encoders ``training/encoders.py``, training ``training/train.py`` and ``training/loop.py``, saving,
loading and scoring ``training/predict.py``.

Architecture (d = embedding_dim; shared parts marked *)::

    item vector*     = item_emb*[item] + Linear([softmax(image head(cnn*(image))) | text*(title) | has_image])
    impressions      [user_emb* | item vector | category_emb* | user*item | standardised dense | scenario_emb
                      | DIN interest: attention(target item, the user's recent clicked items)]
                       -> shared-bottom MLP, MMoE or PLE -> click head(scenario) -> click_logit (p_ctr)
                                                        -> cvr head(scenario)   -> cvr_logit   (p_cvr)
                       + scenario auxiliary net([scenario_emb | dense]) on both logits          [STAR]
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
    - Sheng et al., "One Model to Serve All: Star Topology Adaptive Recommender for Multi-Domain
      CTR Prediction", CIKM 2021 (arXiv:2101.11427): each scenario's fully connected weights are the
      shared weights times the scenario's own (element-wise), and a small auxiliary network of the
      scenario indicator adds to the logit. Here the heads' hidden layers are star-topology layers,
      the tower input and so the MMoE/PLE gates read the scenario embedding, and the auxiliary net
      reads [scenario | dense] (position effects differ by surface).
    - Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018
      (arXiv:1706.06978): target attention over the user's behaviour sequence (here the newest
      clicked items before the impression, as item vectors plus category embeddings).
    - Caruana, "Multitask Learning", Machine Learning 28, 1997: hard parameter sharing (shared bottom).
    - He et al., "Neural Collaborative Filtering", WWW 2017: the element-wise user*item product (GMF).

Ids are mapped to embedding rows through vocabularies kept in the state_dict as sorted int64
buffers and looked up with ``torch.searchsorted``; an id not in the vocabulary gets row 0, a learned
default (training replaces a small share of ids by row 0 so that row sees gradient). String
categories and scenarios use vocabularies stored in ``config.json``, with the same row-0 default. Dense inputs
are standardised inside the module with the training mean and std (buffers, so a reload scores the
same). Item content (images, titles) is an INPUT, read from the features directory's items table
on every scoring run, so an item the model has never seen still gets its image and title.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training.config import NetworkConfig
from training.data import ItemTable, Tensors
from training.encoders import ImageEncoder, TextEncoder, gather_bags

EMBEDDING_INIT_STD = 0.05  # normal std of every embedding table at initialisation
ARCHITECTURES = ("shared_bottom", "mmoe", "ple")
IMPRESSION_OBJECTIVES = 2  # click and conversion share the impression tower
# The parameters only one objective trains (state_dict name prefixes), for when one state must stand
# for a saved model whose objectives come from different epochs (training.predict.merge_states).
OBJECTIVE_PARAMETERS = {
    "review": ("review_tower.", "review_text_linear."),
    "category": ("category_head.", "image_encoder."),
    "fraud": ("fraud_tower.", "order_categorical_embeddings."),
}


@dataclass(frozen=True)
class MultiTaskModelConfig:
    """Everything needed to rebuild the module before ``load_state_dict``: sizes from the data and the
    network's shape (``NetworkConfig``, as trained)."""

    n_users: int  # vocabulary sizes; embedding tables have one more row (row 0 = unseen)
    n_items: int
    n_categories: int
    order_categorical_sizes: tuple[int, ...]  # vocabulary size per order categorical column
    n_impression_dense: int
    n_order_dense: int
    n_item_classes: int = 0  # categories the image head predicts (listed categories of training items)
    n_scenarios: int = 0  # impression scenarios seen in training (clicks.scenario); row 0 = none or unseen
    network: NetworkConfig = NetworkConfig()

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> MultiTaskModelConfig:
        """Rebuild from config.json. Models saved before the network settings were nested keep them
        at the top level: those are read too, so an older champion still loads."""
        shape_fields = {field.name for field in dataclasses.fields(cls)} - {"network"}
        shape = {key: tuple(value) if isinstance(value, list) else value for key, value in payload.items() if key in shape_fields}
        network = payload.get("network")
        if network is None:  # the flat layout
            flat = {key: value for key, value in payload.items() if key not in shape_fields}
            text_keys = {"text_buckets": "n_buckets", "char_ngram_min": "char_ngram_min", "char_ngram_max": "char_ngram_max",
                         "word_bigrams": "word_bigrams", "strip_accents": "strip_accents"}
            network = {key: value for key, value in flat.items() if key not in text_keys}
            network["text"] = {name: flat[key] for key, name in text_keys.items() if key in flat}
        return cls(**shape, network=NetworkConfig.from_dict(network))


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


class TargetAttention(nn.Module):
    """DIN's local activation unit (Zhou et al. KDD 2018): each history item's weight is a small MLP of
    [history, target, history - target, history * target]; the user's interest in the target is the
    weighted sum of the history (weights not softmax-normalised, as in the paper, so the sum keeps how
    much of the history is relevant). Masked positions (past a sequence's end) weigh nothing."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.unit = nn.Sequential(nn.Linear(4 * dim, hidden_dim), nn.PReLU(), nn.Linear(hidden_dim, 1))

    def forward(self, target: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Interest [b, d] from the target [b, d], history [b, L, d] and mask [b, L]."""
        expanded = target.unsqueeze(1).expand_as(history)  # [b, L, d]
        weights = self.unit(torch.cat([history, expanded, history - expanded, history * expanded], dim=-1)).squeeze(-1)
        weights = weights.masked_fill(~mask, 0.0)  # [b, L]
        return (weights.unsqueeze(-1) * history).sum(dim=1)  # [b, d]


class ScenarioLinear(nn.Module):
    """STAR's star-topology fully connected layer: scenario s computes x @ (W * W_s).T + b + b_s, where
    W, b are shared by every scenario and W_s (initialised to ones), b_s (zeros) are scenario s's own.
    Row 0 is the layer of impressions with no or an unseen scenario."""

    def __init__(self, in_dim: int, out_dim: int, n_scenarios: int) -> None:
        super().__init__()
        self.shared = nn.Linear(in_dim, out_dim)
        self.scenario_weight = nn.Parameter(torch.ones(n_scenarios + 1, out_dim, in_dim))
        self.scenario_bias = nn.Parameter(torch.zeros(n_scenarios + 1, out_dim))

    def forward(self, x: torch.Tensor, scenario_rows: torch.Tensor) -> torch.Tensor:
        """[b, out_dim] for x [b, in_dim] and scenario rows [b]."""
        weight = self.shared.weight * self.scenario_weight  # [s, out, in]: every scenario's layer (scenarios are few)
        every = torch.einsum("bi,soi->bso", x, weight)  # [b, s, out]
        own = every[torch.arange(x.shape[0], device=x.device), scenario_rows]  # [b, out]
        return own + self.shared.bias + self.scenario_bias[scenario_rows]


class ScenarioHead(nn.Module):
    """One star-topology hidden layer (``ScenarioLinear``) and a single logit shared by all scenarios."""

    def __init__(self, in_dim: int, hidden_dim: int, n_scenarios: int) -> None:
        super().__init__()
        self.hidden = ScenarioLinear(in_dim, hidden_dim, n_scenarios)
        self.output = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor, scenario_rows: torch.Tensor) -> torch.Tensor:
        """Logits [b, 1]."""
        return self.output(F.relu(self.hidden(x, scenario_rows)))


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
            for _ in range(IMPRESSION_OBJECTIVES)
        )
        self.shared = nn.ModuleList(make_mlp(in_dim, hidden_dims, dropout)[0] for _ in range(n_shared))
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, n_specific + n_shared) for _ in range(IMPRESSION_OBJECTIVES))
        n_all = IMPRESSION_OBJECTIVES * n_specific + n_shared
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

    def __init__(self, in_dim: int, config: NetworkConfig, n_scenarios: int, n_dense: int) -> None:
        super().__init__()
        self.architecture = config.architecture
        hidden, dropout = tuple(config.hidden_dims), config.dropout
        if config.architecture == "shared_bottom":
            self.bottom, width = make_mlp(in_dim, hidden, dropout)
        elif config.architecture == "mmoe":
            self.experts = nn.ModuleList(make_mlp(in_dim, hidden, dropout)[0] for _ in range(config.n_experts))
            self.gates = nn.ModuleList(nn.Linear(in_dim, config.n_experts) for _ in range(IMPRESSION_OBJECTIVES))
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
        n_scenarios = n_scenarios if config.scenarios else 0
        self.click_head = ScenarioHead(width, config.head_hidden_dim, n_scenarios)
        self.cvr_head = ScenarioHead(width, config.head_hidden_dim, n_scenarios)
        # STAR's auxiliary network: what the surface alone, and with the dense inputs (the position,
        # above all), adds to each logit; it starts at zero so the heads learn the ranking first.
        aux_in = config.scenario_dim + n_dense
        self.scenario_aux = nn.Sequential(nn.Linear(aux_in, config.head_hidden_dim), nn.ReLU(), nn.Linear(config.head_hidden_dim, 2))
        nn.init.zeros_(self.scenario_aux[-1].weight)
        nn.init.zeros_(self.scenario_aux[-1].bias)

    def forward(
        self, x: torch.Tensor, scenario_rows: torch.Tensor, aux_input: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(click_logit, cvr_logit), each [b], for the impression input x [b, in_dim], scenario rows [b]
        and the auxiliary net's input [b, scenario_dim + n_dense]."""
        if self.architecture == "shared_bottom":
            click_input = cvr_input = self.bottom(x)  # [b, width]
        elif self.architecture == "mmoe":
            experts = [expert(x) for expert in self.experts]  # n_experts x [b, width]
            click_input, cvr_input = (mix_experts(gate, x, experts) for gate in self.gates)  # [b, width] each
        else:
            task_inputs, shared = [x] * IMPRESSION_OBJECTIVES, x
            for level in self.levels:
                task_inputs, shared = level(task_inputs, shared)  # tasks x [b, width], [b, width] or None
            click_input, cvr_input = task_inputs
        aux = self.scenario_aux(aux_input)  # [b, 2]
        click_logit = self.click_head(click_input, scenario_rows).squeeze(1) + aux[:, 0]  # [b]
        cvr_logit = self.cvr_head(cvr_input, scenario_rows).squeeze(1) + aux[:, 1]  # [b]
        return click_logit, cvr_logit


class MultiTaskNet(nn.Module):
    """Click + conversion (ESMM), review sentiment, image category and fraud over shared parts."""

    def __init__(self, config: MultiTaskModelConfig) -> None:
        super().__init__()
        self.config = config
        network = config.network
        d = network.embedding_dim
        # Sorted raw ids seen in training; filled by the trainer or by load_state_dict.
        self.register_buffer("user_vocabulary", torch.zeros(config.n_users, dtype=torch.int64))
        self.register_buffer("item_vocabulary", torch.zeros(config.n_items, dtype=torch.int64))
        # Training-set mean and std of the dense inputs: the feature builder's log counts and rates
        # span very different ranges (ages ~8, rates ~0.05), which an MLP trains poorly on.
        self.register_buffer("impression_dense_mean", torch.zeros(config.n_impression_dense))
        self.register_buffer("impression_dense_std", torch.ones(config.n_impression_dense))
        self.register_buffer("order_dense_mean", torch.zeros(config.n_order_dense))
        self.register_buffer("order_dense_std", torch.ones(config.n_order_dense))
        # The id tables grow with the data (hundreds of thousands of rows at 100x the demo) while a step
        # touches ~1k rows: sparse gradients let the optimizer update only those rows (training/loop.py),
        # where a dense gradient made AdamW walk every row on every step (262 ms vs 6.6 ms a step
        # measured at 540k users on one CPU thread).
        self.user_embedding = nn.Embedding(config.n_users + 1, d, sparse=True)
        self.item_embedding = nn.Embedding(config.n_items + 1, d, sparse=True)
        self.category_embedding = nn.Embedding(config.n_categories + 1, d)
        # Scenario-blind (network.scenarios False): one row, so every impression reads the same vector.
        self.scenario_embedding = nn.Embedding((config.n_scenarios if network.scenarios else 0) + 1, network.scenario_dim)

        self.text_encoder = TextEncoder(network.text.n_buckets, network.text_dim)
        self.image_encoder = ImageEncoder(tuple(network.image_channels), network.crop_padding, network.augment, network.image_pool)
        image_dim, text_dim = self.image_encoder.out_dim, self.text_encoder.out_dim
        # At least one output so the module builds when no item has a label (the head then goes unused).
        self.category_head = nn.Linear(image_dim, max(config.n_item_classes, 1))
        n_image = self.category_head.out_features
        self.item_content = nn.Linear(n_image + text_dim + 1, d)  # [class probabilities | title | has_image] -> item space

        self.history_attention = TargetAttention(d, network.attention_hidden_dim) if network.history_length > 0 else None
        interest_dim = d if network.history_length > 0 else 0
        self.impression_tower = ImpressionTower(
            4 * d + config.n_impression_dense + network.scenario_dim + interest_dim,
            network,
            config.n_scenarios,
            config.n_impression_dense,
        )
        review_mlp, review_width = make_mlp(4 * d + text_dim, tuple(network.review_hidden_dims), network.dropout)
        self.review_tower = nn.Sequential(review_mlp, nn.Linear(review_width, 1))
        # Wide part of the review head (Cheng et al., "Wide & Deep", DLRS 2016): one weight per hashed
        # text feature, averaged over the text and added to the logit, i.e. a logistic regression on
        # the bag of n-grams inside the network. Few reviews (a real shop's hundreds) cannot train the
        # deep text path alone: on Olist it lost 0.13 AUC to TF-IDF + logistic regression without it.
        self.review_text_linear = (
            nn.EmbeddingBag(network.text.n_buckets, 1, mode="sum", include_last_offset=True)
            if network.review_text_linear
            else None
        )
        if self.review_text_linear is not None:
            nn.init.zeros_(self.review_text_linear.weight)

        c = network.categorical_embedding_dim
        self.order_categorical_embeddings = nn.ModuleList(
            nn.Embedding(size + 1, c) for size in config.order_categorical_sizes
        )
        fraud_in = d + c * len(config.order_categorical_sizes) + config.n_order_dense
        fraud_mlp, fraud_width = make_mlp(fraud_in, tuple(network.fraud_hidden_dims), network.dropout)
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
        item, history = self.target_and_history_vectors(batch, items)  # [b, d], [b, L, d] or None
        category = self.category_embedding(batch["category_rows"])  # [b, d]
        dense = (batch["dense"] - self.impression_dense_mean) / self.impression_dense_std  # [b, n_dense]
        scenario_rows = self.scenario_rows(batch)  # [b]
        scenario = self.scenario_embedding(scenario_rows)  # [b, scenario_dim]
        parts = [user, item, category, user * item, dense, scenario]
        if self.history_attention is not None:
            if history is None:  # rows without a behaviour sequence
                parts.append(torch.zeros_like(item))
            else:  # DIN: the user's interest in this item, from the recent clicks
                history = history + self.category_embedding(batch["history_category_rows"])  # [b, L, d]
                parts.append(self.history_attention(item + category, history, batch["history_mask"]))  # [b, d]
        x = torch.cat(parts, dim=1)  # [b, 4d + n_dense + scenario_dim (+ d)]
        return self.impression_tower(x, scenario_rows, torch.cat([scenario, dense], dim=1))

    def target_and_history_vectors(self, batch: Tensors, items: ItemTable) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The impressions' item vectors [b, d] and their behaviour sequences' [b, L, d] (zeros past a
        sequence's end; None without sequences), from one ``item_vectors`` call over the targets and
        the real history positions only: every distinct item's title is encoded once, and padding
        (most of a short history) costs nothing (measured on the demo: a step took 21 ms with the
        history encoded apart, position by position)."""
        if self.history_attention is None or "history_item_rows" not in batch:
            return self.item_vectors(batch["item_rows"], batch["content_rows"], items), None
        history_rows = batch["history_item_rows"]  # [b, L]
        b, length = history_rows.shape
        real = batch["history_mask"].reshape(-1).nonzero().squeeze(1)  # [n_real] flat positions
        vectors = self.item_vectors(
            torch.cat([batch["item_rows"], history_rows.reshape(-1)[real]]),
            torch.cat([batch["content_rows"], batch["history_content_rows"].reshape(-1)[real]]),
            items,
        )  # [b + n_real, d]
        history = vectors.new_zeros((b * length, vectors.shape[1])).index_copy(0, real, vectors[b:])  # [b * L, d]
        return vectors[:b], history.reshape(b, length, -1)

    def scenario_rows(self, batch: Tensors) -> torch.Tensor:
        """The batch's scenario rows [b]; all row 0 for a scenario-blind network or rows without scenarios."""
        rows = batch.get("scenario_rows")
        if rows is None or self.scenario_embedding.num_embeddings == 1:
            return torch.zeros_like(batch["user_rows"])
        return rows

    def forward_reviews(self, batch: Tensors, items: ItemTable) -> torch.Tensor:
        """negative_logit [b] for a batch of encoded reviews (with their gathered text bags)."""
        user = self.user_embedding(batch["user_rows"])  # [b, d]
        item = self.item_vectors(batch["item_rows"], batch["content_rows"], items)  # [b, d]
        category = self.category_embedding(batch["category_rows"])  # [b, d]
        text = self.text_encoder(batch["text_ids"], batch["text_offsets"])  # [b, text_dim]
        x = torch.cat([user, item, category, user * item, text], dim=1)  # [b, 4d + text_dim]
        logit = self.review_tower(x).squeeze(1)  # [b]
        if self.review_text_linear is not None:
            ids, offsets = batch["text_ids"], batch["text_offsets"]
            # Each text's features weigh 1/sqrt(count): a sum over the L2-normalised bag, as TF-IDF + logistic
            # regression reads it (a mean would shrink each weight's effect, and its Adam steps, by the count).
            counts = offsets[1:] - offsets[:-1]  # [b]
            weights = torch.repeat_interleave(counts.clamp(min=1).float().rsqrt(), counts)  # [n_ids]
            logit = logit + self.review_text_linear(ids, offsets, per_sample_weights=weights).squeeze(1)  # [b]
        return logit

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


def with_image_features(model: MultiTaskNet, items: ItemTable) -> ItemTable:
    """``items`` on the model's device with its CNN features computed now (eval mode, no gradient)."""
    device = model.item_content.weight.device
    items = items.to(device)
    return dataclasses.replace(items, image_features=model.image_feature_table(items))


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


def autocast_for(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA, a no-op elsewhere."""
    # bf16 autocast on CUDA only: CPU stays in float32 so CPU runs are bitwise reproducible.
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
