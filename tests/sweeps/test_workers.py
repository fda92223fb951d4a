"""Parallel workers: the plan each worker gets, the budget under a race, and real workers.

The worker tests start real `sweep` processes that train real (tiny) TensorFlow models
against a journal file and a SQLite MLflow store, kill one of them, and interrupt them.
"""

import logging
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sweeps.cli import EXIT_BAD_INPUT, main
from sweeps.runner import run_until_budget
from sweeps.spec import parse_spec
from sweeps.study import WORKER_ATTR, load_or_create_study, open_storage
from sweeps.tracking import StudyTracker, TrackingConfig
from sweeps.workers import (
    THREAD_VARIABLES,
    WorkerPlanError,
    available_cpus,
    closing_runs_on_failure,
    find_gpus,
    plan_workers,
)
from tests.sweeps.conftest import run_args

REPOSITORY = Path(__file__).resolve().parents[2]

SPEC = {
    "name": "par",
    "seed": 5,
    "budget": {"trials": 2},
    "cv": {"folds": 2},
    "training": {"max_epochs": 1, "early_stopping_patience": None},
    "sampler": {"name": "random"},
    "pruner": {"name": "none"},
    "search": {
        "embedding": ["linear", "patch"],
        "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    },
    "fixed": {"width": 8, "num_heads": 2, "depth": 1, "batch_size": 32, "patch_length": 8},
}


# The plan: what each worker process is given.


def test_plan_workers_cpu_only_splits_cores_and_hides_gpus():
    plans = plan_workers(3, None, 1, cpu_count=8)
    assert [plan.index for plan in plans] == [0, 1, 2]
    for plan in plans:
        assert plan.gpu is None
        assert plan.threads == 2  # 8 cores // 3 workers
        assert {plan.env[name] for name in THREAD_VARIABLES} == {"2"}
        # Empty, not unset: a CUDA build of TensorFlow would otherwise take every GPU.
        assert plan.env["CUDA_VISIBLE_DEVICES"] == ""
        assert "TF_FORCE_GPU_ALLOW_GROWTH" not in plan.env


def test_plan_workers_more_workers_than_cores_get_one_thread_each():
    plans = plan_workers(4, None, 1, cpu_count=2)
    assert [plan.threads for plan in plans] == [1, 1, 1, 1]
    assert plan_workers(None, None, 1, cpu_count=2)[0].threads == 2


def test_plan_workers_gpus_round_robin_with_memory_growth():
    plans = plan_workers(None, ["0", "1"], 2, cpu_count=16)
    assert len(plans) == 4  # 2 GPUs x 2 workers per GPU
    assert [plan.env["CUDA_VISIBLE_DEVICES"] for plan in plans] == ["0", "1", "0", "1"]
    assert [plan.gpu for plan in plans] == ["0", "1", "0", "1"]
    for plan in plans:
        assert plan.env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
        assert plan.env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        assert plan.env["TF_NUM_INTRAOP_THREADS"] == "4"
        assert plan.env["TF_NUM_INTEROP_THREADS"] == "4"
        assert plan.env["OMP_NUM_THREADS"] == "4"
    # Fewer workers than slots: each still gets one GPU, the first ones first.
    assert [plan.gpu for plan in plan_workers(3, ["0", "1"], 2, 16)] == ["0", "1", "0"]


def test_plan_workers_more_workers_than_gpu_slots_is_refused():
    with pytest.raises(WorkerPlanError, match=r"--workers 5 is more than 2 GPU\(s\) x 2"):
        plan_workers(5, ["0", "1"], 2, cpu_count=8)


def test_find_gpus_lists_and_auto(monkeypatch, tmp_path):
    assert find_gpus("0, 2,2") == ["0", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert find_gpus("auto") == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(WorkerPlanError, match="hides every GPU"):
        find_gpus("auto")

    # No GPU on this machine: without CUDA_VISIBLE_DEVICES, auto asks nvidia-smi, which a
    # stand-in on PATH answers as the driver's would.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WorkerPlanError, match="no nvidia-smi on PATH"):
        find_gpus("auto")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    assert find_gpus("auto") == ["0", "1"]


def test_main_gpus_auto_without_gpus_exits_2_and_creates_nothing(
    tmp_path, small_data, stores, monkeypatch, caplog
):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert main(run_args(spec, small_data, stores, "--gpus", "auto")) == EXIT_BAD_INPUT
    assert "--gpus auto: CUDA_VISIBLE_DEVICES='-1' hides every GPU" in caplog.text
    assert not stores["storage"].exists()
    assert not stores["mlflow_db"].exists()


# The budget: several processes asking at the same instant never overshoot it.

_RACER = """
import sys, time
from pathlib import Path
from sweeps.runner import run_until_budget
from sweeps.spec import parse_spec
from sweeps.study import BudgetGate, load_or_create_study, open_storage, worker_attrs

url, name, go, index, budget = sys.argv[1], sys.argv[2], Path(sys.argv[3]), *map(int, sys.argv[4:])
spec = parse_spec({"name": "race", "sampler": {"name": "random"}})
storage = open_storage(url)
study = load_or_create_study(storage, name, spec, worker=index)
gate = BudgetGate.for_storage(storage, url, name)
Path(f"{go}.ready-{index}").touch()
while not go.exists():
    time.sleep(0.002)

def objective(trial):
    time.sleep(0.05)
    return trial.suggest_float("x", 0.0, 1.0)

worker = worker_attrs(index=index, gpu="none", threads=1)
run_until_budget(study, objective, budget, metric="x", gate=gate, worker=worker)
"""
# A PostgreSQL database to race on too, e.g. postgresql://sweep:secret@127.0.0.1/sweep_test.
POSTGRES_URL = os.environ.get("SWEEP_TEST_POSTGRES_URL")


@pytest.mark.parametrize(
    "kind",
    [
        "journal",
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not POSTGRES_URL, reason="SWEEP_TEST_POSTGRES_URL is unset"),
        ),
    ],
)
def test_budget_holds_when_processes_ask_at_once(tmp_path, kind):
    url = {
        "journal": str(tmp_path / "race.log"),
        "sqlite": f"sqlite:///{tmp_path / 'race.db'}",
        "postgresql": POSTGRES_URL,
    }[kind]
    name = f"race-{uuid.uuid4().hex[:12]}"  # a database server outlives the test
    load_or_create_study(open_storage(url), name, parse_spec({"name": "race"}))
    go, racers, budget = tmp_path / "go", 6, 3
    processes = [
        subprocess.Popen([sys.executable, "-c", _RACER, url, name, str(go), str(i), str(budget)])
        for i in range(racers)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.ready-*"))) < racers and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # all of them ask for their first trial now
    assert [process.wait(timeout=120) for process in processes] == [0] * racers

    study = optuna.load_study(study_name=name, storage=open_storage(url))
    states = [trial.state for trial in study.trials]
    assert states == [TrialState.COMPLETE] * budget
    # Every racer recorded itself on the trials it ran.
    assert {trial.user_attrs[WORKER_ATTR]["pid"] for trial in study.trials} <= {
        process.pid for process in processes
    }


def test_closing_runs_on_failure_closes_a_run_the_objective_left_open(tmp_path):
    study = load_or_create_study(open_storage(str(tmp_path / "j.log")), "s", parse_spec(SPEC))
    tracker = StudyTracker(
        TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri()), "s"
    )
    tracker.start_study(parent_run_id=None, params={}, tags={}, spec_yaml="")
    opened = []

    def interrupted_after_opening_its_run(trial):
        run = tracker.start_trial(trial.number, {}, {})
        trial.set_user_attr("mlflow_run_id", run.run_id)
        opened.append(run.run_id)
        raise KeyboardInterrupt  # Ctrl-C before the objective's own cleanup began

    objective = closing_runs_on_failure(interrupted_after_opening_its_run, tracker)
    with pytest.raises(KeyboardInterrupt):
        run_until_budget(study, objective, 2, metric="balanced_accuracy")
    assert study.trials[0].state == TrialState.FAIL
    run = tracker.client.get_run(opened[0])
    assert run.info.status == "FAILED"
    assert run.data.tags["collapse_sweep.failure"] == "interrupted"


