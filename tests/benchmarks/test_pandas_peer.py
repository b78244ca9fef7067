"""The pandas peer of the benchmark computes exactly what ``etl.features.add_trailing_sums`` computes."""
from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from bench.pandas_features import add_trailing_sums_pandas
from bench.peers import build_trailing_inputs, compute_trailing_pandas, compute_trailing_polars
from etl.extract import ExtractWindow, extract_source
from etl.features import add_trailing_sums


def assert_same_sums(polars_frame: pl.DataFrame, pandas_frame, row_key: str, columns: list[str]) -> None:
    """Same rows (matched on ``row_key``), same float64 values, bit for bit."""
    expected = polars_frame.sort(row_key)
    actual = pandas_frame.sort_values(row_key).reset_index(drop=True)
    assert actual[row_key].tolist() == expected[row_key].to_list()
    for column in columns:
        assert actual[column].dtype == np.float64, column
        np.testing.assert_array_equal(actual[column].to_numpy(), expected[column].to_numpy(), err_msg=column)


def test_hand_made_frame_single_and_compound_keys():
    day = lambda d: date(2026, 1, d)  # noqa: E731
    daily = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 1],
            "category": ["a", "b", "a", "a", "a", "a"],
            "day": [day(1), day(5), day(9), day(2), day(30), day(5)],  # user 1 twice on the 5th
            "imp": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "clk": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0],
        }
    )
    pairs = pl.DataFrame(
        {
            "row": [0, 1, 2, 3, 4, 5],
            "user_id": [1, 2, 1, 3, 2, 1],
            "category": ["a", "a", "a", "a", "b", "b"],
            # the 9th sees the 2nd..8th (7d); the 1st sees nothing; user 3 has no activity; the 10th
            # of February is past every window
            "as_of": [day(9), day(30), day(1), day(3), date(2026, 2, 1), date(2026, 2, 10)],
        }
    )
    expected = add_trailing_sums(pairs.lazy(), daily.lazy(), ["user_id"], ["imp", "clk"], "user").collect()
    assert expected.sort("row")["user_imp_7d"].to_list() == [8.0, 0.0, 0.0, 0.0, 5.0, 0.0]  # checked by hand
    actual = add_trailing_sums_pandas(pairs.to_pandas(), daily.to_pandas(), ["user_id"], ["imp", "clk"], "user")
    assert list(actual.index) == list(range(6))  # input order kept
    assert_same_sums(expected, actual, "row", ["user_imp_7d", "user_imp_28d", "user_clk_7d", "user_clk_28d"])

    keys = ["user_id", "category"]
    expected = add_trailing_sums(pairs.lazy(), daily.lazy(), keys, ["imp"], "uc", windows=(3, 28)).collect()
    actual = add_trailing_sums_pandas(pairs.to_pandas(), daily.to_pandas(), keys, ["imp"], "uc", windows=(3, 28))
    assert_same_sums(expected, actual, "row", ["uc_imp_3d", "uc_imp_28d"])


def test_generated_demo_extract(tmp_path):
    from demo.synthetic import generate_warehouse

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    ds = date(2026, 2, 4)
    generate_warehouse(url, date(2026, 1, 8), ds, scale=0.05, seed=7)
    extract_dir = tmp_path / "extract"
    extracted = extract_source("clicks", url, ExtractWindow(ds), extract_dir)
    assert extracted.rows > 1000

    inputs = build_trailing_inputs(extract_dir)
    expected = compute_trailing_polars(inputs)
    actual = compute_trailing_pandas({name: frame.to_pandas() for name, frame in inputs.items()})
    columns = [f"{who}_{value}_{window}d" for who in ("user", "item") for value in ("imp", "clk") for window in (7, 28)]
    assert expected.height == inputs["pairs"].height and expected["user_imp_28d"].sum() > 0
    assert_same_sums(expected, actual, "event_id", columns)
