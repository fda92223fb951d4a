"""Builds the transformer classifier the sweeps search over, from plain arguments."""

import contextlib
import dataclasses
import numbers
import random
from collections.abc import Iterator

import keras
import numpy as np
from keras import layers

from models.blocks import LAYER_NORM_EPSILON, TransformerBlock
from models.embeddings import (
    ConvEmbedding,
    FeatureEmbedding,
    LinearEmbedding,
    PatchEmbedding,
    PeriodicEmbedding,
    PiecewiseLinearEmbedding,
    TokenEmbedding,
)
from models.pooling import POOLINGS, PrependClassToken, pool_tokens

EMBEDDINGS: tuple[str, ...] = ("token", "linear", "feature", "periodic", "ple", "patch", "conv")


@contextlib.contextmanager
def _seeded_construction(seed: int | None) -> Iterator[None]:
    """Make the initial weights of layers constructed inside depend only on ``seed``.

    Keras gives every initializer and dropout layer built without an explicit seed a seed
    drawn from Python's ``random`` module when it is constructed. Seeding each initializer by
    hand does not work for MultiHeadAttention: it clones its initializer from its config for
    the query, key, value and output projections, so one integer seed would give the query
    and key projections the same starting kernel. Seeding ``random`` for the duration of the
    build, then restoring its state, seeds every layer without touching the caller's state.
    This leans on how Keras draws default seeds; the seed tests catch a change there.

    Args:
        seed: The seed, or ``None`` to leave Keras' global seeding in charge.

    Yields:
        Nothing; build the model inside the ``with`` block.
    """
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _require_integer(name: str, value, minimum: int, example: str) -> None:
    """Refuse a count or size that is not a whole number of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}; pass e.g. {example}.")


@dataclasses.dataclass(frozen=True)
class _EmbeddingOptions:
    """The arguments of ``build_classifier`` that belong to one embedding or another."""

    patch_length: int | None
    patch_stride: int | None
    periodic_sigma: float
    periodic_frequencies: int
    ple_bins: int
    conv_kernel_size: int
    conv_stride: int
    adapt_features: np.ndarray | None


def _validate(
    *,
    sequence_length: int,
    embedding: str,
    width: int,
    depth: int,
    num_heads: int,
    ff_multiplier: float,
    dropout_rate: float,
    pooling: str,
    options: _EmbeddingOptions,
) -> None:
    """Refuse arguments that cannot build a model, or would build one that cannot learn.

    Each embedding's own arguments are checked on their own whatever the embedding, since
    they have valid defaults; how they combine with the row length or with each other is
    checked only for the embedding that uses them, so a search space may sample them all.
    """
    patch_length, patch_stride = options.patch_length, options.patch_stride
    periodic_sigma, ple_bins = options.periodic_sigma, options.ple_bins
    conv_kernel_size, conv_stride = options.conv_kernel_size, options.conv_stride
    if embedding not in EMBEDDINGS:
        raise ValueError(
            f"embedding={embedding!r} is unknown; choose one of {', '.join(EMBEDDINGS)}."
        )
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is unknown; choose one of {', '.join(POOLINGS)}.")
    if sequence_length < 1:
        raise ValueError(
            f"sequence_length={sequence_length} must be >= 1: pass the number of values per row."
        )
    if width < 2:
        # LayerNormalization over one feature subtracts that feature from itself, so every
        # token would leave each block as the same constant and the model could not learn.
        raise ValueError(
            f"width={width} must be >= 2, because LayerNormalization over a width of 1 "
            "outputs a constant; use a width of at least 2."
        )
    if num_heads < 1:
        raise ValueError(f"num_heads={num_heads} must be >= 1; 1 to 8 heads are usual.")
    if width % num_heads:
        raise ValueError(
            f"width={width} must be divisible by num_heads={num_heads} so each head gets "
            f"width // num_heads features; change width to a multiple of {num_heads} or "
            f"num_heads to a divisor of {width}."
        )
    if depth < 1:
        raise ValueError(
            f"depth={depth} must be >= 1: the model needs at least one transformer block."
        )
    if int(ff_multiplier * width) < 1:
        raise ValueError(
            f"ff_multiplier={ff_multiplier} gives int({ff_multiplier} * width={width}) = "
            f"{int(ff_multiplier * width)} feed-forward units; use ff_multiplier >= {1 / width:g}."
        )
    if not 0 <= dropout_rate < 1:
        raise ValueError(f"dropout_rate={dropout_rate} must be in [0, 1); 0 turns dropout off.")

    if patch_stride is not None:
        _require_integer("patch_stride", patch_stride, 1, "patch_stride=8")
    if isinstance(periodic_sigma, bool) or not (
        isinstance(periodic_sigma, numbers.Real) and 0 < periodic_sigma < float("inf")
    ):
        raise ValueError(
            f"periodic_sigma={periodic_sigma!r} must be a finite number > 0; values from 0.01 "
            "to 10 are usual, 1.0 is the default."
        )
    _require_integer(
        "periodic_frequencies", options.periodic_frequencies, 1, "periodic_frequencies=16"
    )
    _require_integer("ple_bins", ple_bins, 2, "ple_bins=8")
    _require_integer("conv_kernel_size", conv_kernel_size, 1, "conv_kernel_size=7")
    _require_integer("conv_stride", conv_stride, 1, "conv_stride=4")

    if embedding == "patch" and (patch_length is None or not 1 <= patch_length <= sequence_length):
        raise ValueError(
            f"patch_length={patch_length} is required for embedding='patch' and must be "
            f"between 1 and sequence_length={sequence_length}; pass e.g. patch_length=16."
        )
    if embedding == "patch" and patch_stride is not None and patch_stride > patch_length:
        raise ValueError(
            f"patch_stride={patch_stride} is larger than patch_length={patch_length}, so the "
            "values between patches would never be seen; use a patch_stride from 1 to "
            f"{patch_length}, or None for side-by-side patches."
        )
    if embedding == "conv" and conv_stride > conv_kernel_size:
        raise ValueError(
            f"conv_stride={conv_stride} is larger than conv_kernel_size={conv_kernel_size}, so "
            "the values between windows would never be seen; use a conv_stride from 1 to "
            f"{conv_kernel_size}, or a larger conv_kernel_size."
        )
    if embedding == "ple" and options.adapt_features is None:
        raise ValueError(
            "adapt_features=None, but embedding='ple' takes its bin edges from the training "
            "rows: pass adapt_features, the training fold after scaling, as an array of shape "
            f"(rows, {sequence_length})."
        )


def _make_embedding(
    embedding: str, *, sequence_length: int, width: int, options: _EmbeddingOptions
) -> keras.layers.Layer:
    """Construct the named embedding, already adapted to ``adapt_features`` for ``ple``."""
    # Plain ints and floats: the layer configs are saved as JSON, which refuses NumPy scalars.
    common = {"sequence_length": int(sequence_length), "width": int(width), "name": "embedding"}
    if embedding == "token":
        return TokenEmbedding(**common)
    if embedding == "linear":
        return LinearEmbedding(**common)
    if embedding == "feature":
        return FeatureEmbedding(**common)
    if embedding == "periodic":
        return PeriodicEmbedding(
            **common,
            num_frequencies=int(options.periodic_frequencies),
            sigma=float(options.periodic_sigma),
        )
    if embedding == "ple":
        layer = PiecewiseLinearEmbedding(**common, num_bins=int(options.ple_bins))
        layer.adapt(options.adapt_features)
        return layer
    if embedding == "patch":
        stride = None if options.patch_stride is None else int(options.patch_stride)
        return PatchEmbedding(
            **common, patch_length=int(options.patch_length), patch_stride=stride
        )
    return ConvEmbedding(
        **common, kernel_size=int(options.conv_kernel_size), stride=int(options.conv_stride)
    )


def build_classifier(
    *,
    sequence_length: int,
    embedding: str,
    width: int,
    depth: int,
    num_heads: int,
    ff_multiplier: float,
    dropout_rate: float,
    pooling: str,
    patch_length: int | None = None,
    patch_stride: int | None = None,
    periodic_sigma: float = 1.0,
    periodic_frequencies: int = 16,
    ple_bins: int = 8,
    conv_kernel_size: int = 7,
    conv_stride: int = 4,
    adapt_features: np.ndarray | None = None,
    norm_first: bool = False,
    seed: int | None = None,
) -> keras.Model:
    """Build an uncompiled transformer that gives one logit per row of scaled values.

    Compile it with ``keras.losses.BinaryCrossentropy(from_logits=True)``: the model has no
    sigmoid, so ``sigmoid(logit)`` is the probability of class 1.

    Args:
        sequence_length: Number of values in each row; the input shape is
            ``(sequence_length,)`` float32.
        embedding: How values become tokens, one of ``EMBEDDINGS``. One token per value:
            ``token`` (the user's integer lookup, which sees every value in [0, 1) as the
            same id), ``linear`` (one weight vector shared by all columns), ``feature`` (a
            weight vector and bias per column, FT-Transformer), ``periodic`` (learned sines
            and cosines, then a linear layer and ReLU) or ``ple`` (piecewise-linear encoding
            over each column's quantile bins). Fewer tokens: ``patch`` (one per
            ``patch_length`` values) or ``conv`` (one per ``conv_stride`` values, from a
            convolution). Attention costs grow with the square of the number of tokens: at
            846 values (width 32, depth 2, 2 CPU cores), an epoch of 465 rows takes about
            10 s with one token per value, 1.3 s with ``conv``'s defaults and 0.5 s with
            ``patch`` of 16 values.
        width: Size of each token vector, at least 2.
        depth: Number of transformer blocks, at least 1.
        num_heads: Attention heads per block; must divide ``width``.
        ff_multiplier: Feed-forward hidden units per block, as a multiple of ``width``.
        dropout_rate: Dropout in every block and before the head, in [0, 1).
        pooling: How tokens become one vector, one of ``POOLINGS``: ``avg``, ``max``, ``cls``
            (a learned token put first before the blocks, whose final state is kept),
            ``attention`` (a learned softmax weighting of the tokens) or ``flatten`` (all
            tokens side by side, so the head grows with the number of tokens).
        patch_length: Values per patch; required for ``patch``, ignored otherwise.
        patch_stride: Values between the starts of neighbouring patches, from 1 to
            ``patch_length``; ``None`` means ``patch_length`` (no overlap). ``patch`` only.
        periodic_sigma: Standard deviation of the starting frequencies, > 0. ``periodic``
            only.
        periodic_frequencies: Number of learned frequencies, >= 1. ``periodic`` only.
        ple_bins: Quantile bins per column, >= 2. ``ple`` only.
        conv_kernel_size: Values each convolution window sees, >= 1. ``conv`` only.
        conv_stride: Values between neighbouring windows, from 1 to ``conv_kernel_size``.
            ``conv`` only.
        adapt_features: The training fold after scaling, ``(rows, sequence_length)``;
            ``ple`` takes its bin edges from these rows' quantiles. Required for ``ple``,
            ignored otherwise. Never pass validation rows: their quantiles would leak into
            the model.
        norm_first: Pre-norm blocks plus a final LayerNormalization when True; post-norm
            blocks, as in the user's model, when False.
        seed: Makes the initial weights and dropout seeds the same on every build with the
            same seed. ``None`` leaves them to Keras' global seed
            (``keras.utils.set_random_seed``), which the caller sets.

    Returns:
        An uncompiled ``keras.Model`` mapping ``(batch, sequence_length)`` to
        ``(batch, 1)`` logits.

    Raises:
        ValueError: If an argument is out of range, names an unknown embedding or pooling, or
            ``ple`` lacks usable ``adapt_features``.
    """
    options = _EmbeddingOptions(
        patch_length=patch_length,
        patch_stride=patch_stride,
        periodic_sigma=periodic_sigma,
        periodic_frequencies=periodic_frequencies,
        ple_bins=ple_bins,
        conv_kernel_size=conv_kernel_size,
        conv_stride=conv_stride,
        adapt_features=adapt_features,
    )
    _validate(
        sequence_length=sequence_length,
        embedding=embedding,
        width=width,
        depth=depth,
        num_heads=num_heads,
        ff_multiplier=ff_multiplier,
        dropout_rate=dropout_rate,
        pooling=pooling,
        options=options,
    )
    with _seeded_construction(seed):
        inputs = keras.Input(shape=(sequence_length,), dtype="float32", name="values")
        embed = _make_embedding(
            embedding, sequence_length=sequence_length, width=width, options=options
        )
        x = embed(inputs)  # (batch, tokens, width)
        if pooling == "cls":
            x = PrependClassToken(width=width, name="class_token")(x)  # (batch, 1 + tokens, width)

        for index in range(depth):
            x = TransformerBlock(
                width=width,
                num_heads=num_heads,
                ff_units=int(ff_multiplier * width),
                dropout_rate=dropout_rate,
                norm_first=norm_first,
                name=f"block_{index}",
            )(x)
        if norm_first:
            # Pre-norm blocks leave the residual stream unnormalised; normalise it once.
            x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="final_norm")(x)

        x = pool_tokens(x, pooling)  # (batch, width), or (batch, tokens * width) for flatten
        x = layers.Dropout(dropout_rate, name="head_dropout")(x)
        logits = layers.Dense(1, name="logit")(x)  # (batch, 1)
    return keras.Model(inputs, logits, name=f"classifier_{embedding}_{pooling}")
