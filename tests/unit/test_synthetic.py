"""The demo warehouse generator: determinism, day independence, idempotent re-runs, integrity and the
planted structure, on real SQLite files (and one real PostgreSQL database)."""
from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from demo.synthetic import generate_warehouse, main
from demo.text import CATEGORY_NOUNS
from demo.world import CATEGORIES, FIRST_DAY, ID_BLOCK, day_id_range
from etl.warehouse import TABLE_SCHEMAS, create_warehouse_engine, read_frame

D1 = date(2026, 1, 1)
DAY = timedelta(days=1)
GENERATED_TABLES = (
    "users", "items", "item_images", "clicks", "orders", "order_items", "fraud_labels", "reviews",
    "truth_impressions", "truth_orders", "truth_reviews", "truth_items",
)
SORT_KEYS = {"order_items": ["order_id", "item_id"]}


def read_table(url: str, table: str) -> pl.DataFrame:
    """The whole table, typed by the contract and sorted by its key."""
    engine = create_warehouse_engine(url)
    try:
        with engine.connect() as conn:
            frame = read_frame(conn, f"SELECT * FROM {table}", table=table)
    finally:
        engine.dispose()
    return frame.sort(SORT_KEYS.get(table, [next(iter(TABLE_SCHEMAS[table]))]))


def read_tables(url: str) -> dict[str, pl.DataFrame]:
    return {table: read_table(url, table) for table in GENERATED_TABLES}


def assert_same_tables(left: dict[str, pl.DataFrame], right: dict[str, pl.DataFrame]) -> None:
    for table in GENERATED_TABLES:
        assert left[table].height > 0, table
        assert left[table].equals(right[table]), f"{table} differs"


