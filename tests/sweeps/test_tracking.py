import numpy as np
import pytest

from sweeps.collapse import CollapseThresholds, fold_metrics
from sweeps.tracking import (
    StudyTracker,
    TrackingConfig,
    TrackingConfigError,
    load_tracking_config,
    redact,
)


@pytest.fixture
def tracker(tmp_path):
    config = TrackingConfig(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=(tmp_path / "artifacts").as_uri(),
    )
    return StudyTracker(config, "study-a")


def test_load_tracking_config_resolves_paths_against_the_file(tmp_path, monkeypatch):
    path = tmp_path / "mlflow.yaml"
    path.write_text("tracking_uri: sqlite:///runs.db\nartifact_location: art\n")
    monkeypatch.chdir("/")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_tracking_config(path)
    assert config.tracking_uri == f"sqlite:///{tmp_path / 'runs.db'}"
    assert config.artifact_location == (tmp_path / "art").as_uri()
    assert config.experiment_name == "{study}"


def test_load_tracking_config_environment_overrides_uri(tmp_path, monkeypatch):
    path = tmp_path / "mlflow.yaml"
    path.write_text("tracking_uri: sqlite:///runs.db\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    config = load_tracking_config(path)
    assert config.tracking_uri == "http://127.0.0.1:5999"
    assert config.artifact_location is None  # the server decides where artifacts go


def test_load_tracking_config_unknown_key_is_refused(tmp_path):
    path = tmp_path / "mlflow.yaml"
    path.write_text("trackinguri: sqlite:///x.db\n")
    with pytest.raises(TrackingConfigError, match=r"mlflow.yaml: unknown key 'trackinguri'"):
        load_tracking_config(path)


def test_redact_hides_password_only():
    assert redact("postgresql://sweep:s3cret@db:5432/optuna") == (
        "postgresql://sweep:***@db:5432/optuna"
    )
    assert redact("optuna-journal.log") == "optuna-journal.log"
    assert redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_study_tracker_nests_trial_runs_and_closes_them(tracker):
    parent = tracker.start_study(
        parent_run_id=None, params={"folds": 2}, tags={"t": "1"}, spec_yaml="name: x\n"
    )
    client = tracker.client
    thresholds = CollapseThresholds()
    outcomes = {0: "COMPLETE", 1: "PRUNED", 2: "FAIL"}
    for number, state in outcomes.items():
        run = tracker.start_trial(number, {"embedding": "patch", "width": 16}, {"k": "v"})
        metrics = fold_metrics(np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.3, 0.6]), thresholds)
        history = {"loss": [0.9, 0.7, 0.6], "val_loss": [1.0, 0.8, 0.9]}
        run.log_fold(0, metrics, history, seconds=2.5)
        run.end(state)
    tracker.end_study()

    runs = client.search_runs([tracker.experiment_id], order_by=["attributes.start_time ASC"])
    trial_runs = [r for r in runs if r.info.run_id != parent]
    assert len(trial_runs) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {parent}
    statuses = {r.data.tags["collapse_sweep.trial_number"]: r.info.status for r in trial_runs}
    assert statuses == {"0": "FINISHED", "1": "KILLED", "2": "FAILED"}
    assert all(r.info.status != "RUNNING" for r in runs)
    first = trial_runs[0]
    assert first.data.params == {"embedding": "patch", "width": "16"}
    assert first.data.metrics["fold/balanced_accuracy"] == 1.0
    assert first.data.metrics["fold/epochs"] == 3
    assert first.data.metrics["fold/seconds"] == 2.5
    curve = client.get_metric_history(first.info.run_id, "val_loss/fold_0")
    assert [(m.step, m.value) for m in curve] == [(0, 1.0), (1, 0.8), (2, 0.9)]
    assert client.get_run(parent).data.params == {"folds": "2"}


def test_study_tracker_reopens_parent_run(tracker):
    parent = tracker.start_study(parent_run_id=None, params={}, tags={}, spec_yaml="")
    tracker.end_study()
    again = StudyTracker(tracker.config, "study-a")
    assert again.start_study(parent_run_id=parent, params={}, tags={}, spec_yaml="") == parent
    assert again.client.get_run(parent).info.status == "RUNNING"
    again.end_study()
    assert again.client.get_run(parent).info.status == "FINISHED"
    assert len(again.client.search_experiments()) == 2  # Default and the study's


def test_study_tracker_fail_trial_runs_closes_a_dead_workers_runs(tracker):
    parent = tracker.start_study(parent_run_id=None, params={}, tags={}, spec_yaml="")
    tracker.trial_tags = {"collapse_sweep.gpu": "none", "collapse_sweep.worker": "1"}
    recorded = tracker.start_trial(4, {"width": 8}, {})
    # A worker killed between opening its run and recording it on the trial.
    unrecorded = tracker.start_trial(5, {"width": 8}, {})
    finished = tracker.start_trial(6, {"width": 8}, {})
    finished.end("COMPLETE")

    assert tracker.fail_trial_runs(4, recorded.run_id, "worker 1 was killed") == [recorded.run_id]
    assert tracker.fail_trial_runs(5, None, "worker 1 was killed") == [unrecorded.run_id]
    assert tracker.fail_trial_runs(6, finished.run_id, "worker 1 was killed") == []

    client = tracker.client
    for run_id in (recorded.run_id, unrecorded.run_id):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED"
        assert run.data.tags["collapse_sweep.trial_state"] == "FAIL"
        assert run.data.tags["collapse_sweep.failure"] == "worker 1 was killed"
        assert run.data.tags["collapse_sweep.gpu"] == "none"
        assert run.data.tags["mlflow.parentRunId"] == parent
    assert client.get_run(finished.run_id).info.status == "FINISHED"


def test_study_tracker_attach_to_a_missing_parent_run_is_refused(tracker):
    tracker.start_study(parent_run_id=None, params={}, tags={}, spec_yaml="")
    other = StudyTracker(tracker.config, "study-a")
    with pytest.raises(TrackingConfigError, match=r"no MLflow run 0123abcd, the parent run of"):
        other.attach("0123abcd")
