"""A whole study through the command line: real TensorFlow, Optuna journal and MLflow store."""

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from data.demo import write_demo
from sweeps.cli import EXIT_BAD_INPUT, main
from sweeps.study import open_storage
from tests.sweeps.conftest import run_args

SPEC = {
    "name": "e2e",
    "seed": 3,
    "budget": {"trials": 2},
    "cv": {"folds": 2},
    "training": {"max_epochs": 3, "early_stopping_patience": 2},
    "pruner": {"name": "none"},
    "search": {
        "embedding": ["linear", "patch"],
        "patch_length": {"low": 4, "high": 8},
        "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    },
    "fixed": {"width": 8, "num_heads": 2, "depth": 1, "batch_size": 16},
}


@pytest.fixture
def spec_path(tmp_path):
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def _runs(stores, study_name):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{stores['mlflow_db']}")
    experiment = client.get_experiment_by_name(study_name)
    return client, client.search_runs([experiment.experiment_id])


def test_main_study_logs_every_trial_and_resumes(spec_path, small_data, stores):
    assert main(run_args(spec_path, small_data, stores)) == 0

    study = optuna.load_study(study_name="e2e-small", storage=open_storage(str(stores["storage"])))
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        assert 0.0 <= trial.value <= 1.0
        assert trial.user_attrs["folds_run"] == 2
        assert "collapsed_folds" in trial.user_attrs
        # One report per fold, at the last step of the block of 3 epoch steps each fold owns.
        assert sorted(trial.intermediate_values) == [2, 5]
    assert study.user_attrs["spec"]["cv"]["folds"] == 2

    client, runs = _runs(stores, "e2e-small")
    parents = [r for r in runs if r.data.tags.get("collapse_sweep.role") == "study"]
    children = [r for r in runs if r.data.tags.get("collapse_sweep.role") == "trial"]
    assert len(parents) == 1
    assert len(children) == 2
    assert all(run.info.status == "FINISHED" for run in runs)
    parent = parents[0]
    assert parent.data.params["data_rows"] == "60"
    assert parent.data.params["metric"] == "balanced_accuracy"
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert "spec.resolved.yaml" in artifacts

    by_number = {int(r.data.tags["collapse_sweep.trial_number"]): r for r in children}
    for trial in study.trials:
        run = by_number[trial.number]
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["collapse_sweep.trial_state"] == "COMPLETE"
        assert run.data.tags["collapse_sweep.data_sha256"] == study.user_attrs["data_sha256"]
        # Every sampled and fixed parameter is on the run.
        for name, value in {**trial.params, **SPEC["fixed"]}.items():
            assert run.data.params[name] == str(value)
        assert "scaling" in run.data.params  # a default, made explicit
        metrics = run.data.metrics
        assert metrics["balanced_accuracy"] == pytest.approx(trial.value)
        for name in ("majority_share", "probability_std", "collapsed_folds", "mcc", "roc_auc"):
            assert name in metrics
        assert metrics["collapsed_folds"] == trial.user_attrs["collapsed_folds"]
        fold_values = client.get_metric_history(run.info.run_id, "fold/balanced_accuracy")
        assert sorted(m.step for m in fold_values) == [0, 1]
        assert client.get_metric_history(run.info.run_id, "loss/fold_1")
        assert client.get_metric_history(run.info.run_id, "val_loss/fold_0")

    # The same command again resumes the finished study and adds nothing.
    assert main(run_args(spec_path, small_data, stores)) == 0
    assert (
        len(
            optuna.load_study(
                study_name="e2e-small", storage=open_storage(str(stores["storage"]))
            ).trials
        )
        == 2
    )
    assert len(_runs(stores, "e2e-small")[1]) == 5  # parent, 2 trials, 2 baselines

    # A larger budget from the command line adds only the difference.
    assert main(run_args(spec_path, small_data, stores, "--trials", "3")) == 0
    client, runs = _runs(stores, "e2e-small")
    assert len(runs) == 6
    assert len([r for r in runs if r.data.tags["collapse_sweep.role"] == "study"]) == 1
    assert all(run.info.status == "FINISHED" for run in runs)


def test_main_refuses_to_resume_on_different_data(spec_path, small_data, stores, caplog):
    assert main(run_args(spec_path, small_data, stores, "--trials", "1")) == 0
    write_demo(small_data.with_name("changed.xlsx"), num_rows=60, num_values=64, seed=2)
    small_data.unlink()
    small_data.with_name("changed.xlsx").rename(small_data)

    assert main(run_args(spec_path, small_data, stores, "--trials", "2")) == EXIT_BAD_INPUT
    assert "was run on different data" in caplog.text
    assert "--study" in caplog.text
