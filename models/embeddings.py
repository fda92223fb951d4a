"""Embeddings that turn a row of scaled values into a sequence of tokens for a transformer.

Every embedding maps ``(batch, sequence_length)`` float values to ``(batch, tokens, width)``
and tells the tokens apart by position, because self-attention alone does not know the order
of the values and the order of the spreadsheet's columns carries meaning. All but
``FeatureEmbedding`` add a learned position vector to each token; that one gives every column
its own weights, which already makes each token's position known.

Layers here use ``keras.ops`` only, so the models run on any Keras backend (TensorFlow, JAX).
"""

import math

import keras
import numpy as np
from keras import layers, ops

_PACKAGE = "collapse_sweep"


class _PositionedEmbedding(layers.Layer):
    """Base for embeddings that add one learned vector per token position.

    Subclasses that know each token's position without a table set ``adds_positions`` to
    False; the row length is checked either way.

    Args:
        sequence_length: Number of values in each input row.
        width: Size of each token vector.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    adds_positions = True

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
        if self.adds_positions:
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

    Patches of ``patch_length`` values start every ``patch_stride`` values (PatchTST, Nie et
    al. 2023, "A Time Series is Worth 64 Words"), so a stride below the length makes patches
    overlap. The row is padded at the end with zeros until the last patch reaches past the
    last value, so no value is left out, and each patch goes through one shared ``Dense``
    layer. Fewer tokens make attention much cheaper: its cost grows with the square of their
    number.

    Args:
        sequence_length: Number of values in each row.
        width: Size of each token vector.
        patch_length: Number of consecutive values in each patch.
        patch_stride: Values between the starts of neighbouring patches, from 1 to
            ``patch_length``. ``None`` means ``patch_length``: patches side by side.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(
        self,
        *,
        sequence_length: int,
        width: int,
        patch_length: int,
        patch_stride: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(sequence_length=sequence_length, width=width, **kwargs)
        self.patch_length = patch_length
        self.patch_stride = patch_stride
        self.projection = layers.Dense(width, name="projection")

    @property
    def stride(self) -> int:
        """Values between the starts of neighbouring patches."""
        return self.patch_length if self.patch_stride is None else self.patch_stride

    @property
    def num_tokens(self) -> int:
        """Number of patches each row becomes, counting a zero-padded last one."""
        uncovered = max(self.sequence_length - self.patch_length, 0)
        return math.ceil(uncovered / self.stride) + 1

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
        padded_length = (self.num_tokens - 1) * self.stride + self.patch_length
        padded = ops.pad(inputs, [[0, 0], [0, padded_length - self.sequence_length]])
        # (batch, padded_length)
        starts = np.arange(self.num_tokens) * self.stride
        indices = starts[:, None] + np.arange(self.patch_length)  # (tokens, patch_length)
        # One gather serves side-by-side and overlapping patches alike.
        patches = ops.take(padded, indices, axis=1)  # (batch, tokens, patch_length)
        return self.projection(patches) + self.positions  # (batch, tokens, width)

    def get_config(self) -> dict:
        """Return the arguments that rebuild this layer from a saved model."""
        return {
            **super().get_config(),
            "patch_length": self.patch_length,
            "patch_stride": self.patch_stride,
        }


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
        # A saved config carries the patch arguments this subclass fixes; drop them.
        kwargs.pop("patch_length", None)
        kwargs.pop("patch_stride", None)
        super().__init__(sequence_length=sequence_length, width=width, patch_length=1, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeatureEmbedding(_PositionedEmbedding):
    """Gives every column its own weight vector and bias: the FT-Transformer's tokenizer.

    ``token_j = value_j * w_j + b_j`` (Gorishniy et al. 2021, "Revisiting Deep Learning Models
    for Tabular Data"). Because ``w_j`` and ``b_j`` belong to column ``j`` alone, the token
    already says which column it came from and no position table is added. Both start
    uniform in ``[-1/sqrt(width), 1/sqrt(width)]``, as FT-Transformer initialises them. The
    price is ``2 * sequence_length * width`` weights, all learned from the training rows.

    Args:
        sequence_length: Number of values in each row.
        width: Size of each token vector.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    adds_positions = False

    def build(self, input_shape: tuple) -> None:
        """Create one weight vector and one bias per column.

        Args:
            input_shape: ``(batch, sequence_length)``.
        """
        super().build(input_shape)
        limit = 1 / math.sqrt(self.width)
        self.kernel = self.add_weight(
            shape=(self.sequence_length, self.width),
            initializer=keras.initializers.RandomUniform(-limit, limit),
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.sequence_length, self.width),
            initializer=keras.initializers.RandomUniform(-limit, limit),
            name="bias",
        )

    def call(self, inputs):
        """Embed a batch of rows.

        Args:
            inputs: ``(batch, sequence_length)`` values.

        Returns:
            ``(batch, sequence_length, width)`` token vectors.
        """
        values = ops.expand_dims(inputs, -1)  # (batch, sequence_length, 1)
        return values * self.kernel + self.bias  # (batch, sequence_length, width)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PeriodicEmbedding(_PositionedEmbedding):
    """Embeds each value through learned sines and cosines, then a linear layer and ReLU.

    The "PLR" embedding of Gorishniy et al. 2022, "On Embeddings for Numerical Features in
    Tabular Deep Learning": ``v = [cos(2 pi c x), sin(2 pi c x)]`` for ``num_frequencies``
    trainable frequencies ``c`` drawn from ``N(0, sigma)``, then ``ReLU(Linear(v))``, plus
    the position vector of the value's column.

    Unlike the paper, the frequencies and the linear layer are shared by all columns rather
    than learned per column. The columns here are one ordered series, scaled alike, so one
    map from value to vector suits all of them, and the learned positions tell the columns
    apart; per-column linear layers would cost ``sequence_length * 2 * num_frequencies *
    width`` weights (about 870 000 at 846 columns and a width of 32) for a few hundred
    training rows. The ``feature`` embedding is the per-column alternative.

    Args:
        sequence_length: Number of values in each row.
        width: Size of each token vector.
        num_frequencies: Number of frequencies ``c``; each value first becomes
            ``2 * num_frequencies`` features.
        sigma: Standard deviation of the frequencies' starting values. The paper tunes it for
            every data set: large values make the embedding vary quickly with small changes
            in a value, small ones make it nearly linear.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(
        self,
        *,
        sequence_length: int,
        width: int,
        num_frequencies: int = 16,
        sigma: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(sequence_length=sequence_length, width=width, **kwargs)
        self.num_frequencies = num_frequencies
        self.sigma = sigma
        self.projection = layers.Dense(width, activation="relu", name="projection")

    def build(self, input_shape: tuple) -> None:
        """Create the frequencies, the linear layer and the position table.

        Args:
            input_shape: ``(batch, sequence_length)``.
        """
        super().build(input_shape)
        self.frequencies = self.add_weight(
            shape=(self.num_frequencies,),
            initializer=keras.initializers.RandomNormal(stddev=self.sigma),
            name="frequencies",
        )
        self.projection.build((None, self.sequence_length, 2 * self.num_frequencies))

    def call(self, inputs):
        """Embed a batch of rows.

        Args:
            inputs: ``(batch, sequence_length)`` values.

        Returns:
            ``(batch, sequence_length, width)`` token vectors.
        """
        angles = 2 * math.pi * ops.expand_dims(inputs, -1) * self.frequencies
        # (batch, sequence_length, num_frequencies)
        periodic = ops.concatenate([ops.cos(angles), ops.sin(angles)], axis=-1)
        # (batch, sequence_length, 2 * num_frequencies)
        return self.projection(periodic) + self.positions  # (batch, sequence_length, width)

    def get_config(self) -> dict:
        """Return the arguments that rebuild this layer from a saved model."""
        return {
            **super().get_config(),
            "num_frequencies": self.num_frequencies,
            "sigma": self.sigma,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PiecewiseLinearEmbedding(_PositionedEmbedding):
    """Encodes each value by how far it fills its column's quantile bins, then projects it.

    The piecewise-linear encoding of Gorishniy et al. 2022, "On Embeddings for Numerical
    Features in Tabular Deep Learning". With bin edges ``b_0 < ... < b_T`` for a column, a
    value ``x`` becomes ``T`` numbers: 1 for every bin wholly below ``x``, 0 for every bin
    wholly above it, and ``(x - b_{t-1}) / (b_t - b_{t-1})`` for the bin it falls in. As in the
    paper, the first bin is not clipped below 0 and the last not above 1, so values outside
    the training range still differ from the range's ends. A ``Dense`` layer shared by all
    columns maps the ``T`` numbers to a token, and a learned position vector is added.

    The edges are each column's quantiles over the rows given to ``adapt``, which must be the
    training fold only: edges from validation rows would leak them into the model. They are a
    non-trainable weight, so they are saved and loaded with the model. Call ``adapt`` before
    training; a layer never adapted has every edge at 0.

    Where edges coincide (a constant column, or a value shared by many rows), the bin has no
    width; it then encodes 1 for values at or above the edge and 0 below, a step rather than a
    division by zero.

    Args:
        sequence_length: Number of values in each row.
        width: Size of each token vector.
        num_bins: Number of bins ``T`` per column, at least 2.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(self, *, sequence_length: int, width: int, num_bins: int = 8, **kwargs) -> None:
        super().__init__(sequence_length=sequence_length, width=width, **kwargs)
        self.num_bins = num_bins
        self.projection = layers.Dense(width, name="projection")

    def build(self, input_shape: tuple) -> None:
        """Create the bin edges, the projection and the position table.

        Args:
            input_shape: ``(batch, sequence_length)``.
        """
        super().build(input_shape)
        self.bin_edges = self.add_weight(
            shape=(self.sequence_length, self.num_bins + 1),
            initializer="zeros",
            trainable=False,
            name="bin_edges",
        )
        self.projection.build((None, self.sequence_length, self.num_bins))

    def adapt(self, features: np.ndarray) -> None:
        """Set each column's bin edges to its quantiles over the given rows.

        Args:
            features: ``(rows, sequence_length)`` scaled training rows; never validation rows.

        Raises:
            ValueError: If ``features`` is not ``(rows, sequence_length)`` with at least two
                rows, or holds a value that is not finite.
        """
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.sequence_length:
            raise ValueError(
                f"The rows to adapt to (adapt_features) have shape {features.shape}; pass the "
                f"training fold's scaled rows as an array of shape (rows, {self.sequence_length})."
            )
        if features.shape[0] < 2:
            raise ValueError(
                f"The rows to adapt to (adapt_features) number {features.shape[0]}; the quantiles "
                "of fewer than two rows are all equal, so pass the whole training fold."
            )
        if not np.isfinite(features).all():
            raise ValueError(
                "The rows to adapt to (adapt_features) hold NaN or infinite values; impute or "
                "drop them before scaling, as for the rows the model is trained on."
            )
        if not self.built:
            self.build((None, self.sequence_length))
        levels = np.linspace(0.0, 1.0, self.num_bins + 1)
        edges = np.quantile(features, levels, axis=0).T  # (sequence_length, num_bins + 1)
        self.bin_edges.assign(edges.astype(self.bin_edges.dtype))

    def encode(self, inputs):
        """Encode a batch of rows bin by bin, before the projection.

        Args:
            inputs: ``(batch, sequence_length)`` values.

        Returns:
            ``(batch, sequence_length, num_bins)`` encodings.
        """
        lower = self.bin_edges[:, :-1]  # (sequence_length, num_bins)
        bin_width = self.bin_edges[:, 1:] - lower
        has_width = bin_width > 0
        values = ops.expand_dims(inputs, -1)  # (batch, sequence_length, 1)
        # Dividing by a stand-in width of 1 keeps the discarded branch of the where finite,
        # which matters because a NaN there would still poison the gradient.
        fill = (values - lower) / ops.where(has_width, bin_width, 1.0)
        step = ops.cast(values >= lower, self.compute_dtype)
        fill = ops.where(has_width, fill, step)  # (batch, sequence_length, num_bins)
        is_first = np.arange(self.num_bins) == 0
        is_last = np.arange(self.num_bins) == self.num_bins - 1
        fill = ops.where(is_first, fill, ops.maximum(fill, 0.0))
        return ops.where(is_last, fill, ops.minimum(fill, 1.0))

    def call(self, inputs):
        """Embed a batch of rows.

        Args:
            inputs: ``(batch, sequence_length)`` values.

        Returns:
            ``(batch, sequence_length, width)`` token vectors.
        """
        tokens = self.projection(self.encode(inputs))  # (batch, sequence_length, width)
        return tokens + self.positions

    def get_config(self) -> dict:
        """Return the arguments that rebuild this layer from a saved model."""
        return {**super().get_config(), "num_bins": self.num_bins}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConvEmbedding(_PositionedEmbedding):
    """Slides a one-dimensional convolution along the row to make tokens, as a conv stem.

    One ``Conv1D`` with ``width`` filters of ``kernel_size`` values and stride ``stride``,
    "same" padding and GELU turns the row (one channel) into ``ceil(sequence_length /
    stride)`` tokens; a learned position vector is added to each. Each token sees a window
    of neighbouring values, and a stride above 1 shortens the sequence attention works on.

    Args:
        sequence_length: Number of values in each row.
        width: Size of each token vector, the number of filters.
        kernel_size: Values each filter sees.
        stride: Values between neighbouring windows; at most ``kernel_size`` so that every
            value is seen.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(
        self, *, sequence_length: int, width: int, kernel_size: int = 7, stride: int = 4, **kwargs
    ) -> None:
        super().__init__(sequence_length=sequence_length, width=width, **kwargs)
        self.kernel_size = kernel_size
        self.stride = stride
        self.convolution = layers.Conv1D(
            width,
            kernel_size,
            strides=stride,
            padding="same",
            activation="gelu",
            name="convolution",
        )

    @property
    def num_tokens(self) -> int:
        """Number of windows each row becomes under "same" padding."""
        return math.ceil(self.sequence_length / self.stride)

    def build(self, input_shape: tuple) -> None:
        """Create the convolution and the position table.

        Args:
            input_shape: ``(batch, sequence_length)``.
        """
        super().build(input_shape)
        self.convolution.build((None, self.sequence_length, 1))

    def call(self, inputs):
        """Embed a batch of rows.

        Args:
            inputs: ``(batch, sequence_length)`` values.

        Returns:
            ``(batch, tokens, width)`` token vectors, one per window.
        """
        channels = ops.expand_dims(inputs, -1)  # (batch, sequence_length, 1)
        return self.convolution(channels) + self.positions  # (batch, tokens, width)

    def get_config(self) -> dict:
        """Return the arguments that rebuild this layer from a saved model."""
        return {**super().get_config(), "kernel_size": self.kernel_size, "stride": self.stride}
