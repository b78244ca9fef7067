"""TF-IDF + logistic regression for review sentiment: the afternoon peer of any text classifier.

Words and word bigrams plus character 3-5-grams within words (accents folded, sublinear term
frequency), fitted on the training reviews; the regularisation strength is the one of ``C_GRID``
with the lowest log loss on the validation reviews. Reviews without text score the training base
rate's way (an empty vector), as they would in a deployment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import FeatureUnion

from training.peers.rows import PeerRows, write_binary_predictions

C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)  # inverse L2 strengths tried, chosen on the validation reviews


def fit_vectorizer(train: pl.DataFrame) -> FeatureUnion:
    """Word 1-2-gram and character 3-5-gram TF-IDF, fitted on the training reviews' text."""
    vectorizer = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True, strip_accents="unicode")),
        ]
    )
    return vectorizer.fit(texts(train))


def texts(frame: pl.DataFrame) -> list[str]:
    """The review texts, missing ones as empty strings."""
    return frame.get_column("text").fill_null("").to_list()


def train_review_tfidf(rows: PeerRows, model_dir: Path, seed: int = 7) -> float:
    """Fit, choose C on the validation reviews, write ``reviews`` (p_negative); returns the chosen C."""
    train, validation, evaluation = (split["review"] for split in (rows.train, rows.validation, rows.evaluation))
    vectorizer = fit_vectorizer(train)
    x_train, x_validation = vectorizer.transform(texts(train)), vectorizer.transform(texts(validation))
    y_train = train.get_column("negative").cast(pl.Int64).to_numpy()
    y_validation = validation.get_column("negative").cast(pl.Int64).to_numpy()
    best: tuple[float, float, LogisticRegression] | None = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, y_train)
        loss = log_loss(y_validation, model.predict_proba(x_validation)[:, 1], labels=[0, 1]) if validation.height else 0.0
        if best is None or loss < best[0]:
            best = (loss, c, model)
    assert best is not None
    p_negative = best[2].predict_proba(vectorizer.transform(texts(evaluation)))[:, 1]
    write_binary_predictions(model_dir, "reviews", evaluation, "review_id", {"p_negative": np.asarray(p_negative)})
    return best[1]
