"""Runtime helpers: output files and output directories."""

import os

import pytest

from sparsecheck._runtime import OUT_DIR_MARKER, atomic_write, claim_out_dir, release_out_dir


@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077])
def test_atomic_write_gives_the_mode_open_would(tmp_path, umask):
    before = os.umask(umask)
    try:
        with atomic_write(tmp_path / "a.txt") as fh:
            fh.write("x")
        with open(tmp_path / "b.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(before)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "a.txt") as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_release_out_dir_removes_only_an_unused_directory(tmp_path):
    out = claim_out_dir(tmp_path / "out")
    (out / "features").mkdir()
    assert release_out_dir(out) and not out.exists()
    out = claim_out_dir(tmp_path / "out")
    (out / "results.json").write_text("{}")
    assert not release_out_dir(out) and (out / "results.json").is_file() and (out / OUT_DIR_MARKER).is_file()
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    assert not release_out_dir(tmp_path / "plain") and (tmp_path / "plain" / "notes.txt").is_file()
    (tmp_path / "empty").mkdir()
    assert not release_out_dir(tmp_path / "empty") and (tmp_path / "empty").is_dir()  # not sparsecheck's
