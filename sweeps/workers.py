"""Parallel workers: several processes, on one machine or many, running one study's trials.

sweep run --workers 2                          two CPU workers, the cores split between them
sweep run --gpus auto --workers-per-gpu 2      two workers on each GPU found
sweep worker --study default-demo --storage postgresql://…   one more worker, anywhere

`sweep run` prepares the study once (the study, its MLflow experiment and parent run, the
baselines, the folds) and records in the study what a worker needs; each worker, started
by the launcher or by hand on another machine, learns everything from the study itself.
Every worker asks the study's budget gate for its next trial, so the budget holds however
many workers share the study. The launcher watches the workers it started: when one dies,
its running trial is marked failed (and so retried) and a replacement is started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from data import DataError, check_fold_counts, read_dataset, stratified_folds
from sweeps.spec import Spec, SpecError, parse_spec
from sweeps.study import (
    PARENT_RUN_ATTR,
    BudgetGate,
    is_alive_here,
    make_pruner,
    make_sampler,
    open_storage,
    trials_counted,
    trials_finished,
    worker_attrs,
)
from sweeps.tracking import (
    TAG_PREFIX,
    StudyTracker,
    TrackingConfig,
    TrackingConfigError,
    load_tracking_config,
    redact,
)

logger = logging.getLogger(__name__)

# TensorFlow reads the first two when it starts its thread pools; OpenMP (oneDNN, BLAS)
# reads the third. Set before the worker imports TensorFlow, they bound each worker.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
# The launcher hands the storage URL to its workers in the environment, not on their
# command line, where a database password would show in `ps`.
STORAGE_VARIABLE = "SWEEP_STORAGE"
# What the launcher records in the study's user attributes for its workers, besides the
# spec, the data file's hash and name, and the parent run (which `sweep run` records).
DATA_PATH_ATTR = "data_path"
TRACKING_URI_ATTR = "tracking_uri"
FOLDS_ATTR = "folds_sha256"
# A worker slot whose process keeps dying (out of memory, a crashing driver) is given up
# after this many replacements rather than restarted for ever.
MAX_RESTARTS_PER_WORKER = 3
# How long stopped workers get to end their trials before they are killed.
SHUTDOWN_GRACE_S = 60.0
EXIT_INTERRUPTED = 130


class WorkerPlanError(ValueError):
    """Worker options that cannot be satisfied; the message names the option and the fix."""


class StudyRecordError(ValueError):
    """A study a worker cannot join; the message names the study, the storage and the fix."""


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    """What one worker process is given.

    Attributes:
        index: The worker's index; it offsets the sampler's seed.
        gpu: The GPU it sees (as ``nvidia-smi`` numbers them), or None for the CPU only.
        threads: The size of each of TensorFlow's thread pools in the worker.
        env: The environment variables the worker starts with, over the launcher's.
    """

    index: int
    gpu: str | None
    threads: int
    env: Mapping[str, str]

    def describe(self) -> str:
        device = f"GPU {self.gpu}" if self.gpu is not None else "CPU"
        return f"worker {self.index} ({device}, {_threads(self.threads)})"

    def renumbered(self, index: int) -> WorkerPlan:
        """The same plan for a replacement worker, under a new index (a fresh seed)."""
        return dataclasses.replace(self, index=index)


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def find_gpus(text: str) -> list[str]:
    """The GPUs that ``--gpus`` names.

    Args:
        text: ``auto``, or GPU numbers (or UUIDs) separated by commas, e.g. ``0,1``.

    Returns:
        The GPUs, as ``CUDA_VISIBLE_DEVICES`` takes them.

    Raises:
        WorkerPlanError: ``auto`` found no GPU, or the list is empty.
    """
    if text.strip().lower() != "auto":
        gpus = [gpu.strip() for gpu in text.split(",") if gpu.strip()]
        if not gpus:
            raise WorkerPlanError(f"--gpus {text!r} names no GPU; pass e.g. --gpus 0,1 or auto")
        return list(dict.fromkeys(gpus))
    # Found without initialising CUDA here: the launcher never touches a GPU itself.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
        # CUDA stops at the first invalid entry; -1 is the usual way to hide every GPU.
        gpus = gpus[: gpus.index("-1")] if "-1" in gpus else gpus
        if not gpus:
            raise WorkerPlanError(
                f"--gpus auto: CUDA_VISIBLE_DEVICES={visible!r} hides every GPU; unset it or "
                "pass --gpus 0,1,…, or run without --gpus to use the CPU"
            )
        return gpus
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise WorkerPlanError(
            "--gpus auto: no nvidia-smi on PATH, so no NVIDIA GPU was found; install the "
            "NVIDIA driver, pass --gpus 0,1,… explicitly, or run without --gpus to use the CPU"
        )
    try:
        result = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WorkerPlanError(f"--gpus auto: nvidia-smi did not answer ({error})") from None
    gpus = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not gpus:
        detail = (result.stderr or result.stdout).strip() or "no GPU listed"
        raise WorkerPlanError(
            f"--gpus auto: nvidia-smi found no GPU ({detail}); run without --gpus to use the CPU"
        )
    return gpus


def plan_workers(
    workers: int | None,
    gpus: Sequence[str] | None,
    workers_per_gpu: int,
    cpu_count: int,
) -> list[WorkerPlan]:
    """Decide what each worker process gets: its GPU and its share of the CPU cores.

    Workers take the GPUs in turn (worker 0 the first, worker 1 the second, …), so each GPU
    gets ``workers_per_gpu`` of them; TensorFlow then allocates GPU memory as it needs it
    rather than all at once, so that workers can share a GPU. A worker without a GPU is
    shown none, so that a CUDA build of TensorFlow does not take one. The cores are split
    evenly between the workers, at least one each.

    Args:
        workers: How many workers; None means one per GPU slot, or one with no GPU.
        gpus: The GPUs to use, or None (or empty) for the CPU only.
        workers_per_gpu: How many workers share each GPU.
        cpu_count: The cores to split.

    Returns:
        One plan per worker, in index order.

    Raises:
        WorkerPlanError: The numbers do not fit together.
    """
    if workers is not None and workers < 1:
        raise WorkerPlanError(f"--workers must be at least 1, got {workers}")
    if workers_per_gpu < 1:
        raise WorkerPlanError(f"--workers-per-gpu must be at least 1, got {workers_per_gpu}")
    gpus = list(gpus or [])
    slots = len(gpus) * workers_per_gpu
    if workers is None:
        workers = slots or 1
    if gpus and workers > slots:
        raise WorkerPlanError(
            f"--workers {workers} is more than {len(gpus)} GPU(s) x {workers_per_gpu} "
            "worker(s) per GPU; raise --workers-per-gpu or lower --workers"
        )
    threads = max(1, cpu_count // workers)
    plans = []
    for index in range(workers):
        gpu = gpus[index % len(gpus)] if gpus else None
        env = {name: str(threads) for name in THREAD_VARIABLES}
        env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
        if gpu is not None:
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
            # The same for Keras on JAX, which would otherwise take 75 % of the GPU at once.
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        plans.append(WorkerPlan(index=index, gpu=gpu, threads=threads, env=env))
    return plans


def visible_gpu() -> str:
    """The GPU this process may use, as recorded on its trials.

    Returns:
        ``CUDA_VISIBLE_DEVICES`` when it names GPUs, ``none`` when it hides them all, and
        ``default`` when it is unset (TensorFlow then sees every GPU).
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return "default"
    if not visible.strip() or visible.strip().startswith("-1"):
        return "none"
    return visible.strip()


