"""The demo world: a synthetic warehouse with the generator's truth, the oracle that scores that
truth beside the models, loaders for real public data slices, and the ``make demo`` runner.

    python -m demo --start 2026-01-01 --end 2026-02-04 --scale 1 --seed 7      make demo
    python -m demo.synthetic --warehouse-url URL --start .. --end .. [--scale S] [--seed N]
    python -m demo.public_data {olist,fashion_mnist} --path DIR --warehouse-url URL

The nightly pipeline (``etl``, ``training``, ``dags``) never imports this package.
"""
