"""Prediction-collapse metrics: catch a classifier that predicts one class for every row.

A collapsed model can still score a respectable accuracy on imbalanced data, and on
balanced data it scores exactly chance, which a sweep would record as one more weak
trial. These metrics name the failure instead: how much of a fold went to the most
predicted class, how much the predicted probabilities vary at all, and how many classes
were predicted.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    matthews_corrcoef,
    roc_auc_score,
)

# The constraint a collapsed trial gives the sampler (see `collapse_violation`), and the most
# its score can add to it.
CONSTRAINT_NAME = "collapse"
SCORE_TIE_BREAK = 0.01

# Probabilities at or above this are class 1. The threshold is explicit because a model
# that outputs probabilities must be thresholded before it is compared with labels.
DECISION_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class CollapseThresholds:
    """When a fold counts as collapsed.

    Attributes:
        max_majority_share: Collapsed when at least this share of rows gets one class.
        min_probability_std: Collapsed when the probabilities' standard deviation is below
            this, i.e. the model gives (nearly) the same output whatever the input.
    """

    max_majority_share: float = 0.95
    min_probability_std: float = 1e-3

    @classmethod
    def of(cls, settings: object) -> CollapseThresholds:
        """The thresholds held by an object with the same attributes, such as a spec section."""
        return cls(
            **{field.name: getattr(settings, field.name) for field in dataclasses.fields(cls)}
        )


@dataclasses.dataclass(frozen=True)
class FoldMetrics:
    """Scores and collapse measures of one validation fold."""

    balanced_accuracy: float
    roc_auc: float
    mcc: float
    accuracy: float
    majority_share: float
    majority_class: int
    probability_std: float
    predicted_classes: int
    collapsed: bool

    def as_dict(self) -> dict[str, float]:
        """All fields as floats, the form MLflow metrics take."""
        return {key: float(value) for key, value in dataclasses.asdict(self).items()}


def fold_metrics(
    labels: np.ndarray, probabilities: np.ndarray, thresholds: CollapseThresholds
) -> FoldMetrics:
    """Score one fold's predictions and decide whether they collapsed.

    Args:
        labels: True classes in {0, 1}, shape (rows,).
        probabilities: Predicted probabilities of class 1, shape (rows,) or (rows, 1).
        thresholds: When to call the fold collapsed.

    Returns:
        The fold's metrics. ROC AUC is NaN when the fold holds one class only.
    """
    labels = np.asarray(labels).astype(int).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    predicted = (probabilities >= DECISION_THRESHOLD).astype(int)

    counts = np.bincount(predicted, minlength=2)
    majority_share = counts.max() / max(len(predicted), 1)
    probability_std = float(np.std(probabilities))
    both_classes = len(np.unique(labels)) == 2
    return FoldMetrics(
        balanced_accuracy=float(balanced_accuracy_score(labels, predicted)),
        roc_auc=float(roc_auc_score(labels, probabilities)) if both_classes else math.nan,
        mcc=float(matthews_corrcoef(labels, predicted)),
        accuracy=float(accuracy_score(labels, predicted)),
        majority_share=float(majority_share),
        majority_class=int(counts.argmax()),
        probability_std=probability_std,
        predicted_classes=int(np.count_nonzero(counts)),
        collapsed=bool(
            majority_share >= thresholds.max_majority_share
            or probability_std < thresholds.min_probability_std
        ),
    )


def collapse_violation(folds: list[FoldMetrics], metric: str) -> float:
    """How far a trial is from feasible, for the sampler's collapse constraint.

    0 when no fold collapsed (feasible). Otherwise the share of folds that collapsed, plus
    up to ``SCORE_TIE_BREAK`` for a poor mean score, so that among trials that collapsed
    alike the better-scoring one counts as less infeasible. Without that tie-break, a study
    whose first trials all collapsed gives TPE nothing but the collapsed shares to go on,
    and it searches around arbitrary collapsed trials instead of following the metric.

    Args:
        folds: The trial's validation folds so far.
        metric: The score to break ties with (higher is better, at most 1).

    Returns:
        The constraint value: positive means infeasible.
    """
    if not folds:
        return 0.0
    share = sum(fold.collapsed for fold in folds) / len(folds)
    if share == 0:
        return 0.0
    scores = [getattr(fold, metric) for fold in folds]
    scores = [score for score in scores if not math.isnan(score)]
    mean = sum(scores) / len(scores) if scores else 0.0
    # Scores lie in [0, 1] (MCC in [-1, 1]): the tie-break stays below one fold's share.
    return share + SCORE_TIE_BREAK * (1.0 - mean) / 2.0


def summarise(folds: list[FoldMetrics]) -> dict[str, float]:
    """Average the folds' metrics and count the collapsed folds.

    Args:
        folds: One entry per validation fold, at least one.

    Returns:
        The mean of every metric (``collapsed`` becomes the share of collapsed folds), plus
        ``collapsed_folds``, their count.
    """
    table = [fold.as_dict() for fold in folds]
    summary = {key: float(np.nanmean([row[key] for row in table])) for key in table[0]}
    summary.pop("majority_class")
    summary["collapsed_folds"] = float(sum(fold.collapsed for fold in folds))
    return summary


def explain(folds: list[FoldMetrics], thresholds: CollapseThresholds) -> str:
    """Say in one sentence whether and how a trial's predictions collapsed.

    Args:
        folds: The trial's validation folds so far.
        thresholds: The thresholds that decided each fold.

    Returns:
        A sentence for logs, MLflow tags and reports.
    """
    collapsed = [(index, fold) for index, fold in enumerate(folds) if fold.collapsed]
    if not collapsed:
        return f"no collapse: every fold predicted both classes ({len(folds)} folds)"
    parts = []
    for index, fold in collapsed:
        if fold.probability_std < thresholds.min_probability_std:
            reason = f"near-constant output, probability std {fold.probability_std:.2g}"
        else:
            reason = f"probability std {fold.probability_std:.3f}"
        parts.append(
            f"fold {index} gave class {fold.majority_class} to "
            f"{fold.majority_share:.0%} of rows ({reason})"
        )
    return f"collapsed in {len(collapsed)} of {len(folds)} folds: " + "; ".join(parts)