def rows_of_day(frame: pl.DataFrame, column: str, day: date) -> pl.DataFrame:
    low, high = day_id_range(day)
    return frame.filter((pl.col(column) >= low) & (pl.col(column) < high))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    """A week at scale 0.5, read back once for the read-only checks."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'warehouse.db'}"
    written = generate_warehouse(url, D1, D1 + 6 * DAY, scale=0.5, seed=7)
    tables = read_tables(url)
    assert written["orders"] == tables["orders"].height
    return tables


def url_in(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


def test_same_seed_gives_identical_tables_and_another_seed_does_not(tmp_path: Path) -> None:
    first, second, other = (url_in(tmp_path, f"{name}.db") for name in ("a", "b", "c"))
    for url, seed in ((first, 3), (second, 3), (other, 4)):
        generate_warehouse(url, D1, D1 + DAY, scale=0.1, seed=seed)
    assert_same_tables(read_tables(first), read_tables(second))
    assert not read_table(first, "clicks").equals(read_table(other, "clicks"))


def test_rerunning_a_day_replaces_it_without_duplicates(tmp_path: Path) -> None:
    url = url_in(tmp_path, "w.db")
    generate_warehouse(url, D1, D1 + 2 * DAY, scale=0.3, seed=5)
    before = read_tables(url)
    written = generate_warehouse(url, D1 + DAY, D1 + DAY, scale=0.3, seed=5)
    after = read_tables(url)
    assert_same_tables(before, after)
    assert written["clicks"] == rows_of_day(after["clicks"], "event_id", D1 + DAY).height
    for table, key in (("users", "user_id"), ("clicks", "event_id"), ("orders", "order_id"), ("reviews", "review_id")):
        assert after[table][key].is_unique().all(), table


def test_days_do_not_depend_on_the_generated_range(tmp_path: Path) -> None:
    pieces, whole = url_in(tmp_path, "pieces.db"), url_in(tmp_path, "whole.db")
    generate_warehouse(pieces, D1, D1 + 2 * DAY, scale=0.3, seed=11)
    generate_warehouse(pieces, D1 + DAY, D1 + 3 * DAY, scale=0.3, seed=11)
    generate_warehouse(whole, D1, D1 + 3 * DAY, scale=0.3, seed=11)
    # d2..d3 were written by both runs of `pieces`; everything must match the single run.
    assert_same_tables(read_tables(pieces), read_tables(whole))


def test_a_warehouse_seeded_up_to_now_holds_no_label_or_review_from_the_future(tmp_path: Path) -> None:
    url, whole = url_in(tmp_path, "now"), url_in(tmp_path, "whole")
    known_before = datetime.combine(D1 + 5 * DAY, datetime.min.time()) + timedelta(hours=6)  # 06:00 the day after
    generate_warehouse(url, D1, D1 + 4 * DAY, scale=0.3, seed=5, known_before=known_before)
    generate_warehouse(whole, D1, D1 + 4 * DAY, scale=0.3, seed=5)
    now, later = read_tables(url), read_tables(whole)
    for table, column in (("fraud_labels", "labeled_at"), ("reviews", "created_at")):
        kept = later[table].filter(pl.col(column) < known_before)
        assert 0 < kept.height < later[table].height, table  # some had arrived by then, some not yet
        assert now[table].equals(kept), table
    assert now["orders"].equals(later["orders"]) and now["clicks"].equals(later["clicks"])


def test_rows_grow_linearly_with_scale(tmp_path: Path) -> None:
    small, large = url_in(tmp_path, "small.db"), url_in(tmp_path, "large.db")
    counts_small = generate_warehouse(small, D1, D1 + DAY, scale=0.2, seed=7)
    counts_large = generate_warehouse(large, D1, D1 + DAY, scale=0.4, seed=7)
    for table in ("users", "items", "clicks", "orders", "order_items", "reviews"):
        ratio = counts_large[table] / counts_small[table]
        assert 1.6 < ratio < 2.4, (table, ratio)


def test_sizes_match_the_documented_rows_per_day(demo: dict[str, pl.DataFrame]) -> None:
    days, scale = 7, 0.5
    clicks = demo["clicks"]
    per_day = {
        kind: clicks.filter(pl.col("event_type") == kind).height / days / scale for kind in ("impression", "click")
    }
    assert 4000 < per_day["impression"] < 6000
    assert 0.08 < per_day["click"] / per_day["impression"] < 0.12
    assert 250 < demo["orders"].height / days / scale < 350
    assert 80 < demo["reviews"].height / days / scale < 120
    base_users = demo["users"].filter(pl.col("user_id") < ID_BLOCK).height
    assert base_users == 2500
    assert demo["items"].filter(pl.col("item_id") < ID_BLOCK).height == 400


def test_fraud_rate_and_labels(demo: dict[str, pl.DataFrame]) -> None:
    orders, labels, truth = demo["orders"], demo["fraud_labels"], demo["truth_orders"]
    assert 0.02 <= labels.height / orders.height <= 0.05
    assert 0.02 <= truth["p_fraud"].mean() <= 0.05
    assert labels["is_fraud"].all()
    joined = labels.join(orders, on="order_id", how="left")
    assert joined["created_at"].null_count() == 0
    delay_days = (joined["labeled_at"] - joined["created_at"]).dt.total_seconds() / 86400
    assert delay_days.min() >= 1 and delay_days.max() <= 30
    # Labels come in 1..30 days, spread out rather than all at once.
    assert delay_days.std() > 5
    # Fraud orders are the risky ones: far higher truth p_fraud than the rest.
    fraud_ids = labels["order_id"]
    is_fraud = truth["order_id"].is_in(fraud_ids.implode())
    assert truth.filter(is_fraud)["p_fraud"].mean() > 5 * truth.filter(~is_fraud)["p_fraud"].mean()


def test_fraud_signals_are_visible_in_the_raw_rows(demo: dict[str, pl.DataFrame]) -> None:
    orders = demo["orders"].join(demo["users"], on="user_id").with_columns(
        pl.col("order_id").is_in(demo["fraud_labels"]["order_id"].implode()).alias("fraud"),
        ((pl.col("created_at") - pl.col("signup_at")).dt.total_hours() / 24).alias("age_days"),
        (pl.col("ship_country") != pl.col("country")).alias("mismatch"),
        pl.col("user_id").n_unique().over("device_id").alias("device_users"),
    )
    fraud, legit = orders.filter(pl.col("fraud")), orders.filter(~pl.col("fraud"))
    assert fraud["age_days"].median() < 30 < legit["age_days"].median()
    assert fraud["mismatch"].mean() > 4 * legit["mismatch"].mean()
    assert fraud["amount"].median() > 1.5 * legit["amount"].median()
    assert fraud["device_users"].mean() > 2 * legit["device_users"].mean()
    assert fraud["payment_method"].is_in(["gift_card", "crypto"]).mean() > 3 * legit["payment_method"].is_in(
        ["gift_card", "crypto"]
    ).mean()


def test_referential_integrity(demo: dict[str, pl.DataFrame]) -> None:
    users, items, orders = demo["users"]["user_id"], demo["items"]["item_id"], demo["orders"]["order_id"]
    checks = [
        (demo["clicks"]["user_id"], users),
        (demo["clicks"]["item_id"], items),
        (demo["orders"]["user_id"], users),
        (demo["order_items"]["order_id"], orders),
        (demo["order_items"]["item_id"], items),
        (demo["reviews"]["user_id"], users),
        (demo["reviews"]["item_id"], items),
        (demo["reviews"]["order_id"].drop_nulls(), orders),
        (demo["fraud_labels"]["order_id"], orders),
        (demo["item_images"]["item_id"], items),
        (demo["truth_items"]["item_id"], items),
        (demo["truth_orders"]["order_id"], orders),
        (demo["truth_reviews"]["review_id"], demo["reviews"]["review_id"]),
    ]
    for child, parent in checks:
        assert child.is_in(parent.implode()).all(), child.name
    impressions = demo["clicks"].filter(pl.col("event_type") == "impression")["event_id"]
    assert demo["truth_impressions"]["event_id"].sort().equals(impressions.sort())
    assert demo["orders"]["order_id"].is_in(demo["order_items"]["order_id"].implode()).all()
    # Events never happen before the user signed up or the item was listed.
    timed = demo["clicks"].join(demo["users"], on="user_id").join(demo["items"], on="item_id")
    assert (timed["event_time"] > timed["signup_at"]).all() and (timed["event_time"] > timed["created_at"]).all()


def test_rows_belong_to_the_day_their_ids_encode(demo: dict[str, pl.DataFrame]) -> None:
    for table, key, time_column in (
        ("clicks", "event_id", "event_time"),
        ("orders", "order_id", "created_at"),
        ("users", "user_id", "signup_at"),
        ("items", "item_id", "created_at"),
    ):
        frame = demo[table].filter(pl.col(key) >= ID_BLOCK)
        id_day = (pl.col(key) // ID_BLOCK).cast(pl.Int64)
        time_day = (pl.col(time_column).dt.date() - pl.lit(date(2000, 1, 1))).dt.total_days()
        assert frame.select((id_day == time_day).all()).item(), table
    reviews = demo["reviews"].drop_nulls("order_id").join(demo["orders"], on="order_id", suffix="_order")
    delay = (reviews["created_at"] - reviews["created_at_order"]).dt.total_seconds() / 86400
    assert delay.min() >= 1 and delay.max() <= 14
    assert ((reviews["review_id"] // ID_BLOCK) == (reviews["order_id"] // ID_BLOCK)).all()
    assert 0 < demo["reviews"]["order_id"].null_count() < 0.1 * demo["reviews"].height
    base_signup = demo["users"].filter(pl.col("user_id") < ID_BLOCK)["signup_at"]
    assert base_signup.max() < datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day)


def impression_labels(demo: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Impressions with the pipeline's click label: a later click on the same item in the same session."""
    clicks = demo["clicks"]
    impressions = clicks.filter(pl.col("event_type") == "impression").join(demo["truth_impressions"], on="event_id")
    click_events = clicks.filter(pl.col("event_type") == "click").select(
        "user_id", "item_id", "session_id", pl.col("event_time").alias("clicked_at")
    )
    return (
        impressions.join(click_events, on=["user_id", "item_id", "session_id"], how="left")
        .with_columns((pl.col("clicked_at") > pl.col("event_time")).fill_null(False).alias("clicked"))
        .group_by("event_id")
        .agg(pl.all().sort_by("clicked", descending=True).first())
    )


