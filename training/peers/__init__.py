"""Peers: the models a user would otherwise pick, trained on the network's own rows.

Every peer reads the rows the network reads (``training/splits.py``: training rows, the validation
rows that choose its stopping point, day D's evaluation rows that only report) and writes the
network's prediction files (``training.predict.PREDICTION_SCHEMAS``) into its own model directory,
so the ablation's metrics, its per-scenario rows and its paired intervals read every model alike:

- ``gbdt``: LightGBM per objective on the same input columns (the tabular team's choice);
- ``rechub``: torch-rechub's MMoE and PLE for click and purchase (the open-source multi-task
  recommender a user would try first; the optional ``peers`` extra);
- ``tfidf``: TF-IDF + logistic regression for review sentiment;
- ``cnn``: a plain two-layer convnet for the category from the image.

They are measuring instruments for ``python -m training.ablation``, not production models: each
holds its training rows in memory, which is fine at the demo's volume and not meant for 100x.
"""
