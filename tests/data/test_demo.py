"""The demo data: seeded, in [0, 1), balanced or not on request, and readable by read_dataset.

The demo's purpose rests on one property tested here: its class lies in the order of the
values, so a model that ignores order cannot beat chance while one that keeps it can.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from data import make_demo, read_dataset, write_demo
from data.demo import main

SMALL = {"num_rows": 30, "num_values": 20}


@pytest.fixture(scope="module")
def demo() -> tuple[np.ndarray, np.ndarray]:
    return make_demo()


def cross_validated_balanced_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    # One BLAS thread: on a busy machine, threads that wait for each other made this ten
    # times slower (8 s against 0.8 s for both scores).
    with threadpool_limits(limits=1):
        scores = cross_val_score(model, features, labels, cv=folds, scoring="balanced_accuracy")
    return float(scores.mean())


def test_make_demo_has_the_users_shape(demo: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = demo

    assert features.shape == (581, 846)
    assert features.dtype == np.float64
    assert labels.shape == (581,)
    assert set(np.unique(labels)) == {0, 1}


def test_make_demo_values_lie_in_unit_interval(demo: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = demo

    assert features.min() >= 0.0
    assert features.max() < 1.0
    # Every value would become the same integer token id, which is what makes the demo
    # reproduce the one-class predictions.
    assert np.unique(features.astype(np.int32)).tolist() == [0]


def test_make_demo_is_balanced_by_default(demo: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = demo

    assert abs(int(labels.sum()) - labels.size / 2) <= 1


def test_make_demo_follows_positive_share() -> None:
    _, labels = make_demo(num_rows=200, num_values=20, positive_share=0.25)

    assert int(labels.sum()) == 50


def test_make_demo_is_deterministic_for_a_seed() -> None:
    features, labels = make_demo(**SMALL, seed=3)
    features_again, labels_again = make_demo(**SMALL, seed=3)
    features_other, _ = make_demo(**SMALL, seed=4)

    np.testing.assert_array_equal(features, features_again)
    np.testing.assert_array_equal(labels, labels_again)
    assert not np.array_equal(features, features_other)


def test_make_demo_class_lies_in_value_order(demo: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = demo

    # Sorting each row keeps its mean, spread and histogram and destroys the order.
    order_blind = cross_validated_balanced_accuracy(np.sort(features, axis=1), labels)
    ordered = cross_validated_balanced_accuracy(features, labels)

    assert order_blind == pytest.approx(0.5, abs=0.08)
    assert ordered > 0.85


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_rows": 1},
        {"num_values": 5},
        {"positive_share": 0.0},
        {"positive_share": 1.0},
        {"seed": -1},
        {"num_rows": 10.5},
    ],
)
def test_make_demo_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    name = next(iter(kwargs))

    with pytest.raises(ValueError, match=name):
        make_demo(**kwargs)


@pytest.mark.parametrize("suffix", ["xlsx", "csv"])
def test_write_demo_round_trips_through_read_dataset(tmp_path: Path, suffix: str) -> None:
    features, labels = make_demo(**SMALL, seed=5)

    path = write_demo(tmp_path / f"demo.{suffix}", **SMALL, seed=5)
    dataset = read_dataset(path)

    assert path == tmp_path / f"demo.{suffix}"
    np.testing.assert_allclose(dataset.features, features, rtol=1e-6)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.label_mapping == {"0": 0, "1": 1}


def test_write_demo_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.xlsx or \.csv"):
        write_demo(tmp_path / "demo.parquet", **SMALL)


def test_main_writes_file_and_logs_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "demo.csv"
    argv = ["--out", str(out), "--rows", "30", "--values", "20", "--positive-share", "0.25"]

    with caplog.at_level(logging.INFO, logger="data.demo"):
        status = main([*argv, "--seed", "2"])

    assert status == 0
    dataset = read_dataset(out)
    assert dataset.features.shape == (30, 20)
    assert int(dataset.labels.sum()) == 8  # round(0.25 * 30)
    demo_messages = [
        record.getMessage() for record in caplog.records if record.name == "data.demo"
    ]
    assert len(demo_messages) == 1
    assert str(out) in demo_messages[0]


def test_main_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo.csv"
    out.write_text("keep me\n")

    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(out), "--rows", "30", "--values", "20"])

    assert exit_info.value.code == 2
    assert out.read_text() == "keep me\n"
    assert "--force" in capsys.readouterr().err


def test_main_overwrites_with_force(tmp_path: Path) -> None:
    out = tmp_path / "demo.csv"
    out.write_text("replace me\n")

    assert main(["--out", str(out), "--rows", "30", "--values", "20", "--force"]) == 0
    assert read_dataset(out).features.shape == (30, 20)


def test_main_help_describes_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--out", "--rows", "--values", "--positive-share", "--seed", "--force"):
        assert option in help_text


def test_main_rejects_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.csv"

    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(out), "--positive-share", "1.5"])

    assert exit_info.value.code == 2
    assert "positive_share" in capsys.readouterr().err
    assert not out.exists()
