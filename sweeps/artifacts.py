"""Per-trial pictures of what a model did, and the study's folds, as files to log to MLflow.

For each fold of a trial: a confusion matrix, a histogram of the predicted probabilities of
class 1 split by true class, and the learning curves. A collapsed model is plain to see in
them: one empty column in the confusion matrix, all of the histogram on one side of the
threshold (a single spike when the output ignores the input). The study's folds go to one
JSON file, since every trial uses the same folds.

Figures are built as ``matplotlib.figure.Figure`` objects and drawn by the Agg canvas
directly, never through ``pyplot``: no global backend is chosen, so importing this module
changes nothing for other code, and no figure is kept in pyplot's registry between trials.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import confusion_matrix

from sweeps.collapse import DECISION_THRESHOLD

CONFUSION_FILE = "confusion.png"
PROBABILITIES_FILE = "probabilities.png"
LEARNING_CURVES_FILE = "learning_curves.png"
FOLDS_FILE = "folds.json"

# Small on purpose: these are written once per fold of every trial and viewed in MLflow's
# artifact pane, where 400 x 300 pixels is readable and a PNG stays a few tens of kB.
FIGURE_SIZE = (4.0, 3.0)
LEARNING_CURVES_SIZE = (4.0, 4.5)  # two panels when per-epoch collapse metrics are given
DPI = 100
# Fixed margins (left, bottom, width, height as shares of a 4 x 3 figure): a layout engine
# would find them itself, but it draws every figure twice, which costs about a third of the time.
_PLOT_AREA = (0.19, 0.15, 0.77, 0.72)
CLASS_COLORS = ("tab:blue", "tab:orange")
# Keras names the loss on `validation_data` `val_loss`; in this project that data is the
# early-stopping split carved from the training fold, not the validation fold.
CURVE_LABELS = {"loss": "training loss", "val_loss": "early-stopping loss"}
_BINS_PER_UNIT = 20


def fold_directory(directory: Path, fold: int) -> Path:
    """Where one fold's pictures go under a trial's artifact directory (``fold-<k>``)."""
    return Path(directory) / f"fold-{fold}"


def confusion_counts(
    y_true: np.ndarray, probabilities: np.ndarray, threshold: float = DECISION_THRESHOLD
) -> np.ndarray:
    """Count one fold's rows by true and predicted class.

    A row is predicted class 1 when its probability is at or above ``threshold``, the rule
    the collapse metrics use; a NaN output is therefore counted as class 0.

    Args:
        y_true: True classes in {0, 1}, shape (rows,).
        probabilities: Predicted probabilities of class 1, shape (rows,) or (rows, 1).
        threshold: The decision threshold, strictly between 0 and 1.

    Returns:
        Integer counts of shape (2, 2): rows are the true class, columns the predicted
        class. Always 2 x 2, so a fold predicted as one class shows an empty column.

    Raises:
        ValueError: The arrays do not match, a label is not 0 or 1, or the threshold is out
            of range.
    """
    labels, probabilities = _check_fold(y_true, probabilities, threshold)
    predicted = (probabilities >= threshold).astype(int)
    return confusion_matrix(labels, predicted, labels=[0, 1])


def confusion_figure(
    fold: int,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    *,
    threshold: float = DECISION_THRESHOLD,
) -> Figure:
    """Draw one fold's confusion matrix with the count in each cell.

    Args:
        fold: The fold's index, for the title.
        y_true: True classes in {0, 1}, shape (rows,).
        probabilities: Predicted probabilities of class 1, shape (rows,) or (rows, 1).
        threshold: The decision threshold, shown in the title.

    Returns:
        The figure; rows are the true class, columns the predicted class.
    """
    counts = confusion_counts(y_true, probabilities, threshold)
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    # Room for the two-line tick labels that give each class's row count.
    axes = figure.add_axes((0.2, 0.25, 0.75, 0.65))
    axes.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    for true_class in (0, 1):
        for predicted_class in (0, 1):
            count = int(counts[true_class, predicted_class])
            # Dark cells get white text, so that a count is readable on any shade.
            color = "white" if count > counts.max() / 2 else "black"
            axes.text(
                predicted_class, true_class, str(count), ha="center", va="center", color=color
            )
    axes.set_xticks([0, 1], [f"{c}\n({n} rows)" for c, n in enumerate(counts.sum(axis=0))])
    axes.set_yticks([0, 1], [f"{c}\n({n} rows)" for c, n in enumerate(counts.sum(axis=1))])
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"fold {fold}: confusion matrix, threshold {threshold:g}", fontsize=10)
    return figure


def probability_figure(
    fold: int,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    *,
    threshold: float = DECISION_THRESHOLD,
) -> Figure:
    """Draw a histogram of one fold's probabilities of class 1, stacked by true class.

    The bins run from 0 to 1 with the threshold as a bin edge, so every bar lies wholly on
    the side of the class it is predicted as, and figures of different trials share an axis.

    Args:
        fold: The fold's index, for the title.
        y_true: True classes in {0, 1}, shape (rows,).
        probabilities: Predicted probabilities of class 1, shape (rows,) or (rows, 1).
        threshold: The decision threshold, drawn as a dashed vertical line.

    Returns:
        The figure. Its axes hold one bar container per true class, whose legend entry
        reads ``true class <c> (<n> rows)``. Non-finite outputs are left out and counted in
        the title.
    """
    labels, probabilities = _check_fold(y_true, probabilities, threshold)
    finite = np.isfinite(probabilities)
    # Outputs a hair outside [0, 1] (float error) still belong in the end bins.
    values = np.clip(probabilities, 0.0, 1.0)
    bins = _bins(threshold)

    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    axes = figure.add_axes(_PLOT_AREA)
    axes.hist(
        [values[finite & (labels == c)] for c in (0, 1)],
        bins=bins,
        stacked=True,
        color=CLASS_COLORS,
        label=[f"true class {c} ({np.count_nonzero(labels == c)} rows)" for c in (0, 1)],
    )
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
    axes.set_xlim(0.0, 1.0)
    # Headroom above the tallest bar keeps the legend off the bars.
    tallest = np.histogram(values[finite], bins=bins)[0].max(initial=0)
    axes.set_ylim(0, max(int(tallest), 1) * 1.5)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("predicted probability of class 1")
    axes.set_ylabel("rows")
    axes.legend(fontsize=7, loc="upper center")

    above = int(np.count_nonzero(probabilities >= threshold))
    title = f"fold {fold}: {above} rows predicted 1, {labels.size - above} predicted 0"
    if not finite.all():
        title += f"\n{labels.size - int(finite.sum())} non-finite outputs not shown"
    axes.set_title(title, fontsize=9)
    return figure


def learning_curves_figure(
    fold: int,
    history: Mapping[str, Sequence[float]],
    epoch_metrics: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Draw one fold's per-epoch losses, and per-epoch collapse metrics below them if given.

    Args:
        fold: The fold's index, for the title.
        history: Keras' history: per-epoch values by name (``loss``, ``val_loss``).
        epoch_metrics: Per-epoch collapse metrics by name (``majority_share``,
            ``balanced_accuracy``), or None. Each series may have its own length.

    Returns:
        The figure: one panel of losses, and a second panel of the metrics when there are
        any. Epochs are numbered from 1, as Keras prints them.
    """
    panels = 2 if epoch_metrics else 1
    figure = Figure(figsize=LEARNING_CURVES_SIZE if panels == 2 else FIGURE_SIZE, dpi=DPI)
    left, bottom, width, height = _PLOT_AREA
    axes = figure.subplots(
        panels,
        1,
        sharex=True,
        squeeze=False,
        gridspec_kw={
            "left": left,
            "bottom": bottom * FIGURE_SIZE[1] / figure.get_figheight(),
            "right": left + width,
            "top": 1.0 - (1.0 - bottom - height) * FIGURE_SIZE[1] / figure.get_figheight(),
            "hspace": 0.08,
        },
    )[:, 0]

    _plot_series(axes[0], history, labels=CURVE_LABELS)
    axes[0].set_ylabel("loss")
    axes[0].set_title(f"fold {fold}: learning curves", fontsize=10)
    stopping_loss = _finite(history.get("val_loss", []))
    if np.isfinite(stopping_loss).any():
        # The epoch whose weights early stopping restores, when it restores the best ones.
        best = int(np.nanargmin(stopping_loss)) + 1
        axes[0].axvline(
            best,
            color="grey",
            linestyle=":",
            linewidth=1,
            label=f"lowest early-stopping loss (epoch {best})",
        )
        axes[0].legend(fontsize=7, loc="best")

    if panels == 2:
        _plot_series(axes[1], epoch_metrics, labels={})
        axes[1].set_ylabel("per-epoch metric")
        values = np.concatenate([_finite(series) for series in epoch_metrics.values()])
        values = values[np.isfinite(values)]
        # Shares and balanced accuracy live in [0, 1]; a fixed scale keeps a flat line at
        # 1.0 (every row one class) from being stretched into noise.
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            axes[1].set_ylim(-0.05, 1.05)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def write_fold_artifacts(
    directory: Path,
    fold: int,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    history: Mapping[str, Sequence[float]],
    epoch_metrics: Mapping[str, Sequence[float]] | None = None,
    *,
    threshold: float = DECISION_THRESHOLD,
) -> list[Path]:
    """Write one fold's confusion matrix, probability histogram and learning curves.

    The files go to ``directory/fold-<k>/`` as ``confusion.png``, ``probabilities.png`` and
    ``learning_curves.png``; log ``directory`` with ``MlflowClient.log_artifacts``.

    Args:
        directory: The trial's artifact directory; created if missing.
        fold: The fold's index, from 0.
        y_true: True classes of the validation fold in {0, 1}, shape (rows,).
        probabilities: Predicted probabilities of class 1, shape (rows,) or (rows, 1).
        history: Keras' history: per-epoch values by name (``loss``, ``val_loss``).
        epoch_metrics: Per-epoch collapse metrics by name, or None.
        threshold: The decision threshold, strictly between 0 and 1.

    Returns:
        The three paths written, in the order above.

    Raises:
        ValueError: ``fold`` is negative, or the arrays or threshold are invalid.
    """
    if isinstance(fold, bool) or not isinstance(fold, int | np.integer) or fold < 0:
        raise ValueError(f"fold must be a non-negative integer, got {fold!r}")
    # Validated once here, so that a bad fold writes no file at all.
    _check_fold(y_true, probabilities, threshold)
    target = fold_directory(directory, int(fold))
    target.mkdir(parents=True, exist_ok=True)
    figures = {
        CONFUSION_FILE: confusion_figure(fold, y_true, probabilities, threshold=threshold),
        PROBABILITIES_FILE: probability_figure(fold, y_true, probabilities, threshold=threshold),
        LEARNING_CURVES_FILE: learning_curves_figure(fold, history, epoch_metrics),
    }
    paths = []
    for name, figure in figures.items():
        path = target / name
        FigureCanvasAgg(figure).print_png(path)
        paths.append(path)
    return paths


