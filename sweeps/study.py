"""Optuna studies: the storage, the sampler and pruner a spec asks for, and the budget.

The budget is the study's total number of trials, shared by every worker process on every
machine. Counting the study's trials and creating the next one happen under one lock that
all of them take (a file lock beside a journal or SQLite file, a PostgreSQL advisory lock
for a database server), so that workers asking at the same instant never overshoot it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from sweeps.spec import Spec

logger = logging.getLogger(__name__)

# A journal file is the storage that several processes on one machine can share safely
# (each appends to one log under a file lock); SQLite would serialise them on its lock.
DEFAULT_STORAGE = "optuna-journal.log"
# Trials that use up the budget. A failed trial does not: it is retried.
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
PARENT_RUN_ATTR = "mlflow_parent_run_id"
# The trial user attribute naming the process that runs it: {"index", "host", "pid",
# "process", "gpu", "threads"}. It is written in the same locked step that creates the
# trial, so a running trial without it was abandoned by a process that died in that step.
WORKER_ATTR = "worker"
# Heartbeats let a trial whose worker died on another machine be marked failed and retried:
# every interval a worker stamps its running trial; one unstamped for the grace period is
# failed by the next worker that asks for a trial. The environment may set both, in whole
# seconds (shorter for tests, longer for a slow link); every machine should agree.
HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_S = 180
HEARTBEAT_INTERVAL_VARIABLE = "SWEEP_HEARTBEAT_INTERVAL_S"
HEARTBEAT_GRACE_VARIABLE = "SWEEP_HEARTBEAT_GRACE_S"


class StorageError(ValueError):
    """The study storage cannot be opened as configured."""


def heartbeat_timing() -> tuple[int, int]:
    """The heartbeat interval and grace period, in seconds, from the environment or defaults.

    Raises:
        StorageError: A variable is not a whole number of seconds, or the grace period is
            not longer than the interval.
    """
    timing = []
    for variable, default in (
        (HEARTBEAT_INTERVAL_VARIABLE, HEARTBEAT_INTERVAL_S),
        (HEARTBEAT_GRACE_VARIABLE, HEARTBEAT_GRACE_S),
    ):
        raw = os.environ.get(variable, "").strip()
        try:
            seconds = int(raw) if raw else default
        except ValueError:
            seconds = 0
        if seconds < 1:
            raise StorageError(
                f"{variable}={raw!r}: expected a whole number of seconds, at least 1 "
                f"(default {default}); unset it to use the default"
            )
        timing.append(seconds)
    interval, grace = timing
    if grace <= interval:
        raise StorageError(
            f"{HEARTBEAT_GRACE_VARIABLE}={grace} is not longer than "
            f"{HEARTBEAT_INTERVAL_VARIABLE}={interval}: a live worker would have its trial "
            "failed between two heartbeats; make the grace period a few intervals long"
        )
    return interval, grace


def open_storage(url: str) -> BaseStorage:
    """Open an Optuna storage from a URL or a journal file path.

    Args:
        url: A database URL (``sqlite:///…``, ``postgresql://…``) or the path of a journal
            file, created when absent.

    Returns:
        The storage.

    Raises:
        StorageError: The heartbeat timing in the environment is invalid.
    """
    if "://" in url:
        # SQLite lives on one machine, where a dead worker is found by its process instead.
        interval, grace = (None, None) if url.startswith("sqlite") else heartbeat_timing()
        with warnings.catch_warnings():
            # Heartbeats have been "experimental" since Optuna 2.9; the warning says no more.
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=interval, grace_period=grace)
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The open(2)-based lock works on file systems without symbolic links, unlike the default.
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def make_sampler(spec: Spec, *, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler the spec names, seeded so that a study can be repeated.

    Args:
        spec: The sweep spec.
        worker: The worker's index; workers sharing a study get different seeds, or they
            would all propose the same first trials (except on a grid, which they share).

    Returns:
        The sampler.
    """
    if spec.sampler.name == "grid":
        # The grid sampler shuffles the grid with its seed and hands trial k grid point k:
        # workers must share one seed, or the same point number names different parameters
        # in different workers, and some combinations run twice while others never run.
        return optuna.samplers.GridSampler(dict(spec.search), seed=spec.seed)
    seed = spec.seed + worker
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE's constant liar (on by default) treats other workers' running trials as poor
    # results, so parallel workers spread out instead of all sampling near the same best.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.sampler.startup_trials)


def make_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    """The pruner the spec names; it sees the running mean of the metric after each fold.

    Each fold owns ``max_epochs`` Optuna steps and reports at the last of them, so a warm-up
    of k folds is k blocks of steps.
    """
    if spec.pruner.name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=spec.pruner.startup_trials,
        n_warmup_steps=spec.pruner.warmup_folds * spec.training.max_epochs,
    )


