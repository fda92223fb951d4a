import json
import math

import matplotlib.image
import mlflow
import numpy as np
import pytest

from data.folds import stratified_folds
from sweeps.artifacts import (
    confusion_counts,
    confusion_figure,
    learning_curves_figure,
    probability_figure,
    read_fold_indices,
    write_fold_artifacts,
    write_fold_indices,
)
from sweeps.collapse import CollapseThresholds, fold_metrics

LABELS = np.array([0, 0, 0, 0, 0, 1, 1, 1])
SEPARATING = np.array([0.05, 0.1, 0.2, 0.3, 0.45, 0.55, 0.8, 0.95])
HISTORY = {"loss": [0.69, 0.61, 0.52, 0.47], "val_loss": [0.70, 0.64, 0.58, 0.60]}
EPOCH_METRICS = {
    "majority_share": [1.0, 1.0, 0.75, 0.625],
    "balanced_accuracy": [0.5, 0.5, 0.7, 0.9],
}


def _bars(figure):
    """(left edge, right edge, height) of every non-empty bar, by true-class label."""
    axes = figure.axes[0]
    bars = {}
    for container in axes.containers:
        # A stacked histogram labels the first bar of each class, which the legend shows.
        bars[container.patches[0].get_label()] = [
            (patch.get_x(), patch.get_x() + patch.get_width(), patch.get_height())
            for patch in container
            if patch.get_height() > 0
        ]
    return bars


def _read_png(path):
    image = matplotlib.image.imread(path)  # (height, width, channels) floats in [0, 1]
    assert image.dtype == np.float32
    return image


def test_confusion_counts_collapsed_fold_keeps_an_empty_column():
    assert confusion_counts(LABELS, np.full(8, 0.61)).tolist() == [[0, 5], [0, 3]]
    assert confusion_counts(LABELS, np.full((8, 1), 0.2)).tolist() == [[5, 0], [3, 0]]
    # A model whose output diverged to NaN predicts class 0 for every row.
    assert confusion_counts(LABELS, np.full(8, math.nan)).tolist() == [[5, 0], [3, 0]]


def test_confusion_counts_one_class_fold_is_still_two_by_two():
    # Rows and columns stay classes 0 and 1 even when neither side mentions class 0.
    assert confusion_counts(np.ones(4), np.full(4, 0.9)).tolist() == [[0, 0], [0, 4]]


def test_confusion_counts_separating_model_fills_the_diagonal():
    assert confusion_counts(LABELS, SEPARATING).tolist() == [[5, 0], [0, 3]]
    # A higher threshold moves the rows between 0.5 and 0.6 to class 0.
    assert confusion_counts(LABELS, SEPARATING, threshold=0.6).tolist() == [[5, 0], [1, 2]]


def test_confusion_counts_agree_with_collapse_metrics():
    # A probability exactly at the threshold is class 1 in both.
    probabilities = np.array([0.5, 0.5, 0.5, 0.2, 0.3, 0.5, 0.9, 0.1])
    counts = confusion_counts(LABELS, probabilities)
    metrics = fold_metrics(LABELS, probabilities, CollapseThresholds())
    predicted_per_class = counts.sum(axis=0)
    assert predicted_per_class.tolist() == [3, 5]
    assert metrics.majority_share == predicted_per_class.max() / LABELS.size
    assert metrics.majority_class == predicted_per_class.argmax()


@pytest.mark.parametrize(
    ("labels", "probabilities", "threshold", "message"),
    [
        (LABELS, SEPARATING[:5], 0.5, "y_true has 8 rows but probabilities has 5"),
        (LABELS + 1, SEPARATING, 0.5, "y_true holds 2, but labels must be 0 or 1"),
        (LABELS, SEPARATING, 1.0, "threshold=1.0 is out of range"),
        (LABELS[:0], SEPARATING[:0], 0.5, "the fold has no rows"),
    ],
)
def test_confusion_counts_bad_input_is_refused(labels, probabilities, threshold, message):
    with pytest.raises(ValueError, match=message):
        confusion_counts(labels, probabilities, threshold)


def test_confusion_figure_writes_counts_in_cells_and_threshold_in_title():
    figure = confusion_figure(3, LABELS, np.full(8, 0.61), threshold=0.4)
    axes = figure.axes[0]
    cells = {text.get_position(): text.get_text() for text in axes.texts}
    # (column = predicted class, row = true class): every row went to class 1.
    assert cells == {(0, 0): "0", (1, 0): "5", (0, 1): "0", (1, 1): "3"}
    assert axes.get_title() == "fold 3: confusion matrix, threshold 0.4"
    assert axes.get_xlabel() == "predicted class"
    assert axes.get_ylabel() == "true class"


