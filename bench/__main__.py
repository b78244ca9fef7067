"""``make bench``: the nightly DAG run for real at several scales, with side-by-side peers.

    python -m bench --scales 1 10 [--start 2026-01-01] [--end 2026-02-04] [--repeats 3] [--keep] [--skip-peers]

For each scale: a fresh PostgreSQL database ``shopmtl_bench_<scale>_<random>`` (on
``SHOPMTL_BENCH_POSTGRES_URL``'s server, dropped afterwards unless ``--keep``), seeded by the demo
generator; ``airflow dags test nightly_retrain <end>`` exactly as a user runs it, with a private
``SHOPMTL_HOME`` and ``AIRFLOW_HOME``; per Airflow task: seconds, rows, rows/s, peak RSS. Then the
peers on the same data. Writes ``results.json`` and ``results.md`` to ``--out-dir``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.incremental import compare_incremental
from bench.report import render_markdown, stamp_results, write_results
from bench.run import bench_database, run_scale
from etl.config import load_settings
from etl.layout import RunLayout
from etl.warehouse import normalize_url

BENCH_DIR = Path(__file__).resolve().parent


def read_server_version(admin_url: str) -> str | None:
    """The PostgreSQL server's ``version()``, for the results."""
    engine = sa.create_engine(normalize_url(admin_url))
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version()").scalar()
    finally:
        engine.dispose()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The CLI flags (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 10.0], help="demo generator scales, e.g. 1 10")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 1), help="first seeded day")
    parser.add_argument("--end", type=date.fromisoformat, default=date(2026, 2, 4), help="last seeded day; the DAG runs for it")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", help="server to create the bench databases on (default: SHOPMTL_BENCH_POSTGRES_URL)")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR, help="where results.json and results.md go")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of each peer comparison")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the run directories")
    parser.add_argument("--skip-peers", action="store_true", help="only the DAG runs")
    parser.add_argument(
        "--nights", type=int, default=2,
        help="consecutive nights run, ending with --end; the last is measured (1: a first night, which "
        "extracts the whole window; 2 and more: a steady-state night, which extracts one day of events)",
    )
    args = parser.parse_args(argv)
    # The DAG's window is 28 days ending with each night (window_days Param): fewer seeded days would
    # benchmark a partly empty window.
    if args.nights < 1:
        parser.error("--nights must be at least 1")
    if (args.end - args.start).days + 1 < 28 + args.nights - 1:
        parser.error(f"--start..--end must cover the DAG's 28-day window of each of the {args.nights} night(s)")
    return args


def bench_scale(args: argparse.Namespace, admin_url: str, scale: float, work_dir: Path) -> dict:
    """Seed, run the DAG and (unless skipped) the peers at one scale, in its own database."""
    from bench.peers import run_peers

    with bench_database(admin_url, scale, keep=args.keep) as database:
        print(f"scale {scale:g}: database {database.name}, SHOPMTL_HOME {work_dir} ...", flush=True)
        result = run_scale(database, scale, args.start, args.end, args.seed, work_dir, args.nights)
        print(f"  DAG run {result['dag_wall_s']:.1f} s; {result['clicks_window_rows']:,} clicks rows in the window", flush=True)
        if not args.skip_peers:
            print(f"  peers ({args.repeats} alternating repeats) ...", flush=True)
            result["peers"] = run_peers(
                database.url, database.libpq_url, Path(result["run_dir"]), args.end, scale, args.repeats
            )
            if args.nights > 1:  # the previous night's network is the incremental night's starting point
                print("  incremental night vs full-window retraining ...", flush=True)
                layout = RunLayout(Path(result["run_dir"]))
                previous = RunLayout(layout.run_dir.with_name((args.end - timedelta(days=1)).isoformat()))
                result["incremental"] = compare_incremental(layout, previous, work_dir / "incremental_night")
    return result


def main(argv: list[str] | None = None) -> int:
    """Every scale in turn, then the tables; 1 when a run fails (its databases dropped, its logs kept)."""
    args = parse_args(argv)
    admin_url = args.postgres_url or load_settings().bench_postgres_url
    work_root = Path(tempfile.mkdtemp(prefix="shopmtl_bench_"))
    scales: list[dict] = []
    try:
        for scale in args.scales:
            scales.append(bench_scale(args, admin_url, scale, work_root / f"scale_{scale:g}"))
    except Exception as error:  # the databases are dropped already; say where the logs are
        print(f"benchmark failed: {error}\nlogs and run directories kept in {work_root}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"kept: run directories in {work_root}")
    else:
        shutil.rmtree(work_root, ignore_errors=True)
    settings = {"start": args.start.isoformat(), "end": args.end.isoformat(), "seed": args.seed, "repeats": args.repeats,
                "requested_scales": args.scales, "skip_peers": args.skip_peers, "nights": args.nights}  # fmt: skip
    results = stamp_results(settings, scales, read_server_version(admin_url))
    json_path, md_path = write_results(results, args.out_dir)
    print()
    print(render_markdown(results))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
