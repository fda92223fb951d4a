import numpy as np
import pytest

from models.embeddings import (
    ConvEmbedding,
    FeatureEmbedding,
    LinearEmbedding,
    PatchEmbedding,
    PeriodicEmbedding,
    PiecewiseLinearEmbedding,
    TokenEmbedding,
)


def _token_embedding(sequence_length: int = 5, width: int = 4) -> TokenEmbedding:
    layer = TokenEmbedding(sequence_length=sequence_length, width=width)
    layer.build((None, sequence_length))
    return layer


def test_token_embedding_maps_values_below_one_to_id_zero():
    layer = _token_embedding()
    rows = np.array([[0.3] * 5, [0.7] * 5, [-0.5] * 5, [0.0] * 5], dtype="float32")

    tokens = np.asarray(layer(rows))  # (4, 5, 4)

    table = np.asarray(layer.table.embeddings)
    positions = np.asarray(layer.positions)
    for row in tokens:
        np.testing.assert_array_equal(row, table[0] + positions)


def test_token_embedding_wraps_negative_ids_from_the_end():
    layer = _token_embedding(sequence_length=5)

    tokens = np.asarray(layer(np.full((1, 5), -1.5, dtype="float32")))

    expected = np.asarray(layer.table.embeddings)[4] + np.asarray(layer.positions)
    np.testing.assert_allclose(tokens[0], expected)


def test_token_embedding_clips_ids_outside_the_table_instead_of_crashing():
    layer = _token_embedding(sequence_length=5)
    rows = np.array([[7.0, 400.0, -9.0, 4.2, 2.0]], dtype="float32")

    tokens = np.asarray(layer(rows))[0] - np.asarray(layer.positions)

    table = np.asarray(layer.table.embeddings)
    np.testing.assert_allclose(tokens, table[[4, 4, 0, 4, 2]], rtol=1e-6)


def test_linear_embedding_keeps_magnitudes_apart():
    layer = LinearEmbedding(sequence_length=6, width=4)

    tokens = np.asarray(layer(np.array([[0.3] * 6, [0.7] * 6], dtype="float32")))

    assert tokens.shape == (2, 6, 4)
    assert not np.allclose(tokens[0], tokens[1])


@pytest.mark.parametrize(
    ("sequence_length", "patch_length", "num_tokens"), [(12, 4, 3), (13, 4, 4), (5, 5, 1)]
)
def test_patch_embedding_pads_the_last_patch(sequence_length, patch_length, num_tokens):
    layer = PatchEmbedding(sequence_length=sequence_length, width=3, patch_length=patch_length)

    tokens = np.asarray(layer(np.ones((2, sequence_length), dtype="float32")))

    assert tokens.shape == (2, num_tokens, 3)


def test_patch_embedding_sees_values_inside_each_patch():
    layer = PatchEmbedding(sequence_length=8, width=3, patch_length=4)
    first = np.zeros((1, 8), dtype="float32")
    second = first.copy()
    second[0, 5] = 0.5  # inside the second patch only

    difference = np.asarray(layer(second)) - np.asarray(layer(first))  # (1, 2, 3)

    np.testing.assert_array_equal(difference[0, 0], 0.0)
    assert np.abs(difference[0, 1]).max() > 0


def test_embeddings_refuse_rows_of_another_length():
    layer = LinearEmbedding(sequence_length=6, width=4)

    with pytest.raises(ValueError, match="sequence_length=6"):
        layer(np.ones((2, 7), dtype="float32"))


@pytest.mark.parametrize(
    ("sequence_length", "patch_length", "patch_stride", "num_tokens"),
    [(12, 4, 2, 5), (13, 4, 3, 4), (14, 4, 3, 5), (12, 4, 4, 3), (12, 4, None, 3)],
)
def test_patch_embedding_strides_cover_every_value(
    sequence_length, patch_length, patch_stride, num_tokens
):
    layer = PatchEmbedding(
        sequence_length=sequence_length,
        width=3,
        patch_length=patch_length,
        patch_stride=patch_stride,
    )
    first = np.zeros((1, sequence_length), dtype="float32")
    last_changed = first.copy()
    last_changed[0, -1] = 1.0

    difference = np.asarray(layer(last_changed)) - np.asarray(layer(first))  # (1, tokens, 3)

    assert difference.shape == (1, num_tokens, 3)
    assert np.abs(difference[0, -1]).max() > 0


def test_patch_embedding_overlapping_patches_share_values():
    layer = PatchEmbedding(sequence_length=12, width=3, patch_length=4, patch_stride=2)
    first = np.zeros((1, 12), dtype="float32")
    second = first.copy()
    second[0, 3] = 1.0  # in the patches starting at 0 and at 2 only

    changed = np.abs(np.asarray(layer(second)) - np.asarray(layer(first)))[0].max(axis=1)

    np.testing.assert_array_equal(changed > 0, [True, True, False, False, False])


def test_linear_embedding_loads_from_a_patch_config():
    config = LinearEmbedding(sequence_length=6, width=4).get_config()

    layer = LinearEmbedding.from_config(config)

    assert (layer.patch_length, layer.stride, layer.num_tokens) == (1, 1, 6)


