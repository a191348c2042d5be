"""Runtime helpers: output files and output directories."""

import os

import pytest

from sparsecheck.outputs import OUT_DIR_MARKER, atomic_write, claim_out_dir, release_out_dir


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


def test_force_shares_a_folder_but_never_writes_into_or_removes_what_a_user_put_there(tmp_path):
    from sparsecheck.outputs import out_dir_outputs, remove_outputs
    from sparsecheck.errors import ConfigError

    out = tmp_path / "shared"
    (out / "features").mkdir(parents=True)
    (out / "features" / "mine.npy").write_bytes(b"user data")
    (out / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty and was not written by sparsecheck"):
        claim_out_dir(out, outputs=["results.json"])
    with pytest.raises(ConfigError, match="features in .* is not sparsecheck's and would be overwritten"):
        claim_out_dir(out, force=True, outputs=["results.json", "features"])
    assert (out / "features" / "mine.npy").read_bytes() == b"user data"
    claim_out_dir(out, force=True, outputs=["results.json", "report.html"])
    assert out_dir_outputs(out) == {"results.json", "report.html"}
    (out / "results.json").write_text("{}")  # what the run wrote
    remove_outputs(out, ["results.json", "report.html", "features", "notes.txt"])
    assert not (out / "results.json").exists()
    assert (out / "notes.txt").read_text() == "keep" and (out / "features" / "mine.npy").is_file()
    # a user's file that appears later under a name sparsecheck never claimed there is refused next time
    (out / "junit.xml").write_text("<mine/>")
    with pytest.raises(ConfigError, match="junit.xml"):
        claim_out_dir(out, outputs=["results.json", "junit.xml"])
    assert (out / "junit.xml").read_text() == "<mine/>"


def test_a_marker_from_before_the_list_keeps_its_outputs(tmp_path):
    from sparsecheck.outputs import out_dir_outputs, remove_outputs

    out = tmp_path / "old"
    out.mkdir()
    (out / OUT_DIR_MARKER).write_text("written by sparsecheck 0.9\n")
    (out / "results.json").write_text("{}")
    claim_out_dir(out, outputs=["results.json"])
    assert "*" in out_dir_outputs(out)
    remove_outputs(out, ["results.json"])
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("where", ["/", "home", "parent"])
def test_root_home_and_the_folders_holding_the_working_directory_are_refused(tmp_path, monkeypatch, where):
    from pathlib import Path

    from sparsecheck.errors import ConfigError

    work = tmp_path / "home" / "project"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    target = {"/": Path("/"), "home": Path("~"), "parent": Path("..")}[where]
    with pytest.raises(ConfigError, match="--out: .* is (the filesystem root|the home directory|a folder that holds)"):
        claim_out_dir(target, force=True, outputs=["results.json"])
    assert not (Path(target).expanduser() / OUT_DIR_MARKER).exists()
