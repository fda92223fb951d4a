"""Scalers by name: what each does to the values, and that none leaks validation rows."""

from __future__ import annotations

import numpy as np
import pytest

from data import SCALINGS, make_scaler

PER_COLUMN_SCALINGS = ("standard", "minmax", "robust")


@pytest.fixture
def features() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Columns on different scales and offsets, as unscaled measurements often are.
    return (rng.normal(size=(40, 6)) * [1, 10, 0.1, 5, 2, 100] + [0, 5, -3, 50, 1, 0]).astype(
        np.float32
    )


@pytest.mark.parametrize("name", SCALINGS)
def test_make_scaler_keeps_shape_and_returns_float32(name: str, features: np.ndarray) -> None:
    scaled = make_scaler(name).fit_transform(features)

    assert scaled.shape == features.shape
    assert scaled.dtype == np.float32
    assert np.isfinite(scaled).all()


@pytest.mark.parametrize("name", ["none", "per-sample"])
def test_make_scaler_stateless_scalers_return_float32_for_float64(name: str) -> None:
    scaled = make_scaler(name).fit_transform(np.ones((3, 4), dtype=np.float64))

    assert scaled.dtype == np.float32


@pytest.mark.parametrize("name", SCALINGS)
def test_make_scaler_returns_a_new_object_each_time(name: str) -> None:
    assert make_scaler(name) is not make_scaler(name)


def test_make_scaler_none_keeps_values(features: np.ndarray) -> None:
    np.testing.assert_array_equal(make_scaler("none").fit_transform(features), features)


def test_make_scaler_standard_centres_and_scales_columns(features: np.ndarray) -> None:
    scaled = make_scaler("standard").fit_transform(features)

    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, atol=1e-4)


def test_make_scaler_minmax_maps_columns_to_unit_range(features: np.ndarray) -> None:
    scaled = make_scaler("minmax").fit_transform(features)

    np.testing.assert_allclose(scaled.min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(scaled.max(axis=0), 1.0, atol=1e-6)


def test_make_scaler_robust_centres_columns_on_median(features: np.ndarray) -> None:
    scaled = make_scaler("robust").fit_transform(features)

    np.testing.assert_allclose(np.median(scaled, axis=0), 0.0, atol=1e-5)
    quartiles = np.percentile(scaled, [25, 75], axis=0)
    np.testing.assert_allclose(quartiles[1] - quartiles[0], 1.0, atol=1e-4)


def test_make_scaler_per_sample_normalises_each_row(features: np.ndarray) -> None:
    scaled = make_scaler("per-sample").fit_transform(features)

    np.testing.assert_allclose(scaled.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=1), 1.0, atol=1e-4)


def test_make_scaler_per_sample_maps_constant_row_to_zeros() -> None:
    features = np.array([[0.3, 0.3, 0.3], [0.1, 0.2, 0.3]], dtype=np.float32)

    scaled = make_scaler("per-sample").fit_transform(features)

    np.testing.assert_array_equal(scaled[0], 0.0)
    assert np.isfinite(scaled).all()


def test_make_scaler_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"'zscore'.*none, standard, minmax, robust, per-sample"):
        make_scaler("zscore")


def test_make_scaler_standard_learns_training_rows_only(features: np.ndarray) -> None:
    train, validation = features[:30], features[30:]

    scaler = make_scaler("standard").fit(train)

    np.testing.assert_allclose(scaler.mean_, train.mean(axis=0, dtype=np.float64), rtol=1e-5)
    assert not np.allclose(scaler.mean_, features.mean(axis=0), rtol=1e-3)
    # Validation rows are scaled with the training statistics, not their own.
    np.testing.assert_allclose(
        scaler.transform(validation), (validation - scaler.mean_) / scaler.scale_, rtol=1e-4
    )


@pytest.mark.parametrize("name", SCALINGS)
def test_make_scaler_training_rows_ignore_validation_rows(name: str, features: np.ndarray) -> None:
    train_index, validation_index = np.arange(30), np.arange(30, 40)
    changed = features.copy()
    changed[validation_index] = changed[validation_index] * 1000 + 7

    scaled = make_scaler(name).fit(features[train_index]).transform(features)
    scaled_changed = make_scaler(name).fit(changed[train_index]).transform(changed)

    np.testing.assert_array_equal(scaled[train_index], scaled_changed[train_index])


def test_make_scaler_per_sample_scales_each_row_on_its_own(features: np.ndarray) -> None:
    scaler = make_scaler("per-sample")

    together = scaler.fit_transform(features)
    alone = np.vstack([scaler.fit_transform(features[row : row + 1]) for row in range(5)])

    np.testing.assert_allclose(together[:5], alone, rtol=1e-6)
