"""Embeddings that turn a row of scaled values into a sequence of tokens for a transformer.

Every embedding maps ``(batch, sequence_length)`` float values to ``(batch, tokens, width)``
and adds a learned position vector to each token, because self-attention alone does not
know the order of the values and the order of the spreadsheet's columns carries meaning.
"""

import math

import keras
from keras import layers, ops

_PACKAGE = "collapse_sweep"


class _PositionedEmbedding(layers.Layer):
    """Base for embeddings that add one learned vector per token position.

    Args:
        sequence_length: Number of values in each input row.
        width: Size of each token vector.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(self, *, sequence_length: int, width: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sequence_length = sequence_length
        self.width = width

    @property
    def num_tokens(self) -> int:
        """Number of tokens each row becomes."""
        return self.sequence_length

    def build(self, input_shape: tuple) -> None:
        """Create the position table once the row length is known.

        Args:
            input_shape: ``(batch, sequence_length)``.

        Raises:
            ValueError: If the rows are not ``sequence_length`` values long.
        """
        if input_shape[-1] != self.sequence_length:
            raise ValueError(
                f"{self.name} was built for rows of sequence_length={self.sequence_length} "
                f"values but received rows of {input_shape[-1]}; build the model with "
                f"sequence_length={input_shape[-1]}."
            )
        # "uniform" is keras.layers.Embedding's default, as in the user's position table.
        self.positions = self.add_weight(
            shape=(self.num_tokens, self.width), initializer="uniform", name="positions"
        )

    def get_config(self) -> dict:
        """Return the arguments that rebuild this layer from a saved model."""
        return {
            **super().get_config(),
            "sequence_length": self.sequence_length,
            "width": self.width,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TokenEmbedding(_PositionedEmbedding):
    """The IMDB example's token-and-position embedding, applied to real values as the user did.

    Each value is cast to an integer id and looked up in a table of ``sequence_length`` rows
    (the user set ``input_dim = maxlen``). The cast truncates towards zero, so every value in
    (-1, 1) becomes id 0 and the rows of a data set scaled to [0, 1) all embed to the same
    tokens: the model can only see positions, never values, and predicts one class. This
    embedding keeps that failure on purpose, so sweeps can reproduce it.

    Args:
        sequence_length: Number of values in each row, and the number of rows in the table.
        width: Size of each token vector.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(self, *, sequence_length: int, width: int, **kwargs) -> None:
        super().__init__(sequence_length=sequence_length, width=width, **kwargs)
        self.table = layers.Embedding(input_dim=sequence_length, output_dim=width, name="table")

    def build(self, input_shape: tuple) -> None:
        """Create the id table and the position table.

        Args:
            input_shape: ``(batch, sequence_length)``.
        """
        super().build(input_shape)
        self.table.build((None, self.sequence_length))

    def call(self, inputs):
        """Embed a batch of rows.

        Args:
            inputs: ``(batch, sequence_length)`` values.

        Returns:
            ``(batch, sequence_length, width)`` token vectors.
        """
        # The same truncating cast keras.layers.Embedding applies to non-integer inputs.
        ids = ops.cast(inputs, "int32")
        # Ids at or above the table size crash the lookup on CPU in the original model (and
        # read zeros on GPU), so clip them; negative ids keep wrapping from the end of the
        # table as keras.layers.Embedding's ops.take does, down to -sequence_length.
        ids = ops.clip(ids, -self.sequence_length, self.sequence_length - 1)
        return self.table(ids) + self.positions  # (batch, sequence_length, width)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PatchEmbedding(_PositionedEmbedding):
    """Groups consecutive values into patches and projects each patch to a token, as PatchTST.

    The row is padded at the end with zeros to a multiple of ``patch_length``, cut into
    non-overlapping patches, and each patch goes through one shared ``Dense`` layer.
    Fewer tokens make attention much cheaper: its cost grows with the square of their number.

    Args:
        sequence_length: Number of values in each row.
        width: Size of each token vector.
        patch_length: Number of consecutive values in each patch.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(self, *, sequence_length: int, width: int, patch_length: int, **kwargs) -> None:
        super().__init__(sequence_length=sequence_length, width=width, **kwargs)
        self.patch_length = patch_length
        self.projection = layers.Dense(width, name="projection")

    @property
    def num_tokens(self) -> int:
        """Number of patches each row becomes, counting a zero-padded last one."""
        return math.ceil(self.sequence_length / self.patch_length)

    def build(self, input_shape: tuple) -> None:
        """Create the projection and the position table.

        Args:
            input_shape: ``(batch, sequence_length)``.
        """
        super().build(input_shape)
        self.projection.build((None, self.num_tokens, self.patch_length))

    def call(self, inputs):
        """Embed a batch of rows.

        Args:
            inputs: ``(batch, sequence_length)`` values.

        Returns:
            ``(batch, tokens, width)`` token vectors, one per patch.
        """
        padding = self.num_tokens * self.patch_length - self.sequence_length
        patches = ops.pad(inputs, [[0, 0], [0, padding]])  # (batch, tokens * patch_length)
        patches = ops.reshape(patches, (-1, self.num_tokens, self.patch_length))
        # (batch, tokens, patch_length)
        return self.projection(patches) + self.positions  # (batch, tokens, width)

    def get_config(self) -> dict:
        """Return the arguments that rebuild this layer from a saved model."""
        return {**super().get_config(), "patch_length": self.patch_length}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LinearEmbedding(PatchEmbedding):
    """Projects each value to a token with one shared weight vector and bias.

    This is a patch embedding with patches of one value: ``token_i = value_i * w + b`` plus
    the position vector of ``i``, so every value keeps its own token and its magnitude.

    Args:
        sequence_length: Number of values in each row.
        width: Size of each token vector.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(self, *, sequence_length: int, width: int, **kwargs) -> None:
        kwargs.pop("patch_length", None)
        super().__init__(sequence_length=sequence_length, width=width, patch_length=1, **kwargs)
