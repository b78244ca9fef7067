"""The multi-task network: ESMM loss, id lookup, learning per task and architecture, determinism,
reload, evaluation of a saved model, and outputs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from training.config import MultiTaskConfig
from training.summary import TrainingSummary
from etl.contract import OBJECTIVES
from training.data import dense_tensor, encode_impressions, encode_orders, lookup_rows
from training.multitask import esmm_losses, esmm_probabilities
from training.predict import (
    MODEL_FILE,
    evaluate_multitask,
    load_multitask,
    predict_categories,
    predict_impressions,
    predict_orders,
    predict_reviews,
)
from training.train import train_multitask

PREDICTION_FILES = ("impressions_eval", "candidates", "orders", "reviews", "items")


def test_lookup_rows_maps_known_ids_to_positions_and_unseen_to_zero() -> None:
    vocabulary = torch.tensor([3, 7, 11], dtype=torch.int64)
    ids = torch.tensor([7, 3, 5, 11, 100, -1, 0], dtype=torch.int64)
    assert lookup_rows(vocabulary, ids).tolist() == [2, 1, 0, 3, 0, 0, 0]
    assert lookup_rows(torch.zeros(0, dtype=torch.int64), ids).tolist() == [0] * 7


def test_dense_tensor_rejects_nan_naming_the_column() -> None:
    frame = pl.DataFrame({"a": [1.0, 2.0], "b": [float("nan"), 1.0], "c": [None, 3.0]})
    assert dense_tensor(frame, ["a", "c"]).tolist() == [[1.0, 0.0], [2.0, 3.0]]
    with pytest.raises(ValueError, match=r"\['b'\]"):
        dense_tensor(frame, ["a", "b"])


def test_esmm_loss_matches_the_naive_formula_on_moderate_logits() -> None:
    generator = torch.Generator().manual_seed(0)
    click_logit = torch.randn(64, generator=generator) * 2
    cvr_logit = torch.randn(64, generator=generator) * 2
    clicked = (torch.rand(64, generator=generator) < 0.4).float()
    converted = clicked * (torch.rand(64, generator=generator) < 0.5).float()
    click_loss, ctcvr_loss = esmm_losses(click_logit, cvr_logit, clicked, converted)
    p_ctr, p_ctcvr = esmm_probabilities(click_logit, cvr_logit)
    naive_click = torch.nn.functional.binary_cross_entropy(p_ctr.double(), clicked.double())
    naive_ctcvr = torch.nn.functional.binary_cross_entropy(p_ctcvr.double(), converted.double())
    assert click_loss.item() == pytest.approx(naive_click.item(), rel=1e-5)
    assert ctcvr_loss.item() == pytest.approx(naive_ctcvr.item(), rel=1e-5)


def test_esmm_loss_and_gradients_stay_finite_for_extreme_logits() -> None:
    click_logit = torch.tensor([100.0, -100.0, 100.0, -100.0, 40.0], requires_grad=True)
    cvr_logit = torch.tensor([100.0, 100.0, -100.0, -100.0, 40.0], requires_grad=True)
    clicked = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    converted = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])  # the first and last are confident mistakes
    click_loss, ctcvr_loss = esmm_losses(click_logit, cvr_logit, clicked, converted)
    (click_loss + ctcvr_loss).backward()
    assert torch.isfinite(click_loss) and torch.isfinite(ctcvr_loss)
    assert ctcvr_loss.item() > 10  # large, not clipped away
    assert torch.isfinite(click_logit.grad).all() and torch.isfinite(cvr_logit.grad).all()


def base_rate_log_loss(train_labels: np.ndarray, eval_labels: np.ndarray) -> float:
    """Eval log loss of the constant predictor at the training base rate: what a head learns for free."""
    rate = float(np.mean(train_labels))
    return float(-np.mean(eval_labels * np.log(rate) + (1 - eval_labels) * np.log(1 - rate)))


def lowest_validation_losses(metrics: dict, tasks: tuple[str, ...]) -> dict[str, float]:
    """Each task's lowest validation loss over the epochs it trained (a kind stops on its own)."""
    return {
        task: min(epoch["validation"][task] for epoch in metrics["history"][1:] if task in epoch["validation"])
        for task in tasks
    }