def test_probability_figure_collapsed_model_is_one_spike_right_of_threshold():
    bars = _bars(probability_figure(0, LABELS, np.full(8, 0.61)))
    spans = {(left, right) for class_bars in bars.values() for left, right, _ in class_bars}
    assert len(spans) == 1  # one bin holds every row
    ((left, right),) = spans
    assert 0.5 <= left < 0.61 < right
    heights = {label: sum(h for *_, h in class_bars) for label, class_bars in bars.items()}
    assert heights == {"true class 0 (5 rows)": 5, "true class 1 (3 rows)": 3}


def test_probability_figure_separating_model_puts_classes_either_side():
    figure = probability_figure(0, LABELS, SEPARATING)
    bars = _bars(figure)
    assert all(right <= 0.5 for _, right, _ in bars["true class 0 (5 rows)"])
    assert all(left >= 0.5 for left, _, _ in bars["true class 1 (3 rows)"])
    threshold_lines = [line for line in figure.axes[0].lines if line.get_label() == "threshold"]
    assert [line.get_xdata()[0] for line in threshold_lines] == [0.5]
    assert figure.axes[0].get_title() == "fold 0: 3 rows predicted 1, 5 predicted 0"


def test_probability_figure_threshold_is_a_bin_edge():
    # With the threshold inside a bin, a bar would mix rows of both predicted classes.
    bars = _bars(probability_figure(0, LABELS, SEPARATING, threshold=0.33))
    for left, right, _ in [bar for class_bars in bars.values() for bar in class_bars]:
        assert right <= 0.33 + 1e-12 or left >= 0.33 - 1e-12


def test_probability_figure_non_finite_outputs_are_counted_not_drawn():
    probabilities = SEPARATING.copy()
    probabilities[[0, 7]] = [math.nan, math.inf]
    figure = probability_figure(1, LABELS, probabilities)
    bars = _bars(figure)
    assert sum(h for class_bars in bars.values() for *_, h in class_bars) == 6
    assert figure.axes[0].get_title().endswith("2 non-finite outputs not shown")


def test_learning_curves_figure_plots_losses_and_epoch_metrics():
    figure = learning_curves_figure(2, HISTORY, EPOCH_METRICS)
    losses, metrics = figure.axes
    curves = {line.get_label(): line for line in losses.lines}
    assert curves["training loss"].get_ydata().tolist() == HISTORY["loss"]
    assert curves["early-stopping loss"].get_ydata().tolist() == HISTORY["val_loss"]
    assert curves["training loss"].get_xdata().tolist() == [1, 2, 3, 4]
    # The restored weights are those of the epoch with the lowest early-stopping loss.
    assert "lowest early-stopping loss (epoch 3)" in curves
    assert {line.get_label(): line.get_ydata().tolist() for line in metrics.lines} == {
        "majority share": EPOCH_METRICS["majority_share"],
        "balanced accuracy": EPOCH_METRICS["balanced_accuracy"],
    }
    assert metrics.get_ylim()[0] < 0 and metrics.get_ylim()[1] > 1


def test_learning_curves_figure_without_epoch_metrics_has_one_panel():
    assert len(learning_curves_figure(0, HISTORY).axes) == 1
    assert len(learning_curves_figure(0, HISTORY, {}).axes) == 1
    empty = learning_curves_figure(0, {})
    assert [text.get_text() for text in empty.axes[0].texts] == ["no epochs recorded"]


def test_write_fold_artifacts_writes_three_small_nonblank_pngs(tmp_path):
    paths = write_fold_artifacts(tmp_path / "trial", 1, LABELS, SEPARATING, HISTORY, EPOCH_METRICS)
    assert [path.relative_to(tmp_path / "trial").as_posix() for path in paths] == [
        "fold-1/confusion.png",
        "fold-1/probabilities.png",
        "fold-1/learning_curves.png",
    ]
    shapes = [_read_png(path).shape for path in paths]
    assert shapes == [(300, 400, 4), (300, 400, 4), (450, 400, 4)]
    for path in paths:
        image = _read_png(path)
        ink = np.any(image[..., :3] < 0.9, axis=-1).mean()
        assert 0.03 < ink < 0.6, f"{path.name}: {ink:.1%} of pixels are drawn on"
        assert path.stat().st_size < 100_000


def test_write_fold_artifacts_collapsed_and_separating_pictures_differ(tmp_path):
    collapsed = write_fold_artifacts(tmp_path / "a", 0, LABELS, np.full(8, 0.61), HISTORY)
    separating = write_fold_artifacts(tmp_path / "b", 0, LABELS, SEPARATING, HISTORY)
    for before, after in zip(collapsed[:2], separating[:2], strict=True):
        assert _read_png(before).shape == _read_png(after).shape
        assert not np.array_equal(_read_png(before), _read_png(after)), before.name
    # Same history, same picture: the learning curves do not depend on the predictions.
    assert np.array_equal(_read_png(collapsed[2]), _read_png(separating[2]))


