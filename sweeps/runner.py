"""Run trials until the study's budget is spent, logging one line per finished trial."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeps.study import trials_counted

logger = logging.getLogger(__name__)

# A sweep whose trials keep failing is broken, not unlucky: stop instead of retrying forever
# (failed trials do not use up the budget).
MAX_CONSECUTIVE_FAILURES = 3


class SweepError(RuntimeError):
    """The sweep cannot go on; the message says why."""


class _Progress:
    """Logs each finished trial with the best value so far and the time left."""

    def __init__(self, budget: int, metric: str) -> None:
        self.budget = budget
        self.metric = metric
        self.finished_here = 0
        self.started = time.monotonic()
        self.last_state: TrialState | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.last_state = trial.state
        if trial.state == TrialState.FAIL:
            return  # Optuna has already logged the failure with its cause.
        self.finished_here += 1
        done = trials_counted(study)
        elapsed = time.monotonic() - self.started
        left = elapsed / self.finished_here * max(self.budget - done, 0)
        folds = trial.user_attrs.get("folds_run", 0)
        value = "—" if trial.value is None else f"{trial.value:.3f}"
        if trial.state == TrialState.PRUNED:
            last = trial.intermediate_values.get(max(trial.intermediate_values, default=0))
            value = f"pruned after {folds} folds (running mean {last:.3f})"
        logger.info(
            "trial %d %s: %s %s, collapsed folds %d/%d, best %s; %d/%d trials, %s elapsed, "
            "about %s left",
            trial.number,
            trial.state.name,
            self.metric,
            value,
            trial.user_attrs.get("collapsed_folds", 0),
            folds,
            _best(study),
            done,
            self.budget,
            _minutes(elapsed),
            _minutes(left),
        )


def run_until_budget(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    budget: int,
    *,
    metric: str,
) -> int:
    """Run trials one at a time until the study holds ``budget`` trials.

    The budget counts the study's trials across every invocation and every process
    (running ones included), so running the same sweep again after it finished adds none.

    Args:
        study: The study.
        objective: The trial objective.
        budget: The study's total number of trials.
        metric: The metric's name, for log lines.

    Returns:
        How many trials this call ran (failed ones included).

    Raises:
        SweepError: Several trials in a row failed.
    """
    progress = _Progress(budget, metric)
    failures = ran = 0
    while trials_counted(study) < budget:
        # catch: a trial that raises is recorded as failed and the sweep goes on.
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[progress])
        ran += 1
        failures = failures + 1 if progress.last_state == TrialState.FAIL else 0
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise SweepError(
                f"{failures} trials in a row failed (see the errors above); fix the cause "
                "and run the same command again to resume the study"
            )
    return ran


def _best(study: optuna.Study) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return "none yet"
    return f"{best.value:.3f} (trial {best.number})"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
