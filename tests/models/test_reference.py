import keras
import numpy as np
import pytest

from models import USER_MODEL_NAME, build_user_model, outputs_probability

SEQUENCE_LENGTH = 12


@pytest.fixture(scope="module")
def user_model() -> keras.Model:
    return build_user_model(sequence_length=SEQUENCE_LENGTH)


def test_build_user_model_has_the_posted_shapes(user_model):
    block = user_model.get_layer("block_0")
    embedding = user_model.get_layer("embedding")

    # embed_dim = maxlen, and each of the two heads attends with the full width.
    assert embedding.table.embeddings.shape == (SEQUENCE_LENGTH, SEQUENCE_LENGTH)
    assert embedding.positions.shape == (SEQUENCE_LENGTH, SEQUENCE_LENGTH)
    assert block.attention.query_dense.kernel.shape == (SEQUENCE_LENGTH, 2, SEQUENCE_LENGTH)
    assert block.attention.output_dense.kernel.shape == (2, SEQUENCE_LENGTH, SEQUENCE_LENGTH)
    assert block.ff_hidden.kernel.shape == (SEQUENCE_LENGTH, 4)
    assert block.ff_output.kernel.shape == (4, SEQUENCE_LENGTH)
    assert block.dropout_rate == pytest.approx(1e-6)
    dense_layers = [layer for layer in user_model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense_layers] == [20, 1]
    assert [layer.activation.__name__ for layer in dense_layers] == ["sigmoid", "sigmoid"]


def test_build_user_model_outputs_a_probability(user_model):
    rows = np.random.default_rng(0).random((4, SEQUENCE_LENGTH)).astype("float32") * 30

    probabilities = user_model.predict(rows, verbose=0)

    assert probabilities.shape == (4, 1)
    assert ((probabilities > 0) & (probabilities < 1)).all()
    assert outputs_probability(user_model)
    assert user_model.name == USER_MODEL_NAME


def test_build_user_model_gives_every_scaled_row_the_same_output(user_model):
    rows = np.random.default_rng(1).random((16, SEQUENCE_LENGTH)).astype("float32")

    probabilities = user_model.predict(rows, verbose=0)

    np.testing.assert_array_equal(probabilities, np.broadcast_to(probabilities[0], (16, 1)))


def test_build_user_model_still_outputs_probability_after_saving(user_model, tmp_path):
    path = tmp_path / "user.keras"

    user_model.save(path)
    loaded = keras.models.load_model(path)

    assert outputs_probability(loaded)
    rows = np.full((1, SEQUENCE_LENGTH), 3.0, dtype="float32")
    expected = user_model.predict(rows, verbose=0)
    np.testing.assert_allclose(loaded.predict(rows, verbose=0), expected, rtol=1e-6)


def test_build_user_model_refuses_a_width_of_one():
    with pytest.raises(ValueError, match="sequence_length=1 must be >= 2"):
        build_user_model(sequence_length=1)


def test_build_user_model_twin_keeps_the_structure_with_narrower_tokens():
    twin = build_user_model(sequence_length=SEQUENCE_LENGTH, embed_dim=4)
    block = twin.get_layer("block_0")
    embedding = twin.get_layer("embedding")

    # The id table keeps sequence_length rows; only the width (and key_dim) shrink.
    assert embedding.table.embeddings.shape == (SEQUENCE_LENGTH, 4)
    assert embedding.positions.shape == (SEQUENCE_LENGTH, 4)
    assert block.attention.query_dense.kernel.shape == (4, 2, 4)
    assert block.ff_hidden.kernel.shape == (4, 4)
    assert block.dropout_rate == pytest.approx(1e-6)
    dense_layers = [layer for layer in twin.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense_layers] == [20, 1]
    assert outputs_probability(twin)


def test_build_user_model_twin_gives_every_scaled_row_the_same_output():
    twin = build_user_model(sequence_length=SEQUENCE_LENGTH, embed_dim=4)
    rows = np.random.default_rng(2).random((16, SEQUENCE_LENGTH)).astype("float32")

    probabilities = twin.predict(rows, verbose=0)

    np.testing.assert_array_equal(probabilities, np.broadcast_to(probabilities[0], (16, 1)))


def test_build_user_model_refuses_an_embed_dim_of_one():
    with pytest.raises(ValueError, match="embed_dim=1 must be >= 2"):
        build_user_model(sequence_length=SEQUENCE_LENGTH, embed_dim=1)
