import os
import socket
import subprocess
import sys

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sweeps.cli import EXIT_BAD_INPUT, main
from sweeps.collapse import CONSTRAINT_NAME, CollapseThresholds, collapse_violation, fold_metrics
from sweeps.runner import SweepError, run_until_budget
from sweeps.spec import parse_spec
from sweeps.study import (
    HEARTBEAT_GRACE_VARIABLE,
    HEARTBEAT_INTERVAL_VARIABLE,
    WORKER_ATTR,
    BudgetGate,
    BudgetLock,
    StorageError,
    heartbeat_timing,
    is_alive_here,
    load_or_create_study,
    open_storage,
    trials_counted,
    worker_attrs,
)

SPEC = parse_spec({"name": "t", "search": {"embedding": ["token", "patch"]}})


@pytest.fixture(params=["journal", "sqlite"])
def storage_url(request, tmp_path):
    if request.param == "journal":
        return str(tmp_path / "journal.log")
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _objective(trial):
    embedding = trial.suggest_categorical("embedding", ["token", "patch"])
    trial.set_user_attr("collapsed_folds", 2 if embedding == "token" else 0)
    trial.set_user_attr("folds_run", 2)
    return 0.5 if embedding == "token" else 0.9


def test_run_until_budget_resumed_study_adds_no_trial(storage_url):
    study = load_or_create_study(open_storage(storage_url), "s", SPEC)
    assert run_until_budget(study, _objective, 5, metric="balanced_accuracy") == 5

    reopened = load_or_create_study(open_storage(storage_url), "s", SPEC)
    assert run_until_budget(reopened, _objective, 5, metric="balanced_accuracy") == 0
    assert trials_counted(reopened) == 5

    # A larger budget adds only the difference.
    assert run_until_budget(reopened, _objective, 7, metric="balanced_accuracy") == 2
    assert len(reopened.trials) == 7


def test_run_until_budget_spends_a_whole_grid(tmp_path):
    # The grid sampler stops the study when its last grid point is told; outside
    # study.optimize that must not end the sweep with an error.
    spec = parse_spec(
        {"name": "g", "sampler": {"name": "grid"}, "search": {"embedding": ["token", "patch"]}}
    )
    study = load_or_create_study(open_storage(str(tmp_path / "j.log")), "g", spec)
    assert run_until_budget(study, _objective, 2, metric="balanced_accuracy") == 2
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 2
    assert {trial.params["embedding"] for trial in study.trials} == {"token", "patch"}


def test_run_until_budget_workers_share_a_grid_without_repeating_a_point(tmp_path):
    spec = parse_spec(
        {
            "name": "g",
            "sampler": {"name": "grid"},
            "search": {"embedding": ["token", "patch", "conv"], "pooling": ["avg", "cls"]},
        }
    )
    url = str(tmp_path / "j.log")
    workers = [load_or_create_study(open_storage(url), "g", spec, worker=w) for w in (0, 1)]

    def objective(trial):
        trial.suggest_categorical("embedding", ["token", "patch", "conv"])
        trial.suggest_categorical("pooling", ["avg", "cls"])
        return 0.5

    # The two workers take turns, each asking the shared study for its next trial.
    for turn in range(6):
        run_until_budget(workers[turn % 2], objective, turn + 1, metric="balanced_accuracy")
    points = [tuple(trial.params.values()) for trial in workers[0].trials]
    assert len(points) == 6
    assert len(set(points)) == 6, points


def test_run_until_budget_failed_trials_are_retried(tmp_path):
    study = load_or_create_study(open_storage(str(tmp_path / "j.log")), "s", SPEC)
    calls = []

    def flaky(trial):
        calls.append(trial.number)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return _objective(trial)

    run_until_budget(study, flaky, 3, metric="balanced_accuracy")
    states = [trial.state for trial in study.trials]
    assert states.count(TrialState.COMPLETE) == 3
    assert states.count(TrialState.FAIL) == 1


def test_run_until_budget_stops_when_every_trial_fails(tmp_path):
    study = load_or_create_study(open_storage(str(tmp_path / "j.log")), "s", SPEC)

    def broken(trial):
        raise RuntimeError("broken")

    with pytest.raises(SweepError, match="3 trials in a row failed"):
        run_until_budget(study, broken, 10, metric="balanced_accuracy")
    assert len(study.trials) == 3


