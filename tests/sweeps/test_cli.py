import re
import subprocess
import sys

import pandas as pd
import pytest

from sweeps.cli import EXIT_BAD_INPUT, build_parser, main
from tests.sweeps.conftest import run_args

SPEC_TEXT = "name: cli\nbudget: {trials: 1}\ncv: {folds: 2}\ntraining: {max_epochs: 1}\n"


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_TEXT)
    return path


def _write(tmp_path, name, rows):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, header=False, index=False)
    return path


def _assert_nothing_created(stores):
    assert not stores["storage"].exists()
    assert not stores["mlflow_db"].exists()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [[0, 0.1, 0.2], [0, 0.3, 0.4], [0, 0.5, 0.6]],
            r"every one of the 3 rows has the label '0'",
        ),
        ([[0, 0.1], [1, 0.2], [2, 0.3], [0, 0.4]], r"holds 3 different labels"),
        ([[0, 0.1], [1, "abc"], [0, 0.3], [1, 0.4]], r"row 2.*column 2 \(B\).*'abc'"),
        ([[0, 0.1], [1, 0.2], [0, 0.3]], r"class|fold"),
    ],
    ids=["one-class", "three-classes", "non-numeric", "too-few-rows-for-folds"],
)
def test_main_bad_data_exits_2_and_creates_nothing(tmp_path, spec, stores, caplog, rows, message):
    data = _write(tmp_path, "bad.csv", rows)
    assert main(run_args(spec, data, stores)) == EXIT_BAD_INPUT
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1
    assert "bad.csv" in errors[0]
    assert re.search(message, errors[0]), errors[0]
    _assert_nothing_created(stores)


def test_main_missing_data_file_exits_2(tmp_path, spec, stores, caplog):
    assert main(run_args(spec, tmp_path / "absent.xlsx", stores)) == EXIT_BAD_INPUT
    assert "absent.xlsx" in caplog.text
    _assert_nothing_created(stores)


def test_main_bad_spec_exits_2_before_reading_data(tmp_path, stores, small_data, caplog):
    spec = tmp_path / "typo.yaml"
    spec.write_text("cv: {folds: 2, metrc: mcc}\n")
    assert main(run_args(spec, small_data, stores)) == EXIT_BAD_INPUT
    assert "typo.yaml: unknown key 'cv.metrc'" in caplog.text
    _assert_nothing_created(stores)


def test_main_missing_spec_exits_2(tmp_path, stores, small_data, caplog):
    assert main(run_args(tmp_path / "nope.yaml", small_data, stores)) == EXIT_BAD_INPUT
    assert "nope.yaml: no such sweep spec" in caplog.text
    _assert_nothing_created(stores)


def test_build_parser_every_subcommand_has_help(capsys):
    parser = build_parser()
    for argv in (["--help"], ["run", "--help"], ["worker", "--help"]):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(argv)
        assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in ("--spec", "--data", "--trials", "--study", "--storage", "--tracking-config"):
        assert option in text
    for option in ("--workers", "--gpus", "--workers-per-gpu", "--index", "SWEEP_STORAGE"):
        assert option in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--gpus", "0", "--workers", "3"], r"--workers 3 is more than 1 GPU\(s\) x 1 worker"),
        (["--gpus", ","], r"--gpus ',' names no GPU"),
    ],
)
def test_main_impossible_worker_options_exit_2_and_create_nothing(
    spec, small_data, stores, caplog, options, message
):
    assert main(run_args(spec, small_data, stores, *options)) == EXIT_BAD_INPUT
    assert re.search(message, caplog.text), caplog.text
    _assert_nothing_created(stores)


def test_sweep_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from sweeps.cli import build_parser\n"
        "build_parser().format_help()\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_m_sweeps_shows_help():
    result = subprocess.run(
        [sys.executable, "-m", "sweeps", "run", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--trials" in result.stdout
