"""The objective: score one trial's parameters by stratified k-fold cross-validation.

For each fold, the scaler is fitted on the training fold only, early stopping watches a
split carved from the training fold, and the validation fold is used for the predictions
that are scored and for the per-epoch collapse watch, which can only abandon a trial, never
shape the scored model. The mean over folds of the spec's metric is the trial's value; the
running mean is reported after each fold so that a pruner can stop a weak trial early, and
a fold that stays collapsed ends its trial pruned with the reason ``collapsed``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import optuna
from mlflow.exceptions import MlflowException
from scipy.special import expit

from data import Dataset, early_stopping_split, make_scaler
from models import build_classifier, build_user_model, outputs_probability
from sweeps.artifacts import FOLDS_FILE, write_fold_artifacts, write_fold_indices
from sweeps.collapse import (
    CONSTRAINT_NAME,
    CollapseThresholds,
    FoldMetrics,
    collapse_violation,
    explain,
    fold_metrics,
    summarise,
)
from sweeps.monitor import EPOCH_METRICS, CollapseMonitor
from sweeps.space import suggest_parameters
from sweeps.spec import TRAINING_PARAMETERS, Spec
from sweeps.tracking import TAG_PREFIX, StudyTracker, TrialRun

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FoldOutcome:
    """What one fold's training produced.

    Attributes:
        probabilities: Predicted probability of class 1 for each validation row.
        history: Per-epoch values by name (``loss``, ``val_loss``), as Keras records them.
        seconds: Wall time of the fold.
        epoch_metrics: The held-out fold's collapse metrics per epoch, by name.
        first_collapsed_epoch: The first epoch (from 0) whose predictions collapsed, if any.
        collapse_stopped_epoch: The epoch at which training stopped because the fold stayed
            collapsed, or None when it was not stopped for that.
    """

    probabilities: np.ndarray
    history: dict[str, list[float]]
    seconds: float
    epoch_metrics: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    first_collapsed_epoch: int | None = None
    collapse_stopped_epoch: int | None = None


def train_fold(
    dataset: Dataset,
    train_index: np.ndarray,
    validation_index: np.ndarray,
    params: dict[str, Any],
    spec: Spec,
    *,
    seed: int,
    on_epoch: Callable[[int, FoldMetrics], None] | None = None,
) -> FoldOutcome:
    """Train one model on a training fold and predict its validation fold.

    Args:
        dataset: The whole data file, parsed once per study.
        train_index: Rows the model may learn from (and stop early on).
        validation_index: Rows that are only predicted.
        params: The trial's parameters.
        spec: The sweep spec (epochs, early stopping).
        seed: Seeds weights, dropout and the early-stopping split.
        on_epoch: Called with (epoch, held-out metrics) after every epoch.

    Returns:
        The validation fold's probabilities and the training curves.
    """
    started = time.perf_counter()
    # Keras keeps every model built in a process in one global graph state; without this,
    # each trial is slower than the last and memory grows until the sweep dies.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)

    fit_index, stop_index = early_stopping_split(
        train_index, dataset.labels, spec.training.early_stopping_fraction, seed
    )
    # Fitted on the training fold only: statistics of the validation fold never reach the model.
    scaler = make_scaler(params["scaling"]).fit(dataset.features[train_index])

    def rows(index: np.ndarray) -> np.ndarray:
        return scaler.transform(dataset.features[index]).astype(np.float32)

    x_fit = rows(fit_index)
    x_validation = rows(validation_index)
    model = _build_model(params, spec, x_fit, seed=seed)
    # The user's posted model ends in a sigmoid; every other model outputs a logit.
    from_logits = not outputs_probability(model)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params["learning_rate"]),
        loss=keras.losses.BinaryCrossentropy(from_logits=from_logits),
    )
    collapse = spec.collapse
    monitor = CollapseMonitor(
        x_validation,
        dataset.labels[validation_index],
        CollapseThresholds.of(collapse),
        from_logits=from_logits,
        warmup_epochs=collapse.warmup_epochs,
        stop_after=collapse.prune_after_epochs,
        on_epoch=on_epoch,
    )
    callbacks: list[keras.callbacks.Callback] = [monitor]
    if spec.training.early_stopping_patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=spec.training.early_stopping_patience,
                # A model whose output ignores its input only fits the bias, and its loss
                # creeps down by tiny steps; without a minimum gain it would train to the end.
                min_delta=spec.training.early_stopping_min_delta,
                restore_best_weights=True,
            )
        )
    history = model.fit(
        x_fit,
        dataset.labels[fit_index],
        validation_data=(rows(stop_index), dataset.labels[stop_index]),
        epochs=spec.training.max_epochs,
        batch_size=params["batch_size"],
        callbacks=callbacks,
        verbose=0,
    )
    outputs = model.predict(x_validation, batch_size=256, verbose=0).ravel()
    return FoldOutcome(
        probabilities=expit(outputs) if from_logits else outputs,
        history={name: [float(v) for v in values] for name, values in history.history.items()},
        seconds=time.perf_counter() - started,
        epoch_metrics=monitor.curves(),
        first_collapsed_epoch=monitor.first_collapsed_epoch,
        collapse_stopped_epoch=monitor.stopped_epoch,
    )


def _build_model(
    params: dict[str, Any], spec: Spec, x_fit: np.ndarray, *, seed: int
) -> keras.Model:
    """The trial's model: the searched transformer, or the user's posted one."""
    if spec.model == "user":
        return build_user_model(
            sequence_length=x_fit.shape[1], embed_dim=spec.user_model.embed_dim
        )
    model_params = {k: v for k, v in params.items() if k not in TRAINING_PARAMETERS}
    if params.get("embedding") == "ple":
        # Quantile bins come from the rows the model fits on, never from the validation fold.
        model_params["adapt_features"] = x_fit
    return build_classifier(sequence_length=x_fit.shape[1], seed=seed, **model_params)


class Objective:
    """Cross-validates one trial and logs it to MLflow; Optuna calls it once per trial.

    Args:
        spec: The validated sweep spec.
        dataset: The data, parsed once for the whole study.
        folds: (training rows, validation rows) per fold, the same for every trial.
        tracker: The study's MLflow tracker, already started.
    """

    def __init__(
        self,
        spec: Spec,
        dataset: Dataset,
        folds: list[tuple[np.ndarray, np.ndarray]],
        tracker: StudyTracker,
    ) -> None:
        self.spec = spec
        self.dataset = dataset
        self.folds = folds
        self.tracker = tracker
        self.thresholds = CollapseThresholds.of(spec.collapse)
        self.run_tags = {f"{TAG_PREFIX}data_sha256": dataset.sha256}

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest_parameters(trial, self.spec)
        results: list[FoldMetrics] = []
        run: TrialRun | None = None
        state = "FAIL"
        try:
            # Opened inside the try, so that an interrupt at any moment still closes the run.
            run = self.tracker.start_trial(trial.number, params, self.run_tags)
            trial.set_user_attr("mlflow_run_id", run.run_id)
            self._log_artifacts(
                run, lambda directory: write_fold_indices(directory / FOLDS_FILE, self.folds), ""
            )
            value = self._cross_validate(trial, params, run, results)
            state = "COMPLETE"
            return value
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        finally:
            if state != "FAIL" and results and self.spec.collapse.constrain_search:
                # Positive means infeasible: any collapsed fold marks the trial as a region
                # for the sampler to avoid, and a trial that collapsed more ranks worse.
                trial.set_constraint(
                    CONSTRAINT_NAME, collapse_violation(results, self.spec.cv.metric)
                )
            if run is not None:
                run.end(state)

    def step(self, fold: int, epoch: int) -> int:
        """The Optuna step of an epoch of a fold.

        Each fold owns a block of ``max_epochs`` steps, so values reported within different
        folds never share a step; a fold's running mean is reported at the block's last step,
        the same for every trial, so that the pruner compares like with like.
        """
        return fold * self.spec.training.max_epochs + epoch

    def _cross_validate(
        self,
        trial: optuna.Trial,
        params: dict[str, Any],
        run: TrialRun,
        results: list[FoldMetrics],
    ) -> float:
        metric = self.spec.cv.metric
        max_epochs = self.spec.training.max_epochs
        first_collapsed: list[int | None] = []
        for fold, (train_index, validation_index) in enumerate(self.folds):

            def log_epoch(epoch: int, metrics: FoldMetrics, fold: int = fold) -> None:
                run.log(
                    metrics={
                        f"{name}/fold_{fold}": float(getattr(metrics, name))
                        for name in EPOCH_METRICS
                    },
                    step=epoch,
                )

            outcome = train_fold(
                self.dataset,
                train_index,
                validation_index,
                params,
                self.spec,
                seed=self.spec.seed * 100_003 + trial.number * 101 + fold,
                on_epoch=log_epoch,
            )
            metrics = fold_metrics(
                self.dataset.labels[validation_index], outcome.probabilities, self.thresholds
            )
            results.append(metrics)
            first_collapsed.append(outcome.first_collapsed_epoch)
            run.log_fold(fold, metrics, outcome.history, seconds=outcome.seconds)
            self._log_artifacts(
                run,
                functools.partial(
                    write_fold_artifacts,
                    fold=fold,
                    y_true=self.dataset.labels[validation_index],
                    probabilities=outcome.probabilities,
                    history=outcome.history,
                    epoch_metrics=outcome.epoch_metrics,
                ),
                "plots",
            )
            if outcome.first_collapsed_epoch is not None:
                run.log(
                    metrics={"fold/first_collapsed_epoch": outcome.first_collapsed_epoch},
                    step=fold,
                )
            self._record(trial, run, results)
            trial.set_user_attr("first_collapsed_epochs", first_collapsed)
            logger.info(
                "trial %d fold %d/%d: %s %.3f, %s, %d epochs, %.1f s",
                trial.number,
                fold + 1,
                len(self.folds),
                metric,
                getattr(metrics, metric),
                "COLLAPSED" if metrics.collapsed else "not collapsed",
                len(outcome.history.get("loss", [])),
                outcome.seconds,
            )

            running_mean = float(np.mean([getattr(result, metric) for result in results]))
            # Early stopping may have restored earlier weights that do not collapse; then the
            # fold is scored like any other.
            if outcome.collapse_stopped_epoch is not None and metrics.collapsed:
                epoch = outcome.collapse_stopped_epoch
                trial.report(running_mean, step=self.step(fold, epoch))
                collapse = self.spec.collapse
                self._prune(
                    trial,
                    run,
                    "collapsed",
                    f"fold {fold} stayed collapsed for {collapse.prune_after_epochs} epochs in "
                    f"a row after a {collapse.warmup_epochs}-epoch warm-up (stopped at epoch "
                    f"{epoch + 1}): {explain([metrics], self.thresholds)}",
                )
            trial.report(running_mean, step=self.step(fold, max_epochs - 1))
            if trial.should_prune():
                self._prune(
                    trial,
                    run,
                    "below_median",
                    f"mean {metric} {running_mean:.3f} after {fold + 1} folds is below "
                    "the median of earlier trials",
                )
        return float(np.mean([getattr(result, metric) for result in results]))

    @staticmethod
    def _log_artifacts(run: TrialRun, write: Callable[[Path], object], artifact_path: str) -> None:
        """Write files into a temporary folder and log them to the trial's run.

        The plots only show a trial; a full disk or an unreachable artifact store costs the
        trial its pictures, not its score.
        """
        try:
            with tempfile.TemporaryDirectory(prefix="collapse-sweep-") as directory:
                write(Path(directory))
                run.client.log_artifacts(run.run_id, directory, artifact_path or None)
        except (OSError, MlflowException) as error:
            logger.warning("trial run %s: could not log its artifacts (%s)", run.run_id, error)

    @staticmethod
    def _prune(trial: optuna.Trial, run: TrialRun, reason: str, detail: str) -> None:
        """End the trial pruned, with the reason on both the Optuna trial and the MLflow run."""
        trial.set_user_attr("prune_reason", reason)
        run.log(tags={f"{TAG_PREFIX}prune_reason": reason, f"{TAG_PREFIX}prune_detail": detail})
        raise optuna.TrialPruned(f"{reason}: {detail}")

    def _record(self, trial: optuna.Trial, run: TrialRun, results: list[FoldMetrics]) -> None:
        """Keep the trial's collapse summary current on both Optuna and MLflow.

        It is rewritten after every fold, so a pruned or failed trial still says how far
        it got and whether it had collapsed.
        """
        summary = summarise(results)
        explanation = explain(results, self.thresholds)
        collapsed_folds = int(summary["collapsed_folds"])
        # Folds whose output did not depend on the input at all: the severest collapse.
        constant_folds = sum(
            fold.collapsed and fold.probability_std < self.thresholds.min_probability_std
            for fold in results
        )
        trial.set_user_attr("collapsed_folds", collapsed_folds)
        trial.set_user_attr("constant_folds", constant_folds)
        trial.set_user_attr("folds_run", len(results))
        trial.set_user_attr("collapse", explanation)
        trial.set_user_attr("majority_share", round(summary["majority_share"], 4))
        trial.set_user_attr("accuracy", round(summary["accuracy"], 4))
        trial.set_user_attr("probability_std", float(f"{summary['probability_std']:.3g}"))
        run.log(
            metrics={**summary, "folds_run": len(results), "constant_folds": constant_folds},
            tags={
                f"{TAG_PREFIX}collapsed": str(collapsed_folds > 0).lower(),
                f"{TAG_PREFIX}collapse": explanation,
            },
            step=len(results) - 1,
        )
