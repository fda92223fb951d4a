"""Scalers for the values, chosen by name, so that a search space can list them as strings.

The per-column scalers learn statistics and must be fitted on the training rows of a fold
only; the caller does that. "per-sample" learns nothing: it uses each row's own mean and
standard deviation, so it cannot leak one row's values into another's.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, RobustScaler, StandardScaler

SCALINGS: tuple[str, ...] = ("none", "standard", "minmax", "robust", "per-sample")

# A row whose standard deviation is below this is treated as constant and only centred, which
# avoids dividing by zero (or amplifying float32 rounding noise into unit variance).
_CONSTANT_ROW_STD = 1e-12


def make_scaler(name: str) -> TransformerMixin:
    """Build an unfitted scaler by name.

    Every scaler returns float32 for float32 input, which is what ``read_dataset`` gives;
    "none" and "per-sample" return float32 for any input.

    Args:
        name: One of ``SCALINGS``: "none" (values as they are), "standard" (each column to
            zero mean and unit variance), "minmax" (each column to [0, 1]), "robust" (each
            column centred on its median and divided by its interquartile range) or
            "per-sample" (each row to zero mean and unit variance).

    Returns:
        A scikit-learn transformer with ``fit``, ``transform`` and ``fit_transform``; a new
        object on every call.

    Raises:
        ValueError: If ``name`` is not one of ``SCALINGS``.
    """
    if name == "none":
        return FunctionTransformer(_as_float32)
    if name == "standard":
        return StandardScaler()
    if name == "minmax":
        return MinMaxScaler()
    if name == "robust":
        return RobustScaler()
    if name == "per-sample":
        return FunctionTransformer(_standardise_rows)
    raise ValueError(f"unknown scaling {name!r}; expected one of: {', '.join(SCALINGS)}")


def _as_float32(features: np.ndarray) -> np.ndarray:
    return np.asarray(features, dtype=np.float32)


def _standardise_rows(features: np.ndarray) -> np.ndarray:
    """Z-normalise each row by its own mean and standard deviation."""
    features = np.asarray(features, dtype=np.float64)  # (rows, values)
    mean = features.mean(axis=1, keepdims=True)
    std = features.std(axis=1, keepdims=True)
    std = np.where(std > _CONSTANT_ROW_STD, std, 1.0)
    return ((features - mean) / std).astype(np.float32)
