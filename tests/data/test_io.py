"""Reading the user's table: the layouts that work, and a clear refusal for each bad one."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import data
from data import DataError, Dataset, check_fold_counts, read_dataset

UCR_FOLDER = Path(data.__file__).parent / "ucr"

# Four rows of a label and four values; cases below change one cell or row of it.
GOOD_ROWS = [
    [1, 0.1, 0.2, 0.3, 0.4],
    [2, 0.5, 0.6, 0.7, 0.8],
    [1, 0.9, 0.8, 0.7, 0.6],
    [2, 0.5, 0.4, 0.3, 0.2],
]


def write_table(path: Path, rows: list[list[object]]) -> Path:
    """Write rows as a user would: no header, cells left empty where a row holds None.

    Rows may differ in length; a short row's trailing cells stay empty in a workbook and are
    absent from a CSV line.
    """
    if path.suffix == ".csv":
        lines = (",".join("" if cell is None else str(cell) for cell in row) for row in rows)
        path.write_text("\n".join(lines) + "\n")
        return path
    width = max((len(row) for row in rows), default=0)
    padded = [list(row) + [None] * (width - len(row)) for row in rows]
    pd.DataFrame(padded, dtype=object).to_excel(path, header=False, index=False)
    return path


def changed(row_position: int, row: list[object]) -> list[list[object]]:
    """GOOD_ROWS with one row replaced."""
    rows = [list(good) for good in GOOD_ROWS]
    rows[row_position] = row
    return rows


def read_error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as error:
        read_dataset(path, **kwargs)
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message
    return message


@pytest.fixture(params=["xlsx", "csv"])
def suffix(request: pytest.FixtureRequest) -> str:
    return request.param


def test_read_dataset_reads_both_formats(tmp_path: Path, suffix: str) -> None:
    path = write_table(tmp_path / f"table.{suffix}", GOOD_ROWS)

    dataset = read_dataset(path)

    assert isinstance(dataset, Dataset)
    assert dataset.features.shape == (4, 4)
    assert dataset.num_rows == 4
    assert dataset.num_values == 4
    assert dataset.features.dtype == np.float32
    assert dataset.labels.dtype == np.int64
    np.testing.assert_allclose(dataset.features, np.array(GOOD_ROWS)[:, 1:], rtol=1e-6)
    assert dataset.label_mapping == {"1": 0, "2": 1}
    np.testing.assert_array_equal(dataset.labels, [0, 1, 0, 1])
    assert dataset.path == path
    assert dataset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_dataset_returns_read_only_arrays(tmp_path: Path) -> None:
    dataset = read_dataset(write_table(tmp_path / "table.csv", GOOD_ROWS))

    with pytest.raises(ValueError):
        dataset.features[0, 0] = 1.0
    with pytest.raises(ValueError):
        dataset.labels[0] = 1


def test_read_dataset_sorts_number_labels_as_numbers(tmp_path: Path, suffix: str) -> None:
    # As text "10" would sort before "9".
    rows = [[10 if row[0] == 2 else 9, *row[1:]] for row in GOOD_ROWS]

    dataset = read_dataset(write_table(tmp_path / f"table.{suffix}", rows))

    assert dataset.label_mapping == {"9": 0, "10": 1}
    np.testing.assert_array_equal(dataset.labels, [0, 1, 0, 1])


def test_read_dataset_treats_1_and_1_point_0_as_one_label(tmp_path: Path) -> None:
    rows = changed(2, ["1.0", 0.9, 0.8, 0.7, 0.6])

    dataset = read_dataset(write_table(tmp_path / "table.csv", rows))

    assert dataset.label_mapping == {"1": 0, "2": 1}
    np.testing.assert_array_equal(dataset.labels, [0, 1, 0, 1])


def test_read_dataset_maps_text_labels_alphabetically(tmp_path: Path, suffix: str) -> None:
    rows = [["dog" if row[0] == 1 else "cat", *row[1:]] for row in GOOD_ROWS]

    dataset = read_dataset(write_table(tmp_path / f"table.{suffix}", rows))

    assert dataset.label_mapping == {"cat": 0, "dog": 1}
    np.testing.assert_array_equal(dataset.labels, [1, 0, 1, 0])


def test_read_dataset_logs_the_mapping_on_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_table(tmp_path / "table.csv", GOOD_ROWS)

    with caplog.at_level(logging.INFO, logger="data.io"):
        read_dataset(path)

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "{'1': 0, '2': 1}" in messages[0]


def test_read_dataset_with_header_row_and_label_column(tmp_path: Path, suffix: str) -> None:
    rows = [
        ["first", "second", "class", "third"],
        [0.1, 0.2, "yes", 0.3],
        [0.4, 0.5, "no", 0.6],
        [0.7, 0.8, "yes", 0.9],
    ]
    path = write_table(tmp_path / f"table.{suffix}", rows)

    dataset = read_dataset(path, header_row=True, label_column=2)

    np.testing.assert_allclose(
        dataset.features, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]], rtol=1e-6
    )
    assert dataset.label_mapping == {"no": 0, "yes": 1}
    np.testing.assert_array_equal(dataset.labels, [1, 0, 1])


def test_read_dataset_counts_the_header_row_in_row_numbers(tmp_path: Path, suffix: str) -> None:
    rows = [["label", "a", "b", "c", "d"], *changed(1, [2, 0.5, "oops", 0.7, 0.8])]
    path = write_table(tmp_path / f"table.{suffix}", rows)

    message = read_error(path, header_row=True)

    # The bad cell is on the second data row, which a spreadsheet shows as row 3.
    assert "row 3, column 3 (C) holds 'oops'" in message


def test_read_dataset_reads_a_named_sheet(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame([["not", "this"]]).to_excel(writer, sheet_name="notes", header=False)
        pd.DataFrame(GOOD_ROWS).to_excel(writer, sheet_name="data", header=False, index=False)

    dataset = read_dataset(path, sheet="data")

    assert dataset.features.shape == (4, 4)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            changed(2, [1]),
            ["row 3 ends early", "a label in column 1 (A) but no values", "(3 of 4)"],
            id="label-without-values",
        ),
        pytest.param(
            changed(1, [2, 0.5, 0.6]),
            ["row 2 ends early", "3 cells, ending at column 3 (C)", "5 cells, up to column 5 (E)"],
            id="row-ends-early",
        ),
        pytest.param(
            changed(3, [2, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]),
            ["row 4 runs longer", "7 cells, up to column 7 (G)", "5 cells, up to column 5 (E)"],
            id="row-runs-longer",
        ),
        pytest.param(
            changed(2, [1, 0.9, None, 0.7, 0.6]),
            ["row 3, column 3 (C) is empty, inside the row"],
            id="empty-cell-inside-row",
        ),
        pytest.param(
            changed(1, [2, 0.5, 0.6, "abc", 0.8]),
            ["row 2, column 4 (D) holds 'abc'", "not a finite number"],
            id="non-numeric-cell",
        ),
        pytest.param(
            changed(3, [2, 0.5, 0.4, 0.3, "inf"]),
            # pandas reads the text "inf" in a workbook as the number, so no quotes here.
            ["row 4, column 5 (E) holds", "inf", "not a finite number"],
            id="infinite-value",
        ),
        pytest.param(
            changed(1, [None, 0.5, 0.6, 0.7, 0.8]),
            ["row 2, column 1 (A): the label is empty"],
            id="empty-label",
        ),
        pytest.param(
            changed(2, []),
            ["row 3 is blank"],
            id="blank-row",
        ),
        pytest.param(
            [[1, *row[1:]] for row in GOOD_ROWS],
            ["every one of the 4 rows has the label '1'", "column 1 (A)", "two classes"],
            id="one-class",
        ),
        pytest.param(
            [[label, *row[1:]] for label, row in zip([1, 2, 3, 3], GOOD_ROWS, strict=True)],
            ["3 different labels", "'1' (1 row), '2' (1 row), '3' (2 rows)"],
            id="three-classes",
        ),
        pytest.param(
            [[1], [2], [1]],
            ["only a label in column 1 (A) and no values"],
            id="no-value-columns",
        ),
    ],
)
def test_read_dataset_rejects_bad_table(
    tmp_path: Path, suffix: str, rows: list[list[object]], expected: list[str]
) -> None:
    path = write_table(tmp_path / f"table.{suffix}", rows)

    message = read_error(path)

    for fragment in expected:
        assert fragment in message


def test_read_dataset_reports_the_first_of_many_short_rows(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, [1, 0.1, 0.2], [2, 0.1], *GOOD_ROWS]
    path = write_table(tmp_path / "table.csv", rows)

    message = read_error(path)

    assert "row 5 ends early" in message
    assert "(and 1 more row like it)" in message


def test_read_dataset_rejects_missing_file(tmp_path: Path) -> None:
    message = read_error(tmp_path / "absent.xlsx")

    assert "no such file" in message


def test_read_dataset_rejects_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    path.write_text("{}")

    message = read_error(path)

    assert "'.json'" in message
    assert ".xlsx" in message
    assert ".csv" in message


def test_read_dataset_rejects_text_saved_as_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "table.xlsx"
    path.write_text("1,0.1,0.2\n2,0.3,0.4\n")

    message = read_error(path)

    assert "cannot be read as a workbook" in message


def test_read_dataset_rejects_csv_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_bytes(b"1,0.1\n2,\xff\xfe\n")

    message = read_error(path)

    assert "not UTF-8" in message


@pytest.mark.parametrize("rows", [[], [[]]], ids=["no-rows", "blank-rows-only"])
def test_read_dataset_rejects_empty_table(
    tmp_path: Path, suffix: str, rows: list[list[object]]
) -> None:
    path = write_table(tmp_path / f"table.{suffix}", rows)

    message = read_error(path)

    assert "has no data rows" in message


def test_read_dataset_rejects_header_without_data(tmp_path: Path) -> None:
    path = write_table(tmp_path / "table.csv", [["label", "a", "b"]])

    message = read_error(path, header_row=True)

    assert "has no data rows" in message


def test_read_dataset_rejects_missing_sheet(tmp_path: Path) -> None:
    path = write_table(tmp_path / "table.xlsx", GOOD_ROWS)

    message = read_error(path, sheet="data")

    assert "has no sheet 'data'" in message
    assert "Sheet1" in message


def test_read_dataset_rejects_label_column_past_the_table(tmp_path: Path) -> None:
    path = write_table(tmp_path / "table.csv", GOOD_ROWS)

    message = read_error(path, label_column=7)

    assert "column 8 (H)" in message
    assert "ends at column 5 (E)" in message


def test_read_dataset_rejects_negative_label_column(tmp_path: Path) -> None:
    path = write_table(tmp_path / "table.csv", GOOD_ROWS)

    with pytest.raises(ValueError, match="label_column"):
        read_dataset(path, label_column=-1)


def test_read_dataset_names_far_columns_with_excel_letters(tmp_path: Path) -> None:
    rows = [[row[0], *np.linspace(0.1, 0.9, 30)] for row in GOOD_ROWS]
    rows[1][28] = "x"

    message = read_error(write_table(tmp_path / "table.csv", rows))

    assert "row 2, column 29 (AC) holds 'x'" in message


@pytest.mark.parametrize(
    ("name", "shape", "counts"),
    [
        ("wine_train.xlsx", (57, 234), [30, 27]),
        ("wine_test.xlsx", (54, 234), [27, 27]),
        ("coffee_train.xlsx", (28, 286), [14, 14]),
        ("coffee_test.xlsx", (28, 286), [15, 13]),
    ],
)
def test_read_dataset_reads_ucr_files(
    name: str, shape: tuple[int, int], counts: list[int]
) -> None:
    dataset = read_dataset(UCR_FOLDER / name)

    assert dataset.features.shape == shape
    np.testing.assert_array_equal(np.bincount(dataset.labels), counts)
    expected_mapping = {"1": 0, "2": 1} if name.startswith("wine") else {"0": 0, "1": 1}
    assert dataset.label_mapping == expected_mapping


def make_dataset(counts: list[int]) -> Dataset:
    labels = np.repeat(np.arange(len(counts)), counts)
    return Dataset(
        features=np.zeros((labels.size, 3), dtype=np.float32),
        labels=labels,
        label_mapping={"no": 0, "yes": 1},
        path=Path("table.csv"),
        sha256="0" * 64,
    )


def test_check_fold_counts_accepts_enough_rows() -> None:
    check_fold_counts(make_dataset([5, 8]), num_folds=5)


def test_check_fold_counts_rejects_class_smaller_than_folds() -> None:
    with pytest.raises(DataError) as error:
        check_fold_counts(make_dataset([9, 3]), num_folds=5)

    message = str(error.value)
    assert "table.csv" in message
    assert "class 'yes' has 3 rows" in message
    assert "5 folds" in message
    assert "num_folds=3" in message


def test_check_fold_counts_asks_for_rows_when_a_class_has_one() -> None:
    with pytest.raises(DataError, match="add rows of that class"):
        check_fold_counts(make_dataset([1, 9]), num_folds=2)


@pytest.mark.parametrize("num_folds", [1, 0, 2.5])
def test_check_fold_counts_rejects_bad_num_folds(num_folds: object) -> None:
    with pytest.raises(ValueError, match="num_folds"):
        check_fold_counts(make_dataset([5, 5]), num_folds=num_folds)
