import keras
import numpy as np

from models.pooling import AttentionPooling, pool_tokens


def test_attention_pooling_returns_a_weighted_average_of_the_tokens():
    layer = AttentionPooling()
    tokens = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")

    pooled = np.asarray(layer(tokens))  # (3, 4)

    scores = tokens @ np.asarray(layer.score.kernel) + np.asarray(layer.score.bias)  # (3, 5, 1)
    weights = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, (weights * tokens).sum(axis=1), rtol=1e-5, atol=1e-6)


def test_attention_pooling_keeps_a_token_that_every_position_shares():
    tokens = np.broadcast_to(np.arange(4, dtype="float32"), (2, 6, 4))

    pooled = np.asarray(AttentionPooling()(tokens))

    np.testing.assert_allclose(pooled, np.broadcast_to(np.arange(4), (2, 4)), rtol=1e-6)


def test_pool_tokens_flatten_keeps_every_token():
    tokens = keras.Input(shape=(7, 4))

    pooled = pool_tokens(tokens, "flatten")

    assert pooled.shape == (None, 28)
