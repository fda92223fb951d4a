"""Does the collapse constraint steer the search away from collapsing models?

The same study runs twice on imbalanced demo data (one positive row in ten), with the same
seeds and budget: once with each trial's collapsed share of folds given to the sampler as a
constraint (``collapse.constrain_search``), once without. Both runs start with the same
random trials, so the comparison is over the trials the sampler proposed from what it had
learnt. The result is the share of those trials that collapsed in each run, and their ratio.

The metric is ROC AUC, which ranks rows without a threshold: a model that gives every row
the majority class can still rank them well and score high on it, so a sampler led by the
metric alone has no reason to avoid collapse. (With balanced accuracy a collapsed trial
scores 0.5, the worst there is, and the sampler avoids it with or without the constraint.)
Collapse pruning is off in both runs: a trial it stops ends pruned, and TPE already ranks
every pruned trial below every completed one, so with it on the constraint has nothing
left to change (an earlier version of this benchmark found the two runs identical).

    python -m bench.constraint [--seeds 0 1 2] [--trials 24] [--out bench-output]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench import JOURNAL, run_arguments
from data.demo import write_demo
from sweeps.cli import main as sweep
from sweeps.study import open_storage

logger = logging.getLogger(__name__)

# A class ratio at which predicting the majority class for every row is an easy trap: a
# model that ranks the rows well can still keep every probability under 0.5.
POSITIVE_SHARE = 0.1
# Fast embeddings only (patches and a strided convolution), so that a study takes minutes;
# the scalings, poolings and learning rates in it collapse often enough to be counted.
SPEC = {
    "cv": {"folds": 2, "metric": "roc_auc"},
    "training": {"max_epochs": 6, "early_stopping_patience": 3},
    "collapse": {"prune_after_epochs": None},
    "pruner": {"name": "none"},
    "search": {
        "embedding": ["patch", "conv"],
        "scaling": ["none", "standard", "minmax", "per-sample"],
        "pooling": ["avg", "max", "cls", "flatten"],
        "learning_rate": {"low": 1.0e-4, "high": 3.0e-2, "log": True},
        "width": [8, 16],
    },
    "fixed": {
        "patch_length": 16,
        "conv_kernel_size": 8,
        "conv_stride": 8,
        "num_heads": 2,
        "depth": 1,
        "batch_size": 32,
    },
}


def run_pair(
    directory: Path, data: Path, *, seed: int, trials: int, startup: int
) -> dict[str, dict[str, float]]:
    """Run the study with and without the constraint; count the collapsed trials of each."""
    results = {}
    for constrained in (True, False):
        name = f"constraint-{'on' if constrained else 'off'}-seed{seed}"
        spec = {
            **SPEC,
            "name": name,
            "seed": seed,
            "budget": {"trials": trials},
            "sampler": {"name": "tpe", "startup_trials": startup},
            "collapse": {**SPEC["collapse"], "constrain_search": constrained},
        }
        started = time.perf_counter()
        code = sweep(run_arguments(directory, spec, data))
        if code != 0:
            raise RuntimeError(f"study {name} exited with {code}; see the log above")
        study = optuna.load_study(study_name=name, storage=open_storage(str(directory / JOURNAL)))
        counted = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
        learnt = [trial for trial in counted if trial.number >= startup]
        collapsed = [trial for trial in learnt if trial.user_attrs.get("collapsed_folds", 0)]
        best = max((t.value for t in counted if t.value is not None), default=float("nan"))
        results["on" if constrained else "off"] = {
            "sampled_trials": len(learnt),
            "collapsed": len(collapsed),
            "collapsed_share": len(collapsed) / max(len(learnt), 1),
            "startup_collapsed": sum(
                1
                for trial in counted
                if trial.number < startup and trial.user_attrs.get("collapsed_folds", 0)
            ),
            "best_value": best,
            # What a user can take away: the best trial that did not collapse.
            "best_uncollapsed_value": max(
                (
                    t.value
                    for t in counted
                    if t.value is not None and not t.user_attrs.get("collapsed_folds", 0)
                ),
                default=float("nan"),
            ),
            "minutes": (time.perf_counter() - started) / 60,
        }
        logger.info("%s: %s", name, results["on" if constrained else "off"])
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.constraint", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1], help="study seeds (default 0 1)"
    )
    parser.add_argument(
        "--trials", type=int, default=24, help="trial budget per study (default 24)"
    )
    parser.add_argument(
        "--startup", type=int, default=6, help="random trials before TPE (default 6)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench-output"), help="folder for the JSON result"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-constraint-") as tmp:
        directory = Path(tmp)
        data = write_demo(directory / "demo-imbalanced.xlsx", positive_share=POSITIVE_SHARE)
        by_seed = {
            seed: run_pair(directory, data, seed=seed, trials=args.trials, startup=args.startup)
            for seed in args.seeds
        }
    totals = {
        side: sum(result[side]["collapsed"] for result in by_seed.values())
        for side in ("on", "off")
    }
    sampled = {
        side: sum(result[side]["sampled_trials"] for result in by_seed.values())
        for side in ("on", "off")
    }
    share = {side: totals[side] / max(sampled[side], 1) for side in totals}
    ratio = share["on"] / share["off"] if share["off"] else float("nan")
    summary = {
        "seeds": args.seeds,
        "trials": args.trials,
        "startup": args.startup,
        "by_seed": by_seed,
        "collapsed_share_on": share["on"],
        "collapsed_share_off": share["off"],
        "ratio_on_off": ratio,
    }
    (args.out / "constraint.json").write_text(json.dumps(summary, indent=2))
    logger.info(
        "collapsed share of sampled trials: %.0f%% with the constraint (%d/%d), %.0f%% without "
        "(%d/%d); ratio %.2f",
        100 * share["on"],
        totals["on"],
        sampled["on"],
        100 * share["off"],
        totals["off"],
        sampled["off"],
        ratio,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
