"""Per-epoch collapse watch: score the held-out fold after every epoch and stop a dead model.

A model that predicts one class usually does so from its first epochs on and never
recovers; training it to the last epoch of every fold only confirms what the first few
epochs showed. The monitor predicts the fold's held-out rows once per epoch, records the
collapse metrics and the first collapsed epoch, and stops training when the fold has stayed
collapsed for a set number of consecutive epochs after a warm-up.

Watching the validation fold does not leak it into the score: the monitor never chooses
weights or an epoch for the scored model, it only decides to abandon the trial, and an
abandoned (pruned) trial has no score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from scipy.special import expit

from sweeps.collapse import CollapseThresholds, FoldMetrics, fold_metrics

# The per-epoch metrics worth a curve; the rest of FoldMetrics stays in the fold summary.
EPOCH_METRICS = ("balanced_accuracy", "majority_share", "probability_std", "collapsed")


class CollapseMonitor(keras.callbacks.Callback):
    """A Keras callback that scores the held-out rows after each epoch.

    Args:
        features: The held-out rows, already scaled as the model sees them.
        labels: Their classes.
        thresholds: When an epoch's predictions count as collapsed.
        from_logits: Whether the model outputs logits (True) or probabilities.
        warmup_epochs: Epochs during which a collapse is recorded but never stops training;
            a freshly initialised model often predicts one class for an epoch or two.
        stop_after: Stop when this many consecutive epochs after the warm-up collapsed;
            None records only.
        on_epoch: Called with (epoch, metrics) after each epoch, e.g. to log to MLflow.
    """

    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        thresholds: CollapseThresholds,
        *,
        from_logits: bool,
        warmup_epochs: int = 0,
        stop_after: int | None = None,
        on_epoch: Callable[[int, FoldMetrics], None] | None = None,
    ) -> None:
        super().__init__()
        if stop_after is not None and stop_after < 1:
            raise ValueError(f"stop_after must be at least 1 or None, got {stop_after}")
        self.features = features
        self.labels = labels
        self.thresholds = thresholds
        self.from_logits = from_logits
        self.warmup_epochs = warmup_epochs
        self.stop_after = stop_after
        self.on_epoch = on_epoch
        self.epochs: list[FoldMetrics] = []
        self.first_collapsed_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self._streak = 0

    @property
    def stopped_collapsed(self) -> bool:
        """Whether this monitor stopped training because the fold stayed collapsed."""
        return self.stopped_epoch is not None

    def curves(self) -> dict[str, list[float]]:
        """Each of ``EPOCH_METRICS`` per epoch, in the form of a Keras history."""
        return {
            name: [float(getattr(metrics, name)) for metrics in self.epochs]
            for name in EPOCH_METRICS
        }

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # A direct call rather than predict(): predict() builds a new traced function for
        # every model, which TensorFlow reports as retracing once a sweep has built a few.
        outputs = keras.ops.convert_to_numpy(self.model(self.features, training=False)).ravel()
        probabilities = expit(outputs) if self.from_logits else outputs
        metrics = fold_metrics(self.labels, probabilities, self.thresholds)
        self.epochs.append(metrics)
        if metrics.collapsed and self.first_collapsed_epoch is None:
            self.first_collapsed_epoch = epoch
        # Only epochs after the warm-up count towards the streak that stops training.
        self._streak = self._streak + 1 if metrics.collapsed and epoch >= self.warmup_epochs else 0
        if self.on_epoch is not None:
            self.on_epoch(epoch, metrics)
        if self.stop_after is not None and self._streak >= self.stop_after:
            self.stopped_epoch = epoch
            self.model.stop_training = True
