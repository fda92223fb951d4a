"""Builds the transformer classifier the sweeps search over, from plain arguments."""

import contextlib
import random
from collections.abc import Iterator

import keras
from keras import layers

from models.blocks import LAYER_NORM_EPSILON, TransformerBlock
from models.embeddings import LinearEmbedding, PatchEmbedding, TokenEmbedding
from models.pooling import POOLINGS, PrependClassToken, pool_tokens

EMBEDDINGS: tuple[str, ...] = ("token", "linear", "patch")


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
    patch_length: int | None,
) -> None:
    """Refuse arguments that cannot build a model, or would build one that cannot learn."""
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
    if embedding == "patch" and (patch_length is None or not 1 <= patch_length <= sequence_length):
        raise ValueError(
            f"patch_length={patch_length} is required for embedding='patch' and must be "
            f"between 1 and sequence_length={sequence_length}; pass e.g. patch_length=16."
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
    norm_first: bool = False,
    seed: int | None = None,
) -> keras.Model:
    """Build an uncompiled transformer that gives one logit per row of scaled values.

    Compile it with ``keras.losses.BinaryCrossentropy(from_logits=True)``: the model has no
    sigmoid, so ``sigmoid(logit)`` is the probability of class 1.

    Args:
        sequence_length: Number of values in each row; the input shape is
            ``(sequence_length,)`` float32.
        embedding: How values become tokens, one of ``EMBEDDINGS``: ``token`` (the user's
            integer lookup, which sees every value in [0, 1) as the same id), ``linear`` (one
            token per value) or ``patch`` (one token per ``patch_length`` values). Attention
            costs grow with the square of the number of tokens: at 846 values, ``token`` and
            ``linear`` train about 30 times slower per epoch than ``patch`` with 16 values per
            patch.
        width: Size of each token vector, at least 2.
        depth: Number of transformer blocks, at least 1.
        num_heads: Attention heads per block; must divide ``width``.
        ff_multiplier: Feed-forward hidden units per block, as a multiple of ``width``.
        dropout_rate: Dropout in every block and before the head, in [0, 1).
        pooling: How tokens become one vector, one of ``POOLINGS``: ``avg``, ``max`` or ``cls``
            (a learned token put first before the blocks, whose final state is kept).
        patch_length: Values per patch; required for ``patch``, ignored otherwise.
        norm_first: Pre-norm blocks plus a final LayerNormalization when True; post-norm
            blocks, as in the user's model, when False.
        seed: Makes the initial weights and dropout seeds the same on every build with the
            same seed. ``None`` leaves them to Keras' global seed
            (``keras.utils.set_random_seed``), which the caller sets.

    Returns:
        An uncompiled ``keras.Model`` mapping ``(batch, sequence_length)`` to
        ``(batch, 1)`` logits.

    Raises:
        ValueError: If an argument is out of range or names an unknown embedding or pooling.
    """
    _validate(
        sequence_length=sequence_length,
        embedding=embedding,
        width=width,
        depth=depth,
        num_heads=num_heads,
        ff_multiplier=ff_multiplier,
        dropout_rate=dropout_rate,
        pooling=pooling,
        patch_length=patch_length,
    )
    with _seeded_construction(seed):
        inputs = keras.Input(shape=(sequence_length,), dtype="float32", name="values")
        if embedding == "token":
            embed = TokenEmbedding(sequence_length=sequence_length, width=width, name="embedding")
        elif embedding == "linear":
            embed = LinearEmbedding(sequence_length=sequence_length, width=width, name="embedding")
        else:
            embed = PatchEmbedding(
                sequence_length=sequence_length,
                width=width,
                patch_length=patch_length,
                name="embedding",
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

        x = pool_tokens(x, pooling)  # (batch, width)
        x = layers.Dropout(dropout_rate, name="head_dropout")(x)
        logits = layers.Dense(1, name="logit")(x)  # (batch, 1)
    return keras.Model(inputs, logits, name=f"classifier_{embedding}_{pooling}")
