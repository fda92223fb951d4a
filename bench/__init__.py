"""Benchmarks of collapse-sweep: measured as ratios within one run, never as timed tests."""

from pathlib import Path

import yaml

# The journal file each benchmark keeps its studies in, inside its own directory.
JOURNAL = "journal.log"


def run_arguments(directory: Path, spec: dict, data: Path, *extra: str) -> list[str]:
    """Write ``spec`` and a private MLflow config into ``directory``; the `sweep run` argv.

    The study (named after the spec) is kept in a journal file beside them, so that a
    benchmark leaves nothing outside its directory.
    """
    spec_path = directory / f"{spec['name']}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    tracking = directory / "mlflow.yaml"
    tracking.write_text("tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n")
    return [
        "run",
        "--spec",
        str(spec_path),
        "--data",
        str(data),
        "--storage",
        str(directory / JOURNAL),
        "--tracking-config",
        str(tracking),
        "--study",
        spec["name"],
        *extra,
    ]
