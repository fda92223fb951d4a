"""Pooling: how a sequence of tokens becomes one vector per row for the classification head."""

import keras
from keras import layers, ops

POOLINGS: tuple[str, ...] = ("avg", "max", "cls", "attention", "flatten")

_PACKAGE = "collapse_sweep"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PrependClassToken(layers.Layer):
    """Puts one learned token in front of every row's tokens, as BERT's [CLS] and ViT do.

    The token starts the same for every row; attention lets it gather what the row's own
    tokens hold, and its final state is the pooled output (see ``pool_tokens``).

    Args:
        width: Size of each token vector.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(self, *, width: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.width = width

    def build(self, input_shape: tuple) -> None:
        """Create the class token.

        Args:
            input_shape: ``(batch, tokens, width)``.
        """
        self.token = self.add_weight(shape=(1, 1, self.width), initializer="uniform", name="token")

    def call(self, inputs):
        """Prepend the class token.

        Args:
            inputs: ``(batch, tokens, width)``.

        Returns:
            ``(batch, 1 + tokens, width)`` with the class token first.
        """
        batch_size = ops.shape(inputs)[0]
        token = ops.broadcast_to(self.token, (batch_size, 1, self.width))  # (batch, 1, width)
        return ops.concatenate([ops.cast(token, inputs.dtype), inputs], axis=1)

    def get_config(self) -> dict:
        """Return the arguments that rebuild this layer from a saved model."""
        return {**super().get_config(), "width": self.width}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClassTokenPooling(layers.Layer):
    """Keeps the final state of the token that ``PrependClassToken`` put first."""

    def call(self, inputs):
        """Select the class token.

        Args:
            inputs: ``(batch, 1 + tokens, width)``.

        Returns:
            ``(batch, width)``.
        """
        return inputs[:, 0, :]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttentionPooling(layers.Layer):
    """Averages the tokens with learned weights: a softmax over one score per token.

    A ``Dense(1)`` layer scores every token from its own vector; the softmax of the scores
    over the tokens weights their sum. Unlike ``avg``, the model can learn to listen to the
    few positions that carry the signal and ignore the rest.

    Args:
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.score = layers.Dense(1, name="score")

    def build(self, input_shape: tuple) -> None:
        """Build the scoring layer so a loaded model finds its weights.

        Args:
            input_shape: ``(batch, tokens, width)``.
        """
        self.score.build(input_shape)

    def call(self, inputs):
        """Pool the tokens.

        Args:
            inputs: ``(batch, tokens, width)``.

        Returns:
            ``(batch, width)``.
        """
        weights = ops.softmax(self.score(inputs), axis=1)  # (batch, tokens, 1)
        return ops.sum(weights * inputs, axis=1)


def pool_tokens(tokens, pooling: str):
    """Pool a symbolic ``(batch, tokens, width)`` tensor to one vector per row.

    Args:
        tokens: The last block's output, with the class token first when pooling is ``cls``.
        pooling: One of ``POOLINGS``: ``avg`` and ``max`` over the tokens, ``cls`` (the class
            token's final state), ``attention`` (``AttentionPooling``) or ``flatten`` (all
            tokens side by side). With ``flatten`` the head's weights grow with the number of
            tokens: ``tokens * width`` of them, about 27 000 for 846 tokens of width 32, so it
            suits short token sequences such as patches best.

    Returns:
        The pooled tensor: ``(batch, width)``, or ``(batch, tokens * width)`` for ``flatten``.

    Raises:
        ValueError: If ``pooling`` is not one of ``POOLINGS``.
    """
    if pooling == "avg":
        return layers.GlobalAveragePooling1D(name="avg_pool")(tokens)
    if pooling == "max":
        return layers.GlobalMaxPooling1D(name="max_pool")(tokens)
    if pooling == "cls":
        return ClassTokenPooling(name="cls_pool")(tokens)
    if pooling == "attention":
        return AttentionPooling(name="attention_pool")(tokens)
    if pooling == "flatten":
        return layers.Flatten(name="flatten_pool")(tokens)
    raise ValueError(f"pooling={pooling!r} is unknown; choose one of {', '.join(POOLINGS)}.")
