"""Run trials until the study's budget is spent, logging one line per finished trial.

Trials are created through the study's budget gate (ask) and finished explicitly (tell)
rather than by ``study.optimize``, so that counting the study's trials and creating the
next one is one atomic step across every worker process sharing the study.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeps.study import BudgetGate, trials_finished, worker_attrs

logger = logging.getLogger(__name__)

# A sweep whose trials keep failing is broken, not unlucky: stop instead of retrying forever
# (failed trials do not use up the budget).
MAX_CONSECUTIVE_FAILURES = 3
# How often a worker with nothing left to ask looks again at trials running elsewhere.
AWAIT_POLL_S = 10


class SweepError(RuntimeError):
    """The sweep cannot go on; the message says why."""


class _Progress:
    """Logs each finished trial with the best value so far and the time left.

    The time left is the study's rate since this process started, so that with several
    workers each one's estimate counts every worker's trials.
    """

    def __init__(self, study: optuna.Study, budget: int, metric: str) -> None:
        self.budget = budget
        self.metric = metric
        self.finished_at_start = trials_finished(study)
        self.started = time.monotonic()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        finished = trials_finished(study)
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        elapsed = time.monotonic() - self.started
        finished_here = max(finished - self.finished_at_start, 1)
        left = elapsed / finished_here * max(self.budget - finished, 0)
        folds = trial.user_attrs.get("folds_run", 0)
        value = "—" if trial.value is None else f"{trial.value:.3f}"
        if trial.state == TrialState.PRUNED:
            last = trial.intermediate_values.get(max(trial.intermediate_values, default=0))
            mean = "—" if last is None else f"{last:.3f}"
            value = f"pruned after {folds} folds (running mean {mean})"
        logger.info(
            "trial %d %s: %s %s, collapsed folds %d/%d, best %s; %d/%d trials%s, %s elapsed, "
            "about %s left",
            trial.number,
            trial.state.name,
            self.metric,
            value,
            trial.user_attrs.get("collapsed_folds", 0),
            folds,
            _best(study),
            finished,
            self.budget,
            f" ({running} running)" if running else "",
            _minutes(elapsed),
            _minutes(left),
        )


def run_until_budget(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    budget: int,
    *,
    metric: str,
    gate: BudgetGate | None = None,
    worker: Mapping[str, Any] | None = None,
) -> int:
    """Run trials one at a time until the study's trials fill ``budget``.

    The budget counts the study's trials across every invocation and every process
    (running ones included), so running the same sweep again after it finished adds none,
    and workers sharing the study stop together when it is spent. On a database server,
    where workers on other machines may die unseen, a worker stays until no trial runs, so
    that a trial failed for a stale heartbeat is run again.

    Args:
        study: The study, opened with this process's sampler.
        objective: The trial objective; it may raise ``optuna.TrialPruned``.
        budget: The study's total number of trials.
        metric: The metric's name, for log lines.
        gate: The study's budget gate; None makes one for this process alone (its storage
            must then have no other writers).
        worker: This process, recorded on each of its trials; None describes it as
            worker 0 with TensorFlow's default GPU and threads.

    Returns:
        How many trials this call ran (failed ones included).

    Raises:
        SweepError: Several trials in a row failed.
        KeyboardInterrupt: The sweep was interrupted; the running trial is marked failed.
    """
    if gate is None:
        # Optuna keeps a study's storage private; a gate without a lock needs nothing else.
        gate = BudgetGate(study._storage)
    if worker is None:
        worker = worker_attrs(index=0, gpu="default", threads=None)
    progress = _Progress(study, budget, metric)
    failures = ran = 0
    waiting = False
    while True:
        trial = gate.ask(study, budget, worker)
        if trial is None:
            awaited = gate.awaited(study)
            if not awaited:
                break
            if not waiting:
                logger.info(
                    "the budget is taken; waiting for %d running trial(s), to run again any "
                    "whose worker dies",
                    awaited,
                )
                waiting = True
            time.sleep(min(gate.heartbeat_interval or 1, AWAIT_POLL_S))
            continue
        waiting = False
        with gate.heartbeat(trial):
            finished = _run_trial(study, trial, objective)
        ran += 1
        if finished.state == TrialState.FAIL:
            failures += 1
        else:
            failures = 0
            progress(study, finished)
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise SweepError(
                f"{failures} trials in a row failed (see the errors above); fix the cause "
                "and run the same command again to resume the study"
            )
    return ran


def _run_trial(
    study: optuna.Study, trial: optuna.Trial, objective: Callable[[optuna.Trial], float]
) -> FrozenTrial:
    """Run one trial and tell the study how it ended: complete, pruned or failed."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        return _tell(study, trial, TrialState.PRUNED)
    except KeyboardInterrupt:
        _tell(study, trial, TrialState.FAIL)
        raise
    except Exception as error:
        # The sweep survives a failed trial; it does not use up the budget and is retried.
        logger.warning(
            "trial %d FAIL: %s: %s (parameters %s)",
            trial.number,
            type(error).__name__,
            error,
            trial.params,
            exc_info=True,
        )
        return _tell(study, trial, TrialState.FAIL)
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if math.isnan(value):
        logger.warning("trial %d FAIL: the objective returned no number", trial.number)
        return _tell(study, trial, TrialState.FAIL)
    return _tell(study, trial, TrialState.COMPLETE, value)


def _tell(
    study: optuna.Study, trial: optuna.Trial, state: TrialState, value: float | None = None
) -> FrozenTrial:
    # skip_if_finished: a trial marked failed elsewhere while it ran (its heartbeat went
    # stale) keeps that state rather than raising here.
    try:
        finished = study.tell(trial, value, state=state, skip_if_finished=True)
    except RuntimeError as error:
        # The grid sampler ends a study whose grid is exhausted with `study.stop()`, which
        # raises outside `study.optimize`. The trial was stored before that, and the budget
        # (the grid's size, as the spec checks) ends the sweep anyway.
        if "Study.stop" not in str(error):
            raise
        finished = study.get_trials(deepcopy=False)[trial.number]
    if finished.state != state:
        logger.warning(
            "trial %d had already been marked %s elsewhere; its result here is dropped",
            trial.number,
            finished.state.name,
        )
    return finished


def _best(study: optuna.Study) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return "none yet"
    return f"{best.value:.3f} (trial {best.number})"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
