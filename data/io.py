"""Read the user's spreadsheet into arrays, and refuse bad input with a message a human can act on.

The expected layout is one sheet (or CSV file) without a header row: the class label in column
0, then the ordered real values of that row. Every check runs once per study on the whole
table at once; only the search for the first bad cell, done to write the error message, looks
at single cells.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
DELIMITERS = {".csv": ",", ".tsv": "\t"}

# How many distinct labels an error message lists before it says "and N more".
_LABELS_SHOWN = 5


class DataError(ValueError):
    """Bad input data; the message names the file, the place (row/column) and the fix."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated table: the features, the labels as 0/1, and where they came from.

    The arrays are read-only, so that one dataset can be shared by every trial of a study
    without one trial's in-place edit leaking into the next. ``eq=False`` keeps identity
    comparison, because comparing arrays field by field has no single truth value.

    Attributes:
        features: The values, float32, shape ``(rows, values)``, in the file's column order.
        labels: The classes, int64 in {0, 1}, shape ``(rows,)``.
        label_mapping: Each original label, written as text, to its class, e.g.
            ``{"1": 0, "2": 1}``.
        path: The file that was read.
        sha256: Hex digest of the file's bytes, to tag runs with the version of the data.
    """

    features: np.ndarray
    labels: np.ndarray
    label_mapping: dict[str, int]
    path: Path
    sha256: str

    @property
    def num_rows(self) -> int:
        """The number of rows (samples)."""
        return int(self.features.shape[0])

    @property
    def num_values(self) -> int:
        """The number of values per row, without the label."""
        return int(self.features.shape[1])


def read_dataset(
    path: str | Path, *, label_column: int = 0, header_row: bool = False, sheet: int | str = 0
) -> Dataset:
    """Read and validate a spreadsheet of one binary label and ordered values per row.

    Args:
        path: An ``.xlsx``, ``.xlsm`` or ``.xls`` workbook, or a ``.csv`` or ``.tsv`` text file.
        label_column: 0-based position of the label column; every other column is a value.
        header_row: Whether the first row holds column names, to be skipped.
        sheet: 0-based position or name of the worksheet; ignored for text files.

    Returns:
        The dataset. Two distinct labels are mapped to 0 and 1 in sorted order (numbers
        numerically, text alphabetically), so labels 1 and 2 become 0 and 1.

    Raises:
        ValueError: If ``label_column`` is not a non-negative integer.
        DataError: If the file is missing, unreadable, or its table is not one label and
            the same number of finite values on every row, with exactly two classes.
    """
    if isinstance(label_column, bool) or not isinstance(label_column, int | np.integer):
        raise ValueError(f"label_column must be an integer, got {label_column!r}")
    if label_column < 0:
        raise ValueError(
            f"label_column must be 0 or more (0 is the first column), got {label_column}"
        )
    path = Path(path)
    data = _read_bytes(path)

    suffix = path.suffix.lower()
    if suffix in EXCEL_SUFFIXES:
        cells = _read_excel_cells(path, data, sheet)
    elif suffix in DELIMITERS:
        cells = _read_delimited_cells(path, data, DELIMITERS[suffix])
    else:
        supported = ", ".join((*EXCEL_SUFFIXES, *DELIMITERS))
        raise DataError(
            f"{path}: unsupported file type {path.suffix!r}; save the table as one of {supported}"
        )

    first_row_number = 1
    if header_row:
        cells = cells.iloc[1:]
        first_row_number = 2
    features, labels, label_mapping = _parse_table(
        path, cells, label_column=label_column, first_row_number=first_row_number
    )
    features.flags.writeable = False
    labels.flags.writeable = False
    logger.info(
        "Read %s: %d rows x %d values, label mapping %s",
        path,
        features.shape[0],
        features.shape[1],
        label_mapping,
    )
    return Dataset(
        features=features,
        labels=labels,
        label_mapping=label_mapping,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def check_fold_counts(dataset: Dataset, num_folds: int) -> None:
    """Check that every class has at least one row per fold.

    Stratified cross-validation puts rows of each class in every validation fold, so a class
    with fewer rows than folds cannot be split; this says so before any trial starts.

    Args:
        dataset: The dataset to be folded.
        num_folds: The number of cross-validation folds, at least 2.

    Raises:
        ValueError: If ``num_folds`` is not an integer of at least 2.
        DataError: If a class has fewer rows than ``num_folds``.
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, int | np.integer):
        raise ValueError(f"num_folds must be an integer, got {num_folds!r}")
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds}")
    counts = np.bincount(dataset.labels, minlength=len(dataset.label_mapping))
    smallest = int(counts.min())
    if smallest >= num_folds:
        return
    names = {index: name for name, index in dataset.label_mapping.items()}
    label = names[int(counts.argmin())]
    fix = (
        f"use num_folds={smallest} or fewer, or add rows of that class"
        if smallest >= 2
        else "add rows of that class: cross-validation needs at least 2 rows of each class"
    )
    raise DataError(
        f"{dataset.path}: class {label!r} has {_rows(smallest)}, fewer than the {num_folds} "
        f"folds asked for, so some validation folds would hold none of it; {fix}"
    )