def assert_losses_fell(metrics: dict, tasks: tuple[str, ...]) -> None:
    """Every task's training loss fell over the epochs it trained, its lowest validation loss beat the
    untrained model's, and it is served from the epoch of that lowest loss."""
    history = metrics["history"]
    lowest = lowest_validation_losses(metrics, tasks)
    for task in tasks:
        trained = [epoch["train"][task] for epoch in history[1:] if task in epoch["train"]]
        assert trained[-1] < trained[0] or len(trained) == 1, f"{task} training loss did not fall"
        assert lowest[task] < history[0]["validation"][task], f"{task} validation loss did not fall"
        # Served from the epoch of its kind's lowest validation loss (click and purchase: their sum; a
        # later drop smaller than min_delta does not count as an improvement).
        together = [t for t in ("click", "purchase") if t in tasks] if task in ("click", "purchase") else [task]
        kind_loss = lambda epoch: sum(epoch["validation"][t] for t in together)  # noqa: E731
        best = metrics["best_epochs"][task]
        lowest_kind = min(kind_loss(epoch) for epoch in history[1:] if task in epoch["validation"])
        assert kind_loss(history[best]) <= lowest_kind + MultiTaskConfig.min_delta, f"{task} is not served from its best epoch"


@pytest.mark.slow
def test_every_task_learns_the_planted_signal(trained: tuple[TrainingSummary, Path], features_dir: Path) -> None:
    summary, output_dir = trained
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["objectives"]["trained"] == list(OBJECTIVES) and metrics["objectives"]["skipped"] == {}
    assert_losses_fell(metrics, OBJECTIVES)
    for epoch in metrics["history"][1:]:  # every epoch says how fast each objective still training went through
        rates = epoch["samples_per_s_by_objective"]
        assert set(rates) == set(epoch["train"]) and all(rate > 0 for rate in rates.values()), rates
        if "click" in rates:
            assert rates["click"] == pytest.approx(rates["purchase"])  # one impression batch serves both
    assert set(metrics["history"][1]["train"]) == set(OBJECTIVES)
    impressions = pl.read_parquet(features_dir / "impressions.parquet")
    orders = pl.read_parquet(features_dir / "orders.parquet")
    reviews = pl.read_parquet(features_dir / "reviews.parquet")
    labels = {
        "click": (impressions, "clicked"),
        "purchase": (impressions, "converted"),
        "review": (reviews, "negative"),
        "fraud": (orders.filter(pl.col("is_fraud").is_not_null()), "is_fraud"),
    }
    for task, (frame, column) in labels.items():
        train_labels = frame.filter(pl.col("split") == "train").get_column(column).to_numpy()
        eval_labels = frame.filter(pl.col("split") == "eval").get_column(column).to_numpy()
        # The heads start at the base rate, so beating it on day D (chosen on other rows) means they learned
        # from the features. (Conversions are rare and the eval day small: the purchase log loss moves little.)
        factor = 0.99 if task == "purchase" else 0.97
        day_d = summary.metric(task, "log_loss")
        assert day_d < factor * base_rate_log_loss(train_labels, eval_labels), f"{task} no better than its base rate"
    assert summary.metric("click", "auc") > 0.65
    assert summary.metric("purchase", "auc") > 0.6
    assert summary.metric("review", "auc") > 0.75
    assert summary.metric("fraud", "auc") > 0.75
    # Images show the true category; 5% of listings are wrong, and the majority class is ~25%.
    assert summary.metric("category", "accuracy") > 0.7


@pytest.mark.slow
@pytest.mark.parametrize(
    ("architecture", "loss_weighting", "extra"),
    [
        ("mmoe", "fixed", {}),
        ("ple", "fixed", {"ple_levels": 2}),
        ("shared_bottom", "uncertainty", {}),
        ("ple", "gradnorm", {}),
    ],
)
def test_loss_falls_for_every_task_under_each_architecture_and_loss_weighting(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path, architecture: str, loss_weighting: str, extra: dict
) -> None:
    # shared_bottom with fixed weights is the `trained` fixture (test above).
    network = dataclasses.replace(tiny_config.network, architecture=architecture, **extra)
    config = dataclasses.replace(tiny_config, network=network, loss_weighting=loss_weighting, max_epochs=3)
    train_multitask(features_dir, tmp_path, config)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert_losses_fell(metrics, OBJECTIVES)
    weights = metrics["loss_weights"]
    assert set(weights) == set(OBJECTIVES) and all(value > 0 for value in weights.values())
    if loss_weighting == "gradnorm":
        assert sum(weights.values()) == pytest.approx(len(OBJECTIVES), rel=1e-5)
    if loss_weighting != "fixed":
        assert len(set(weights.values())) > 1, "the learned weights never moved"


