"""Trials per hour with one worker and with two, for the same study on this machine.

Each run is a fresh `sweep run --workers N` of a study whose trials all cost the same (a
fixed patch-embedding model; only the learning rate is searched), on the demo data. The
rate is taken from the trials' own start and end times, from the first trial's start to
the last one's end, so that loading TensorFlow and scoring the baselines do not count.

    python -m bench.workers [--workers 1 2] [--trials 12] [--out bench-output]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench import JOURNAL, run_arguments
from data.demo import write_demo
from sweeps.study import open_storage

logger = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parents[1]

# Every trial trains the same model for the same epochs, so the rate measures the workers.
SPEC = {
    "name": "throughput",
    "seed": 0,
    "cv": {"folds": 2},
    "training": {"max_epochs": 3, "early_stopping_patience": None},
    "collapse": {"prune_after_epochs": None},
    "sampler": {"name": "random"},
    "pruner": {"name": "none"},
    "search": {"learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True}},
    "fixed": {
        "embedding": "patch",
        "patch_length": 16,
        "scaling": "standard",
        "pooling": "avg",
        "width": 16,
        "num_heads": 2,
        "depth": 1,
        "batch_size": 32,
    },
}


def trials_per_hour(directory: Path, data: Path, *, workers: int, trials: int) -> dict:
    """Run the study with ``workers`` worker processes and measure its trial rate."""
    name = f"throughput-{workers}"
    spec = {**SPEC, "name": name, "budget": {"trials": trials}}
    command = [
        sys.executable,
        "-m",
        "sweeps",
        *run_arguments(directory, spec, data, "--workers", str(workers)),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    logger.info("running %d trials with %d worker(s)", trials, workers)
    completed = subprocess.run(command, env=env, cwd=directory, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` exited with {completed.returncode}")

    study = optuna.load_study(study_name=name, storage=open_storage(str(directory / JOURNAL)))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    first = min(trial.datetime_start for trial in done)
    last = max(trial.datetime_complete for trial in done)
    seconds = (last - first).total_seconds()
    result = {
        "workers": workers,
        "trials": len(done),
        "seconds": seconds,
        "trials_per_hour": 3600 * len(done) / seconds,
        "mean_trial_seconds": sum(
            (t.datetime_complete - t.datetime_start).total_seconds() for t in done
        )
        / len(done),
    }
    logger.info("%d worker(s): %s", workers, result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)"
    )
    parser.add_argument("--trials", type=int, default=12, help="trials per run (default 12)")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-output"), help="folder for the JSON result"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        directory = Path(tmp)
        data = write_demo(directory / "demo.xlsx")
        runs = [
            trials_per_hour(directory, data, workers=count, trials=args.trials)
            for count in args.workers
        ]
    base = runs[0]["trials_per_hour"]
    summary = {
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "runs": runs,
        "speedup_over_first": [run["trials_per_hour"] / base for run in runs],
    }
    (args.out / "workers.json").write_text(json.dumps(summary, indent=2))
    logger.info(
        "trials per hour: %s",
        ", ".join(
            f"{run['workers']} worker(s) {run['trials_per_hour']:.0f} "
            f"(x{run['trials_per_hour'] / base:.2f})"
            for run in runs
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
