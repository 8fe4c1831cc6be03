"""The bare repository behind each project: API actions become real commits, bytes stay exact."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scripts.gitlab_standin.exceptions import BadRequest, NotFound
from scripts.gitlab_standin.gitrepo import FileAction, GitRepo, decode_content, validate_file_path

BINARY = bytes(range(256)) + b"\r\n\x00\r" * 10


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "r.git")
    r.init("main")
    return r


def test_binary_file_round_trips_and_is_a_real_commit(repo: GitRepo, tmp_path: Path) -> None:
    sha = repo.commit("main", "seed", [FileAction("create", "bin/data.bin", BINARY),
                                        FileAction("create", "text.txt", b"line\r\n")], None)
    assert repo.blob(sha, "bin/data.bin")[1] == BINARY
    assert repo.blob(sha, "text.txt")[1] == b"line\r\n"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone)], check=True)
    assert (clone / "bin" / "data.bin").read_bytes() == BINARY
    assert repo.commit_info(sha).title == "seed"


def test_update_delete_move_chmod_build_on_the_parent(repo: GitRepo) -> None:
    files = [FileAction("create", "a.txt", b"a"), FileAction("create", "run.sh", b"x")]
    first = repo.commit("main", "one", files, None)
    second = repo.commit("main", "two", [
        FileAction("update", "a.txt", b"A"),
        FileAction("move", "b/renamed.txt", previous_path="a.txt"),
        FileAction("chmod", "run.sh", execute_filemode=True),
    ], first)
    entries = {e.path: e for e in repo.tree(second, "", recursive=True)}
    assert set(entries) == {"b", "b/renamed.txt", "run.sh"}
    assert entries["run.sh"].mode == "100755"
    assert repo.blob(second, "b/renamed.txt")[1] == b"A"
    third = repo.commit("main", "three", [FileAction("delete", "run.sh")], second)
    assert [e.path for e in repo.tree(third, "", recursive=False)] == ["b"]
    assert repo.branches() == {"main": third}
    assert repo.log(third) == [third, second, first]


@pytest.mark.parametrize(
    ("action", "message"),
    [("create", "already exists"), ("update", "doesn't exist"), ("delete", "doesn't exist")],
)
def test_actions_on_wrong_paths_are_refused_like_gitlab(repo: GitRepo, action: str, message: str) -> None:
    base = repo.commit("main", "one", [FileAction("create", "a.txt", b"a")], None)
    path = "a.txt" if action == "create" else "missing.txt"
    with pytest.raises(BadRequest, match=message):
        repo.commit("main", "two", [FileAction(action, path, b"x")], base)
    assert repo.branches() == {"main": base}  # nothing moved


def test_missing_paths_and_refs(repo: GitRepo) -> None:
    sha = repo.commit("main", "one", [FileAction("create", "dir/a.txt", b"a")], None)
    assert repo.resolve("main") == sha and repo.resolve(sha) == sha
    assert repo.resolve("nope") is None and repo.resolve("--help") is None
    with pytest.raises(NotFound):
        repo.blob(sha, "dir")  # a tree, not a file
    with pytest.raises(NotFound):
        repo.tree(sha, "dir/a.txt", recursive=False)
    assert [e.path for e in repo.tree(sha, "dir", recursive=False)] == ["dir/a.txt"]


def test_content_decoding_and_path_validation() -> None:
    assert decode_content("aGk=", "base64", "x") == b"hi"
    assert decode_content("hé", "text", "x") == "hé".encode()
    with pytest.raises(BadRequest):
        decode_content("not base64!", "base64", "x")
    assert validate_file_path("/a/b.txt") == "a/b.txt"
    for bad in ("../x", "a/../b", ".git/config", ""):
        with pytest.raises(BadRequest):
            validate_file_path(bad)
