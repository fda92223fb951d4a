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


COLLAPSE_SPEC = {
    "name": "watch",
    "cv": {"folds": 2},
    "training": {"max_epochs": 8, "early_stopping_patience": None},
    "collapse": {"warmup_epochs": 1, "prune_after_epochs": 2},
    "search": {
        "embedding": ["token", "patch"],
        "scaling": ["none", "standard"],
        "pooling": ["avg", "flatten"],
    },
    "fixed": {
        "patch_length": 8,
        "width": 8,
        "num_heads": 2,
        "depth": 1,
        "batch_size": 16,
        "learning_rate": 0.003,
    },
}


def test_a_collapsed_fold_prunes_its_trial_and_says_why(tmp_path):
    import mlflow
    import optuna
    from optuna.trial import TrialState

    from data.demo import write_demo
    from sweeps.objective import Objective
    from sweeps.tracking import StudyTracker, TrackingConfig

    spec = parse_spec(COLLAPSE_SPEC)
    dataset = read_dataset(write_demo(tmp_path / "d.xlsx", num_rows=120, num_values=64, seed=1))
    folds = stratified_folds(dataset.labels, 2, seed=0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(TrackingConfig(uri, str(tmp_path / "artifacts")), "watch")
    tracker.start_study(parent_run_id=None, params={}, tags={}, spec_yaml="")
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    # Unscaled values in [0, 1) all become token id 0, so every row embeds alike; the same
    # values standardised and cut into patches keep the rows apart.
    study.enqueue_trial({"embedding": "token", "scaling": "none", "pooling": "avg"})
    study.enqueue_trial({"embedding": "patch", "scaling": "standard", "pooling": "flatten"})
    study.optimize(Objective(spec, dataset, folds, tracker), n_trials=2)
    token, patch = study.trials

    # Collapsed from the first epoch; the streak counts from epoch 1 (after the warm-up),
    # so the first fold stops at epoch 2 and the second fold never runs.
    assert token.state == TrialState.PRUNED
    assert token.user_attrs["prune_reason"] == "collapsed"
    assert token.user_attrs["first_collapsed_epochs"] == [0]
    assert token.user_attrs["folds_run"] == 1
    assert list(token.intermediate_values) == [2]  # fold 0, epoch 2
    # Infeasible: one collapsed fold of one, plus a tie-break for its chance-level score.
    assert token.constraints == {"collapse": pytest.approx(1.0025)}
    # Every row got the same probability: a constant output, not just one class.
    assert token.user_attrs["constant_folds"] == 1

    assert patch.state == TrialState.COMPLETE
    assert "prune_reason" not in patch.user_attrs
    assert sorted(patch.intermediate_values) == [7, 15]  # the last step of each fold's block
    assert patch.constraints == {"collapse": 0.0}
    assert patch.user_attrs["constant_folds"] == 0
    assert study.best_trial.number == patch.number

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(token.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert run.data.tags["collapse_sweep.prune_reason"] == "collapsed"
    assert "stayed collapsed for 2 epochs" in run.data.tags["collapse_sweep.prune_detail"]
    curve = client.get_metric_history(run.info.run_id, "majority_share/fold_0")
    assert [(m.step, m.value) for m in curve] == [(0, 1.0), (1, 1.0), (2, 1.0)]
    assert client.get_metric_history(run.info.run_id, "fold/first_collapsed_epoch")[0].value == 0
    patch_run_id = patch.user_attrs["mlflow_run_id"]
    assert len(client.get_metric_history(patch_run_id, "balanced_accuracy/fold_1")) == 8

    # Every trial keeps its pictures per fold and the folds it was scored on.
    def artifacts(run_id: str, path: str | None = None) -> list[str]:
        return sorted(item.path for item in client.list_artifacts(run_id, path))

    assert artifacts(patch_run_id) == ["folds.json", "plots"]
    assert artifacts(patch_run_id, "plots") == ["plots/fold-0", "plots/fold-1"]
    assert artifacts(patch_run_id, "plots/fold-1") == [
        "plots/fold-1/confusion.png",
        "plots/fold-1/learning_curves.png",
        "plots/fold-1/probabilities.png",
    ]
    assert artifacts(run.info.run_id, "plots") == ["plots/fold-0"]  # the fold that ran
