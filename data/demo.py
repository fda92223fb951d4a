"""Write a seeded demo spreadsheet: ``python -m data.demo --out data/demo.xlsx``.

The demo has the user's layout and the property that makes their transformer collapse: every
value lies in [0, 1), like an unscaled measurement. A model that casts values to integer
token ids (as Keras' ``Embedding`` does) sees token 0 everywhere, the same input for every
row, and can only predict one class; a model that embeds the real values can learn.

Each row is a smooth baseline with slow drift and a little noise, plus two Gaussian peaks of
random height and width. One peak is the class signal: near 30% of the row for class 0 and
near 60% for class 1, jittered by about 20 columns. The other is a distractor at a random
place. Both peaks come from the same distribution in both classes, so anything that ignores
column order (a row's mean, spread or histogram) carries no class information.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

# Where the class peak sits, as a share of the row, for class 0 and class 1.
_CLASS_PEAK_PLACES = (0.3, 0.6)
_PEAK_JITTER = 20.0  # columns, standard deviation of the class peak's place
_PEAK_WIDTHS = (8.0, 16.0)  # columns, range of a peak's standard deviation
_PEAK_HEIGHTS = (0.08, 0.2)
_BASELINE_LEVELS = (0.2, 0.45)
_DRIFT_SCALE = 0.03  # standard deviation of each slow cosine's amplitude
_NUM_DRIFT_WAVES = 3
_NOISE_SCALE = 0.01
# Clipping below 1 keeps every value's integer part at 0. The default demo stays well inside
# these bounds, so the clip is a guarantee rather than a reshaping of the data.
_VALUE_BOUNDS = (0.0, 0.999)


def make_demo(
    *, num_rows: int = 581, num_values: int = 846, positive_share: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Make a seeded binary dataset whose class lies in the order of the values.

    Args:
        num_rows: Number of rows, at least 2.
        num_values: Number of values per row, at least 10.
        positive_share: Share of rows in class 1, strictly between 0 and 1; rounded to whole
            rows, and each class keeps at least one row.
        seed: Seed of the generator, 0 or more; the same arguments give the same arrays.

    Returns:
        ``(features, labels)``: features float64 of shape ``(num_rows, num_values)``, every
        value within [0, 1); labels int64 in {0, 1} of shape ``(num_rows,)``.

    Raises:
        ValueError: If an argument is out of range.
    """
    _check_int("num_rows", num_rows, minimum=2)
    _check_int("num_values", num_values, minimum=10)
    _check_int("seed", seed, minimum=0)
    if (
        isinstance(positive_share, bool)
        or not isinstance(positive_share, int | float)
        or not 0.0 < positive_share < 1.0
    ):
        raise ValueError(
            f"positive_share={positive_share!r} is out of range: it must be a number strictly "
            "between 0 and 1, e.g. 0.5 for balanced classes or 0.25 for one positive in four"
        )
    rng = np.random.default_rng(seed)

    num_positive = min(max(round(positive_share * num_rows), 1), num_rows - 1)
    labels = np.zeros(num_rows, dtype=np.int64)
    labels[:num_positive] = 1
    rng.shuffle(labels)

    columns = np.arange(num_values, dtype=np.float64)
    levels = rng.uniform(*_BASELINE_LEVELS, size=(num_rows, 1))
    # Slow drift: a few cosines of at most one and a half periods across the row.
    frequencies = np.arange(1, _NUM_DRIFT_WAVES + 1) / 2  # (waves,)
    amplitudes = rng.normal(0.0, _DRIFT_SCALE, size=(num_rows, _NUM_DRIFT_WAVES, 1))
    phases = rng.uniform(0.0, 2 * math.pi, size=(num_rows, _NUM_DRIFT_WAVES, 1))
    angles = 2 * math.pi * frequencies[:, None] * columns / num_values  # (waves, values)
    drift = (amplitudes * np.cos(angles + phases)).sum(axis=1)  # (rows, values)

    class_places = np.take(_CLASS_PEAK_PLACES, labels) * num_values
    class_centres = class_places + rng.normal(0.0, _PEAK_JITTER, size=num_rows)
    distractor_centres = rng.uniform(0.0, num_values, size=num_rows)
    noise = rng.normal(0.0, _NOISE_SCALE, size=(num_rows, num_values))

    features = (
        levels
        + drift
        + _peaks(rng, columns, class_centres)
        + _peaks(rng, columns, distractor_centres)
        + noise
    )
    return np.clip(features, *_VALUE_BOUNDS), labels


def write_demo(path: str | Path, **make_demo_kwargs) -> Path:
    """Write a demo dataset in the user's layout: label in column 0, values after, no header.

    Args:
        path: Where to write; ``.xlsx`` (written with openpyxl) or ``.csv``. Missing parent
            folders are created; an existing file is replaced.
        **make_demo_kwargs: Passed to ``make_demo``.

    Returns:
        The path written.

    Raises:
        ValueError: If the suffix is neither ``.xlsx`` nor ``.csv``, or ``make_demo`` refuses
            its arguments.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        raise ValueError(
            f"cannot write a demo to {path}: the suffix must be .xlsx or .csv, got {path.suffix!r}"
        )
    features, labels = make_demo(**make_demo_kwargs)
    table = pd.DataFrame(np.column_stack([labels, features]))
    table[0] = labels  # keep the labels whole numbers: 0 and 1, not 0.0 and 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".xlsx":
        table.to_excel(path, header=False, index=False, engine="openpyxl")
    else:
        table.to_csv(path, header=False, index=False)
    return path


def main(argv: list[str] | None = None) -> int:
    """Write a demo spreadsheet from the command line.

    Args:
        argv: Command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 once the file is written. Bad arguments, or an existing file without ``--force``,
        end the program through argparse with status 2.
    """
    parser = argparse.ArgumentParser(
        prog="python -m data.demo",
        description=(
            "Write a seeded binary dataset in the user's layout (label in column 0, ordered "
            "values after it, no header). Every value lies in [0, 1), and the class shows only "
            "in the order of the values."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="file to write, .xlsx or .csv")
    parser.add_argument("--rows", type=int, default=581, help="number of rows (default 581)")
    parser.add_argument(
        "--values", type=int, default=846, help="number of values per row (default 846)"
    )
    parser.add_argument(
        "--positive-share",
        type=float,
        default=0.5,
        help="share of rows in class 1, between 0 and 1 (default 0.5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--force", action="store_true", help="replace the file if it exists")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.out.exists() and not args.force:
        parser.error(f"{args.out} already exists; pass --force to replace it")
    try:
        write_demo(
            args.out,
            num_rows=args.rows,
            num_values=args.values,
            positive_share=args.positive_share,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    logger.info(
        "Wrote %s: %d rows x %d values, positive share %g, seed %d",
        args.out,
        args.rows,
        args.values,
        args.positive_share,
        args.seed,
    )
    return 0


def _peaks(rng: np.random.Generator, columns: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """One Gaussian peak per row at the given centres, with random height and width."""
    widths = rng.uniform(*_PEAK_WIDTHS, size=(centres.size, 1))
    heights = rng.uniform(*_PEAK_HEIGHTS, size=(centres.size, 1))
    return heights * np.exp(-0.5 * ((columns - centres[:, None]) / widths) ** 2)


def _check_int(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}={value} is out of range: it must be {minimum} or more")


if __name__ == "__main__":
    raise SystemExit(main())
