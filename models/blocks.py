"""The transformer block: self-attention and a feed-forward network, each with a residual."""

import keras
from keras import layers

_PACKAGE = "collapse_sweep"
LAYER_NORM_EPSILON = 1e-6  # The IMDB example's LayerNormalization epsilon, kept so runs compare.


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TransformerBlock(layers.Layer):
    """One transformer encoder block over ``(batch, tokens, width)``.

    Post-norm (``norm_first=False``) normalises after each residual sum, as the IMDB example
    and the original transformer do. Pre-norm normalises each sublayer's input instead and
    leaves the residual path untouched, which usually trains deeper stacks more stably; the
    caller then adds one final LayerNormalization after the last block.

    Args:
        width: Size of each token vector.
        num_heads: Number of attention heads.
        ff_units: Hidden units of the feed-forward network.
        dropout_rate: Dropout applied to each sublayer's output before the residual sum.
        norm_first: Pre-norm when True, post-norm when False.
        key_dim: Size of each head's queries and keys. ``None`` splits the width between the
            heads (``width // num_heads``), the usual choice. The user's model passed the full
            width to every head, which gives each attention projection ``num_heads`` times
            more weights.
        ff_activation: Activation of the feed-forward hidden layer.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(
        self,
        *,
        width: int,
        num_heads: int,
        ff_units: int,
        dropout_rate: float,
        norm_first: bool = False,
        key_dim: int | None = None,
        ff_activation: str = "gelu",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.width = width
        self.num_heads = num_heads
        self.ff_units = ff_units
        self.dropout_rate = dropout_rate
        self.norm_first = norm_first
        self.key_dim = key_dim
        self.ff_activation = ff_activation

        self.attention = layers.MultiHeadAttention(
            num_heads=num_heads,
            key_dim=key_dim if key_dim is not None else width // num_heads,
            name="attention",
        )
        self.ff_hidden = layers.Dense(ff_units, activation=ff_activation, name="ff_hidden")
        self.ff_output = layers.Dense(width, name="ff_output")
        self.attention_norm = layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name="attention_norm"
        )
        self.ff_norm = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="ff_norm")
        self.attention_dropout = layers.Dropout(dropout_rate)
        self.ff_dropout = layers.Dropout(dropout_rate)

    def build(self, input_shape: tuple) -> None:
        """Build the sublayers so a loaded model finds every weight before restoring it.

        Args:
            input_shape: ``(batch, tokens, width)``.
        """
        self.attention.build(input_shape, input_shape)
        self.ff_hidden.build(input_shape)
        self.ff_output.build((*input_shape[:-1], self.ff_units))
        self.attention_norm.build(input_shape)
        self.ff_norm.build(input_shape)

    def call(self, inputs, training: bool | None = None):
        """Apply the block.

        Args:
            inputs: ``(batch, tokens, width)``.
            training: Whether dropout is active.

        Returns:
            ``(batch, tokens, width)``.
        """
        x = inputs
        if self.norm_first:
            normed = self.attention_norm(x)
            x = x + self.attention_dropout(self.attention(normed, normed), training=training)
            update = self.ff_output(self.ff_hidden(self.ff_norm(x)))
            return x + self.ff_dropout(update, training=training)

        x = self.attention_norm(
            x + self.attention_dropout(self.attention(x, x), training=training)
        )
        update = self.ff_output(self.ff_hidden(x))
        return self.ff_norm(x + self.ff_dropout(update, training=training))

    def get_config(self) -> dict:
        """Return the arguments that rebuild this block from a saved model."""
        return {
            **super().get_config(),
            "width": self.width,
            "num_heads": self.num_heads,
            "ff_units": self.ff_units,
            "dropout_rate": self.dropout_rate,
            "norm_first": self.norm_first,
            "key_dim": self.key_dim,
            "ff_activation": self.ff_activation,
        }
