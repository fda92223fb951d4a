"""Read, validate, scale and fold the user's table of labels and ordered values.

This package uses numpy, pandas and scikit-learn only; it knows nothing of models or sweeps.
"""

from data.folds import early_stopping_split, stratified_folds
from data.io import DataError, Dataset, check_fold_counts, read_dataset
from data.scaling import SCALINGS, make_scaler

__all__ = [
    "SCALINGS",
    "DataError",
    "Dataset",
    "check_fold_counts",
    "early_stopping_split",
    "make_demo",
    "make_scaler",
    "read_dataset",
    "stratified_folds",
    "write_demo",
]


def __getattr__(name: str) -> object:
    # data.demo is imported on first use rather than here: `python -m data.demo` runs that
    # module as __main__, and runpy warns when the package has already imported it.
    if name in ("make_demo", "write_demo"):
        from data import demo

        return getattr(demo, name)
    raise AttributeError(f"module 'data' has no attribute {name!r}")
