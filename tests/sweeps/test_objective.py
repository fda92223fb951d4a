"""The objective on the demo data: the integer-id embedding collapses, a real-valued one learns."""

import numpy as np
import pytest

from data import read_dataset, stratified_folds
from data.demo import make_demo
from sweeps.collapse import CollapseThresholds, fold_metrics
from sweeps.objective import train_fold
from sweeps.spec import parse_spec


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The default demo dataset (581 rows x 846 values), as `make sweep` writes it."""
    features, labels = make_demo()
    path = tmp_path_factory.mktemp("demo") / "demo.csv"
    table = np.column_stack([labels, features])
    np.savetxt(path, table, delimiter=",", fmt=["%d"] + ["%.6f"] * features.shape[1])
    return read_dataset(path)


def _first_fold(demo, params, max_epochs, **spec_keys):
    spec = parse_spec(
        {
            "name": "t",
            "training": {"max_epochs": max_epochs, "early_stopping_patience": 5},
            **spec_keys,
        }
    )
    train_index, validation_index = stratified_folds(demo.labels, 5, seed=0)[0]
    base = spec.fixed_parameters()
    outcome = train_fold(demo, train_index, validation_index, {**base, **params}, spec, seed=0)
    return fold_metrics(demo.labels[validation_index], outcome.probabilities, CollapseThresholds())


@pytest.mark.slow
def test_train_fold_token_embedding_collapses_on_demo(demo):
    # The user's set-up: unscaled values in [0, 1) cast to ids, so every row embeds alike.
    metrics = _first_fold(
        demo,
        {"embedding": "token", "scaling": "none", "width": 16, "num_heads": 1, "depth": 1},
        max_epochs=3,
    )
    assert metrics.collapsed
    assert metrics.predicted_classes == 1
    assert metrics.probability_std < 1e-6
    assert metrics.balanced_accuracy == 0.5


@pytest.mark.slow
def test_train_fold_patch_embedding_learns_demo(demo):
    metrics = _first_fold(
        demo,
        {
            "embedding": "patch",
            "patch_length": 16,
            "scaling": "per-sample",
            "learning_rate": 3e-3,
            "width": 32,
            "num_heads": 2,
            "depth": 2,
        },
        max_epochs=25,
    )
    assert not metrics.collapsed
    assert metrics.predicted_classes == 2
    assert metrics.balanced_accuracy > 0.75


@pytest.mark.slow
def test_train_fold_user_model_twin_collapses_on_demo(demo):
    # The posted model's structure with a small embed_dim, trained on unscaled values.
    metrics = _first_fold(
        demo,
        {"scaling": "none", "batch_size": 10},
        max_epochs=2,
        model="user",
        user_model={"embed_dim": 16},
    )
    assert metrics.collapsed
    assert metrics.probability_std < 1e-6
