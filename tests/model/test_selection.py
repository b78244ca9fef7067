"""Model selection: validation rows come from before day D and are not trained on; each batch kind
stops on its own validation loss and every objective is served from its kind's best epoch."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from training.config import MultiTaskConfig, ValidationSplit
from training.data import read_feature_tables
from training.holdout import validation_rows
from training.predict import load_multitask
from training.selection import KindSelection
from training.splits import split_objective_frames
from training.train import train_multitask


def test_a_kind_keeps_its_lowest_loss_and_stops_after_patience_epochs_without_a_better_one() -> None:
    config = MultiTaskConfig(patience=2, min_delta=0.01)
    selection = KindSelection()
    improved = [selection.update(epoch, loss, config) for epoch, loss in enumerate([0.9, 0.7, 0.695, 0.72], start=1)]
    assert improved == [True, True, False, False]  # 0.695 is better by less than min_delta
    assert (selection.best_epoch, selection.best_loss, selection.stopped) == (2, 0.7, True)
    no_rows = KindSelection()
    assert no_rows.update(1, None, config) and no_rows.update(2, None, config)  # nothing to choose by: the newest
    assert (no_rows.best_epoch, no_rows.stopped) == (2, False)


def test_validation_rows_are_the_days_before_d_and_never_trained_on(features_dir: Path) -> None:
    tables = read_feature_tables(features_dir, impression_splits=("eval",))
    validation = ValidationSplit(days=2, order_share=0.25, item_modulus=10)
    frames = split_objective_frames(tables, validation)
    first_day = tables.ds - timedelta(days=2)
    held_out = frames.validation["impression"]
    assert held_out.height > 0 and set(held_out.get_column("event_date")) == {first_day, first_day + timedelta(days=1)}
    trained = frames.train["impression"].lazy().collect()
    assert trained.get_column("event_date").max() < first_day and set(trained.get_column("split")) == {"train"}
    assert not set(held_out.get_column("event_id")) & set(trained.get_column("event_id"))
    assert frames.evaluation["impression"].get_column("event_date").unique().to_list() == [tables.ds]

    start = datetime.combine(first_day, datetime.min.time())
    assert (frames.validation["review"].get_column("created_at") >= start).all()
    assert (frames.train["review"].get_column("created_at") < start).all() and frames.train["review"].height > 0
    orders = frames.train["order"].height + frames.validation["order"].height
    assert frames.validation["order"].height == round(0.25 * orders)
    assert frames.validation["order"].get_column("created_at").min() >= frames.train["order"].get_column("created_at").max()
    assert (frames.validation["item"].get_column("item_id") % 10 == 1).all()
    assert (frames.train["item"].get_column("item_id") % 10 != 1).all()
    assert set(frames.validation["item"].get_column("split")) == {"train"}  # never the day-D item holdout


def test_sparse_reviews_still_validate_on_their_newest_share() -> None:
    # A shop with a review every few days: the 2 days before D hold none, so the newest share validates.
    days = [datetime(2026, 1, 1) + timedelta(days=3 * index) for index in range(40)]
    reviews = pl.DataFrame({"review_id": range(40), "created_at": days})
    items = pl.DataFrame({"item_id": [1, 2]})
    orders = pl.DataFrame({"order_id": range(10), "created_at": days[:10]})
    train = {"review": reviews, "item": items, "order": orders}
    held_out = validation_rows(train, date(2026, 6, 1), ValidationSplit(days=2, min_review_share=0.1, order_share=0.2))
    assert reviews.filter(held_out["review"])["review_id"].to_list() == [36, 37, 38, 39]
    assert orders.filter(held_out["order"])["order_id"].to_list() == [8, 9]


def test_a_kind_that_stops_trains_no_more_while_the_others_go_on(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = dataclasses.replace(tiny_config, max_epochs=8, patience=1, learning_rate=3e-2)
    with caplog.at_level(logging.INFO, logger="training.loop"):
        train_multitask(features_dir, tmp_path, config)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    history, best = metrics["history"], metrics["best_epochs"]
    stopped_at = {kind: epoch["epoch"] for epoch in history[1:] for kind in epoch["stopped"]}
    assert stopped_at, "no kind stopped within 8 epochs at patience 1"
    kind_of = {"impression": ("click", "purchase"), "review": ("review",), "item": ("category",), "order": ("fraud",)}
    for kind, epoch in stopped_at.items():
        for objective in kind_of[kind]:
            assert all(objective not in later["train"] for later in history[epoch + 1 :]), objective
            assert best[objective] == epoch - config.patience  # the epoch before the one without improvement
    assert best["click"] == best["purchase"]
    # The saved model serves each objective from its epoch: one network per distinct best epoch.
    bundle = load_multitask(tmp_path)
    assert len({id(network) for network in bundle.networks.values()}) == len(set(best.values()))
    assert bundle.network_for("click") is bundle.network_for("purchase")
    scored = pl.read_parquet(tmp_path / "predictions" / "impressions_eval.parquet")
    assert scored.height > 0 and scored.get_column("p_click").null_count() == 0
    # The log: short lines, one per epoch and objective trained in it, the stop and the kept epochs said.
    lines = [record.getMessage() for record in caplog.records if record.name == "training.loop"]
    assert max(len(line) for line in lines) < 120, max(lines, key=len)
    for epoch in history[1:]:
        for objective in epoch["train"]:
            assert sum(line.startswith(f"epoch {epoch['epoch']} {objective}: validation loss") for line in lines) == 1
    for kind, epoch in stopped_at.items():
        for objective in kind_of[kind]:
            assert any(line.startswith(f"epoch {epoch} {objective}:") and line.endswith("stopped (no better validation loss in 1 epochs)")
                       for line in lines), (objective, epoch)  # fmt: skip
    assert lines[-1].startswith(f"training stopped after epoch {history[-1]['epoch']}: all objectives stopped early; kept ")
    assert set(lines[-1].split("; kept ")[1].split()) == {f"{objective}@{epoch}" for objective, epoch in best.items()}
