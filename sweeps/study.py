"""Optuna studies: the storage, the sampler and pruner a spec asks for, and the budget."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from sweeps.spec import Spec

logger = logging.getLogger(__name__)

# A journal file is the storage that several processes on one machine can share safely
# (each appends to one log under a file lock); SQLite would serialise them on its lock.
DEFAULT_STORAGE = "optuna-journal.log"
# Trials that use up the budget. A failed trial does not: it is retried.
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
PARENT_RUN_ATTR = "mlflow_parent_run_id"


def open_storage(url: str) -> BaseStorage:
    """Open an Optuna storage from a URL or a journal file path.

    Args:
        url: A database URL (``sqlite:///…``, ``postgresql://…``) or the path of a journal
            file, created when absent.

    Returns:
        The storage.
    """
    if "://" in url:
        # Heartbeats let a trial whose worker died be marked failed and retried.
        heartbeat = None if url.startswith("sqlite") else 60
        return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=heartbeat and 180)
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The open(2)-based lock works on file systems without symbolic links, unlike the default.
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def make_sampler(spec: Spec, *, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler the spec names, seeded so that a study can be repeated.

    Args:
        spec: The sweep spec.
        worker: The worker's index; workers sharing a study get different seeds, or they
            would all propose the same first trials.

    Returns:
        The sampler.
    """
    seed = spec.seed + worker
    if spec.sampler.name == "grid":
        return optuna.samplers.GridSampler(dict(spec.search), seed=seed)
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.sampler.startup_trials)


def make_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    """The pruner the spec names; it sees the running mean of the metric after each fold."""
    if spec.pruner.name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=spec.pruner.startup_trials, n_warmup_steps=spec.pruner.warmup_folds
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