@pytest.mark.slow
def test_outputs_have_the_promised_files_and_columns(trained: tuple[TrainingSummary, Path], features_dir: Path) -> None:
    summary, output_dir = trained
    impressions = pl.read_parquet(features_dir / "impressions.parquet")
    orders = pl.read_parquet(features_dir / "orders.parquet")
    candidates = pl.read_parquet(features_dir / "candidates.parquet")
    reviews = pl.read_parquet(features_dir / "reviews.parquet")
    items = pl.read_parquet(features_dir / "items.parquet")
    predictions = {name: pl.read_parquet(output_dir / "predictions" / f"{name}.parquet") for name in PREDICTION_FILES}

    assert predictions["impressions_eval"].columns == ["event_id", "p_click", "p_purchase"]
    assert predictions["impressions_eval"].height == impressions.filter(pl.col("split") == "eval").height
    assert predictions["candidates"].columns == ["user_id", "item_id", "scenario", "p_click", "p_purchase"]
    assert predictions["candidates"].height == candidates.height
    assert predictions["orders"].columns == ["order_id", "split", "p_fraud"]
    assert sorted(predictions["orders"].get_column("split").unique().to_list()) == ["eval", "score"]
    assert predictions["orders"].height == orders.filter(pl.col("split").is_in(["eval", "score"])).height
    assert predictions["reviews"].columns == ["review_id", "split", "p_negative"]
    assert predictions["reviews"].get_column("review_id").to_list() == (
        reviews.filter(pl.col("split") == "eval").get_column("review_id").to_list()
    )
    scored_items = predictions["items"]
    assert scored_items.columns == ["item_id", "split", "listed_category", "predicted_category", "confidence"]
    assert scored_items.get_column("item_id").to_list() == (
        items.filter(pl.col("image").is_not_null()).get_column("item_id").to_list()
    )  # every item with an image, train and eval
    assert set(scored_items.get_column("predicted_category").unique()) <= set(items.get_column("category").unique())
    for frame, column in [
        (predictions["impressions_eval"], "p_click"),
        (predictions["candidates"], "p_purchase"),
        (predictions["orders"], "p_fraud"),
        (predictions["reviews"], "p_negative"),
        (scored_items, "confidence"),
    ]:
        values = frame.get_column(column).to_numpy()
        assert np.isfinite(values).all() and (values > 0).all() and (values <= 1).all(), column

    metrics = json.loads((output_dir / "metrics.json").read_text())
    binary = {(task, metric) for task in ("click", "purchase", "review", "fraud") for metric in ("auc", "pr_auc", "log_loss")}
    assert {(row["task"], row["metric"]) for row in metrics["metrics"]} == binary | {
        ("category", "accuracy"),
        ("category", "log_loss"),
    }
    category_rows = items.filter((pl.col("split") == "eval") & pl.col("image").is_not_null()).height
    assert {row["n_rows"] for row in metrics["metrics"] if row["task"] == "category"} == {category_rows}
    assert json.loads(json.dumps(summary.to_dict()))["model_version"] == summary.model_version
    assert summary.model_version.startswith("multitask-20260204-")
    # Training rows are the train split less the validation rows (training.config.ValidationSplit).
    validation = MultiTaskConfig().validation
    train_orders = orders.filter((pl.col("split") == "train") & pl.col("is_fraud").is_not_null()).height
    assert summary.n_train["fraud"] == train_orders - round(validation.order_share * train_orders)
    first_validation_day = datetime(2026, 2, 4) - timedelta(days=validation.days)
    train_reviews = reviews.filter((pl.col("split") == "train") & (pl.col("created_at") < first_validation_day))
    assert 0 < summary.n_train["review"] == train_reviews.height < reviews.filter(pl.col("split") == "train").height
    first_validation_date = first_validation_day.date()
    train_impressions = impressions.filter((pl.col("split") == "train") & (pl.col("event_date") < first_validation_date))
    assert summary.n_train["click"] == train_impressions.height
    listed = items.filter((pl.col("split") == "train") & pl.col("image").is_not_null() & pl.col("category").is_not_null())
    assert summary.n_train["category"] <= listed.filter(pl.col("item_id") % validation.item_modulus != 1).height
    config = json.loads((output_dir / "config.json").read_text())
    assert config["features"]["order_categorical"] == ["payment_method", "channel", "ship_country"]
    assert config["objectives"] == list(OBJECTIVES)


