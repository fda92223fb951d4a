"""Stratified folds and the early-stopping hold-out: disjoint, complete, stratified, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from data import early_stopping_split, stratified_folds


@pytest.fixture
def labels() -> np.ndarray:
    # Imbalanced on purpose (30 of 100 positive), so that stratification shows.
    labels = np.zeros(100, dtype=np.int64)
    labels[::10] = 1
    labels[1::10] = 1
    labels[2::10] = 1
    return labels


def test_stratified_folds_put_each_row_in_one_validation_fold(labels: np.ndarray) -> None:
    folds = stratified_folds(labels, num_folds=5, seed=0)

    assert len(folds) == 5
    validation_rows = np.concatenate([validation for _, validation in folds])
    np.testing.assert_array_equal(np.sort(validation_rows), np.arange(labels.size))
    for train, validation in folds:
        assert np.intersect1d(train, validation).size == 0
        np.testing.assert_array_equal(
            np.sort(np.concatenate([train, validation])), np.arange(labels.size)
        )


def test_stratified_folds_keep_class_proportions(labels: np.ndarray) -> None:
    for train, validation in stratified_folds(labels, num_folds=5, seed=0):
        assert labels[validation].mean() == pytest.approx(0.3, abs=1 / validation.size)
        assert labels[train].mean() == pytest.approx(0.3, abs=1 / train.size)


def test_stratified_folds_are_deterministic_for_a_seed(labels: np.ndarray) -> None:
    first = stratified_folds(labels, num_folds=4, seed=7)
    again = stratified_folds(labels, num_folds=4, seed=7)
    other = stratified_folds(labels, num_folds=4, seed=8)

    for (train, validation), (train_again, validation_again) in zip(first, again, strict=True):
        np.testing.assert_array_equal(train, train_again)
        np.testing.assert_array_equal(validation, validation_again)
    assert not all(
        np.array_equal(validation, validation_other)
        for (_, validation), (_, validation_other) in zip(first, other, strict=True)
    )


@pytest.mark.parametrize("num_folds", [1, 31, 2.0, True])
def test_stratified_folds_rejects_bad_num_folds(labels: np.ndarray, num_folds: object) -> None:
    with pytest.raises(ValueError, match="num_folds"):
        stratified_folds(labels, num_folds=num_folds, seed=0)


def test_stratified_folds_names_the_accepted_range(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="from 2 to 30"):
        stratified_folds(labels, num_folds=31, seed=0)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5])
def test_stratified_folds_rejects_bad_seed(labels: np.ndarray, seed: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        stratified_folds(labels, num_folds=5, seed=seed)


def test_stratified_folds_rejects_two_dimensional_labels(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="labels"):
        stratified_folds(labels.reshape(10, 10), num_folds=5, seed=0)


def test_early_stopping_split_divides_the_training_fold(labels: np.ndarray) -> None:
    train, _ = stratified_folds(labels, num_folds=5, seed=0)[0]

    fit, stop = early_stopping_split(train, labels, fraction=0.25, seed=0)

    assert np.intersect1d(fit, stop).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([fit, stop])), np.sort(train))
    assert stop.size == 20
    assert labels[stop].mean() == pytest.approx(0.3, abs=1 / stop.size)
    assert labels[fit].mean() == pytest.approx(0.3, abs=1 / fit.size)


def test_early_stopping_split_never_touches_the_validation_fold(labels: np.ndarray) -> None:
    for train, validation in stratified_folds(labels, num_folds=5, seed=3):
        fit, stop = early_stopping_split(train, labels, fraction=0.2, seed=3)
        assert np.intersect1d(np.concatenate([fit, stop]), validation).size == 0


def test_early_stopping_split_is_deterministic_for_a_seed(labels: np.ndarray) -> None:
    train = np.arange(80)

    fit, stop = early_stopping_split(train, labels, fraction=0.2, seed=1)
    fit_again, stop_again = early_stopping_split(train, labels, fraction=0.2, seed=1)
    _, stop_other = early_stopping_split(train, labels, fraction=0.2, seed=2)

    np.testing.assert_array_equal(fit, fit_again)
    np.testing.assert_array_equal(stop, stop_again)
    assert not np.array_equal(np.sort(stop), np.sort(stop_other))


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1, float("nan"), "0.2"])
def test_early_stopping_split_rejects_fraction_out_of_range(
    labels: np.ndarray, fraction: object
) -> None:
    with pytest.raises(ValueError, match="fraction"):
        early_stopping_split(np.arange(80), labels, fraction=fraction, seed=0)


def test_early_stopping_split_rejects_fraction_too_small_for_classes(labels: np.ndarray) -> None:
    # 0.001 of 80 rows holds out 1 row, which cannot hold both classes.
    with pytest.raises(ValueError, match=r"fraction=0\.001 holds out 1 of the 80"):
        early_stopping_split(np.arange(80), labels, fraction=0.001, seed=0)


def test_early_stopping_split_rejects_rows_outside_labels(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="train_index"):
        early_stopping_split(np.arange(90, 110), labels, fraction=0.2, seed=0)


def test_early_stopping_split_rejects_a_class_of_one_row(labels: np.ndarray) -> None:
    train = np.array([0, 3, 4, 5, 6, 7, 8, 9])  # only row 0 is positive

    with pytest.raises(ValueError, match="at least 2 rows of every class"):
        early_stopping_split(train, labels, fraction=0.25, seed=0)
