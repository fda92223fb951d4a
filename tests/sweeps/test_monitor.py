"""The per-epoch collapse watch on real Keras training."""

import keras
import numpy as np
import pytest

from sweeps.collapse import CollapseThresholds
from sweeps.monitor import EPOCH_METRICS, CollapseMonitor


def _data(rows: int = 40) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(rows) % 2
    features = np.column_stack([labels * 2.0 - 1.0, np.zeros(rows)]).astype(np.float32)
    return features, labels


def _frozen_model(kernel: float, bias: float) -> keras.Model:
    """One logit from a fixed linear map; a zero learning rate keeps it as built."""
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                1,
                kernel_initializer=keras.initializers.Constant(kernel),
                bias_initializer=keras.initializers.Constant(bias),
            ),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.0),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return model


def _fit(model: keras.Model, monitor: CollapseMonitor, epochs: int) -> None:
    features, labels = _data()
    model.fit(features, labels, epochs=epochs, batch_size=8, callbacks=[monitor], verbose=0)


def test_a_model_that_ignores_its_input_is_stopped_after_warmup_and_streak():
    features, labels = _data()
    seen = []
    monitor = CollapseMonitor(
        features,
        labels,
        CollapseThresholds(),
        from_logits=True,
        warmup_epochs=2,
        stop_after=3,
        on_epoch=lambda epoch, metrics: seen.append((epoch, metrics.collapsed)),
    )
    _fit(_frozen_model(kernel=0.0, bias=2.0), monitor, epochs=20)

    # Collapsed from the first epoch, but the streak only counts from epoch 2: 2, 3, 4.
    assert monitor.first_collapsed_epoch == 0
    assert monitor.stopped_collapsed
    assert monitor.stopped_epoch == 4
    assert seen == [(epoch, True) for epoch in range(5)]
    curves = monitor.curves()
    assert set(curves) == set(EPOCH_METRICS)
    assert curves["majority_share"] == [1.0] * 5
    assert curves["balanced_accuracy"] == [0.5] * 5


def test_a_model_that_separates_the_classes_is_never_stopped():
    features, labels = _data()
    monitor = CollapseMonitor(
        features, labels, CollapseThresholds(), from_logits=True, warmup_epochs=0, stop_after=1
    )
    _fit(_frozen_model(kernel=3.0, bias=0.0), monitor, epochs=4)

    assert not monitor.stopped_collapsed
    assert monitor.first_collapsed_epoch is None
    assert len(monitor.epochs) == 4
    assert monitor.curves()["balanced_accuracy"] == [1.0] * 4


def test_without_a_streak_limit_the_monitor_only_records():
    features, labels = _data()
    monitor = CollapseMonitor(features, labels, CollapseThresholds(), from_logits=True)
    _fit(_frozen_model(kernel=0.0, bias=-2.0), monitor, epochs=6)

    assert not monitor.stopped_collapsed
    assert monitor.first_collapsed_epoch == 0
    assert len(monitor.epochs) == 6
    assert all(metrics.majority_class == 0 for metrics in monitor.epochs)


def test_probabilities_are_scored_as_given_when_the_model_ends_in_a_sigmoid():
    features, labels = _data()
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                1,
                activation="sigmoid",
                kernel_initializer=keras.initializers.Constant(3.0),
                bias_initializer="zeros",
            ),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy")
    monitor = CollapseMonitor(features, labels, CollapseThresholds(), from_logits=False)
    model.fit(features, labels, epochs=1, callbacks=[monitor], verbose=0)
    assert monitor.epochs[0].balanced_accuracy == 1.0


def test_a_streak_limit_below_one_is_refused():
    features, labels = _data()
    with pytest.raises(ValueError, match="stop_after"):
        CollapseMonitor(features, labels, CollapseThresholds(), from_logits=True, stop_after=0)
