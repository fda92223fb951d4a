import sys
import types

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from data import make_demo, read_dataset, stratified_folds
from sweeps.baselines import BASELINES, cross_validate_baseline, log_baselines, make_baseline
from sweeps.cli import main
from sweeps.collapse import CollapseThresholds
from sweeps.spec import parse_spec
from sweeps.study import load_or_create_study, open_storage
from sweeps.tracking import StudyTracker, TrackingConfig
from tests.sweeps.conftest import run_args

SPEC = parse_spec({"name": "base", "cv": {"folds": 5}})


def _folds(dataset):
    """The folds `sweep run` scores both the baselines and every trial on."""
    return stratified_folds(dataset.labels, SPEC.cv.folds, SPEC.seed)


@pytest.fixture
def dataset(tmp_path):
    # 256 values rather than 64: the class peaks sit at 30% and 60% of the row, each jittered
    # by about 20 columns, so with 64 values (19 columns apart) they overlap too much for a
    # linear model to reach 0.7; with 256 (77 apart) it scores about 0.72.
    features, labels = make_demo(num_rows=80, num_values=256)
    path = tmp_path / "demo.csv"
    pd.DataFrame(np.column_stack([labels, features])).astype({0: int}).to_csv(
        path, header=False, index=False
    )
    return read_dataset(path)


@pytest.fixture
def tracker(tmp_path):
    config = TrackingConfig(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=(tmp_path / "artifacts").as_uri(),
    )
    tracker = StudyTracker(config, "base-demo")
    tracker.start_study(parent_run_id=None, params={}, tags={}, spec_yaml="name: base\n")
    return tracker


@pytest.fixture
def study(tmp_path):
    return load_or_create_study(open_storage(str(tmp_path / "journal.log")), "base-demo", SPEC)


def _baseline_runs(tracker):
    runs = tracker.client.search_runs([tracker.experiment_id])
    return {
        run.data.tags["collapse_sweep.baseline"]: run
        for run in runs
        if run.data.tags.get("collapse_sweep.role") == "baseline"
    }


def test_log_baselines_majority_collapses_in_every_fold(study, tracker, dataset):
    summaries = log_baselines(study, tracker, SPEC, dataset, folds=_folds(dataset))

    majority = summaries["majority"]
    assert majority["collapsed_folds"] == SPEC.cv.folds
    assert majority["balanced_accuracy"] == 0.5
    run = _baseline_runs(tracker)["majority"]
    assert run.data.tags["collapse_sweep.collapsed"] == "true"
    assert run.data.tags["collapse_sweep.collapse"].startswith("collapsed in 5 of 5 folds")
    for name in ("fold/collapsed", "fold/balanced_accuracy"):
        history = tracker.client.get_metric_history(run.info.run_id, name)
        assert sorted(m.step for m in history) == list(range(SPEC.cv.folds))
        assert {m.value for m in history} == ({1.0} if name == "fold/collapsed" else {0.5})


def test_log_baselines_logistic_learns_without_collapse(study, tracker, dataset):
    summaries = log_baselines(study, tracker, SPEC, dataset, folds=_folds(dataset))

    logistic = summaries["logistic"]
    assert logistic["collapsed_folds"] == 0
    assert logistic["balanced_accuracy"] > 0.7
    run = _baseline_runs(tracker)["logistic"]
    assert run.data.tags["collapse_sweep.collapsed"] == "false"
    assert run.data.metrics["balanced_accuracy"] == pytest.approx(logistic["balanced_accuracy"])
    assert run.data.params["estimator"] == "StandardScaler+LogisticRegression"


def test_log_baselines_runs_are_finished_children_of_the_parent(study, tracker, dataset):
    log_baselines(study, tracker, SPEC, dataset, folds=_folds(dataset))

    runs = _baseline_runs(tracker)
    assert set(runs) == set(BASELINES)
    for name, run in runs.items():
        assert run.data.tags["mlflow.parentRunId"] == tracker.parent_run_id
        assert run.data.tags["collapse_sweep.role"] == "baseline"
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"baseline-{name}"
        assert run.info.experiment_id == tracker.experiment_id


