"""The user's model as posted: the keras-io IMDB transformer given 846 real values per row.

It exists to reproduce the failure (one prediction for every row) and to compare against,
not to be tuned: nothing here changes its sizes. Unlike ``build_classifier`` it ends in a
sigmoid and outputs a probability; ``outputs_probability`` tells a caller which is which.
"""

import keras
from keras import layers

from models.blocks import TransformerBlock
from models.embeddings import TokenEmbedding

USER_MODEL_NAME = "user_model"


def build_user_model(*, sequence_length: int, embed_dim: int | None = None) -> keras.Model:
    """Build the user's posted model, uncompiled, with its sizes tied to the row length.

    Token-and-position embedding with ``input_dim = sequence_length`` and
    ``output_dim = embed_dim`` (both ``maxlen`` in the post); one post-norm block whose two
    heads each attend with the full width (``key_dim = embed_dim``), a ``Dense(4, relu)``
    feed-forward and dropout 1e-6; average pooling; ``Dropout(0.1)``, ``Dense(20, sigmoid)``,
    ``Dropout(0.1)``, ``Dense(1, sigmoid)``. The only change is that ids at or above
    ``sequence_length`` are clipped instead of crashing (see ``TokenEmbedding``).

    A smaller ``embed_dim`` gives a scaled-down twin: the same layers and the same id table of
    ``sequence_length`` rows, only narrower tokens. At 846 values the faithful model's
    ``846 x 2 x 846`` attention projections make an epoch of 465 rows take about 190 s on 2
    CPU cores; the twin with ``embed_dim=32`` shows the same failure in about 6 s.

    Args:
        sequence_length: Number of values in each row (846 in the post).
        embed_dim: Size of each token vector and of each head's keys, at least 2. ``None``
            sets it to ``sequence_length``, as the post does.

    Returns:
        An uncompiled ``keras.Model`` named ``USER_MODEL_NAME`` mapping
        ``(batch, sequence_length)`` to ``(batch, 1)`` probabilities. Compile it with
        ``from_logits=False``, as the post does.

    Raises:
        ValueError: If ``embed_dim`` is below 2, or ``sequence_length`` is below 2 when
            ``embed_dim`` is None (below 1 otherwise).
    """
    if embed_dim is None:
        if sequence_length < 2:
            raise ValueError(
                f"sequence_length={sequence_length} must be >= 2: the model's width equals it, "
                "and LayerNormalization over a width of 1 outputs a constant."
            )
        embed_dim = sequence_length  # The post sets embed_dim = maxlen.
    if sequence_length < 1:
        raise ValueError(
            f"sequence_length={sequence_length} must be >= 1: pass the number of values per row."
        )
    if embed_dim < 2:
        raise ValueError(
            f"embed_dim={embed_dim} must be >= 2, because LayerNormalization over a width of 1 "
            "outputs a constant; pass None for the post's embed_dim = sequence_length, or e.g. 32."
        )

    inputs = keras.Input(shape=(sequence_length,), dtype="float32", name="values")
    x = TokenEmbedding(sequence_length=sequence_length, width=embed_dim, name="embedding")(inputs)
    # (batch, sequence_length, embed_dim)
    x = TransformerBlock(
        width=embed_dim,
        num_heads=2,
        ff_units=4,
        dropout_rate=1e-6,
        key_dim=embed_dim,
        ff_activation="relu",
        name="block_0",
    )(x)
    x = layers.GlobalAveragePooling1D()(x)  # (batch, embed_dim)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(20, activation="sigmoid")(x)
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)  # (batch, 1)
    return keras.Model(inputs, outputs, name=USER_MODEL_NAME)


def outputs_probability(model: keras.Model) -> bool:
    """Tell whether a model from this package outputs probabilities rather than logits.

    The answer comes from the model's name, so it survives saving to and loading from a
    ``.keras`` file.

    Args:
        model: A model from ``build_user_model`` or ``build_classifier``.

    Returns:
        True for the user's model (sigmoid output), False for ``build_classifier``'s logits.
    """
    return model.name == USER_MODEL_NAME
