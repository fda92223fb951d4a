import keras
import numpy as np
import pytest

from models import EMBEDDINGS, POOLINGS, build_classifier, outputs_probability

SEQUENCE_LENGTH = 12
# Stands in for a training fold after scaling; only the ple embedding reads it.
TRAINING_ROWS = np.random.default_rng(10).random((40, SEQUENCE_LENGTH))


def _build(embedding: str = "linear", pooling: str = "avg", **overrides) -> keras.Model:
    arguments = dict(
        sequence_length=SEQUENCE_LENGTH,
        embedding=embedding,
        width=8,
        depth=1,
        num_heads=2,
        ff_multiplier=2.0,
        dropout_rate=0.1,
        pooling=pooling,
        patch_length=4,
        conv_kernel_size=3,
        conv_stride=2,
        adapt_features=TRAINING_ROWS,
        seed=0,
    )
    return build_classifier(**{**arguments, **overrides})


def _compile(
    model: keras.Model, learning_rate: float = 1e-3, run_eagerly: bool = False
) -> keras.Model:
    # XLA compilation costs seconds per model on CPU, more than these tiny fits take.
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)],
        jit_compile=False,
        run_eagerly=run_eagerly,
    )
    return model


def _distinct_rows(embedding: str, rng: np.random.Generator) -> np.ndarray:
    # The token embedding only tells values apart by their integer part, so give it whole
    # numbers across (and past) its table; the others see real values in [0, 1).
    scale = 2 * SEQUENCE_LENGTH if embedding == "token" else 1.0
    return (rng.random((2, SEQUENCE_LENGTH)) * scale).astype("float32")


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_build_classifier_trains_and_tells_rows_apart(embedding, pooling):
    rng = np.random.default_rng(0)
    # Tracing a train step costs about 2 s a model, so one step runs eagerly here; the bump
    # task below trains in graph mode.
    model = _compile(_build(embedding, pooling), run_eagerly=True)
    rows = _distinct_rows(embedding, rng)

    model.train_on_batch(rows, np.array([[0.0], [1.0]], dtype="float32"))
    logits = model.predict(rows, verbose=0)

    assert logits.shape == (2, 1)
    assert np.isfinite(logits).all()
    assert logits[0, 0] != pytest.approx(logits[1, 0], abs=1e-6)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_build_classifier_token_gives_every_scaled_row_the_same_logit(pooling):
    rng = np.random.default_rng(1)
    model = _compile(_build("token", pooling), run_eagerly=True)
    rows = rng.random((8, SEQUENCE_LENGTH)).astype("float32")  # all in [0, 1)

    model.train_on_batch(rows, (np.arange(8) % 2).astype("float32"))
    logits = model.predict(rows, verbose=0)

    np.testing.assert_array_equal(logits, np.broadcast_to(logits[0], logits.shape))