def test_log_baselines_keeps_mean_metrics_in_study_user_attrs(study, tracker, dataset, tmp_path):
    summaries = log_baselines(study, tracker, SPEC, dataset, folds=_folds(dataset))

    reloaded = optuna.load_study(
        study_name="base-demo", storage=open_storage(str(tmp_path / "journal.log"))
    )
    for name in BASELINES:
        stored = reloaded.user_attrs[f"baseline_{name}"]
        assert stored["balanced_accuracy"] == pytest.approx(summaries[name]["balanced_accuracy"])
        assert stored["folds_run"] == SPEC.cv.folds


def test_log_baselines_twice_logs_them_once(study, tracker, dataset):
    first = log_baselines(study, tracker, SPEC, dataset, folds=_folds(dataset))
    resumed = StudyTracker(tracker.config, "base-demo")
    resumed.start_study(
        parent_run_id=tracker.parent_run_id, params={}, tags={}, spec_yaml="name: base\n"
    )
    second = log_baselines(study, resumed, SPEC, dataset, folds=_folds(dataset))

    runs = tracker.client.search_runs([tracker.experiment_id])
    roles = [run.data.tags.get("collapse_sweep.role") for run in runs]
    assert roles.count("baseline") == len(BASELINES)
    assert second["logistic"]["balanced_accuracy"] == first["logistic"]["balanced_accuracy"]


def test_cross_validate_baseline_majority_predicts_training_class_share(dataset):
    # Uneven folds: the training share of class 1 differs from 0.5 in each of them.
    folds = [(np.arange(0, 60), np.arange(60, 80)), (np.arange(20, 80), np.arange(0, 20))]
    results = cross_validate_baseline("majority", dataset, folds, CollapseThresholds())
    for (train_index, _), (metrics, seconds) in zip(folds, results, strict=True):
        share = dataset.labels[train_index].mean()
        assert metrics.probability_std == pytest.approx(0.0, abs=1e-12)
        assert metrics.majority_class == int(share >= 0.5)
        assert metrics.collapsed
        assert seconds >= 0.0


def test_make_baseline_unknown_name_is_refused():
    with pytest.raises(ValueError, match=r"unknown baseline 'forest'; expected one of"):
        make_baseline("forest")


class _CheapObjective:
    """Stands in for sweeps.objective.Objective, which would import TensorFlow and train."""

    def __init__(self, spec, dataset, folds, tracker):
        self.tracker = tracker
        self.num_folds = len(folds)

    def __call__(self, trial):
        params = {"embedding": trial.suggest_categorical("embedding", ["token", "patch"])}
        run = self.tracker.start_trial(trial.number, params, {})
        trial.set_user_attr("mlflow_run_id", run.run_id)
        trial.set_user_attr("collapsed_folds", 0)
        trial.set_user_attr("folds_run", self.num_folds)
        run.end("COMPLETE")
        return 0.6


def test_main_run_logs_baselines_once_per_study(tmp_path, stores, small_data, monkeypatch):
    cheap = types.ModuleType("sweeps.objective")
    cheap.Objective = _CheapObjective
    monkeypatch.setitem(sys.modules, "sweeps.objective", cheap)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: cli\nbudget: {trials: 1}\ncv: {folds: 2}\n")

    assert main(run_args(spec, small_data, stores)) == 0
    assert main(run_args(spec, small_data, stores, "--trials", "2")) == 0

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{stores['mlflow_db']}")
    experiment = client.get_experiment_by_name("cli-small")
    runs = client.search_runs([experiment.experiment_id])
    roles = sorted(run.data.tags["collapse_sweep.role"] for run in runs)
    assert roles == ["baseline", "baseline", "study", "trial", "trial"]
    parent = next(run for run in runs if run.data.tags["collapse_sweep.role"] == "study")
    baselines = [run for run in runs if run.data.tags["collapse_sweep.role"] == "baseline"]
    assert {run.data.tags["mlflow.parentRunId"] for run in baselines} == {parent.info.run_id}
    assert all(run.data.metrics["folds_run"] == 2 for run in baselines)
    study = optuna.load_study(study_name="cli-small", storage=open_storage(str(stores["storage"])))
    assert study.user_attrs["baseline_majority"]["collapsed_folds"] == 2