def test_click_structure_is_planted(demo: dict[str, pl.DataFrame]) -> None:
    labelled = impression_labels(demo)
    clicked, unclicked = labelled.filter(pl.col("clicked")), labelled.filter(~pl.col("clicked"))
    assert clicked["p_click"].mean() > 1.5 * unclicked["p_click"].mean()
    assert 0.08 < labelled["clicked"].mean() < 0.12
    by_position = labelled.group_by("position").agg(pl.col("clicked").mean()).sort("position")
    assert by_position["clicked"][0] > 1.5 * by_position["clicked"][-1]
    # Every click, add_to_cart has a NULL position; impressions are numbered in the order they were shown.
    clicks = demo["clicks"]
    assert clicks.filter(pl.col("event_type") != "impression")["position"].null_count() == clicks.filter(
        pl.col("event_type") != "impression"
    ).height
    shown = clicks.filter(pl.col("event_type") == "impression").sort("event_time")
    assert shown.group_by("session_id").agg(pl.col("position").diff().drop_nulls().min().alias("step"))[
        "step"
    ].drop_nulls().min() >= 1
    assert set(clicks["event_type"].unique()) == {"impression", "click", "add_to_cart"}


def test_conversions_follow_clicks_within_hours_at_the_truth_rate(demo: dict[str, pl.DataFrame]) -> None:
    labelled = impression_labels(demo).filter(pl.col("clicked"))
    bought = demo["order_items"].join(demo["orders"], on="order_id").select(
        "user_id", "item_id", pl.col("created_at").alias("ordered_at")
    )
    converted = (
        labelled.join(bought, on=["user_id", "item_id"], how="left")
        .with_columns(
            (
                (pl.col("ordered_at") > pl.col("clicked_at"))
                & (pl.col("ordered_at") <= pl.col("clicked_at") + pl.duration(hours=24))
            )
            .fill_null(False)
            .alias("converted"),
            ((pl.col("ordered_at") - pl.col("clicked_at")).dt.total_seconds() / 3600).alias("delay_hours"),
        )
        .group_by("event_id")
        .agg(
            pl.col("converted").any(),
            pl.col("p_convert").first(),
            pl.col("delay_hours").filter(pl.col("converted")).min(),
        )
    )
    rate, expected = converted["converted"].mean(), converted["p_convert"].mean()
    assert abs(rate - expected) < 0.05, (rate, expected)
    assert converted.filter(pl.col("converted"))["p_convert"].mean() > converted.filter(~pl.col("converted"))[
        "p_convert"
    ].mean()
    assert converted["delay_hours"].drop_nulls().median() < 3


