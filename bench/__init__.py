"""``make bench``: the nightly DAG run for real at several data scales, per-stage time, rows and peak
memory, growth exponents between scales, and side-by-side peers (PostgreSQL COPY, pandas, training
one kind at a time). See ``python -m bench --help``.
"""