@pytest.mark.slow
def test_esmm_purchase_never_exceeds_click(trained: tuple[TrainingSummary, Path]) -> None:
    _, output_dir = trained
    for name in ("impressions_eval", "candidates"):
        frame = pl.read_parquet(output_dir / "predictions" / f"{name}.parquet")
        assert (frame.get_column("p_purchase") <= frame.get_column("p_click")).all()
        assert (frame.get_column("p_purchase") < frame.get_column("p_click")).any()


@pytest.mark.slow
def test_saved_model_reloads_with_weights_only_and_every_head_scores_identically(
    trained: tuple[TrainingSummary, Path], features_dir: Path
) -> None:
    _, output_dir = trained
    states = torch.load(output_dir / MODEL_FILE, weights_only=True)  # one state_dict per best epoch
    served = json.loads((output_dir / "config.json").read_text())["served_by"]
    assert set(served) == set(OBJECTIVES) and set(served.values()) == set(states)
    assert served["click"] == served["purchase"]  # p_purchase = p_click * p_cvr: one network
    assert all(isinstance(value, torch.Tensor) for state in states.values() for value in state.values())
    best = json.loads((output_dir / "metrics.json").read_text())["best_epochs"]
    assert len(states) == len(set(best.values()))  # objectives of one epoch share a state
    user_vocabulary = states[served["click"]]["user_vocabulary"]
    assert user_vocabulary.dtype == torch.int64 and bool((user_vocabulary[1:] > user_vocabulary[:-1]).all())

    bundle = load_multitask(output_dir)
    items = pl.read_parquet(features_dir / "items.parquet")
    saved = {name: pl.read_parquet(output_dir / "predictions" / f"{name}.parquet") for name in PREDICTION_FILES}

    impressions = pl.read_parquet(features_dir / "impressions.parquet").filter(pl.col("split") == "eval")
    rescored = predict_impressions(bundle, impressions, items=items)
    for column in ("p_click", "p_purchase"):
        assert np.array_equal(rescored.get_column(column).to_numpy(), saved["impressions_eval"].get_column(column).to_numpy())
    candidates = predict_impressions(bundle, pl.read_parquet(features_dir / "candidates.parquet"), items=items)
    assert np.array_equal(candidates.get_column("p_purchase").to_numpy(), saved["candidates"].get_column("p_purchase").to_numpy())

    orders = pl.read_parquet(features_dir / "orders.parquet").filter(pl.col("split").is_in(["eval", "score"]))
    assert np.array_equal(
        predict_orders(bundle, orders).get_column("p_fraud").to_numpy(), saved["orders"].get_column("p_fraud").to_numpy()
    )
    reviews = pl.read_parquet(features_dir / "reviews.parquet").filter(pl.col("split") == "eval")
    assert np.array_equal(
        predict_reviews(bundle, reviews, items).get_column("p_negative").to_numpy(),
        saved["reviews"].get_column("p_negative").to_numpy(),
    )
    categories = predict_categories(bundle, items)
    assert categories.select(saved["items"].columns).equals(saved["items"])

    # Without the items table every item scores as one without content: other, still valid, scores.
    bare = predict_impressions(bundle, impressions).get_column("p_click").to_numpy()
    assert not np.array_equal(bare, saved["impressions_eval"].get_column("p_click").to_numpy())
    assert np.isfinite(bare).all()


@pytest.mark.slow
def test_evaluate_multitask_on_a_saved_model_equals_the_metrics_it_wrote(
    trained: tuple[TrainingSummary, Path], features_dir: Path
) -> None:
    summary, output_dir = trained
    assert evaluate_multitask(output_dir, features_dir) == summary.metrics
    written = json.loads((output_dir / "metrics.json").read_text())["metrics"]
    assert evaluate_multitask(output_dir, features_dir) == written