def configured_threads() -> int | None:
    """TensorFlow's intra-op thread pool size from the environment, or None for its default."""
    value = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    return int(value) if value.isdigit() else None


def this_worker(index: int) -> dict[str, Any]:
    """This process as its trials record it (user attribute ``worker``)."""
    return worker_attrs(index=index, gpu=visible_gpu(), threads=configured_threads())


def worker_tags(worker: Mapping[str, Any]) -> dict[str, str]:
    """The MLflow tags of a worker's trial runs: which worker, host and GPU ran them."""
    return {
        f"{TAG_PREFIX}worker": str(worker["index"]),
        f"{TAG_PREFIX}host": str(worker["host"]),
        f"{TAG_PREFIX}gpu": str(worker["gpu"]),
    }


def close_runs_of_abandoned(tracker: StudyTracker) -> Callable[[FrozenTrial, str], None]:
    """A budget gate's ``on_abandoned`` that closes the dead worker's MLflow runs as FAILED."""

    def close(trial: FrozenTrial, reason: str) -> None:
        try:
            tracker.fail_trial_runs(trial.number, trial.user_attrs.get("mlflow_run_id"), reason)
        except Exception:
            # The Optuna trial is already failed and will be retried; a run left open in
            # MLflow is untidy, not a reason to stop the sweep.
            logger.exception("could not close the MLflow run of trial %d", trial.number)

    return close


