import math

import numpy as np
import pytest

from sweeps.collapse import (
    CollapseThresholds,
    collapse_violation,
    explain,
    fold_metrics,
    summarise,
)

THRESHOLDS = CollapseThresholds()
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])


def test_fold_metrics_constant_output_is_collapsed():
    metrics = fold_metrics(LABELS, np.full(8, 0.61), THRESHOLDS)
    assert metrics.collapsed
    assert metrics.majority_share == 1.0
    assert metrics.majority_class == 1
    assert metrics.predicted_classes == 1
    assert metrics.probability_std == 0.0
    assert metrics.balanced_accuracy == 0.5
    assert metrics.mcc == 0.0
    assert metrics.roc_auc == 0.5


def test_fold_metrics_perfect_predictions_not_collapsed():
    probabilities = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    metrics = fold_metrics(LABELS, probabilities, THRESHOLDS)
    assert not metrics.collapsed
    assert metrics.balanced_accuracy == 1.0
    assert metrics.mcc == pytest.approx(1.0)
    assert metrics.roc_auc == 1.0
    assert metrics.majority_share == 0.5
    assert metrics.predicted_classes == 2


def test_fold_metrics_one_class_with_varied_probabilities_is_collapsed():
    # Every row on one side of the threshold, although the model's output does vary.
    probabilities = np.linspace(0.55, 0.95, 8)
    metrics = fold_metrics(LABELS, probabilities, THRESHOLDS)
    assert metrics.collapsed
    assert metrics.probability_std > THRESHOLDS.min_probability_std
    assert metrics.roc_auc == 1.0  # it ranks well; only the threshold is off


def test_fold_metrics_near_constant_probabilities_are_collapsed():
    probabilities = 0.5 + np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * 1e-5
    metrics = fold_metrics(LABELS, probabilities, THRESHOLDS)
    assert metrics.majority_share == 0.5
    assert metrics.collapsed  # std 1e-5 is below 1e-3


def test_fold_metrics_share_threshold_is_inclusive():
    labels = np.array([0] * 10 + [1] * 10)
    probabilities = np.array([0.9] * 19 + [0.1])  # 95 % predicted as class 1
    assert fold_metrics(labels, probabilities, THRESHOLDS).collapsed
    assert not fold_metrics(labels, probabilities, CollapseThresholds(0.96, 1e-3)).collapsed


def test_fold_metrics_accepts_column_vector_and_single_class_fold():
    metrics = fold_metrics(np.ones(4), np.full((4, 1), 0.7), THRESHOLDS)
    assert math.isnan(metrics.roc_auc)
    assert metrics.accuracy == 1.0


def test_summarise_counts_collapsed_folds():
    good = fold_metrics(LABELS, np.linspace(0.1, 0.9, 8), THRESHOLDS)
    bad = fold_metrics(LABELS, np.full(8, 0.3), THRESHOLDS)
    summary = summarise([good, bad, bad])
    assert summary["collapsed_folds"] == 2
    assert summary["collapsed"] == pytest.approx(2 / 3)
    assert summary["balanced_accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert "majority_class" not in summary


def test_collapse_violation_ranks_by_collapsed_share_then_score():
    good = fold_metrics(LABELS, np.linspace(0.1, 0.9, 8), THRESHOLDS)
    # Both collapsed (every row gets class 0), one ranking its rows perfectly.
    ranked = fold_metrics(LABELS, np.array([0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.3]), THRESHOLDS)
    blind = fold_metrics(LABELS, np.full(8, 0.3), THRESHOLDS)
    assert ranked.collapsed and blind.collapsed
    assert collapse_violation([good, good], "roc_auc") == 0.0  # feasible
    assert collapse_violation([], "roc_auc") == 0.0
    # The share of collapsed folds comes first...
    assert collapse_violation([blind, blind], "roc_auc") > collapse_violation(
        [ranked, good], "roc_auc"
    )
    # ... and among equal shares the better score is the smaller violation, by at most 0.01.
    assert (
        0.5
        <= collapse_violation([ranked, good], "roc_auc")
        < collapse_violation([blind, good], "roc_auc")
        <= 0.51
    )
    assert collapse_violation([blind], "mcc") == pytest.approx(1.005)


def test_explain_names_folds_classes_and_reason():
    good = fold_metrics(LABELS, np.linspace(0.1, 0.9, 8), THRESHOLDS)
    bad = fold_metrics(LABELS, np.full(8, 0.3), THRESHOLDS)
    assert explain([good], THRESHOLDS).startswith("no collapse")
    text = explain([good, bad], THRESHOLDS)
    assert text.startswith("collapsed in 1 of 2 folds")
    assert "fold 1 gave class 0 to 100% of rows" in text
    assert "near-constant output" in text
