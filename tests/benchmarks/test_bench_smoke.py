"""A tiny real run of ``make bench``: two scales, the real DAG through ``airflow dags test``, every peer.

Checks the shape of ``results.json``, never timings (those are the benchmark's output, not a test).
"""
from __future__ import annotations

import json
import math

import pytest
import sqlalchemy as sa

from bench.__main__ import main
from bench.run import RUN, STAGES
from etl.warehouse import normalize_url

PEERS = ("extract", "publish", "features", "training")


@pytest.mark.slow
@pytest.mark.postgres
def test_tiny_benchmark_reports_every_stage_exponent_and_peer(postgres_url, tmp_path):
    # The fixture's fresh database only proves the server answers (or skips / fails as configured);
    # the benchmark creates and drops its own shopmtl_bench_* databases on the same server.
    # 29 seeded days: the DAG's default 28-day window (window_days=28) of each of the two nights.
    argv = ["--scales", "0.05", "0.1", "--start", "2026-01-07", "--end", "2026-02-04", "--repeats", "1",
            "--nights", "2", "--postgres-url", postgres_url, "--out-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0

    results = json.loads((tmp_path / "results.json").read_text())
    assert "ratio" in (tmp_path / "results.md").read_text()
    assert "Incremental night vs full-window retraining" in (tmp_path / "results.md").read_text()
    assert results["machine"]["torch"] and results["machine"]["polars"] and results["machine"]["device"]
    assert [scale["scale"] for scale in results["scales"]] == [0.05, 0.1]
    for scale in results["scales"]:
        assert scale["clicks_window_rows"] > 0
        assert [night["ds"] for night in scale["earlier_nights"]] == ["2026-02-03"]  # then 02-04 was measured
        for stage in (*STAGES, RUN):
            figures = scale["stages"][stage]
            assert figures["seconds"] > 0 and figures["seconds_sum"] >= figures["seconds"], stage
            assert figures["rows"] > 0 and figures["rows_what"], stage
            assert figures["peak_rss_bytes"] >= figures["peak_anon_bytes"] > 0, stage
        assert scale["stages"]["extract"]["instances"] == 8  # one mapped instance per source
        for name in PEERS:
            peer = scale["peers"][name]
            assert peer["shopmtl_s"] > 0 and peer["peer_s"] > 0 and math.isfinite(peer["ratio"]) and peer["ratio"] > 0, name
        # The incremental night trained fewer rows than the full window, from the previous night's network.
        night = scale["incremental"]
        assert 0 < night["shopmtl_rows"] < night["peer_rows"] and night["shopmtl_s"] > 0 and night["peer_s"] > 0
        assert night["kept"]["impression"]["first_recent_day"] == "2026-02-01"  # D-3: the newest day before the 2 validation days
        assert {"click", "purchase", "review", "category", "fraud"} <= set(night["quality"])
        assert all(row["n_rows"] > 0 for row in night["quality"].values())  # a tiny day may lack fraud positives (AUC n/a)
        assert night["quality"]["click"]["peer"] is not None and night["quality"]["click"]["shopmtl"] is not None
    assert scale["clicks_window_rows"] > results["scales"][0]["clicks_window_rows"]
    for stage in (*STAGES, RUN):
        [pair] = results["exponents"][stage]
        assert math.isfinite(pair["exponent"]), stage

    # Every bench database is gone.
    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.connect() as conn:
        names = {scale["database"] for scale in results["scales"]}
        left = conn.execute(sa.text("SELECT datname FROM pg_database WHERE datname = ANY(:names)"), {"names": list(names)}).all()
    engine.dispose()
    assert left == []


def test_the_seeded_days_must_cover_every_nights_window():
    with pytest.raises(SystemExit):  # 28 days hold one night's window, not two
        main(["--scales", "0.05", "--start", "2026-01-08", "--end", "2026-02-04", "--nights", "2"])