def test_feature_embedding_gives_each_column_its_own_weights():
    layer = FeatureEmbedding(sequence_length=5, width=4)
    zeros = np.zeros((1, 5), dtype="float32")

    at_zero = np.asarray(layer(zeros))[0]  # (5, 4)
    at_two = np.asarray(layer(zeros + 2.0))[0]

    np.testing.assert_allclose(at_zero, np.asarray(layer.bias), rtol=1e-6)
    np.testing.assert_allclose(at_two - at_zero, 2.0 * np.asarray(layer.kernel), rtol=1e-5)
    assert not hasattr(layer, "positions")
    assert len({tuple(row) for row in np.asarray(layer.kernel).round(6)}) == 5


@pytest.mark.parametrize("sigma", [0.1, 3.0])
def test_periodic_embedding_draws_frequencies_with_sigma(sigma):
    layer = PeriodicEmbedding(sequence_length=3, width=4, num_frequencies=4000, sigma=sigma)
    layer.build((None, 3))

    frequencies = np.asarray(layer.frequencies)

    assert frequencies.shape == (4000,)
    assert frequencies.std() == pytest.approx(sigma, rel=0.1)


def test_periodic_embedding_tells_close_values_apart():
    layer = PeriodicEmbedding(sequence_length=4, width=8, num_frequencies=8, sigma=1.0)
    rows = np.array([[0.3] * 4, [0.35] * 4], dtype="float32")

    tokens = np.asarray(layer(rows))

    assert tokens.shape == (2, 4, 8)
    assert (tokens >= np.asarray(layer.positions) - 1e-6).all()  # ReLU before the positions
    assert not np.allclose(tokens[0], tokens[1])


def _ple(edges: list[float]) -> PiecewiseLinearEmbedding:
    layer = PiecewiseLinearEmbedding(sequence_length=1, width=4, num_bins=len(edges) - 1)
    layer.build((None, 1))
    layer.bin_edges.assign(np.array([edges], dtype="float32"))
    return layer


@pytest.mark.parametrize(
    ("value", "encoding"),
    [
        (1.5, [1.0, 0.5, 0.0]),
        (0.0, [0.0, 0.0, 0.0]),
        (3.0, [1.0, 1.0, 0.5]),
        (-1.0, [-1.0, 0.0, 0.0]),  # below the first edge: the first bin is not clipped
        (6.0, [1.0, 1.0, 2.0]),  # above the last edge: the last bin is not clipped
    ],
)
def test_piecewise_linear_embedding_encodes_as_the_paper(value, encoding):
    layer = _ple([0.0, 1.0, 2.0, 4.0])

    encoded = np.asarray(layer.encode(np.array([[value]], dtype="float32")))

    np.testing.assert_allclose(encoded[0, 0], encoding, rtol=1e-6)


def test_piecewise_linear_embedding_steps_over_zero_width_bins():
    layer = _ple([0.5, 0.5, 0.5])  # a constant column

    encoded = np.asarray(layer.encode(np.array([[0.2], [0.5], [0.9]], dtype="float32")))

    np.testing.assert_array_equal(encoded[:, 0], [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])


def test_piecewise_linear_embedding_adapts_to_the_training_quantiles():
    rng = np.random.default_rng(0)
    training = rng.normal(size=(50, 3))
    training[:, 2] = 0.25  # a constant column must not divide by zero
    layer = PiecewiseLinearEmbedding(sequence_length=3, width=4, num_bins=4)

    layer.adapt(training)
    tokens = np.asarray(layer(rng.normal(size=(6, 3)).astype("float32")))

    expected = np.quantile(training, [0.0, 0.25, 0.5, 0.75, 1.0], axis=0).T
    np.testing.assert_allclose(np.asarray(layer.bin_edges), expected, rtol=1e-6)
    assert np.isfinite(tokens).all()


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.zeros((5, 4)), r"shape \(5, 4\); .* shape \(rows, 3\)"),
        (np.zeros((1, 3)), "number 1; the quantiles of fewer than two rows"),
        (np.array([[0.0, np.nan, 1.0]] * 3), "NaN or infinite"),
    ],
)
def test_piecewise_linear_embedding_refuses_bad_rows_to_adapt_to(features, message):
    layer = PiecewiseLinearEmbedding(sequence_length=3, width=4)

    with pytest.raises(ValueError, match=message):
        layer.adapt(features)


@pytest.mark.parametrize(
    ("sequence_length", "kernel_size", "stride", "num_tokens"),
    [(846, 7, 4, 212), (12, 3, 1, 12), (13, 5, 5, 3)],
)
def test_conv_embedding_makes_one_token_per_stride(
    sequence_length, kernel_size, stride, num_tokens
):
    layer = ConvEmbedding(
        sequence_length=sequence_length, width=4, kernel_size=kernel_size, stride=stride
    )

    tokens = np.asarray(layer(np.ones((2, sequence_length), dtype="float32")))

    assert layer.num_tokens == num_tokens
    assert tokens.shape == (2, num_tokens, 4)
