import numpy as np
import pytest

from models.embeddings import LinearEmbedding, PatchEmbedding, TokenEmbedding


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