@pytest.mark.parametrize("norm_first", [False, True])
def test_build_classifier_outputs_one_logit_without_sigmoid(norm_first):
    model = _build("linear", depth=2, norm_first=norm_first)

    assert model.output_shape == (None, 1)
    assert model.get_layer("logit").activation is keras.activations.linear
    assert ("final_norm" in [layer.name for layer in model.layers]) is norm_first
    assert not outputs_probability(model)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": 10, "num_heads": 4}, "width=10 must be divisible by num_heads=4"),
        (
            {"embedding": "fourier"},
            "embedding='fourier' is unknown; choose one of token, linear, feature, periodic, "
            "ple, patch, conv",
        ),
        (
            {"pooling": "mean"},
            "pooling='mean' is unknown; choose one of avg, max, cls, attention, flatten",
        ),
        ({"embedding": "patch", "patch_length": None}, "patch_length=None is required"),
        ({"embedding": "patch", "patch_length": 13}, "between 1 and sequence_length=12"),
        ({"width": 1, "num_heads": 1}, "width=1 must be >= 2"),
        ({"num_heads": 0}, "num_heads=0 must be >= 1"),
        ({"depth": 0}, "depth=0 must be >= 1"),
        ({"dropout_rate": 1.0}, r"dropout_rate=1.0 must be in \[0, 1\)"),
        ({"ff_multiplier": 0.05}, "feed-forward units"),
        ({"sequence_length": 0}, "sequence_length=0 must be >= 1"),
        ({"patch_stride": 0}, "patch_stride=0 must be an integer >= 1"),
        ({"embedding": "patch", "patch_stride": 5}, "patch_stride=5 is larger than"),
        ({"periodic_sigma": 0.0}, "periodic_sigma=0.0 must be a finite number > 0"),
        ({"periodic_sigma": float("inf")}, "periodic_sigma=inf must be a finite number > 0"),
        ({"periodic_frequencies": 0}, "periodic_frequencies=0 must be an integer >= 1"),
        ({"ple_bins": 1}, "ple_bins=1 must be an integer >= 2"),
        ({"ple_bins": 8.0}, "ple_bins=8.0 must be an integer >= 2"),
        ({"conv_kernel_size": 0}, "conv_kernel_size=0 must be an integer >= 1"),
        ({"conv_stride": 0}, "conv_stride=0 must be an integer >= 1"),
        (
            {"embedding": "conv", "conv_kernel_size": 3, "conv_stride": 4},
            "conv_stride=4 is larger than conv_kernel_size=3",
        ),
        ({"embedding": "ple", "adapt_features": None}, "embedding='ple' takes its bin edges"),
        (
            {"embedding": "ple", "adapt_features": TRAINING_ROWS[:, :5]},
            r"shape \(40, 5\); .* shape \(rows, 12\)",
        ),
    ],
)
def test_build_classifier_refuses_bad_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        _build(**overrides)


def test_build_classifier_ignores_patch_length_for_other_embeddings():
    model = _build("linear", patch_length=None)

    assert model.get_layer("embedding").num_tokens == SEQUENCE_LENGTH


def test_build_classifier_ignores_other_embeddings_arguments():
    # A search space may sample every embedding's arguments in every trial.
    model = _build(
        "linear", patch_stride=9, conv_kernel_size=1, conv_stride=5, adapt_features=None
    )

    assert model.get_layer("embedding").num_tokens == SEQUENCE_LENGTH


@pytest.mark.parametrize(
    ("embedding", "overrides", "num_tokens"),
    [
        ("feature", {}, 12),
        ("periodic", {}, 12),
        ("ple", {}, 12),
        ("patch", {}, 3),
        ("patch", {"patch_stride": 2}, 5),
        ("conv", {}, 6),
        ("conv", {"conv_kernel_size": 5, "conv_stride": 5}, 3),
    ],
)
def test_build_classifier_passes_each_embedding_its_arguments(embedding, overrides, num_tokens):
    model = _build(embedding, "flatten", **overrides)

    assert model.get_layer("embedding").num_tokens == num_tokens
    # The flatten head has one weight per token and feature.
    assert model.get_layer("logit").kernel.shape == (num_tokens * 8, 1)


def test_build_classifier_passes_periodic_and_ple_arguments():
    periodic = _build("periodic", periodic_sigma=0.5, periodic_frequencies=3)
    ple = _build("ple", ple_bins=5)

    assert periodic.get_layer("embedding").frequencies.shape == (3,)
    assert periodic.get_layer("embedding").sigma == 0.5
    assert ple.get_layer("embedding").bin_edges.shape == (SEQUENCE_LENGTH, 6)


def test_build_classifier_ple_bins_come_from_the_training_rows_only():
    rng = np.random.default_rng(4)
    validation = rng.normal(3.0, 2.0, size=(20, SEQUENCE_LENGTH)).astype("float32")
    model = _compile(_build("ple", ple_bins=4))
    edges = model.get_layer("embedding").bin_edges
    expected = np.quantile(TRAINING_ROWS, [0.0, 0.25, 0.5, 0.75, 1.0], axis=0).T

    model.fit(
        TRAINING_ROWS.astype("float32"),
        (np.arange(40) % 2).astype("float32"),
        validation_data=(validation, (np.arange(20) % 2).astype("float32")),
        epochs=2,
        verbose=0,
    )
    model.predict(validation, verbose=0)

    np.testing.assert_allclose(np.asarray(edges), expected, rtol=1e-6)
    assert not edges.trainable