# Real workers: `sweep run --workers 2` with TensorFlow, a journal file and SQLite MLflow.


@pytest.fixture
def spec_path(tmp_path):
    path = tmp_path / "par.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def _launch(spec_path, small_data, stores, *extra, log):
    argv = run_args(spec_path, small_data, stores, *extra)
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.Popen(
        [sys.executable, "-m", "sweeps", *argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        # As started from a terminal: a test run that was itself started in the background
        # of a non-interactive shell (`... &`) ignores SIGINT, and children inherit that.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _study(stores):
    return optuna.load_study(study_name="par-small", storage=open_storage(str(stores["storage"])))


def _wait_for_running_trial(stores, launcher, timeout_s=240):
    """A running trial whose worker recorded itself and opened its MLflow run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert launcher.poll() is None, "the sweep ended before any trial was caught running"
        if stores["storage"].exists():
            try:
                trials = _study(stores).get_trials(states=(TrialState.RUNNING,))
            except KeyError:  # the launcher has not created the study yet
                trials = []
            for trial in trials:
                if WORKER_ATTR in trial.user_attrs and "mlflow_run_id" in trial.user_attrs:
                    return trial
        time.sleep(0.1)
    raise AssertionError(f"no trial was running after {timeout_s} s")


def _runs(stores):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{stores['mlflow_db']}")
    experiment = client.get_experiment_by_name("par-small")
    return client.search_runs([experiment.experiment_id])


def _by_role(runs, role):
    return [run for run in runs if run.data.tags.get("collapse_sweep.role") == role]


@pytest.mark.slow
def test_workers_survive_a_killed_worker_and_spend_the_budget_exactly(
    tmp_path, spec_path, small_data, stores, caplog
):
    log_path = tmp_path / "launcher.log"
    with log_path.open("w") as log:
        launcher = _launch(spec_path, small_data, stores, "--workers", "2", log=log)
        try:
            victim = _wait_for_running_trial(stores, launcher)
            victim_pid = victim.user_attrs[WORKER_ATTR]["pid"]
            os.kill(victim_pid, signal.SIGKILL)
            assert launcher.wait(timeout=300) == 0
        finally:
            if launcher.poll() is None:
                launcher.kill()
    output = log_path.read_text()
    assert f"pid {victim_pid}, was killed by SIGKILL" in output
    assert "replacing it with worker 2" in output

    # The killed worker's trial failed (and was run again); the budget holds exactly.
    study = _study(stores)
    trials = {trial.number: trial for trial in study.trials}
    assert trials[victim.number].state == TrialState.FAIL
    states = [trial.state for trial in study.trials]
    assert states.count(TrialState.COMPLETE) == SPEC["budget"]["trials"]
    assert states.count(TrialState.FAIL) == 1
    assert TrialState.RUNNING not in states

    # One parent run; every trial has exactly one run under it; none is left RUNNING.
    runs = _runs(stores)
    assert all(run.info.status != "RUNNING" for run in runs)
    (parent,) = _by_role(runs, "study")
    trial_runs = _by_role(runs, "trial")
    by_number = {}
    for run in trial_runs:
        by_number.setdefault(int(run.data.tags["collapse_sweep.trial_number"]), []).append(run)
    assert sorted(by_number) == sorted(trials)
    assert all(len(runs_of_trial) == 1 for runs_of_trial in by_number.values())
    assert {run.data.tags["mlflow.parentRunId"] for run in trial_runs} == {parent.info.run_id}
    victim_run = by_number[victim.number][0]
    assert victim_run.info.status == "FAILED"
    assert victim_run.data.tags["collapse_sweep.trial_state"] == "FAIL"
    assert "SIGKILL" in victim_run.data.tags["collapse_sweep.failure"]
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            (run,) = by_number[trial.number]
            assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
            assert run.info.status == "FINISHED"

    # What each worker had: its share of the cores, no GPU; the runs say the same.
    threads = max(1, available_cpus() // 2)
    workers = [trial.user_attrs[WORKER_ATTR] for trial in study.trials]
    assert len({worker["pid"] for worker in workers}) >= 2
    assert all(worker["threads"] == threads and worker["gpu"] == "none" for worker in workers)
    for run in trial_runs:
        assert run.data.tags["collapse_sweep.gpu"] == "none"
        worker = trials[int(run.data.tags["collapse_sweep.trial_number"])].user_attrs[WORKER_ATTR]
        assert run.data.tags["collapse_sweep.worker"] == str(worker["index"])

    # Started again, the finished study adds nothing and starts no worker.
    caplog.set_level(logging.INFO)
    assert main(run_args(spec_path, small_data, stores, "--workers", "2")) == 0
    assert "nothing to run" in caplog.text
    assert "started worker" not in caplog.text
    assert len(_study(stores).trials) == len(trials)


@pytest.mark.slow
def test_interrupted_launcher_stops_workers_cleanly_and_resumes(tmp_path, small_data, stores):
    # Trials long enough (60 epochs a fold, a few seconds) that one is surely still running
    # when the interrupt arrives; one-epoch trials could all end before it.
    spec_path = tmp_path / "par.yaml"
    training = {**SPEC["training"], "max_epochs": 60}
    spec = {**SPEC, "training": training, "collapse": {"prune_after_epochs": None}}
    spec_path.write_text(yaml.safe_dump(spec))
    log_path = tmp_path / "launcher.log"
    with log_path.open("w") as log:
        launcher = _launch(
            spec_path, small_data, stores, "--workers", "2", "--trials", "2", log=log
        )
        try:
            caught = _wait_for_running_trial(stores, launcher)
            launcher.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
            assert launcher.wait(timeout=180) == 130
        finally:
            if launcher.poll() is None:
                launcher.kill()
    assert "stopping" in log_path.read_text()

    study = _study(stores)
    assert study.trials[caught.number].state == TrialState.FAIL
    assert all(trial.state != TrialState.RUNNING for trial in study.trials)
    runs = _runs(stores)
    assert all(run.info.status != "RUNNING" for run in runs)
    (parent,) = _by_role(runs, "study")
    assert parent.info.status == "KILLED"
    (caught_run,) = [r for r in runs if r.info.run_id == caught.user_attrs["mlflow_run_id"]]
    assert caught_run.info.status == "FAILED"

    # The next run resumes the same study, under the same parent run, and spends the budget
    # (in this process: one worker is the default).
    completed = [t.state for t in study.trials].count(TrialState.COMPLETE)
    assert main(run_args(spec_path, small_data, stores, "--trials", str(completed + 1))) == 0
    study = _study(stores)
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == completed + 1
    assert study.trials[-1].user_attrs[WORKER_ATTR]["pid"] == os.getpid()
    runs = _runs(stores)
    assert [run.info.run_id for run in _by_role(runs, "study")] == [parent.info.run_id]
    assert all(run.info.status != "RUNNING" for run in runs)


@pytest.mark.slow
def test_two_launchers_started_at_once_share_one_study_and_one_parent_run(
    tmp_path, spec_path, small_data, stores
):
    # Nothing exists yet: both create the study, the MLflow store and the experiment at once.
    logs = [tmp_path / f"launcher-{index}.log" for index in range(2)]
    handles = [log.open("w") for log in logs]
    try:
        launchers = [_launch(spec_path, small_data, stores, log=handle) for handle in handles]
        codes = [launcher.wait(timeout=300) for launcher in launchers]
    finally:
        for handle in handles:
            handle.close()
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]

    study = _study(stores)
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 2
    runs = _runs(stores)
    (parent,) = _by_role(runs, "study")
    assert sorted(run.info.run_name for run in _by_role(runs, "baseline")) == [
        "baseline-logistic",
        "baseline-majority",
    ]
    trial_runs = _by_role(runs, "trial")
    assert sorted(int(run.data.tags["collapse_sweep.trial_number"]) for run in trial_runs) == [
        0,
        1,
    ]
    assert {run.data.tags["mlflow.parentRunId"] for run in trial_runs} == {parent.info.run_id}
    assert all(run.info.status != "RUNNING" for run in runs)


def test_worker_refuses_data_that_differs_from_the_study(tmp_path, small_data, stores, caplog):
    # A study as `sweep run` prepares it, with no trial run yet.
    spec = parse_spec(SPEC)
    storage = str(stores["storage"])
    study = load_or_create_study(open_storage(storage), "par-small", spec)
    tracker = StudyTracker(
        TrackingConfig(f"sqlite:///{stores['mlflow_db']}", (tmp_path / "art").as_uri()),
        "par-small",
    )
    parent = tracker.start_study(parent_run_id=None, params={}, tags={}, spec_yaml="")
    study.set_user_attr("mlflow_parent_run_id", parent)
    study.set_user_attr("data_sha256", "0" * 64)
    study.set_user_attr("spec", spec.resolved())

    argv = ["worker", "--study", "par-small", "--storage", storage, "--data", str(small_data)]
    assert main(argv) == EXIT_BAD_INPUT
    assert "small.xlsx: sha256" in caplog.text
    assert "differs from the data study 'par-small'" in caplog.text
    assert main(["worker", "--study", "absent", "--storage", storage]) == EXIT_BAD_INPUT
    assert "no study named 'absent' (studies there: par-small)" in caplog.text