def _column_name(index: int) -> str:
    """Name a 0-based column the way a person finds it: ``column 5 (E)``.

    Args:
        index: 0-based column position.

    Returns:
        The 1-based column number followed by its spreadsheet letters.
    """
    letters = ""
    number = index + 1
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return f"column {index + 1} ({letters})"


def _read_bytes(path: Path) -> bytes:
    """Read the whole file once; the same bytes are parsed and hashed."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(
            f"{path}: no such file; check the path (a relative path starts from {Path.cwd()})"
        ) from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a folder, not a file; give the spreadsheet's path") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from exc


def _read_excel_cells(path: Path, data: bytes, sheet: int | str) -> pd.DataFrame:
    """Parse one worksheet into a frame of cells, NaN where a cell is empty."""
    try:
        # calamine parses a 581 x 847 sheet in about 0.5 s, where openpyxl takes about 4 s.
        workbook = pd.ExcelFile(io.BytesIO(data), engine="calamine")
    except ImportError:
        raise
    except Exception as exc:
        # The engine's own error types are not part of pandas' interface, so any failure to
        # open the workbook is reported as the file being unreadable.
        raise _unreadable_workbook(path, exc) from exc

    names = workbook.sheet_names
    known = sheet in names if isinstance(sheet, str) else 0 <= sheet < len(names)
    if not known:
        raise DataError(
            f"{path}: has no sheet {sheet!r}; its sheets are {names}: pass sheet= as one of "
            f"these names or as a 0-based position below {len(names)}"
        )
    try:
        return pd.read_excel(workbook, sheet_name=sheet, header=None)
    except Exception as exc:
        raise _unreadable_workbook(path, exc) from exc


def _unreadable_workbook(path: Path, exc: Exception) -> DataError:
    return DataError(
        f"{path}: cannot be read as a workbook ({type(exc).__name__}: {exc}); open it in "
        "Excel and save it again as .xlsx, or export the sheet as .csv"
    )


def _read_delimited_cells(path: Path, data: bytes, delimiter: str) -> pd.DataFrame:
    """Parse a delimited text file into a frame of cells, NaN where a cell is empty.

    The csv module keeps each row's own length, which ``pandas.read_csv`` would pad or refuse,
    so that a ragged row can be reported as such.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: byte {exc.start} is not UTF-8 text; save the file as 'CSV UTF-8', or "
            "give the .xlsx workbook instead"
        ) from exc
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(
            f"{path}: line {reader.line_num} cannot be parsed ({exc}); export the table again "
            "from the spreadsheet program"
        ) from exc

    width = max((len(row) for row in rows), default=0)
    # Rows are padded to one width here; the padding is empty and found again by the
    # row-length check, which tells a row that ends early from one with a hole in it.
    grid = np.array([row + [""] * (width - len(row)) for row in rows], dtype=object)
    grid = grid.reshape(len(rows), width)
    grid[grid == ""] = np.nan
    return pd.DataFrame(grid, dtype=object)