def test_reviews_follow_one_latent_sentiment(demo: dict[str, pl.DataFrame]) -> None:
    """Rating and words follow the reviewer's sentiment, each with noise of its own: the text is telling
    but not the rating itself, and the truth P(rating <= 2 | sentiment) beats any model of the text."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    reviews = demo["reviews"].join(demo["truth_reviews"], on="review_id")
    assert reviews["rating"].min() >= 1 and reviews["rating"].max() <= 5
    negative = reviews.filter(pl.col("rating") <= 2)
    positive = reviews.filter(pl.col("rating") >= 4)
    assert 0.08 < negative.height / reviews.height < 0.35
    assert negative["p_negative"].mean() > 2 * positive["p_negative"].mean()
    assert 0 < reviews["title"].null_count() < reviews.height / 3
    textless = (reviews["title"].is_null() & reviews["body"].is_null()).mean()
    assert 0.03 < textless < 0.15, textless
    words = (
        r"(?i)terrible|waste|not good|disappoint|cheap|broke|not worth|poor|awful|not great|do(es)? not"
        r"|would not|never|avoid|returning|expected better|smaller than expected|nothing like|not happy"
    )
    neg_share = negative["body"].drop_nulls().str.contains(words).mean()
    pos_share = positive["body"].drop_nulls().str.contains(words).mean()
    assert 0.4 < neg_share < 0.9 and pos_share < 0.2, (neg_share, pos_share)  # telling, not a copy of the rating
    complaint = r"(?i)late|damaged|forever|rain|crushed|nightmare"
    complaints = {
        name: part["body"].drop_nulls().str.contains(complaint).mean()
        for name, part in (("neg", negative), ("pos", positive))
    }
    assert complaints["neg"] > 2 * complaints["pos"], complaints

    is_negative = (reviews["rating"] <= 2).cast(pl.Int8).to_numpy()
    text = (reviews["title"].fill_null("") + " . " + reviews["body"].fill_null("")).to_list()
    features = TfidfVectorizer(ngram_range=(1, 2), min_df=2).fit_transform(text)
    peer = LogisticRegression(max_iter=2000, C=4.0)
    from_text = cross_val_predict(peer, features, is_negative, cv=5, method="predict_proba")
    text_auc = roc_auc_score(is_negative, from_text[:, 1])
    truth_auc = roc_auc_score(is_negative, reviews["p_negative"].to_numpy())
    assert 0.65 < text_auc < truth_auc - 0.05, (text_auc, truth_auc)


def test_sessions_happen_on_scenarios_with_their_own_rates(demo: dict[str, pl.DataFrame]) -> None:
    from demo.world import SCENARIOS

    clicks = demo["clicks"]
    assert clicks["scenario"].null_count() == 0 and set(clicks["scenario"].unique()) == set(SCENARIOS)
    assert clicks.group_by("session_id").agg(pl.col("scenario").n_unique()).get_column("scenario").max() == 1
    impressions = clicks.filter(pl.col("event_type") == "impression").join(demo["truth_impressions"], on="event_id")
    shares = dict(impressions.group_by("scenario").len().with_columns(pl.col("len") / impressions.height).iter_rows())
    assert 0.01 < shares["cart"] < 0.05 and shares["home_feed"] > 0.4, shares  # one thin scenario
    rates = dict(impressions.group_by("scenario").agg(pl.col("p_click").mean()).iter_rows())
    assert rates["search"] > 1.2 * rates["home_feed"] > 2 * rates["cart"], rates
    # The position effect is the surface's own: it falls faster in search than on the home feed.
    top = impressions.filter(pl.col("position") <= 2).group_by("scenario").agg(pl.col("p_click").mean())
    low = impressions.filter(pl.col("position") >= 7).group_by("scenario").agg(pl.col("p_click").mean())
    ratio = pl.col("p_click") / pl.col("p_click_right")
    drop = dict(top.join(low, on="scenario").select("scenario", ratio).iter_rows())
    assert drop["search"] > drop["home_feed"], drop


def test_items_titles_categories_and_images(demo: dict[str, pl.DataFrame]) -> None:
    items = demo["items"].join(demo["truth_items"], on="item_id").join(demo["item_images"], on="item_id")
    assert set(items["true_category"].unique()) == set(CATEGORIES)
    mislabelled = (items["category"] != items["true_category"]).mean()
    assert 0.005 < mislabelled < 0.07
    # Titles use the words of the TRUE category.
    code = {name: i for i, name in enumerate(CATEGORIES)}
    hits = [
        any(noun.lower() in title.lower() for noun in CATEGORY_NOUNS[code[category]])
        for title, category in zip(items["title"], items["true_category"], strict=True)
    ]
    assert all(hits)
    pixels, labels = [], []
    for payload, category in zip(items["image"], items["true_category"], strict=True):
        assert payload[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(payload))
        assert image.format == "PNG" and image.size == (32, 32) and image.mode == "RGB"
        pixels.append(np.asarray(image, dtype=np.float64).reshape(-1))
        labels.append(code[category])
    # Images carry the true category: a nearest-centroid classifier on raw pixels beats chance by far.
    x, y = np.stack(pixels), np.array(labels)
    half = len(y) // 2
    centroids = np.stack([x[:half][y[:half] == k].mean(axis=0) for k in range(len(CATEGORIES))])
    predicted = ((x[half:, None, :] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert (predicted == y[half:]).mean() > 0.5
    assert (items["price"] > 0).all() and (items["updated_at"] == items["created_at"]).all()


def test_orders_have_the_documented_vocabularies(demo: dict[str, pl.DataFrame]) -> None:
    orders = demo["orders"]
    assert set(orders["payment_method"].unique()) <= {"card", "paypal", "bank_transfer", "bnpl", "gift_card", "crypto"}
    assert set(orders["channel"].unique()) == {"web", "app_ios", "app_android"}
    assert set(orders["status"].unique()) == {"completed", "shipped", "cancelled"}
    line_total = (pl.col("quantity") * pl.col("unit_price")).sum().alias("total")
    lines = demo["order_items"].group_by("order_id").agg(line_total)
    checked = orders.join(lines, on="order_id")
    assert ((checked["amount"] - checked["total"]).abs() < 0.011).all()
    assert orders["ip_address"].str.contains(r"^\d+\.\d+\.\d+\.\d+$").all()


def test_cli_writes_and_reports_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = url_in(tmp_path, "cli.db")
    args = ["--warehouse-url", url, "--start", "2026-03-01", "--end", "2026-03-01", "--scale", "0.1", "--seed", "2"]
    assert main(args) == 0
    reported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert reported["clicks"] == read_table(url, "clicks").height > 0
    with pytest.raises(ValueError, match="before start"):
        generate_warehouse(url, date(2026, 3, 2), date(2026, 3, 1))
    with pytest.raises(ValueError, match="cannot be generated"):
        generate_warehouse(url, date(2019, 12, 31), date(2020, 1, 2))


@pytest.mark.postgres
def test_postgres_gets_the_same_rows_as_sqlite(postgres_url: str, tmp_path: Path) -> None:
    sqlite = url_in(tmp_path, "twin.db")
    for url in (postgres_url, sqlite):
        generate_warehouse(url, D1, D1 + DAY, scale=0.3, seed=9)
    generate_warehouse(postgres_url, D1 + DAY, D1 + DAY, scale=0.3, seed=9)  # re-run a day on PostgreSQL
    assert_same_tables(read_tables(postgres_url), read_tables(sqlite))