@pytest.mark.parametrize(
    ("embedding", "pooling"),
    [(embedding, "cls") for embedding in EMBEDDINGS]
    + [("patch", "attention"), ("conv", "flatten")],
)
def test_build_classifier_predicts_the_same_after_saving(embedding, pooling, tmp_path):
    rng = np.random.default_rng(2)
    model = _build(embedding, pooling, depth=2, norm_first=True, patch_stride=3)
    rows = _distinct_rows(embedding, rng)
    path = tmp_path / f"{embedding}.keras"

    model.save(path)
    loaded = keras.models.load_model(path)

    np.testing.assert_allclose(
        loaded.predict(rows, verbose=0), model.predict(rows, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert loaded.get_layer("embedding").get_config() == model.get_layer("embedding").get_config()


def test_build_classifier_ple_keeps_its_bins_after_saving(tmp_path):
    model = _build("ple", "avg", ple_bins=3)
    path = tmp_path / "ple.keras"

    model.save(path)
    loaded = keras.models.load_model(path)

    expected = np.quantile(TRAINING_ROWS, [0.0, 1 / 3, 2 / 3, 1.0], axis=0).T
    np.testing.assert_allclose(
        np.asarray(loaded.get_layer("embedding").bin_edges), expected, rtol=1e-6
    )


@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_build_classifier_seed_fixes_the_initial_weights(embedding):
    first = _build(embedding, seed=7).get_weights()
    again = _build(embedding, seed=7).get_weights()
    other = _build(embedding, seed=8).get_weights()

    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_build_classifier_seed_starts_query_and_key_apart():
    attention = _build("linear", seed=7).get_layer("block_0").attention

    query = np.asarray(attention.query_dense.kernel)
    key = np.asarray(attention.key_dense.kernel)

    assert not np.allclose(query, key)


def _bump_task(rng: np.random.Generator, rows: int = 200, length: int = 64):
    """Rows of low noise with one bump near position 16 (label 0) or 48 (label 1)."""
    labels = np.arange(rows) % 2
    centres = np.where(labels == 1, 48, 16) + rng.integers(-2, 3, rows)
    positions = np.arange(length)
    bumps = 0.7 * np.exp(-0.5 * ((positions[None, :] - centres[:, None]) / 2.0) ** 2)
    values = 0.2 * rng.random((rows, length)) + bumps  # (rows, length), all in [0, 1)
    return values.astype("float32"), labels.astype("float32")


def _fit_bump_task(embedding: str, epochs: int) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(0)
    values, labels = _bump_task(np.random.default_rng(3))
    arguments = dict(
        sequence_length=values.shape[1],
        embedding=embedding,
        width=16,
        depth=1,
        num_heads=2,
        ff_multiplier=2.0,
        dropout_rate=0.0,
        pooling="avg",
        patch_length=8,
        adapt_features=values,
        seed=0,
    )
    model = _compile(build_classifier(**arguments), learning_rate=3e-3)
    model.fit(values, labels, batch_size=32, epochs=epochs, verbose=0)
    return model, values, labels


@pytest.mark.parametrize("embedding", [name for name in EMBEDDINGS if name != "token"])
def test_build_classifier_learns_where_the_bump_is(embedding):
    model, values, labels = _fit_bump_task(embedding, epochs=15)

    _, accuracy = model.evaluate(values, labels, verbose=0)

    assert accuracy > 0.9


def test_build_classifier_token_stays_at_chance_on_the_bump_task():
    model, values, labels = _fit_bump_task("token", epochs=15)

    logits = model.predict(values, verbose=0)
    _, accuracy = model.evaluate(values, labels, verbose=0)

    np.testing.assert_array_equal(logits, np.broadcast_to(logits[0], logits.shape))
    assert accuracy == pytest.approx(0.5)