def test_load_or_create_study_same_name_shares_trials(storage_url):
    first = load_or_create_study(open_storage(storage_url), "shared", SPEC)
    first.optimize(_objective, n_trials=2)
    second = load_or_create_study(open_storage(storage_url), "shared", SPEC, worker=1)
    assert len(second.trials) == 2
    assert second.direction == optuna.study.StudyDirection.MAXIMIZE


def test_run_until_budget_interrupt_fails_the_trial_and_stops(tmp_path):
    study = load_or_create_study(open_storage(str(tmp_path / "j.log")), "s", SPEC)

    def interrupted(trial):
        trial.suggest_float("x", 0.0, 1.0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_until_budget(study, interrupted, 3, metric="balanced_accuracy")
    assert [trial.state for trial in study.trials] == [TrialState.FAIL]


def test_run_until_budget_pruned_trials_count_and_nan_fails(tmp_path):
    study = load_or_create_study(open_storage(str(tmp_path / "j.log")), "s", SPEC)
    outcomes = iter(["pruned", "nan", "value"])

    def objective(trial):
        outcome = next(outcomes)
        trial.report(0.4, step=0)
        if outcome == "pruned":
            raise optuna.TrialPruned("below the median")
        return float("nan") if outcome == "nan" else 0.7

    run_until_budget(study, objective, 2, metric="balanced_accuracy")
    states = [trial.state for trial in study.trials]
    assert states == [TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[0].value == 0.4  # a pruned trial keeps its last reported value


def _gate(storage_url, on_abandoned=None):
    storage = open_storage(storage_url)
    study = load_or_create_study(storage, "g", SPEC)
    return study, BudgetGate.for_storage(storage, storage_url, "g", on_abandoned=on_abandoned)


def test_budget_gate_counts_running_trials_and_records_the_worker(storage_url):
    study, gate = _gate(storage_url)
    worker = worker_attrs(index=3, gpu="none", threads=2)
    first = gate.ask(study, 2, worker)
    second = gate.ask(study, 2, worker)
    assert first is not None and second is not None
    # Both are running: the budget is taken, though nothing has finished.
    assert gate.ask(study, 2, worker) is None
    study.tell(second, state=TrialState.FAIL)
    third = gate.ask(study, 2, worker)  # a failed trial gives its place back
    assert third is not None
    recorded = study.trials[third.number].user_attrs[WORKER_ATTR]
    assert recorded["index"] == 3
    assert recorded["pid"] == os.getpid()
    assert recorded["host"] == socket.gethostname()
    assert (recorded["gpu"], recorded["threads"]) == ("none", 2)


def test_budget_gate_fail_abandoned_fails_dead_and_unnamed_trials_only(tmp_path):
    abandoned = []
    study, gate = _gate(
        str(tmp_path / "j.log"), on_abandoned=lambda trial, why: abandoned.append(trial.number)
    )
    live = gate.ask(study, 10, worker_attrs(index=0, gpu="none", threads=1))
    # A trial whose worker is a process that has since exited.
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = gate.ask(study, 10, worker_attrs(index=1, gpu="none", threads=1))
    dead.set_user_attr(
        WORKER_ATTR, {"index": 1, "host": socket.gethostname(), "pid": int(exited.stdout)}
    )
    unnamed = study.ask()  # created outside the gate: no worker recorded

    failed = gate.fail_abandoned(study, lambda w: not is_alive_here(w), "its worker is gone")
    assert sorted(trial.number for trial in failed) == sorted([dead.number, unnamed.number])
    assert sorted(abandoned) == sorted([dead.number, unnamed.number])
    states = {trial.number: trial.state for trial in study.trials}
    assert states == {
        live.number: TrialState.RUNNING,
        dead.number: TrialState.FAIL,
        unnamed.number: TrialState.FAIL,
    }


def test_is_alive_here_tells_a_reused_pid_and_other_hosts_apart():
    me = worker_attrs(index=0, gpu="none", threads=None)
    assert is_alive_here(me)
    assert not is_alive_here({**me, "process": "another-boot:12345"})
    assert is_alive_here({**me, "host": "elsewhere.example", "pid": 1})


def test_budget_lock_sits_beside_file_storages(tmp_path):
    journal = BudgetLock(str(tmp_path / "j.log"), "s")
    assert journal.path == tmp_path / "j.log.budget.lock"
    sqlite = BudgetLock(f"sqlite:///{tmp_path / 'o.db'}", "s")
    assert sqlite.path == tmp_path / "o.db.budget.lock"
    with journal.held():
        assert journal.path.exists()
    # Different studies get different database lock keys; the same study always the same.
    assert BudgetLock("x.log", "a").key == BudgetLock("y.log", "a").key
    assert BudgetLock("x.log", "a").key != BudgetLock("x.log", "b").key


def test_heartbeat_timing_from_the_environment(monkeypatch):
    monkeypatch.delenv(HEARTBEAT_INTERVAL_VARIABLE, raising=False)
    monkeypatch.delenv(HEARTBEAT_GRACE_VARIABLE, raising=False)
    assert heartbeat_timing() == (60, 180)
    monkeypatch.setenv(HEARTBEAT_INTERVAL_VARIABLE, "2")
    monkeypatch.setenv(HEARTBEAT_GRACE_VARIABLE, "10")
    assert heartbeat_timing() == (2, 10)
    monkeypatch.setenv(HEARTBEAT_GRACE_VARIABLE, "ten")
    with pytest.raises(StorageError, match=r"SWEEP_HEARTBEAT_GRACE_S='ten': expected a whole"):
        heartbeat_timing()
    monkeypatch.setenv(HEARTBEAT_GRACE_VARIABLE, "2")
    with pytest.raises(StorageError, match="is not longer than SWEEP_HEARTBEAT_INTERVAL_S=2"):
        heartbeat_timing()


def test_a_bad_heartbeat_setting_is_refused_before_any_trial(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(HEARTBEAT_INTERVAL_VARIABLE, "0")
    argv = [
        "worker",
        "--study",
        "s",
        "--storage",
        f"postgresql://u:pw@127.0.0.1:1/{tmp_path.name}",
    ]
    assert main(argv) == EXIT_BAD_INPUT
    assert "SWEEP_HEARTBEAT_INTERVAL_S='0': expected a whole number of seconds" in caplog.text


def _ranking_but_collapsing_objective(constrained: bool):
    """A trial whose score is best exactly where its predictions collapse.

    Higher learning rates rank the rows better (ROC AUC rises towards 1), but above 3e-3
    every probability stays under the threshold: one class for all rows, which ROC AUC does
    not see. That is the trap the constraint is for.
    """
    labels = np.array([1] * 12 + [0] * 36)
    thresholds = CollapseThresholds()

    def objective(trial):
        learning_rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        noise = np.random.default_rng(trial.number).normal(size=labels.size)
        # Less noise at a higher rate: a better ranking of the same rows.
        spread = 0.2 + 2.0 * (np.log10(1e-1) - np.log10(learning_rate))
        logits = 2.0 * labels - 1.0 + spread * noise
        probabilities = 1 / (1 + np.exp(-logits))
        if learning_rate > 3e-3:
            probabilities = 0.4 * probabilities  # every row under 0.5: collapsed
        folds = [fold_metrics(labels, probabilities, thresholds)]
        trial.set_user_attr("collapsed_folds", int(folds[0].collapsed))
        if constrained:
            trial.set_constraint(CONSTRAINT_NAME, collapse_violation(folds, "roc_auc"))
        return folds[0].roc_auc

    return objective


def test_make_sampler_collapse_constraint_steers_tpe_away_from_collapse(tmp_path):
    spec = parse_spec(
        {
            "name": "c",
            "cv": {"metric": "roc_auc"},
            "sampler": {"name": "tpe", "startup_trials": 8},
            "search": {"learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}},
        }
    )
    shares = {}
    for constrained in (True, False):
        storage = open_storage(str(tmp_path / f"{constrained}.log"))
        study = load_or_create_study(storage, "c", spec)
        objective = _ranking_but_collapsing_objective(constrained)
        run_until_budget(study, objective, 40, metric="roc_auc")
        proposed = [trial for trial in study.trials if trial.number >= 8]
        shares[constrained] = sum(t.user_attrs["collapsed_folds"] for t in proposed) / 32

    # Led by the metric alone, TPE settles where the model collapses; told of the
    # collapse, it keeps mostly below the rate where that begins. (Over seeds 0 to 5 the
    # shares were 12 to 31 % with the constraint and 88 to 97 % without.)
    assert shares[False] >= 0.7, shares
    assert shares[True] <= 0.4, shares
