"""Which files the local repository scan sees (ci/src/onnx_serving/local_scan.py: repo_files,
copy_repo), on throwaway trees: in a git checkout, what git would commit (tracked and
untracked, not ignored), a tracked file deleted in the work tree skipped, a submodule copied
with its files, a symlink kept a symlink; outside a checkout, every regular file but .venv's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from onnx_serving import local_scan


def write(path: Path, text: str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setattr(local_scan, "REPO", repo)
    return repo


def test_outside_a_checkout_every_regular_file_but_the_virtualenv_s(tree: Path) -> None:
    write(tree / "a.txt")
    write(tree / "service" / "b.py")
    write(tree / ".venv" / "lib" / "site.py")
    write(tree / "docs" / ".venv" / "kept.txt")  # only the top-level .venv is left out
    (tree / "link").symlink_to("a.txt")
    assert local_scan.repo_files() == sorted(
        ["a.txt", os.path.join("service", "b.py"), os.path.join("docs", ".venv", "kept.txt")]
    )


def test_in_a_checkout_what_git_would_commit_is_copied(tree: Path, tmp_path: Path) -> None:
    git(tree, "init", "-q")
    write(tree / ".gitignore", "*.log\n")
    write(tree / "kept.txt", "kept\n")
    write(tree / "gone.txt")
    write(tree / "dir" / "inner.txt", "inner\n")
    (tree / "link").symlink_to("kept.txt")
    nested = tree / "vendor"
    nested.mkdir()
    git(nested, "init", "-q")
    write(nested / "lib.txt", "vendored\n")
    git(nested, "add", ".")
    git(nested, "commit", "-q", "-m", "vendored")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "first")
    (tree / "gone.txt").unlink()  # tracked, deleted in the work tree
    write(tree / "new.txt", "untracked\n")
    write(tree / "debug.log")  # ignored

    files = local_scan.repo_files()
    assert "new.txt" in files and "vendor" in files
    assert "debug.log" not in files

    copy = tmp_path / "copy"
    local_scan.copy_repo(copy)
    assert (copy / "kept.txt").read_text() == "kept\n"
    assert (copy / "dir" / "inner.txt").read_text() == "inner\n"
    assert (copy / "new.txt").read_text() == "untracked\n"
    assert not (copy / "gone.txt").exists()
    assert not (copy / "debug.log").exists()
    assert (copy / "link").is_symlink() and os.readlink(copy / "link") == "kept.txt"
    assert (copy / "vendor" / "lib.txt").read_text() == "vendored\n"  # the submodule's files


def test_copy_starts_from_an_empty_folder(tree: Path, tmp_path: Path) -> None:
    write(tree / "a.txt")
    copy = tmp_path / "copy"
    write(copy / "stale.txt")
    local_scan.copy_repo(copy)
    assert sorted(p.name for p in copy.iterdir()) == ["a.txt"]


def test_a_tracked_symlink_whose_target_is_gone_is_copied_as_a_symlink(
    tree: Path, tmp_path: Path
) -> None:
    """Only what is deleted from the work tree is skipped: a link that dangles is still there
    (and Trivy's secret scan must not follow it)."""
    git(tree, "init", "-q")
    write(tree / "kept.txt")
    (tree / "dangling").symlink_to("missing.txt")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "first")
    copy = tmp_path / "copy"
    local_scan.copy_repo(copy)
    assert (copy / "dangling").is_symlink() and os.readlink(copy / "dangling") == "missing.txt"


def test_a_submodule_s_symlinks_stay_symlinks(tree: Path, tmp_path: Path) -> None:
    git(tree, "init", "-q")
    nested = tree / "vendor"
    nested.mkdir()
    git(nested, "init", "-q")
    write(nested / "lib.txt", "vendored\n")
    (nested / "alias").symlink_to("lib.txt")
    (nested / "outside").symlink_to("/etc/hostname")
    git(nested, "add", ".")
    git(nested, "commit", "-q", "-m", "vendored")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "first")
    copy = tmp_path / "copy"
    local_scan.copy_repo(copy)
    assert (copy / "vendor" / "lib.txt").read_text() == "vendored\n"
    assert os.readlink(copy / "vendor" / "alias") == "lib.txt"
    assert os.readlink(copy / "vendor" / "outside") == "/etc/hostname"  # never its contents


def test_a_linked_worktree_is_a_checkout_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In `git worktree add`'s folder (and a submodule's), .git is a file, not a folder: what
    git would commit is still the list, so ignored files stay out."""
    main = tmp_path / "main"
    main.mkdir()
    git(main, "init", "-q")
    write(main / ".gitignore", "*.log\n")
    write(main / "kept.txt")
    git(main, "add", ".")
    git(main, "commit", "-q", "-m", "first")
    linked = tmp_path / "linked"
    git(main, "worktree", "add", "-q", str(linked))
    write(linked / "debug.log")
    write(linked / "new.txt")
    assert (linked / ".git").is_file()
    monkeypatch.setattr(local_scan, "REPO", linked)
    assert sorted(local_scan.repo_files()) == [".gitignore", "kept.txt", "new.txt"]
