"""tests/check-fragment against throw-away git repositories."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "check-fragment"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "tests").mkdir()
    shutil.copy(SCRIPT, tmp_path / "tests" / "check-fragment")
    (tmp_path / "monitor").mkdir()
    (tmp_path / "monitor" / "a.py").write_text("x = 1\n")
    (tmp_path / "changelogs" / "fragments").mkdir(parents=True)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def commit(repo: Path, message: str, path: str = "monitor/a.py") -> None:
    target = repo / path
    target.write_text(target.read_text() + "y = 2\n" if target.exists() else "- x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tests/check-fragment", "--if-base"],
        cwd=repo,
        capture_output=True,
        text=True,
    )


def test_code_without_fragment_fails_and_names_the_file(repo: Path) -> None:
    commit(repo, "Monitor: something")
    result = check(repo)
    assert result.returncode == 1
    assert "monitor/a.py" in result.stderr


@pytest.mark.parametrize(
    "message",
    [
        "Monitor: a refactor [no-changelog]",
        "Monitor: a refactor [no-changelog: no behaviour change]",
        "Monitor: subject\n\nbody [no-changelog: part of x.yml, unreleased]",
    ],
)
def test_waiver_with_or_without_a_reason(repo: Path, message: str) -> None:
    commit(repo, message)
    result = check(repo)
    assert result.returncode == 0, result.stderr
    assert "waived" in result.stdout


@pytest.mark.parametrize(
    "message",
    [
        "Monitor: [no-changelog:]",
        "Monitor: [no-changelog: ]",
        "Monitor: no-changelog",
        "Monitor: [no changelog]",
    ],
)
def test_malformed_waivers_do_not_waive(repo: Path, message: str) -> None:
    commit(repo, message)
    assert check(repo).returncode == 1


def test_a_fragment_satisfies_it(repo: Path) -> None:
    (repo / "monitor" / "a.py").write_text("x = 3\n")
    commit(repo, "Monitor: with fragment", "changelogs/fragments/x.yml")
    result = check(repo)
    assert result.returncode == 0, result.stderr
    assert "fragment(s) present" in result.stdout


def test_no_code_changed_is_ok(repo: Path) -> None:
    commit(repo, "README only", "README.md")
    assert check(repo).returncode == 0
