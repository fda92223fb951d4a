"""Several machines: workers share a PostgreSQL study and log to a real `mlflow server`.

Each "machine" is a process started as the README says: `sweep run` prepares the study and
runs its own workers, and `sweep worker --study NAME` joins it with nothing but the study's
name, the data file and the two URLs in the environment (``SWEEP_STORAGE``,
``MLFLOW_TRACKING_URI``). The database is the one ``SWEEP_TEST_POSTGRES_URL`` names, as
`.ci/run` creates it; without it these tests are skipped, except in CI, where they fail.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sweeps.study import (
    HEARTBEAT_GRACE_VARIABLE,
    HEARTBEAT_INTERVAL_VARIABLE,
    PARENT_RUN_ATTR,
    WORKER_ATTR,
    open_storage,
)
from sweeps.workers import FOLDS_ATTR, STORAGE_VARIABLE

REPOSITORY = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("SWEEP_TEST_POSTGRES_URL")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not POSTGRES_URL and not os.environ.get("CI"),
        reason="SWEEP_TEST_POSTGRES_URL is unset (.ci/run sets it up)",
    ),
]

SPEC = {
    "name": "dist",
    "seed": 11,
    "cv": {"folds": 2},
    "training": {"max_epochs": 2, "early_stopping_patience": None},
    "collapse": {"prune_after_epochs": None},
    "sampler": {"name": "random"},
    "pruner": {"name": "none"},
    "search": {
        "embedding": ["linear", "patch"],
        "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    },
    "fixed": {"width": 8, "num_heads": 2, "depth": 1, "batch_size": 32, "patch_length": 8},
}


@pytest.fixture(scope="module")
def postgres_url() -> str:
    if not POSTGRES_URL:
        pytest.fail("CI is set but SWEEP_TEST_POSTGRES_URL is not: .ci/run sets up PostgreSQL")
    return POSTGRES_URL


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server on 127.0.0.1 with its own SQLite store and artifacts."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert server.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _machine_env(postgres_url: str, tracking_url: str, **extra: str) -> dict[str, str]:
    """The environment each machine's README commands run in."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY),
        STORAGE_VARIABLE: postgres_url,
        "MLFLOW_TRACKING_URI": tracking_url,
        **extra,
    }


def _run_argv(spec: Path, data: Path, storage: str, name: str, *, workers: int) -> list[str]:
    """`sweep run` on the first machine: prepare the study and run its own workers."""
    return ["run", "--spec", str(spec), "--data", str(data), "--storage", storage,
            "--study", name, "--workers", str(workers)]  # fmt: skip


def _sweep(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sweeps", *argv],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=log_path.parent,
    )


def _wait_until_prepared(postgres_url: str, name: str, launcher: subprocess.Popen) -> None:
    """Until `sweep run` has recorded in the study everything a joining worker reads."""
    storage = open_storage(postgres_url)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert launcher.poll() is None, "the launcher ended before the study was prepared"
        try:
            attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
        except KeyError:
            attrs = {}
        if FOLDS_ATTR in attrs and PARENT_RUN_ATTR in attrs:
            return
        time.sleep(0.2)
    raise AssertionError(f"study {name} was not prepared after 180 s")


def _wait(processes: list[subprocess.Popen], timeout_s: float) -> list[int]:
    try:
        return [process.wait(timeout=timeout_s) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def _runs_by_trial(tracking_url: str, name: str):
    client = mlflow.MlflowClient(tracking_uri=tracking_url)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("collapse_sweep.role") == "study"]
    by_trial: dict[int, list] = {}
    for run in runs:
        if run.data.tags.get("collapse_sweep.role") == "trial":
            by_trial.setdefault(int(run.data.tags["collapse_sweep.trial_number"]), []).append(run)
    return runs, parent, by_trial


def _spec_file(directory: Path, **changes) -> Path:
    path = directory / "dist.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return path