@pytest.mark.slow
def test_a_champion_saved_before_the_network_config_was_nested_still_loads_and_scores_the_same(
    trained: tuple[TrainingSummary, Path], features_dir: Path, tmp_path: Path
) -> None:
    # Until the layout change, config.json kept the network's settings flat beside the sizes
    # ("text_buckets", "char_ngram_min", ...) and the trained objectives under "tasks". A champion
    # registered then must still be evaluated by the gate and score a rejected night.
    summary, output_dir = trained
    legacy = tmp_path / "legacy"
    shutil.copytree(output_dir, legacy)
    payload = json.loads((legacy / "config.json").read_text())
    network = payload["model"].pop("network")
    text = network.pop("text")
    payload["model"].update(network)
    payload["model"].update(
        text_buckets=text["n_buckets"], char_ngram_min=text["char_ngram_min"], char_ngram_max=text["char_ngram_max"],
        word_bigrams=text["word_bigrams"], strip_accents=text["strip_accents"],
    )  # fmt: skip
    payload["tasks"] = payload.pop("objectives")
    (legacy / "config.json").write_text(json.dumps(payload))

    assert load_multitask(legacy).model.config == load_multitask(output_dir).model.config
    assert evaluate_multitask(legacy, features_dir) == summary.metrics


@pytest.mark.slow
def test_evaluate_multitask_scores_unseen_ids_and_categories_without_crashing(
    trained: tuple[TrainingSummary, Path], features_dir: Path, tmp_path: Path
, copy_features) -> None:
    summary, output_dir = trained
    shift = pl.col("user_id") + 10_000_000  # every user is new to the model
    items = pl.read_parquet(features_dir / "items.parquet")
    renamed = set(items.get_column("item_id").to_list()[::2])  # half the items: a category the model never saw
    copy = copy_features(
        features_dir,
        tmp_path / "features",
        replace={
            "impressions.parquet": pl.read_parquet(features_dir / "impressions.parquet").with_columns(shift),
            "reviews.parquet": pl.read_parquet(features_dir / "reviews.parquet").with_columns(shift),
            "orders.parquet": pl.read_parquet(features_dir / "orders.parquet").with_columns(shift),
            "items.parquet": items.with_columns(
                pl.when(pl.col("item_id").is_in(renamed)).then(pl.lit("brand_new")).otherwise(pl.col("category")).alias("category")
            ),
        },
    )
    rows = {(row["task"], row["metric"]): row for row in evaluate_multitask(output_dir, copy)}
    assert set(rows) == {(row["task"], row["metric"]) for row in summary.metrics}
    assert all(row["value"] is not None and np.isfinite(row["value"]) for row in rows.values())
    # The renamed items count as wrong whatever the model says (it cannot predict "brand_new"), with
    # the clipped log loss of a zero probability; the others score as before.
    scored = pl.read_parquet(output_dir / "predictions" / "items.parquet").filter(pl.col("split") == "eval")
    kept = scored.filter(~pl.col("item_id").is_in(renamed))
    n = scored.height
    right = int((kept.get_column("predicted_category") == kept.get_column("listed_category")).sum())
    assert rows[("category", "accuracy")] == {"task": "category", "metric": "accuracy", "value": right / n, "n_rows": n}
    assert rows[("category", "log_loss")]["value"] > summary.metric("category", "log_loss") + 5


