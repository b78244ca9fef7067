"""The nightly run report: ``runs/<D>/report.html`` with its PNG plots in ``runs/<D>/report/``.

``reporting.report.write_run_report`` writes it (the DAG's ``report`` task); ``python -m reporting``
does the same from a shell. The modules, in the order the report is built:

- ``data``: what the report shows, read from the warehouse and the run directory;
- ``calibration``: the scoring models' labelled evaluation predictions, binned;
- ``plots``: the matplotlib figures (metric history, score distributions, calibration);
- ``html``: the page;
- ``report``: data -> plots -> html -> ``report.html``.

Importing this package imports nothing heavy.
"""
