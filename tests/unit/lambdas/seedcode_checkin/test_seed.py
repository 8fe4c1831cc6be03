"""Seed zips -> commit actions: every file, text as text, binary as base64, executables kept."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from mlops_common.errors import ConfigError
from mlops_common.gitlab_client import TreeEntry
from seedcode_checkin.seed import SeedFile, read_seed_zip

from tests.unit.lambdas.helpers import BINARY, BUILD_FILES, make_zip


def test_every_file_becomes_a_create_action_with_the_right_encoding() -> None:
    seed = read_seed_zip(make_zip(BUILD_FILES, frozenset({"scripts/run.sh"})), "model-build")
    all_actions = seed.create_actions()
    assert all_actions[-1] == {"action": "chmod", "file_path": "scripts/run.sh", "execute_filemode": True}
    actions = {a["file_path"]: a for a in all_actions[:-1]}
    assert sorted(actions) == sorted(BUILD_FILES)
    assert actions[".gitlab-ci.yml"] == {
        "action": "create",
        "file_path": ".gitlab-ci.yml",
        "content": "stages: [build]\n",
        "encoding": "text",
    }
    assert actions["img/logo.png"]["encoding"] == "base64"
    assert base64.b64decode(actions["img/logo.png"]["content"]) == BINARY
    assert all(a["action"] == "create" for a in actions.values())


def test_blob_id_matches_git(tmp_path: Path) -> None:
    sample = tmp_path / "f"
    sample.write_bytes(BINARY)
    expected = subprocess.run(["git", "hash-object", str(sample)], capture_output=True, text=True, check=True)
    assert SeedFile("f", BINARY).blob_id == expected.stdout.strip()


def test_sync_actions_only_touch_what_differs() -> None:
    seed = read_seed_zip(
        make_zip({"a.txt": "same\n", "b.txt": "new\n", "c.sh": "x\n"}, frozenset({"c.sh"})), "s"
    )
    files = {f.path: f for f in seed.files}
    tree = [
        TreeEntry("a.txt", files["a.txt"].blob_id, "100644"),
        TreeEntry("b.txt", hashlib.sha1(b"old", usedforsecurity=False).hexdigest(), "100644"),
        TreeEntry("c.sh", files["c.sh"].blob_id, "100644"),
        TreeEntry("user-file.py", "0" * 40, "100644"),
    ]
    assert seed.sync_actions(tree) == [
        {"action": "update", "file_path": "b.txt", "content": "new\n", "encoding": "text"},
        {"action": "chmod", "file_path": "c.sh", "execute_filemode": True},
    ]
    assert (
        seed.sync_actions(
            [TreeEntry(f.path, f.blob_id, "100755" if f.executable else "100644") for f in seed.files]
        )
        == []
    )


def test_digest_changes_with_content() -> None:
    one = read_seed_zip(make_zip({"a": "1"}), "s")
    two = read_seed_zip(make_zip({"a": "2"}), "s")
    assert one.digest != two.digest
    assert one.digest == read_seed_zip(make_zip({"a": "1"}), "s").digest


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not a zip", "not a zip file"),
        (make_zip({}), "is empty"),
        (make_zip({"../evil": "x"}), "unsafe path"),
        (make_zip({"/abs": "x"}), "unsafe path"),
    ],
)
def test_bad_seed_zips_are_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        read_seed_zip(data, "model-build")