def _parse_table(
    path: Path, cells: pd.DataFrame, *, label_column: int, first_row_number: int
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Validate a frame of cells and split it into features, labels and the label mapping.

    Args:
        path: The file, for messages.
        cells: The cells, one row per data row, NaN where a cell is empty.
        label_column: 0-based position of the label column.
        first_row_number: The 1-based row number, as a spreadsheet shows it, of the first row
            of ``cells``.

    Returns:
        Features (float32, rows x values), labels (int64 in {0, 1}) and the label mapping.

    Raises:
        DataError: On the first problem found, in the order of the checks below.
    """
    empty = cells.isna().to_numpy()  # (rows, columns)

    # Trailing blank rows and columns are formatting left behind, not data.
    filled_rows = np.flatnonzero(~empty.all(axis=1))
    filled_columns = np.flatnonzero(~empty.all(axis=0))
    if filled_rows.size == 0:
        raise DataError(
            f"{path}: has no data rows; fill in the table (label in "
            f"{_column_name(label_column)}, values after it) or pass the right sheet="
        )
    num_rows = int(filled_rows[-1]) + 1
    num_columns = int(filled_columns[-1]) + 1
    cells = cells.iloc[:num_rows, :num_columns]
    empty = empty[:num_rows, :num_columns]

    blank_rows = np.flatnonzero(empty.all(axis=1))
    if blank_rows.size:
        raise DataError(
            f"{path}: row {first_row_number + blank_rows[0]} is blank; delete blank rows so "
            "that every row holds a label and its values"
        )
    if label_column >= num_columns:
        raise DataError(
            f"{path}: the label column is {_column_name(label_column)} (label_column="
            f"{label_column}), but the table ends at {_column_name(num_columns - 1)}; set "
            "label_column to the 0-based position of the labels"
        )

    # A row's length runs to its last filled cell. The label cell counts as filled here, so
    # that a missing label is reported as such rather than as a short row.
    filled = ~empty
    filled[:, label_column] = True
    lengths = num_columns - np.argmax(filled[:, ::-1], axis=1)  # (rows,)
    usual_length = int(np.bincount(lengths).argmax())
    if usual_length < 2:
        raise DataError(
            f"{path}: the rows hold only a label in {_column_name(label_column)} and no "
            "values; put each row's values in the columns after its label"
        )
    odd_rows = np.flatnonzero(lengths != usual_length)
    if odd_rows.size:
        raise _ragged_row_error(path, first_row_number, lengths, usual_length, odd_rows)

    empty_labels = np.flatnonzero(empty[:, label_column])
    if empty_labels.size:
        raise DataError(
            f"{path}: row {first_row_number + empty_labels[0]}, {_column_name(label_column)}: "
            f"the label is empty{_more(empty_labels.size - 1, 'row')}; type the row's class or "
            "delete the row"
        )

    value_columns = [column for column in range(usual_length) if column != label_column]
    holes = np.argwhere(empty[:, value_columns])
    if holes.size:
        position, index = holes[0]
        raise DataError(
            f"{path}: row {first_row_number + position}, "
            f"{_column_name(value_columns[index])} is empty, inside the row (its values "
            f"continue to {_column_name(usual_length - 1)}); type the missing value or delete "
            "the row"
        )

    value_cells = cells.iloc[:, value_columns]
    values = _to_float32(value_cells)  # (rows, values)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        position, index = bad[0]
        found = value_cells.iat[position, index]
        # Numbers (too large for float32, or infinite) are written short, text is quoted.
        shown = f"{found:g}" if isinstance(found, int | float | np.number) else repr(found)
        raise DataError(
            f"{path}: row {first_row_number + position}, "
            f"{_column_name(value_columns[index])} holds {shown}, which is not a finite number "
            f"within float32's range{_more(bad.shape[0] - 1, 'cell')}; type a number there "
            "(with '.' as the decimal point) or delete the row"
        )

    labels, label_mapping = _encode_labels(path, cells.iloc[:, label_column], label_column)
    return values, labels, label_mapping


def _ragged_row_error(
    path: Path,
    first_row_number: int,
    lengths: np.ndarray,
    usual_length: int,
    odd_rows: np.ndarray,
) -> DataError:
    """Describe the first row whose length differs from that of most rows."""
    position = int(odd_rows[0])
    row = first_row_number + position
    length = int(lengths[position])
    num_usual = int(np.count_nonzero(lengths == usual_length))
    others = (
        f"most rows ({num_usual} of {lengths.size}) have {usual_length} cells, up to "
        f"{_column_name(usual_length - 1)}"
    )
    more = _more(odd_rows.size - 1, "row")
    if length > usual_length:
        return DataError(
            f"{path}: row {row} runs longer than the others: it has {length} cells, up to "
            f"{_column_name(length - 1)}, while {others}{more}; delete the extra cells or "
            "check that the row's values were not shifted"
        )
    if length == 1:
        found = "a label in column 1 (A) but no values"
    else:
        found = f"{length} cells, ending at {_column_name(length - 1)}"
    return DataError(
        f"{path}: row {row} ends early: it has {found}, while {others}{more}; fill in the "
        "missing values or delete the row"
    )


def _to_float32(value_cells: pd.DataFrame) -> np.ndarray:
    """Convert the value cells to float32; a cell that is not a number becomes NaN."""
    try:
        values = value_cells.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        # Only a file with a bad cell takes this slower path, column by column.
        values = value_cells.apply(pd.to_numeric, errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    # Values beyond float32's range become infinite here and are refused with the rest.
    with np.errstate(over="ignore"):
        return values.astype(np.float32)


def _encode_labels(
    path: Path, raw_labels: pd.Series, label_column: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Map two distinct labels to 0 and 1 in sorted order."""
    numbers = pd.to_numeric(raw_labels, errors="coerce").to_numpy(dtype=np.float64)
    if np.isfinite(numbers).all():
        # Numbers sort as numbers (2 before 10), and 1.0 and 1 are one label.
        classes, codes = np.unique(numbers, return_inverse=True)
        names = [_number_text(float(value)) for value in classes]
    else:
        text = np.array([_label_text(value) for value in raw_labels], dtype=str)
        classes, codes = np.unique(text, return_inverse=True)
        names = [str(value) for value in classes]

    if len(names) == 1:
        raise DataError(
            f"{path}: every one of the {codes.size} rows has the label {names[0]!r} in "
            f"{_column_name(label_column)}; a binary classifier needs rows of two classes: add "
            "rows of the other class, or set label_column if the labels are in another column"
        )
    if len(names) > 2:
        counts = np.bincount(codes)
        shown = ", ".join(
            f"{name!r} ({_rows(count)})"
            for name, count in zip(names[:_LABELS_SHOWN], counts[:_LABELS_SHOWN], strict=True)
        )
        if len(names) > _LABELS_SHOWN:
            shown += f" and {len(names) - _LABELS_SHOWN} more"
        raise DataError(
            f"{path}: {_column_name(label_column)} holds {len(names)} different labels: {shown}; "
            "the classifier is binary: keep the rows of two classes, or set label_column if the "
            "labels are in another column"
        )
    return codes.astype(np.int64), {name: index for index, name in enumerate(names)}


def _rows(number: int) -> str:
    return "1 row" if number == 1 else f"{number} rows"


def _more(number: int, noun: str) -> str:
    """Say how many more places have the same problem: `` (and 2 more rows like it)``."""
    if number == 0:
        return ""
    return f" (and {number} more {noun if number == 1 else noun + 's'} like it)"


def _number_text(number: float) -> str:
    """Write a label number cleanly: ``1``, not ``1.0``, when it is a whole number."""
    return str(int(number)) if number.is_integer() else repr(number)


def _label_text(value: object) -> str:
    """Write one label of a text label column; numbers among them are written cleanly."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value).strip()
    return _number_text(number) if math.isfinite(number) else str(value).strip()
