"""Stratified cross-validation folds, and a stratified hold-out for early stopping.

Early stopping watches a slice of the training fold, never the validation fold, so that the
validation score of a fold stays an honest estimate.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

# scikit-learn seeds numpy's legacy generator, which takes seeds below 2**32.
_MAX_SEED = 2**32 - 1


def stratified_folds(
    labels: np.ndarray, num_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split rows into stratified, shuffled cross-validation folds.

    Args:
        labels: Class of each row, shape ``(rows,)``.
        num_folds: Number of folds, from 2 to the row count of the smallest class.
        seed: Seed of the shuffle, from 0 to 2**32 - 1; the same seed gives the same folds.

    Returns:
        One ``(train_index, validation_index)`` pair per fold. Every row is in exactly one
        validation fold, and each fold keeps the class proportions of ``labels``.

    Raises:
        ValueError: If ``labels`` is not one-dimensional, or ``num_folds`` or ``seed`` is out
            of range.
    """
    labels = _check_labels(labels)
    _check_seed(seed)
    if isinstance(num_folds, bool) or not isinstance(num_folds, int | np.integer):
        raise ValueError(f"num_folds must be an integer, got {num_folds!r}")
    _, counts = np.unique(labels, return_counts=True)
    smallest = int(counts.min()) if counts.size else 0
    if not 2 <= num_folds <= smallest:
        raise ValueError(
            f"num_folds={num_folds} is out of range: it must be from 2 to {smallest}, the "
            "number of rows of the smallest class, so that every fold holds every class"
        )
    splitter = StratifiedKFold(n_splits=int(num_folds), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((labels.size, 1)), labels))


def early_stopping_split(
    train_index: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a training fold into rows to fit on and rows that decide when to stop.

    Args:
        train_index: Row indices of the training fold, shape ``(train_rows,)``.
        labels: Class of every row of the dataset, shape ``(rows,)``; indexed by
            ``train_index``.
        fraction: Share of the training fold held out for early stopping, strictly between
            0 and 1, large and small enough to leave each class a row on both sides.
        seed: Seed of the split, from 0 to 2**32 - 1.

    Returns:
        ``(fit_index, stop_index)``: disjoint subsets of ``train_index`` that together make it
        up, each with the class proportions of the training fold.

    Raises:
        ValueError: If an argument is out of range, or a class of the training fold has
            fewer than 2 rows.
    """
    labels = _check_labels(labels)
    _check_seed(seed)
    train_index = np.asarray(train_index)
    if train_index.ndim != 1 or not np.issubdtype(train_index.dtype, np.integer):
        raise ValueError(
            "train_index must be a one-dimensional array of integer row indices, got shape "
            f"{train_index.shape} and dtype {train_index.dtype}"
        )
    if train_index.size == 0:
        raise ValueError("train_index is empty; pass the row indices of a training fold")
    if not 0 <= train_index.min() <= train_index.max() < labels.size:
        raise ValueError(
            f"train_index holds rows from {train_index.min()} to {train_index.max()}, but "
            f"labels has {labels.size} rows; indices must be from 0 to {labels.size - 1}"
        )
    if np.unique(train_index).size != train_index.size:
        raise ValueError("train_index repeats some rows; each training row must appear once")
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, numbers.Real)
        or not 0.0 < fraction < 1.0
    ):
        raise ValueError(
            f"fraction={fraction!r} is out of range: it must be a number between 0 and 1"
        )

    train_labels = labels[train_index]
    _, counts = np.unique(train_labels, return_counts=True)
    if counts.min() < 2:
        raise ValueError(
            f"the training fold's smallest class has {counts.min()} row(s); a stratified "
            "early-stopping split needs at least 2 rows of every class"
        )
    # scikit-learn rounds the held-out count up; both sides need a row of every class.
    num_rows, num_classes = train_index.size, counts.size
    num_stop = math.ceil(fraction * num_rows)
    if not num_classes <= num_stop <= num_rows - num_classes:
        low = num_classes / num_rows
        high = (num_rows - num_classes) / num_rows
        raise ValueError(
            f"fraction={fraction} holds out {num_stop} of the {num_rows} training rows; with "
            f"{num_classes} classes it must be from about {low:.3g} to {high:.3g}"
        )
    fit_index, stop_index = train_test_split(
        train_index, test_size=num_stop, stratify=train_labels, random_state=seed
    )
    return fit_index, stop_index


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    return labels


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed={seed} is out of range: it must be from 0 to {_MAX_SEED}")
