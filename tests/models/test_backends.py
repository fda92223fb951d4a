"""The models build and train on the JAX backend, in a child process that selects it."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Keras picks its backend once, at import, so JAX needs a process of its own. The script
# fails with an AssertionError naming the model if anything is off.
_SCRIPT = """
import keras
import numpy as np

from models import EMBEDDINGS, build_classifier, build_user_model

assert keras.backend.backend() == "jax", keras.backend.backend()
rng = np.random.default_rng(0)
labels = (np.arange(8) % 2).astype("float32")
# Row lengths that give every model 12 tokens of width 8: JAX compiles each operation for
# each new shape when it runs without jit, so shared shapes save most of the compiling.
lengths = {"patch": 26, "conv": 24}


def train_one_step(model, length, from_logits, jit_compile=False):
    rows = rng.random((8, length)).astype("float32")
    model.compile(
        optimizer="adam",
        loss=keras.losses.BinaryCrossentropy(from_logits=from_logits),
        jit_compile=jit_compile,
    )
    model.fit(rows, labels, batch_size=8, epochs=1, verbose=0)
    outputs = model.predict(rows, verbose=0)
    assert outputs.shape == (8, 1) and np.isfinite(outputs).all(), model.name


def classifier(embedding, pooling, length, **overrides):
    arguments = dict(
        sequence_length=length,
        embedding=embedding,
        width=8,
        depth=1,
        num_heads=2,
        ff_multiplier=2.0,
        dropout_rate=0.1,
        pooling=pooling,
        patch_length=4,
        patch_stride=2,
        conv_kernel_size=3,
        conv_stride=2,
        adapt_features=rng.random((20, length)),
        seed=0,
    )
    return build_classifier(**{**arguments, **overrides})


for embedding in EMBEDDINGS:
    length = lengths.get(embedding, 12)
    for pooling in ("attention", "flatten"):
        train_one_step(classifier(embedding, pooling, length), length, from_logits=True)
# 11 values and the class token make 12 tokens.
train_one_step(classifier("linear", "cls", 11, norm_first=True), 11, from_logits=True)
# The user's model shares few shapes with the others; one jit compilation is quicker.
user_model = build_user_model(sequence_length=12, embed_dim=8)
train_one_step(user_model, 12, from_logits=False, jit_compile=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_models_train_on_the_jax_backend():
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}

    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stderr[-3000:]
