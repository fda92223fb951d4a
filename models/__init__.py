"""Keras models for the sweeps: the searched transformer classifier and the user's original.

``build_classifier`` returns one logit per row; ``build_user_model`` returns the user's
probability. Both take rows of ``sequence_length`` scaled float values.
"""

from models.builder import EMBEDDINGS, build_classifier
from models.pooling import POOLINGS
from models.reference import USER_MODEL_NAME, build_user_model, outputs_probability

__all__ = [
    "EMBEDDINGS",
    "POOLINGS",
    "USER_MODEL_NAME",
    "build_classifier",
    "build_user_model",
    "outputs_probability",
]