def closing_runs_on_failure(
    objective: Callable[[optuna.Trial], float], tracker: StudyTracker
) -> Callable[[optuna.Trial], float]:
    """The objective, closing as FAILED any MLflow run of the trial that a failure left open.

    A Ctrl-C can land after the objective opened a trial's run but before it reached the
    code that ends it; without this, that run would stay RUNNING for ever.
    """

    def run(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except BaseException as error:
            reason = "interrupted" if isinstance(error, KeyboardInterrupt) else repr(error)
            run_id = trial.user_attrs.get("mlflow_run_id")
            try:
                tracker.fail_trial_runs(trial.number, run_id, reason)
            except Exception:
                logger.exception("could not close the MLflow run of trial %d", trial.number)
            raise

    return run


def folds_digest(folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> str:
    """A hash of the folds' validation rows, to check that every worker has the same folds."""
    rows = [sorted(int(row) for row in validation) for _, validation in folds]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def record_for_workers(
    study: optuna.Study,
    *,
    data_path: Path,
    tracking: TrackingConfig,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> None:
    """Record in the study what its workers need besides what ``sweep run`` records.

    Args:
        study: The study, after ``sweep run`` recorded its spec, data hash and parent run.
        data_path: The data file; workers on this machine read it from there.
        tracking: Where the study's runs go; a password in it is not recorded.
        folds: The study's folds, whose hash each worker checks against its own.
    """
    study.set_user_attr(DATA_PATH_ATTR, str(Path(data_path).resolve()))
    study.set_user_attr(TRACKING_URI_ATTR, redact(tracking.tracking_uri))
    study.set_user_attr(FOLDS_ATTR, folds_digest(folds))


@dataclasses.dataclass(frozen=True)
class StudyRecord:
    """What a worker learns from the study it joins.

    Attributes:
        spec: The resolved spec the study runs, with its budget.
        data_sha256: The hash of the data file the study was run on.
        data_path: Where the launcher read that file.
        parent_run_id: The study's MLflow parent run.
        tracking_uri: The launcher's tracking URI, with any password hidden.
        folds_sha256: The hash of the study's folds, when recorded.
    """

    spec: Spec
    data_sha256: str
    data_path: str
    parent_run_id: str
    tracking_uri: str | None
    folds_sha256: str | None

    @classmethod
    def load(cls, study: optuna.Study, where: str) -> StudyRecord:
        """Read the record from a study's user attributes.

        Args:
            study: The study.
            where: The study and storage, named in error messages.

        Raises:
            StudyRecordError: The study was not prepared by ``sweep run``.
        """
        attrs = study.user_attrs
        missing = [
            name for name in ("spec", "data_sha256", PARENT_RUN_ATTR) if not attrs.get(name)
        ]
        if missing:
            raise StudyRecordError(
                f"{where}: the study records no {missing[0]}, so `sweep run` has not prepared "
                "it; run `sweep run` for this study first, then start workers"
            )
        try:
            spec = parse_spec(attrs["spec"], source=f"{where}: the recorded spec")
        except SpecError as error:
            raise StudyRecordError(str(error)) from None
        return cls(
            spec=spec,
            data_sha256=attrs["data_sha256"],
            data_path=attrs.get(DATA_PATH_ATTR) or attrs.get("data_file", ""),
            parent_run_id=attrs[PARENT_RUN_ATTR],
            tracking_uri=attrs.get(TRACKING_URI_ATTR),
            folds_sha256=attrs.get(FOLDS_ATTR),
        )


def worker_tracking_config(
    record: StudyRecord, config_path: Path | None, where: str
) -> TrackingConfig:
    """Where a worker logs: its own config or ``MLFLOW_TRACKING_URI``, else the study's.

    Raises:
        TrackingConfigError: The study's URI had a password, which was not recorded.
    """
    if config_path is not None or os.environ.get("MLFLOW_TRACKING_URI"):
        return load_tracking_config(config_path)
    uri = record.tracking_uri
    if not uri:
        return load_tracking_config(None)
    if "***" in uri:
        raise TrackingConfigError(
            f"{where}: the study logs to {uri}, whose password is not recorded; set "
            "MLFLOW_TRACKING_URI to the full URI or pass --tracking-config"
        )
    return TrackingConfig(tracking_uri=uri, artifact_location=None)


def run_worker(
    *,
    study_name: str,
    storage_url: str,
    index: int | None = None,
    data: Path | None = None,
    tracking_config: Path | None = None,
) -> int:
    """Join a prepared study and run its trials until the budget is spent.

    Args:
        study_name: The study, as ``sweep run`` named it.
        storage_url: Its storage.
        index: This worker's index, which offsets its sampler's seed; None derives one from
            the host and process, so that workers started by hand differ without planning.
        data: The data file; None reads the one the study recorded.
        tracking_config: An MLflow config; None uses ``MLFLOW_TRACKING_URI`` or the study's
            recorded tracking URI.

    Returns:
        The exit status: 0 the budget is spent, 1 trials kept failing, 130 interrupted.

    Raises:
        StudyRecordError: The study does not exist or was not prepared by ``sweep run``.
        DataError: The data file is unreadable or is not the file the study was run on.
        TrackingConfigError: The worker cannot reach the study's MLflow runs.
    """
    where = f"study '{study_name}' in {redact(storage_url)}"
    if "://" not in storage_url and not Path(storage_url).is_file():
        raise StudyRecordError(
            f"{storage_url}: no such study storage; pass the --storage that `sweep run` used"
        )
    storage = open_storage(storage_url)
    try:
        recorded = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = ", ".join(sorted(optuna.get_all_study_names(storage))) or "none"
        raise StudyRecordError(
            f"{redact(storage_url)}: no study named '{study_name}' (studies there: {names}); "
            "start it with `sweep run`"
        ) from None
    record = StudyRecord.load(recorded, where)
    spec = record.spec
    if index is None:
        index = int(
            hashlib.sha256(f"{os.uname().nodename}:{os.getpid()}".encode()).hexdigest()[:6], 16
        )
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=make_sampler(spec, worker=index),
        pruner=make_pruner(spec),
    )

    data_path = Path(data) if data is not None else Path(record.data_path)
    dataset = read_dataset(
        data_path,
        label_column=spec.data.label_column,
        header_row=spec.data.header_row,
        sheet=spec.data.sheet,
    )
    if dataset.sha256 != record.data_sha256:
        raise DataError(
            f"{data_path}: sha256 {dataset.sha256[:12]}… differs from the data {where} was "
            f"run on ({record.data_sha256[:12]}…); pass --data with the same file the "
            "launcher read"
        )
    check_fold_counts(dataset, spec.cv.folds)
    folds = stratified_folds(dataset.labels, spec.cv.folds, spec.seed)
    if record.folds_sha256 and folds_digest(folds) != record.folds_sha256:
        raise DataError(
            f"{data_path}: the folds computed here differ from the study's, so scores would "
            "not compare; use the same versions of numpy and scikit-learn as the launcher"
        )

    tracker = StudyTracker(worker_tracking_config(record, tracking_config, where), study_name)
    tracker.attach(record.parent_run_id)
    worker = this_worker(index)
    tracker.trial_tags = worker_tags(worker)
    gate = BudgetGate.for_storage(
        storage, storage_url, study_name, on_abandoned=close_runs_of_abandoned(tracker)
    )
    logger.info(
        "worker %d (pid %d, GPU %s, %s) joined %s: %d/%d trials done",
        index,
        os.getpid(),
        worker["gpu"],
        _threads(worker["threads"]),
        where,
        trials_finished(study),
        spec.budget.trials,
    )

    if trials_counted(study) >= spec.budget.trials:
        logger.info("worker %d: the study's budget is already taken; nothing to run", index)
        return 0

    # Imported here: TensorFlow reads its thread and GPU settings from the environment once,
    # when it is first imported.
    from sweeps.objective import Objective
    from sweeps.runner import SweepError, run_until_budget

    objective = closing_runs_on_failure(Objective(spec, dataset, folds, tracker), tracker)
    try:
        ran = run_until_budget(
            study, objective, spec.budget.trials, metric=spec.cv.metric, gate=gate, worker=worker
        )
    except KeyboardInterrupt:
        logger.warning("worker %d interrupted; its running trial is marked failed", index)
        return EXIT_INTERRUPTED
    except SweepError as error:
        logger.error("worker %d: %s", index, error)
        return 1
    logger.info("worker %d ran %d trials; the study's budget is spent", index, ran)
    return 0


@dataclasses.dataclass
class _Running:
    plan: WorkerPlan
    process: subprocess.Popen[bytes]
    slot: int


class WorkerPool:
    """Starts worker processes, replaces the ones that die, and stops them all on Ctrl-C.

    Workers run in process groups of their own. A launcher killed outright (SIGKILL)
    therefore leaves its workers running: they spend the budget and exit by themselves.

    Args:
        plans: One plan per worker to start.
        command: The command line of the worker with a given index.
        study: The study, to count its trials and fail a dead worker's.
        gate: The study's budget gate (its ``on_abandoned`` closes MLflow runs).
        budget: The study's total number of trials.
        storage_url: Handed to each worker in ``SWEEP_STORAGE``.
    """

    def __init__(
        self,
        plans: Sequence[WorkerPlan],
        *,
        command: Callable[[int], list[str]],
        study: optuna.Study,
        gate: BudgetGate,
        budget: int,
        storage_url: str,
    ) -> None:
        self.plans = list(plans)
        self.command = command
        self.study = study
        self.gate = gate
        self.budget = budget
        self.storage_url = storage_url
        self.running: dict[int, _Running] = {}
        self.restarts = [0] * len(self.plans)
        self.next_index = len(self.plans)
        self.failed: list[str] = []
        self.poll_interval_s = 0.5

    def run(self) -> int:
        """Run the workers until every one has ended.

        Returns:
            0 when the workers ended with the budget spent (or with the rest of it running
            elsewhere), 1 when a worker stopped on an error, 130 when interrupted.
        """
        try:
            for slot, plan in enumerate(self.plans):
                self._start(slot, plan)
            while self.running:
                time.sleep(self.poll_interval_s)
                for pid in list(self.running):
                    if self.running[pid].process.poll() is not None:
                        self._ended(self.running.pop(pid))
        except KeyboardInterrupt:
            self.stop()
            return EXIT_INTERRUPTED
        if self.failed and trials_finished(self.study) < self.budget:
            logger.error("%s; see its errors above", "; ".join(self.failed))
            return 1
        return 0

    def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Interrupt every worker, give them time to end their trials, then kill the rest."""
        if self.running:
            logger.warning(
                "stopping %d workers; each marks its running trial failed", len(self.running)
            )
        for running in self.running.values():
            _signal(running.process, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        try:
            for running in self.running.values():
                try:
                    running.process.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    logger.warning("%s did not stop; killing it", running.plan.describe())
                    _signal(running.process, signal.SIGKILL)
        except KeyboardInterrupt:
            logger.warning("interrupted again; killing the workers")
        for running in self.running.values():
            if running.process.poll() is None:
                _signal(running.process, signal.SIGKILL)
            running.process.wait()
        self.running.clear()
        self.gate.fail_abandoned(
            self.study, lambda worker: not is_alive_here(worker), "its worker was stopped"
        )

    def _start(self, slot: int, plan: WorkerPlan) -> None:
        env = {**os.environ, **plan.env, STORAGE_VARIABLE: self.storage_url}
        # Its own process group: Ctrl-C in the terminal reaches the launcher alone, which
        # then interrupts each worker once, so no worker is interrupted twice mid-cleanup.
        process = subprocess.Popen(self.command(plan.index), env=env, process_group=0)
        self.running[process.pid] = _Running(plan, process, slot)
        logger.info("started %s as pid %d", plan.describe(), process.pid)

    def _ended(self, running: _Running) -> None:
        plan, code = running.plan, running.process.returncode
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        logger.log(logging.INFO if code == 0 else logging.WARNING, "%s %s", plan.describe(), how)
        # Whatever it was running is orphaned now: failed, so that it is run again.
        self.gate.fail_abandoned(
            self.study,
            lambda worker: not is_alive_here(worker),
            f"{plan.describe()}, pid {running.process.pid}, {how}",
        )
        if code in (0, EXIT_INTERRUPTED):
            return
        if code > 0:
            self.failed.append(f"{plan.describe()} {how}")
            return
        if trials_counted(self.study) >= self.budget:
            return
        if self.restarts[running.slot] >= MAX_RESTARTS_PER_WORKER:
            self.failed.append(f"{plan.describe()} died {self.restarts[running.slot] + 1} times")
            logger.error("not replacing %s again", plan.describe())
            return
        self.restarts[running.slot] += 1
        replacement = plan.renumbered(self.next_index)
        self.next_index += 1
        logger.info("replacing it with %s", replacement.describe())
        self._start(running.slot, replacement)


def _threads(threads: int | None) -> str:
    if threads is None:
        return "TensorFlow's default threads"
    return f"{threads} thread" + ("s" if threads != 1 else "")


def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def worker_command(
    study_name: str,
    *,
    data_path: Path,
    tracking_config: Path | None,
    verbose: bool,
) -> Callable[[int], list[str]]:
    """The command line of a launcher's worker, given its index.

    The storage goes in the environment (``SWEEP_STORAGE``), never on the command line.
    """

    def command(index: int) -> list[str]:
        line = [sys.executable, "-m", "sweeps", "worker", "--study", study_name]
        line += ["--index", str(index), "--data", str(data_path)]
        if tracking_config is not None:
            line += ["--tracking-config", str(tracking_config)]
        if verbose:
            line.append("--verbose")
        return line

    return command