def load_or_create_study(
    storage: BaseStorage, study_name: str, spec: Spec, *, worker: int = 0
) -> optuna.Study:
    """Open the named study, creating it the first time; the same command resumes it.

    Args:
        storage: Where the study lives.
        study_name: Its name.
        spec: The sweep spec, which gives the sampler and pruner.
        worker: The worker's index, which offsets the sampler's seed.

    Returns:
        The study, maximising the spec's metric.
    """
    return optuna.create_study(
        storage=storage,
        study_name=study_name,
        sampler=make_sampler(spec, worker=worker),
        pruner=make_pruner(spec),
        direction="maximize",
        load_if_exists=True,
    )


def trials_counted(study: optuna.Study) -> int:
    """How many trials count against the budget: finished, pruned, running or waiting."""
    return len(study.get_trials(deepcopy=False, states=BUDGET_STATES))


def trials_finished(study: optuna.Study) -> int:
    """How many trials finished, completed or pruned: the budget is spent when all have."""
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def process_identity(pid: int) -> str | None:
    """What tells a live process apart from a later one that reuses its pid.

    Args:
        pid: A process id on this machine.

    Returns:
        The boot id and the process's start time, or None when the process does not exist
        or the system has no ``/proc`` (the pid alone must then do).
    """
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 is the start time; the command name before it may hold spaces, so count
    # from the closing parenthesis that ends it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return f"{boot_id}:{fields[19]}"


def worker_attrs(*, index: int, gpu: str, threads: int | None) -> dict[str, Any]:
    """The ``worker`` user attribute of the trials this process runs.

    Args:
        index: The worker's index within its launcher (it also offsets the sampler's seed).
        gpu: The GPU it sees, as ``CUDA_VISIBLE_DEVICES`` names it, ``none`` or ``default``.
        threads: TensorFlow's thread pools' size, or None for TensorFlow's default.

    Returns:
        Index, host, pid, process identity, GPU and threads.
    """
    pid = os.getpid()
    return {
        "index": index,
        "host": socket.gethostname(),
        "pid": pid,
        "process": process_identity(pid),
        "gpu": gpu,
        "threads": threads,
    }


