"""Write the run report of one day from a shell (the DAG's ``report`` task does the same):

    python -m reporting --ds 2026-02-04 [--warehouse-url sqlite:////srv/shopmtl/warehouse.db] \\
        [--run-dir /srv/shopmtl/runs/2026-02-04] [--run-id ID] [--objectives click,fraud] [--history-days 14]

Defaults come from the deployment's settings (``etl.config``): the embedded warehouse,
``$SHOPMTL_HOME/runs/<D>``, the newest run recorded for D and the objectives SHOPMTL_SOURCES allows.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> Path:
    from etl.config import load_settings
    from etl.contract import available_objectives
    from reporting.data import latest_run_id
    from reporting.report import write_run_report

    parser = argparse.ArgumentParser(prog="python -m reporting",
                                     description="Write the nightly run report (report.html) for one day")
    parser.add_argument("--warehouse-url", default=None, help="SQLAlchemy URL (default: the embedded warehouse)")
    parser.add_argument("--ds", required=True, type=date.fromisoformat, help="day D, YYYY-MM-DD")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: $SHOPMTL_HOME/runs/<D>")
    parser.add_argument("--run-id", default=None, help="default: the newest run recorded for D")
    parser.add_argument("--objectives", "--tasks", dest="objectives", default=None,
                        help="comma separated (default: what SHOPMTL_SOURCES allows); --tasks is the old name")
    parser.add_argument("--history-days", type=int, default=14)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    settings = load_settings()
    warehouse_url = args.warehouse_url or settings.embedded_warehouse_url
    objectives = ([o.strip() for o in args.objectives.split(",") if o.strip()] if args.objectives
                  else available_objectives(settings.sources))
    run_id = args.run_id or latest_run_id(warehouse_url, args.ds) or "unknown"
    report = write_run_report(warehouse_url, args.ds, run_id, args.run_dir or settings.run_dir(args.ds), objectives,
                              history_days=args.history_days)
    print(report)
    return report


if __name__ == "__main__":
    main()