@pytest.mark.slow
def test_unseen_ids_and_categories_score_through_the_default_row(trained: tuple[TrainingSummary, Path]) -> None:
    _, output_dir = trained
    bundle = load_multitask(output_dir)
    known_user = int(bundle.model.user_vocabulary[0])
    known_item = int(bundle.model.item_vocabulary[0])
    dense = {name: [0.1, 0.1, 0.1] for name in bundle.spec.impression_dense}
    impressions = pl.DataFrame(
        {
            "user_id": [known_user, 123_456_789, None],
            "item_id": [known_item, 987_654_321, known_item],
            "category": [bundle.spec.categories[0], "brand_new_category", None],
            **dense,
        },
        schema_overrides={"user_id": pl.Int64, "item_id": pl.Int64, "category": pl.String},
    )
    tensors = encode_impressions(bundle.model, bundle.spec, impressions)
    assert tensors["user_rows"].tolist()[1:] == [0, 0] and tensors["user_rows"][0] > 0
    assert tensors["item_rows"].tolist()[:2] == [1, 0] and tensors["category_rows"].tolist() == [1, 0, 0]
    scored = predict_impressions(bundle, impressions)
    p_click = scored.get_column("p_click").to_numpy()
    assert np.isfinite(p_click).all() and ((p_click > 0) & (p_click < 1)).all()

    orders = pl.DataFrame(
        {
            "order_id": [1, 2],
            "user_id": [55_555_555, known_user],
            **{name: [0.0, 1.0] for name in bundle.spec.order_dense},
            "payment_method": ["bitcoin_atm", None],
            "channel": ["web", "fax"],
            "ship_country": ["ZZ", "DE"],
        }
    )
    codes = encode_orders(bundle.model, bundle.spec, orders)["categorical_rows"]
    assert codes[0, 0] == 0 and codes[1, 0] == 0 and codes[1, 1] == 0 and codes[0, 1] > 0
    p_fraud = predict_orders(bundle, orders).get_column("p_fraud").to_numpy()
    assert np.isfinite(p_fraud).all() and ((p_fraud > 0) & (p_fraud < 1)).all()

    reviews = pl.DataFrame(
        {"user_id": [999], "item_id": [888], "category": ["nope"], "text": ["Produto péssimo, não recomendo"]},
        schema_overrides={"user_id": pl.Int64, "item_id": pl.Int64},
    )
    p_negative = predict_reviews(bundle, reviews).get_column("p_negative").to_numpy()
    assert np.isfinite(p_negative).all() and 0 < p_negative[0] < 1


@pytest.mark.slow
def test_same_seed_gives_bitwise_identical_predictions(
    trained: tuple[TrainingSummary, Path], features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
) -> None:
    first_summary, first_dir = trained
    second_summary = train_multitask(features_dir, tmp_path / "again", tiny_config)
    assert second_summary.model_version == first_summary.model_version
    for name in PREDICTION_FILES:
        first = pl.read_parquet(first_dir / "predictions" / f"{name}.parquet")
        second = pl.read_parquet(tmp_path / "again" / "predictions" / f"{name}.parquet")
        assert first.height > 0 and first.equals(second), name
    first_state = torch.load(first_dir / MODEL_FILE, weights_only=True)
    second_state = torch.load(tmp_path / "again" / MODEL_FILE, weights_only=True)
    assert first_state.keys() == second_state.keys()
    assert all(
        torch.equal(first_state[name][key], second_state[name][key]) for name in first_state for key in first_state[name]
    )

    # The check above can fail: another seed gives other weights, other predictions, another version.
    other = train_multitask(features_dir, tmp_path / "other", dataclasses.replace(tiny_config, seed=8, max_epochs=1))
    assert other.model_version != first_summary.model_version
    for name, column in (("impressions_eval", "p_click"), ("reviews", "p_negative"), ("items", "confidence")):
        first = pl.read_parquet(first_dir / "predictions" / f"{name}.parquet").get_column(column).to_numpy()
        changed = pl.read_parquet(tmp_path / "other" / "predictions" / f"{name}.parquet").get_column(column).to_numpy()
        assert not np.array_equal(first, changed), name


def read_predictions(output_dir: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(output_dir / "predictions" / f"{name}.parquet") for name in PREDICTION_FILES}


def test_a_deployment_with_only_item_images_trains_the_category_task(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
, copy_features) -> None:
    copy = copy_features(
        features_dir,
        tmp_path / "features",
        objectives_available=["category"],
        empty=("impressions.parquet", "orders.parquet", "reviews.parquet", "candidates.parquet"),
    )
    summary = train_multitask(copy, tmp_path / "out", dataclasses.replace(tiny_config, max_epochs=2))
    assert {row["task"] for row in summary.metrics} == {"category"}
    assert set(summary.n_train) == {"category"}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["objectives"]["trained"] == ["category"]
    assert set(metrics["objectives"]["skipped"]) == {"click", "purchase", "review", "fraud"}
    predictions = read_predictions(tmp_path / "out")
    assert predictions["items"].height > 0
    assert all(predictions[name].height == 0 for name in ("impressions_eval", "candidates", "orders", "reviews"))
    assert predictions["orders"].columns == ["order_id", "split", "p_fraud"]  # empty, with the right schema
    assert evaluate_multitask(tmp_path / "out", copy) == summary.metrics


