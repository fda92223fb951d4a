"""The data package's public names, and the rule that it never loads a deep-learning stack."""

from __future__ import annotations

import subprocess
import sys

import data


def test_data_exports_the_public_names() -> None:
    for name in data.__all__:
        assert getattr(data, name) is not None


def test_data_imports_no_framework_or_tracker() -> None:
    # A fresh interpreter, because this test session may have loaded them for other packages.
    probe = (
        "import sys, data; from data import make_demo; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tensorflow', 'keras', 'torch', 'jax', 'optuna', 'mlflow'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
