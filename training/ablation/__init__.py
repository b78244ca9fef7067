"""Ablation: does one network trained on every task beat one model per task and the peers a user
would otherwise pick, on the same rows? (Caruana, "Multitask Learning", Machine Learning 28, 1997:
single- against multi-task at equal capacity and budget.)

    python -m training.ablation --warehouse-url URL --ds D [--features-dir DIR] [--seeds 7,8,9]

``run.py`` trains every model per seed, ``scores.py`` scores them alike (overall, per scenario, and
paired with the network), ``table.py`` prints the README's tables; ``__main__.py`` is the command.
"""