def test_a_deployment_with_only_reviews_and_no_images_trains_the_review_task(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
, copy_features) -> None:
    # As Olist: reviews and items with titles but no images, no clicks, no fraud labels.
    items = pl.read_parquet(features_dir / "items.parquet").with_columns(pl.lit(None, dtype=pl.Binary).alias("image"))
    copy = copy_features(
        features_dir,
        tmp_path / "features",
        replace={"items.parquet": items},
        objectives_available=["review", "category"],
        empty=("impressions.parquet", "orders.parquet", "candidates.parquet"),
    )
    summary = train_multitask(copy, tmp_path / "out", dataclasses.replace(tiny_config, max_epochs=2))
    assert {row["task"] for row in summary.metrics} == {"review"}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "no labelled split == 'train' rows" in metrics["objectives"]["skipped"]["category"]
    assert "objectives_available" in metrics["objectives"]["skipped"]["click"]
    predictions = read_predictions(tmp_path / "out")
    assert predictions["reviews"].height > 0 and predictions["items"].height == 0


def test_single_task_purchase_trains_only_the_esmm_ctcvr_loss(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
) -> None:
    summary = train_multitask(features_dir, tmp_path, dataclasses.replace(tiny_config, objectives=("purchase",), max_epochs=1))
    assert {row["task"] for row in summary.metrics} == {"purchase"}
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert set(history[1]["train"]) == {"purchase"} and set(history[1]["loss_weights"]) == {"purchase"}
    scored = pl.read_parquet(tmp_path / "predictions" / "impressions_eval.parquet")
    # The click head is only a factor of p_ctcvr here, not a click model: no p_click is published.
    assert scored.get_column("p_click").null_count() == scored.height
    assert scored.get_column("p_purchase").null_count() == 0
    assert pl.read_parquet(tmp_path / "predictions" / "reviews.parquet").height == 0


def test_training_without_labelled_orders_skips_fraud_and_writes_an_empty_fraud_file(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
, copy_features) -> None:
    orders = pl.read_parquet(features_dir / "orders.parquet").with_columns(
        pl.when(pl.col("split") == "train").then(pl.lit("unused")).otherwise(pl.col("split")).alias("split")
    )
    copy = copy_features(features_dir, tmp_path / "features", replace={"orders.parquet": orders})
    config = dataclasses.replace(tiny_config, max_epochs=1, objectives=("click", "fraud"))
    summary = train_multitask(copy, tmp_path / "out", config)
    assert "fraud" not in summary.n_train and summary.metric("fraud", "auc") is None
    assert summary.metric("click", "auc") is not None
    assert pl.read_parquet(tmp_path / "out" / "predictions" / "orders.parquet").height == 0
    json.loads((tmp_path / "out" / "metrics.json").read_text())  # still strict JSON

    with pytest.raises(ValueError, match="no objective can be trained"):
        train_multitask(copy, tmp_path / "none", dataclasses.replace(config, objectives=("fraud",)))
    with pytest.raises(ValueError, match="unknown objectives"):
        train_multitask(copy, tmp_path / "none", dataclasses.replace(config, objectives=("ctr",)))


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("SHOPMTL_TEST_COMPILE") != "1",
    reason="torch.compile on CPU spends ~16 s compiling C++ kernels (inductor) on 2 cores, over this suite's "
    "budget; set SHOPMTL_TEST_COMPILE=1 to run it",
)
def test_the_compile_flag_trains_and_scores_like_eager(
    trained: tuple[TrainingSummary, Path], features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
) -> None:
    config = dataclasses.replace(tiny_config, max_epochs=1)
    eager = train_multitask(features_dir, tmp_path / "eager", config)
    compiled = train_multitask(features_dir, tmp_path / "compiled", dataclasses.replace(config, compile=True))
    assert set(torch.load(tmp_path / "compiled" / MODEL_FILE, weights_only=True)) == set(
        torch.load(tmp_path / "eager" / MODEL_FILE, weights_only=True)
    )  # compiling in place keeps the state_dict keys, so compiled models load anywhere
    for task, metric in (("click", "auc"), ("review", "auc"), ("category", "accuracy"), ("fraud", "auc")):
        assert compiled.metric(task, metric) == pytest.approx(eager.metric(task, metric), abs=0.02), task
