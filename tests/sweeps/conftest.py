"""Fixtures for sweeps tests: small real data files and a private store for each test."""

from pathlib import Path

import pytest

from data.demo import write_demo


@pytest.fixture
def small_data(tmp_path) -> Path:
    """A demo-like spreadsheet small enough to train on in a second: 60 rows x 64 values."""
    return write_demo(tmp_path / "small.xlsx", num_rows=60, num_values=64, seed=1)


@pytest.fixture
def stores(tmp_path) -> dict[str, Path]:
    """Paths for an Optuna journal and an MLflow config that points into tmp_path."""
    config = tmp_path / "mlflow.yaml"
    config.write_text("tracking_uri: sqlite:///mlflow.db\nartifact_location: artifacts\n")
    return {
        "storage": tmp_path / "journal.log",
        "config": config,
        "mlflow_db": tmp_path / "mlflow.db",
    }


def run_args(spec: Path, data: Path, stores: dict[str, Path], *extra: str) -> list[str]:
    """The `sweep run` arguments for a test that keeps every store inside tmp_path."""
    return [
        "run",
        "--spec",
        str(spec),
        "--data",
        str(data),
        "--storage",
        str(stores["storage"]),
        "--tracking-config",
        str(stores["config"]),
        *extra,
    ]
