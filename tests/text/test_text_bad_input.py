"""Bad text input is refused before any work, from the command line: exit 2 and one line on stderr
naming the file, the row and what is wrong (empty text, a missing column, bytes that are not UTF-8,
a label outside the classes), in every manifest format and in a datasets directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from sparsecheck.cli import main
from tests.text.zoo import CLASSES, FAST_TEXT, save_hf, write_text_splits


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_hf("bert", tmp_path_factory.mktemp("bad-text") / "model")


def refused(tmp_path: Path, model_dir: Path, data: dict[str, Any], capsys: Any) -> str:
    """Run ``sparsecheck run`` and return its one-line reason; it must exit 2 and write nothing."""
    config = {"model": {"huggingface": str(model_dir)}, "data": data, **FAST_TEXT}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()  # what building the input printed
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "results.json").exists()
    return err


def _edit(path: Path, row: int, column: str, value: Any) -> None:
    table = pd.read_csv(path, keep_default_na=False)
    table[column] = table[column].astype(object)
    table.loc[row - 1, column] = value
    table.to_csv(path, index=False)


def test_an_empty_text_names_the_file_and_row(tmp_path, model_dir, capsys):
    data = write_text_splits(tmp_path)
    _edit(tmp_path / "val.csv", 7, "text", "   ")
    err = refused(tmp_path, model_dir, data, capsys)
    assert "val.csv" in err and "row 7: empty text (1 such rows in all)" in err


def test_an_empty_text_in_jsonl(tmp_path, model_dir, capsys):
    data = write_text_splits(tmp_path, suffix="jsonl")
    lines = (tmp_path / "test.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"text":', '"text":"","was":')
    (tmp_path / "test.jsonl").write_text("\n".join(lines) + "\n")
    err = refused(tmp_path, model_dir, data, capsys)
    assert "test.jsonl" in err and "row 3: empty text" in err


def test_a_missing_text_column_names_the_columns_and_the_setting(tmp_path, model_dir, capsys):
    data = write_text_splits(tmp_path, text_column="sentence")
    del data["text_column"]  # SST-2's column, not named in the config
    err = refused(tmp_path, model_dir, data, capsys)
    assert "train.csv" in err and "no 'text' column" in err and "sentence" in err and "data.text_column" in err


def test_a_missing_label_column_in_a_parquet_manifest(tmp_path, model_dir, capsys):
    data = write_text_splits(tmp_path, suffix="parquet")
    pd.read_parquet(tmp_path / "val.parquet").drop(columns="label").to_parquet(tmp_path / "val.parquet")
    err = refused(tmp_path, model_dir, data, capsys)
    assert "val.parquet has no labels ('y' or a 'label' column)" in err


def test_bytes_that_are_not_utf8_name_the_row(tmp_path, model_dir, capsys):
    data = write_text_splits(tmp_path, suffix="tsv")
    lines = (tmp_path / "train.tsv").read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b"\t", "\tcaf\u00e9 ".encode("latin-1"), 1)  # a Latin-1 é in row 5
    (tmp_path / "train.tsv").write_bytes(b"\n".join(lines))
    err = refused(tmp_path, model_dir, data, capsys)
    assert "train.tsv" in err and "row 5 (line 6): not UTF-8 text (byte 0xe9" in err and "save the file as UTF-8" in err


def test_a_label_name_outside_the_classes(tmp_path, model_dir, capsys):
    data = write_text_splits(tmp_path)
    _edit(tmp_path / "test.csv", 11, "label", "neutral")
    err = refused(tmp_path, model_dir, data, capsys)
    assert "test.csv" in err and f"row 11: label 'neutral' is not one of the classes {CLASSES}" in err


def test_a_label_index_outside_the_classes(tmp_path, model_dir, capsys):
    data = write_text_splits(tmp_path)
    table = pd.read_csv(tmp_path / "train.csv")
    table["label"] = [CLASSES.index(v) for v in table["label"]]
    table.loc[3, "label"] = 2
    table.to_csv(tmp_path / "train.csv", index=False)
    err = refused(tmp_path, model_dir, data, capsys)
    assert "train.csv" in err and f"row 4: label index 2 is outside the 2 classes {CLASSES}" in err


def test_an_empty_text_in_a_datasets_directory(tmp_path, model_dir, capsys):
    import datasets

    data = write_text_splits(tmp_path)
    table = pd.read_csv(tmp_path / "train.csv", keep_default_na=False)
    table.loc[9, "text"] = ""
    datasets.Dataset.from_pandas(table).save_to_disk(str(tmp_path / "train-ds"))
    data["train"] = "train-ds"
    err = refused(tmp_path, model_dir, data, capsys)
    assert "train-ds" in err and "row 10: empty text" in err
