"""``loadkit compare``'s usage errors: one line, exit 2, before anything is built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from compare_project import make_project

from loadkit.cli.main import main


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = tmp_path / "proj"
    make_project(repo)
    return repo


class _Done:
    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def _compare(monkeypatch, capsys, tmp_path):
    """``loadkit compare ARGS`` in this process, in the project, with a home of its own."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def compare(repo: Path, *args: str) -> _Done:
        monkeypatch.chdir(repo)
        capsys.readouterr()
        try:
            code = main(["compare", *args])
        except SystemExit as exc:  # argparse's own errors
            code = int(exc.code or 0)
        return _Done(code, capsys.readouterr().err)

    return compare


def _nothing_built(repo: Path) -> bool:
    return not (repo / ".asv").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-branch"], "unknown commit 'no-such-branch'"),
        (["HEAD", "deadbeef"], "unknown commit 'deadbeef'"),
        (["HEAD", "--rounds", "2"], "at least 3 rounds"),
        (["HEAD", "--rounds", "3", "--budget", "5"], "not allowed with argument"),
        (["HEAD", "--budget", "-1"], "must be > 0"),
        (["HEAD", "--markdown", "/proc/comment.md"], "--markdown"),
        (["HEAD", "--json", "."], "--json"),
        (["HEAD", "--config", "missing.json"], "--config missing.json: not found"),
        (["HEAD", "--bench", "Wasm("], "--bench 'Wasm(': not a regular expression"),
        (["HEAD", "--noise", "no-study.json"], "--noise: no A/A study at no-study.json"),
        (["HEAD", "--noise", "asv.conf.json"], "is not an A/A study"),
    ],
)
def test_usage_errors_exit_2_before_anything_is_built(project, _compare, args, message):
    done = _compare(project, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _nothing_built(project)


def test_an_unwritable_output_folder_is_a_usage_error(project, _compare, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        done = _compare(project, "HEAD", "--markdown", str(locked / "comment.md"))
    finally:
        locked.chmod(0o700)
    assert done.returncode == 2 and "--markdown" in done.stderr
    assert _nothing_built(project)


def test_a_missing_or_broken_asv_config_is_a_usage_error(project, _compare):
    (project / "asv.conf.json").write_text("{ not json")
    done = _compare(project, "HEAD")
    assert done.returncode == 2 and "cannot read asv config" in done.stderr
    (project / "asv.conf.json").unlink()
    done = _compare(project, "HEAD")  # nor in any folder above the project's
    assert done.returncode == 2 and "no asv.conf.json" in done.stderr
    assert _nothing_built(project)


def test_a_second_comparison_in_the_same_project_is_refused(project, _compare):
    from loadkit.asvsuite.compare import project_lock

    with project_lock(project / ".asv" / "compare"):
        done = _compare(project, "HEAD", "--rounds", "3")
    assert done.returncode == 2
    assert "another loadkit compare is running in this project" in done.stderr
    assert not list((project / ".asv" / "compare").glob("*-*"))  # nothing built