def test_write_fold_artifacts_registers_no_pyplot_figure(tmp_path):
    from matplotlib import pyplot

    before = pyplot.get_fignums()
    write_fold_artifacts(tmp_path, 0, LABELS, SEPARATING, HISTORY, EPOCH_METRICS)
    assert pyplot.get_fignums() == before


@pytest.mark.parametrize(
    ("fold", "labels", "message"),
    [(-1, LABELS, "fold must be a non-negative integer"), (0, LABELS[:4], "y_true has 4 rows")],
)
def test_write_fold_artifacts_bad_input_writes_nothing(tmp_path, fold, labels, message):
    with pytest.raises(ValueError, match=message):
        write_fold_artifacts(tmp_path / "trial", fold, labels, SEPARATING, HISTORY)
    assert not (tmp_path / "trial").exists()


def test_write_fold_indices_round_trips_exact_indices(tmp_path):
    labels = np.array([0] * 13 + [1] * 8)
    folds = stratified_folds(labels, 4, seed=7)
    path = write_fold_indices(tmp_path / "study" / "folds.json", folds)

    entries = json.loads(path.read_text())
    assert [entry["fold"] for entry in entries] == [0, 1, 2, 3]
    assert entries[2]["validation"] == folds[2][1].tolist()
    assert len(path.read_text().splitlines()) == 2 + len(folds)  # one line per fold

    read = read_fold_indices(path)
    assert len(read) == len(folds)
    for (train, validation), (train_read, validation_read) in zip(folds, read, strict=True):
        np.testing.assert_array_equal(train_read, train)
        np.testing.assert_array_equal(validation_read, validation)
    validation_rows = np.sort(np.concatenate([validation for _, validation in read]))
    np.testing.assert_array_equal(validation_rows, np.arange(labels.size))


def test_write_fold_indices_refuses_non_integer_rows(tmp_path):
    with pytest.raises(ValueError, match="fold 1: 'validation' must be a one-dimensional"):
        write_fold_indices(
            tmp_path / "folds.json",
            [(np.array([0, 1]), np.array([2])), (np.array([2]), np.array([0.5, 1.0]))],
        )
    assert not (tmp_path / "folds.json").exists()


def test_read_fold_indices_malformed_file_names_the_file(tmp_path):
    path = tmp_path / "folds.json"
    path.write_text('[{"fold": 0, "train": [1, 2], "validation": "3"}]')
    with pytest.raises(ValueError, match=r"folds.json: fold 0: 'validation' must be"):
        read_fold_indices(path)
    path.write_text('[{"fold": 1, "train": [], "validation": []}]')
    with pytest.raises(ValueError, match=r"folds.json: entry 0 is not fold 0"):
        read_fold_indices(path)
    path.write_text("[{")
    with pytest.raises(ValueError, match=r"folds.json: not valid JSON"):
        read_fold_indices(path)


def test_logged_artifacts_are_listed_in_a_real_mlflow_store(tmp_path):
    directory = tmp_path / "trial-0007"
    written = write_fold_artifacts(directory, 0, LABELS, np.full(8, 0.61), HISTORY)
    written += write_fold_artifacts(directory, 1, LABELS, SEPARATING, HISTORY, EPOCH_METRICS)
    folds_file = write_fold_indices(
        tmp_path / "study" / "folds.json", [(np.arange(4), np.arange(4, 8))]
    )

    tracking_uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(
        "artifacts", artifact_location=(tmp_path / "mlartifacts").as_uri()
    )
    run_id = client.create_run(experiment_id).info.run_id
    client.log_artifacts(run_id, str(directory), "plots")
    client.log_artifact(run_id, str(folds_file))

    top = {info.path: info.is_dir for info in client.list_artifacts(run_id)}
    assert top == {"plots": True, "folds.json": False}
    assert [info.path for info in client.list_artifacts(run_id, "plots")] == [
        "plots/fold-0",
        "plots/fold-1",
    ]
    listed = {info.path: info.file_size for info in client.list_artifacts(run_id, "plots/fold-1")}
    assert listed == {f"plots/fold-1/{path.name}": path.stat().st_size for path in written[3:]}

    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path="plots/fold-0/confusion.png",
        dst_path=str(tmp_path / "download"),
        tracking_uri=tracking_uri,
    )
    np.testing.assert_array_equal(_read_png(downloaded), _read_png(written[0]))
