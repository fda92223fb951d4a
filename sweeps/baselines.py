"""Baselines: what chance and a linear model score on the same folds as the trials.

A transformer's cross-validated score means little alone. Two baselines give it a scale:
the majority-class predictor, which is collapsed by construction and shows what chance
looks like under the collapse metrics, and a standardised logistic regression, the
cheapest model that uses the values at all. Both are scored on the study's own folds with
the same collapse thresholds, logged once per study as child runs of the parent run, and
their mean metrics kept in the study's user attributes so that a report needs no MLflow.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import optuna
from mlflow.entities import Run
from sklearn.base import ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from data import Dataset
from sweeps.collapse import CollapseThresholds, FoldMetrics, explain, fold_metrics, summarise
from sweeps.spec import Spec
from sweeps.tracking import TAG_PREFIX, StudyTracker

logger = logging.getLogger(__name__)

BASELINES = ("majority", "logistic")
# Each baseline's mean metrics are kept in the study's user attributes under this prefix.
BASELINE_ATTR_PREFIX = "baseline_"
# Enough iterations for lbfgs to converge on a few hundred standardised columns.
_LOGISTIC_MAX_ITER = 2000


def make_baseline(name: str, *, seed: int = 0) -> ClassifierMixin:
    """Build an unfitted baseline classifier by name.

    Args:
        name: ``majority`` (always the training fold's most frequent class) or ``logistic``
            (each column standardised on the training fold, then a logistic regression).
        seed: Seeds the solver where it uses one, so a study's baselines can be repeated.

    Returns:
        A scikit-learn classifier with ``fit`` and ``predict_proba``.

    Raises:
        ValueError: If ``name`` is not one of ``BASELINES``.
    """
    if name == "majority":
        # "prior" predicts the most frequent class, as "most_frequent" does, but its
        # probabilities are the training fold's class shares rather than a one-hot 0 or 1.
        return DummyClassifier(strategy="prior")
    if name == "logistic":
        return Pipeline(
            [
                ("scaler", StandardScaler()),
                (
                    "classifier",
                    LogisticRegression(max_iter=_LOGISTIC_MAX_ITER, random_state=seed),
                ),
            ]
        )
    raise ValueError(f"unknown baseline {name!r}; expected one of: {', '.join(BASELINES)}")


def baseline_params(name: str) -> dict[str, Any]:
    """The parameters that define a baseline, as logged on its run.

    Args:
        name: One of ``BASELINES``.

    Returns:
        The baseline's name, its estimator and its non-default settings.
    """
    if name == "majority":
        return {"baseline": name, "estimator": "DummyClassifier", "strategy": "prior"}
    return {
        "baseline": name,
        "estimator": "StandardScaler+LogisticRegression",
        "scaling": "standard",
        "C": 1.0,
        "max_iter": _LOGISTIC_MAX_ITER,
    }


def cross_validate_baseline(
    name: str,
    dataset: Dataset,
    folds: list[tuple[np.ndarray, np.ndarray]],
    thresholds: CollapseThresholds,
    *,
    seed: int = 0,
) -> list[tuple[FoldMetrics, float]]:
    """Fit a baseline on each training fold and score its validation fold.

    Args:
        name: One of ``BASELINES``.
        dataset: The study's data.
        folds: (training rows, validation rows) per fold, the same as the trials'.
        thresholds: When a fold counts as collapsed, as for the trials.
        seed: Seeds the baseline's solver.

    Returns:
        Each fold's metrics and its wall time in seconds.
    """
    results = []
    for train_index, validation_index in folds:
        started = time.perf_counter()
        # A new, unfitted model per fold: the scaler sees the training fold only.
        model = make_baseline(name, seed=seed)
        model.fit(dataset.features[train_index], dataset.labels[train_index])
        columns = list(model.classes_)
        probabilities = model.predict_proba(dataset.features[validation_index])[
            :, columns.index(1)
        ]  # (validation rows,)
        metrics = fold_metrics(dataset.labels[validation_index], probabilities, thresholds)
        results.append((metrics, time.perf_counter() - started))
    return results


def log_baselines(
    study: optuna.Study,
    tracker: StudyTracker,
    spec: Spec,
    dataset: Dataset,
    *,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> dict[str, dict[str, float]]:
    """Score and log the baselines once per study; a resumed study reuses the first ones.

    Each baseline becomes a child run of the study's parent run, tagged
    ``collapse_sweep.role=baseline``, with per-fold and mean metrics and the collapse
    explanation; its mean metrics go to the study's user attribute ``baseline_<name>``.

    Args:
        study: The study; its user attributes receive the mean metrics.
        tracker: The study's tracker, after ``start_study``.
        spec: The sweep spec, which gives the seed and the collapse thresholds.
        dataset: The study's data.
        folds: The very folds the trials are scored on.

    Returns:
        Each baseline's mean metrics, by name, whether scored now or earlier.
    """
    thresholds = CollapseThresholds.of(spec.collapse)
    finished = tracker.finished_baselines()
    summaries: dict[str, dict[str, float]] = {}
    for name in BASELINES:
        attr = f"{BASELINE_ATTR_PREFIX}{name}"
        if name in finished:
            summaries[name] = study.user_attrs.get(attr) or _summary_of(finished[name])
            logger.debug("baseline %s: already logged as run %s", name, finished[name].info.run_id)
        else:
            summaries[name] = _score_and_log(name, tracker, dataset, folds, thresholds, spec)
        study.set_user_attr(attr, summaries[name])
        logger.info(
            "baseline %s: %s %.3f, collapsed folds %d/%d",
            name,
            spec.cv.metric,
            summaries[name][spec.cv.metric],
            summaries[name]["collapsed_folds"],
            summaries[name]["folds_run"],
        )
    return summaries


def _score_and_log(
    name: str,
    tracker: StudyTracker,
    dataset: Dataset,
    folds: list[tuple[np.ndarray, np.ndarray]],
    thresholds: CollapseThresholds,
    spec: Spec,
) -> dict[str, float]:
    run = tracker.start_baseline(name, {**baseline_params(name), "folds": len(folds)})
    status = "FAILED"
    try:
        results = cross_validate_baseline(name, dataset, folds, thresholds, seed=spec.seed)
        for fold, (metrics, seconds) in enumerate(results):
            run.log_fold(fold, metrics, {}, seconds=seconds)
        fold_results = [metrics for metrics, _ in results]
        summary = {**summarise(fold_results), "folds_run": float(len(fold_results))}
        collapsed_folds = int(summary["collapsed_folds"])
        run.log(
            metrics=summary,
            tags={
                f"{TAG_PREFIX}collapsed": str(collapsed_folds > 0).lower(),
                f"{TAG_PREFIX}collapse": explain(fold_results, thresholds),
            },
        )
        status = "FINISHED"
    finally:
        # A failed baseline is left FAILED, not RUNNING, and is scored again on resume.
        run.client.set_terminated(run.run_id, status=status)
    return summary


def _summary_of(run: Run) -> dict[str, float]:
    """Mean metrics read back from a baseline run (for a study that lost its attribute)."""
    return {key: value for key, value in run.data.metrics.items() if "/" not in key}