def test_workers_on_two_machines_share_one_postgresql_study_and_tracking_server(
    tmp_path, small_data, postgres_url, mlflow_server
):
    name = f"dist-{uuid.uuid4().hex[:10]}"  # the database outlives the test
    budget = 5
    # Trials of a few seconds each, so that the joining worker arrives before they are done.
    training = {"max_epochs": 15, "early_stopping_patience": None}
    spec = _spec_file(tmp_path, budget={"trials": budget}, training=training)
    env = _machine_env(postgres_url, mlflow_server)
    # Machine A prepares the study and runs two workers; machine B joins with a third.
    launcher = _sweep(
        _run_argv(spec, small_data, postgres_url, name, workers=2),
        env,
        tmp_path / "machine-a.log",
    )
    _wait_until_prepared(postgres_url, name, launcher)
    joiner = _sweep(
        ["worker", "--study", name, "--data", str(small_data)], env, tmp_path / "machine-b.log"
    )
    assert _wait([launcher, joiner], timeout_s=600) == [0, 0]

    # Every trial completed exactly once, within the budget; none is left running.
    study = optuna.load_study(study_name=name, storage=open_storage(postgres_url))
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * budget
    pids = {trial.user_attrs[WORKER_ATTR]["pid"] for trial in study.trials}
    assert joiner.pid in pids and len(pids) >= 2

    # Each trial has exactly one MLflow run on the server, under the study's one parent run.
    runs, parent, by_trial = _runs_by_trial(mlflow_server, name)
    assert sorted(by_trial) == list(range(budget))
    for trial in study.trials:
        (run,) = by_trial[trial.number]
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["collapse_sweep.host"] == socket.gethostname()
    assert all(run.info.status != "RUNNING" for run in runs)

    # The database password is in no log, no MLflow parameter or tag, and no report.
    password = urllib.parse.urlsplit(postgres_url).password
    assert password
    report = tmp_path / "report.md"
    reporter = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeps",
            "report",
            "--study",
            name,
            "--storage",
            postgres_url,
            "--spec",
            str(spec),
            "--out",
            str(report),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reporter.returncode == 0, reporter.stdout + reporter.stderr
    texts = {
        "machine A's log": (tmp_path / "machine-a.log").read_text(),
        "machine B's log": (tmp_path / "machine-b.log").read_text(),
        "the report's output": reporter.stdout + reporter.stderr,
        "the report": report.read_text(),
    }
    for run in runs:
        texts[f"run {run.info.run_name}"] = repr(run.data.params) + repr(run.data.tags)
    leaked = [where for where, text in texts.items() if password in text]
    assert not leaked, f"the storage password appears in {leaked}"
    assert "***" in texts["the report"] or "***" in texts["machine A's log"]


def test_worker_killed_on_another_machine_has_its_trial_failed_by_heartbeat_and_rerun(
    tmp_path, small_data, postgres_url, mlflow_server
):
    name = f"dist-kill-{uuid.uuid4().hex[:10]}"
    budget = 3
    # Trials of a few seconds, so that the joining worker is surely caught in one.
    training = {"max_epochs": 40, "early_stopping_patience": None}
    spec = _spec_file(tmp_path, budget={"trials": budget}, training=training)
    # A short heartbeat, so that the dead worker's trial goes stale in seconds, not minutes.
    env = _machine_env(
        postgres_url,
        mlflow_server,
        **{HEARTBEAT_INTERVAL_VARIABLE: "1", HEARTBEAT_GRACE_VARIABLE: "4"},
    )
    launcher = _sweep(
        _run_argv(spec, small_data, postgres_url, name, workers=1),
        env,
        tmp_path / "machine-a.log",
    )
    try:
        _wait_until_prepared(postgres_url, name, launcher)
        victim = _sweep(
            ["worker", "--study", name, "--data", str(small_data)], env, tmp_path / "machine-b.log"
        )
        caught = _running_trial_of(postgres_url, name, victim.pid, timeout_s=240)
        victim.send_signal(signal.SIGKILL)  # the machine is gone: no handler runs
        victim.wait(timeout=30)
        assert _wait([launcher], timeout_s=600) == [0]
    finally:
        for process in (launcher, locals().get("victim")):
            if process is not None and process.poll() is None:
                process.kill()

    # The surviving worker failed the dead one's trial once its heartbeat went stale, ran it
    # again, and spent the budget.
    log = (tmp_path / "machine-a.log").read_text()
    assert f"trial {caught.number} marked failed: no heartbeat for 4 s" in log
    study = optuna.load_study(study_name=name, storage=open_storage(postgres_url))
    states = [trial.state for trial in study.trials]
    assert study.trials[caught.number].state == TrialState.FAIL
    assert states.count(TrialState.COMPLETE) == budget
    assert states.count(TrialState.FAIL) == 1
    assert TrialState.RUNNING not in states

    # The dead worker's run was closed as failed, saying why; every other trial has one run.
    runs, _, by_trial = _runs_by_trial(mlflow_server, name)
    assert all(run.info.status != "RUNNING" for run in runs)
    (victim_run,) = by_trial[caught.number]
    assert victim_run.info.status == "FAILED"
    assert "no heartbeat" in victim_run.data.tags["collapse_sweep.failure"]
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            (run,) = by_trial[trial.number]
            assert run.info.status == "FINISHED"


def _running_trial_of(postgres_url: str, name: str, pid: int, timeout_s: float):
    """The trial a worker process is running, once it has opened its MLflow run."""
    storage = open_storage(postgres_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        study = optuna.load_study(study_name=name, storage=storage)
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get(WORKER_ATTR, {})
            if worker.get("pid") == pid and "mlflow_run_id" in trial.user_attrs:
                return trial
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} ran no trial within {timeout_s} s")