def is_alive_here(worker: Mapping[str, Any]) -> bool:
    """Whether the worker a trial names is a live process on this machine.

    A worker on another machine counts as alive: only a heartbeat can tell about it.
    """
    if worker.get("host") != socket.gethostname():
        return True
    pid = int(worker.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, and someone else's
    recorded = worker.get("process")
    return recorded is None or process_identity(pid) in (recorded, None)


class BudgetLock:
    """The lock under which a study's trials are counted and the next one created.

    It is a file lock (``flock``) beside a journal or SQLite file, released by the kernel
    when its holder dies, or a PostgreSQL transaction-level advisory lock on a key derived
    from the study's name, released when the transaction ends or its connection drops.
    Other databases get a lock within this process only, with a warning that workers in
    other processes may overshoot the budget.

    Args:
        storage_url: The storage as ``sweep run --storage`` takes it.
        study_name: The study's name.
    """

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.storage_url = storage_url
        self.study_name = study_name
        self.path: Path | None = None
        self.engine: sqlalchemy.Engine | None = None
        self._local = threading.Lock()
        self.key = int.from_bytes(
            hashlib.sha256(f"collapse-sweep budget {study_name}".encode()).digest()[:8],
            "big",
            signed=True,
        )
        if "://" not in storage_url:
            self.path = Path(f"{storage_url}.budget.lock")
            return
        url = sqlalchemy.engine.make_url(storage_url)
        backend = url.get_backend_name()
        if backend == "sqlite":
            if url.database and url.database != ":memory:":
                self.path = Path(f"{url.database}.budget.lock")
        elif backend == "postgresql":
            # One short connection per acquisition: nothing to keep alive between trials.
            self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        else:
            logger.warning(
                "%s: no lock across processes for %s storages; workers in several processes "
                "may run a few trials past the budget (use a journal file, SQLite or "
                "PostgreSQL)",
                url.render_as_string(hide_password=True),
                backend,
            )

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the body of a ``with`` statement."""
        with self._local:
            if self.path is not None:
                with self._file_lock(self.path):
                    yield
            elif self.engine is not None:
                with self.engine.connect() as connection, connection.begin():
                    connection.execute(
                        sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.key}
                    )
                    yield
            else:
                yield

    @staticmethod
    @contextlib.contextmanager
    def _file_lock(path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock


# What happens to a trial found abandoned: (the trial as it was, why it was abandoned).
AbandonedCallback = Callable[[FrozenTrial, str], None]


class BudgetGate:
    """Creates a study's trials one at a time across processes, never past its budget.

    Args:
        storage: The study's storage, as ``open_storage`` opened it.
        lock: The study's budget lock.
        on_abandoned: Called for each running trial this gate marks failed because the
            process running it is gone, e.g. to close its MLflow run.
    """

    def __init__(
        self,
        storage: BaseStorage,
        lock: BudgetLock | None = None,
        *,
        on_abandoned: AbandonedCallback | None = None,
    ) -> None:
        self.storage = storage
        self.lock = lock
        self.on_abandoned = on_abandoned
        self._local = threading.Lock()

    @classmethod
    def for_storage(
        cls,
        storage: BaseStorage,
        storage_url: str,
        study_name: str,
        *,
        on_abandoned: AbandonedCallback | None = None,
    ) -> BudgetGate:
        """The gate of a study in a storage opened from ``storage_url``."""
        return cls(storage, BudgetLock(storage_url, study_name), on_abandoned=on_abandoned)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the study's budget lock."""
        if self.lock is None:
            with self._local:
                yield
        else:
            with self.lock.held():
                yield

    def ask(
        self, study: optuna.Study, budget: int, worker: Mapping[str, Any]
    ) -> optuna.Trial | None:
        """Create the study's next trial if the budget allows, recording who runs it.

        Args:
            study: The study, opened with this process's sampler.
            budget: The study's total number of trials.
            worker: This process, as ``worker_attrs`` describes it.

        Returns:
            The new running trial, or None when the study's finished, running and waiting
            trials already fill the budget.
        """
        with self.held():
            self._fail_stale(study)
            if trials_counted(study) >= budget:
                return None
            with warnings.catch_warnings():
                # Heartbeats are recorded around each trial by `heartbeat`, as
                # study.optimize would; Optuna warns about ask() with them regardless.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = study.ask()
            try:
                trial.set_user_attr(WORKER_ATTR, dict(worker))
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
            return trial

    def fail_abandoned(
        self, study: optuna.Study, is_abandoned: Callable[[Mapping[str, Any]], bool], reason: str
    ) -> list[FrozenTrial]:
        """Mark failed the running trials whose process is gone, so they are run again.

        Under the budget lock every live worker has recorded itself on the trial it created,
        so a running trial that names no worker is abandoned too.

        Args:
            study: The study.
            is_abandoned: Given a trial's ``worker`` attribute, whether its process is gone.
            reason: Why, for the log and for ``on_abandoned``.

        Returns:
            The trials marked failed, as they were before.
        """
        failed = []
        with self.held():
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                worker = trial.user_attrs.get(WORKER_ATTR)
                if worker is not None and not is_abandoned(worker):
                    continue
                try:
                    # Storages address trials by id, which FrozenTrial keeps private.
                    self.storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                except UpdateFinishedTrialError:
                    continue  # it ended while we looked
                failed.append(trial)
        for trial in failed:
            logger.warning("trial %d marked failed: %s", trial.number, reason)
            if self.on_abandoned is not None:
                self.on_abandoned(trial, reason)
        return failed

    @property
    def heartbeat_interval(self) -> int | None:
        """Seconds between heartbeats on a storage that keeps them (a database server)."""
        return getattr(self.storage, "get_heartbeat_interval", lambda: None)()

    def awaited(self, study: optuna.Study) -> int:
        """How many running trials a worker with nothing left to ask should wait for.

        On a storage with heartbeats, a trial whose worker died (on any machine) is failed
        only after its grace period, by a worker that asks again; so a worker stays while
        trials run, to rerun any that fail. Elsewhere the launcher watches its workers, and
        this is 0.
        """
        if self.heartbeat_interval is None:
            return 0
        return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    @contextlib.contextmanager
    def heartbeat(self, trial: optuna.Trial) -> Iterator[None]:
        """Record the trial's heartbeat while the body runs, on storages that keep them.

        A worker on another machine that dies stops beating; after the grace period any
        worker's next ``ask`` marks its trial failed.
        """
        interval = self.heartbeat_interval
        if interval is None:
            yield
            return
        stop = threading.Event()
        trial_id = trial._trial_id

        def beat() -> None:
            while True:
                self.storage.record_heartbeat(trial_id)
                if stop.wait(interval):
                    return

        thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _fail_stale(self, study: optuna.Study) -> None:
        if self.heartbeat_interval is None:
            return
        running = {
            trial.number
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        }
        if not running:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number in running:
                grace = getattr(self.storage, "grace_period", None)
                reason = f"no heartbeat for {grace} s (its worker died)"
                logger.warning("trial %d marked failed: %s", trial.number, reason)
                if self.on_abandoned is not None:
                    self.on_abandoned(trial, reason)