def write_fold_indices(path: Path, folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write the training and validation rows of every fold to one JSON file.

    The file is a list of ``{"fold": k, "train": [...], "validation": [...]}``, one fold per
    line, with row numbers counted from 0 in the order of the data file's rows.

    Args:
        path: The file to write (e.g. ``folds.json``); its directory is created if missing.
        folds: ``(train_index, validation_index)`` per fold, as ``stratified_folds`` gives.

    Returns:
        ``path``.

    Raises:
        ValueError: A fold is not a pair of one-dimensional arrays of non-negative integers.
    """
    entries = []
    for fold, pair in enumerate(folds):
        if len(pair) != 2:
            raise ValueError(
                f"fold {fold} has {len(pair)} parts; pass (train_index, validation_index)"
            )
        train, validation = (
            _check_indices(fold, name, rows)
            for name, rows in zip(("train", "validation"), pair, strict=True)
        )
        entries.append({"fold": fold, "train": train, "validation": validation})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One line per fold: readable in MLflow's viewer without one line per row number.
    text = "[\n" + ",\n".join(json.dumps(entry) for entry in entries) + "\n]\n"
    path.write_text(text, encoding="utf-8")
    return path


def read_fold_indices(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read folds written by ``write_fold_indices``.

    Args:
        path: The JSON file.

    Returns:
        ``(train_index, validation_index)`` per fold, as integer arrays, in fold order.

    Raises:
        ValueError: The file is not a list of folds as ``write_fold_indices`` writes them.
    """
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of folds, found {type(entries).__name__}")
    folds = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("fold") != position:
            raise ValueError(
                f"{path}: entry {position} is not fold {position} with 'train' and "
                "'validation' lists; rewrite the file with write_fold_indices"
            )
        try:
            train, validation = (
                np.asarray(_check_indices(position, name, entry.get(name)), dtype=np.int64)
                for name in ("train", "validation")
            )
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        folds.append((train, validation))
    return folds


def _check_fold(
    y_true: np.ndarray, probabilities: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one fold's labels and probabilities; return them as flat arrays."""
    if isinstance(threshold, bool) or not (
        isinstance(threshold, numbers.Real) and 0.0 < threshold < 1.0
    ):
        raise ValueError(
            f"threshold={threshold!r} is out of range: it must be a number between 0 and 1"
        )
    labels = np.asarray(y_true).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    if labels.size != probabilities.size:
        raise ValueError(
            f"y_true has {labels.size} rows but probabilities has {probabilities.size}; "
            "pass the validation fold's labels and its predictions, one per row"
        )
    if labels.size == 0:
        raise ValueError("the fold has no rows; pass the validation fold's labels")
    unknown = np.setdiff1d(labels, [0, 1])
    if unknown.size:
        raise ValueError(
            f"y_true holds {unknown[0].item()!r}, but labels must be 0 or 1; map the classes "
            "to 0 and 1 first"
        )
    return labels.astype(int), probabilities


def _check_indices(fold: int, name: str, rows: object) -> list[int]:
    """One fold's row numbers as a list of ints, or a ValueError naming the fold."""
    array = np.asarray(rows if rows is not None else [])
    if (
        rows is None
        or array.ndim != 1
        or not (array.size == 0 or np.issubdtype(array.dtype, np.integer))
    ):
        raise ValueError(
            f"fold {fold}: '{name}' must be a one-dimensional list of integer row numbers, "
            f"got {type(rows).__name__} of shape {array.shape}"
        )
    if array.size and array.min() < 0:
        raise ValueError(f"fold {fold}: '{name}' holds row {array.min()}; rows count from 0")
    return [int(row) for row in array]


def _bins(threshold: float) -> np.ndarray:
    """Bin edges over [0, 1] about 1/20 wide, with ``threshold`` as one of them."""
    below = max(1, round(threshold * _BINS_PER_UNIT))
    above = max(1, round((1.0 - threshold) * _BINS_PER_UNIT))
    return np.concatenate(
        [np.linspace(0.0, threshold, below + 1), np.linspace(threshold, 1.0, above + 1)[1:]]
    )


def _finite(values: Sequence[float]) -> np.ndarray:
    """Values as floats with infinities turned to NaN, which matplotlib leaves as gaps."""
    array = np.asarray(list(values), dtype=np.float64)
    array[~np.isfinite(array)] = math.nan
    return array


def _plot_series(axes, series: Mapping[str, Sequence[float]], labels: Mapping[str, str]) -> None:
    """Plot each named per-epoch series against epochs 1, 2, ...; say so if there are none."""
    plotted = 0
    for name, values in series.items():
        array = _finite(values)
        if array.size == 0:
            continue
        axes.plot(
            np.arange(1, array.size + 1),
            array,
            marker="." if array.size < 30 else None,
            label=labels.get(name, name.replace("_", " ")),
        )
        plotted += 1
    if plotted:
        axes.legend(fontsize=7, loc="best")
    else:
        axes.text(
            0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=axes.transAxes
        )
