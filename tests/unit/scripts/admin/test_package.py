"""scripts/admin/package.py: reproducible, hashed, junk-free zips; pure-Python dependencies only."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from scripts.admin import package

pytestmark = pytest.mark.slow  # runs pip to build the zips

BINARY = bytes(range(256)) * 4 + b"\x00\r\n\x89PNG"


def make_wheel(
    wheelhouse: Path,
    name: str,
    version: str = "1.0",
    tag: str = "py3-none-any",
    extra: dict[str, bytes] | None = None,
    requires_python: str = "",
) -> Path:
    """A minimal installable wheel with `extra` files added."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python:
        metadata += f"Requires-Python: {requires_python}\n"
    files = {
        f"{name}/__init__.py": b"VALUE = 1\n",
        f"{dist}/METADATA": metadata.encode(),
        f"{dist}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
        f"{dist}/RECORD": b"",
        **(extra or {}),
    }
    path = wheelhouse / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for arcname, content in files.items():
            archive.writestr(arcname, content)
    return path


def make_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small repository shaped like ours: two Lambdas, mlops_common, two seeds, junk everywhere."""
    root = tmp_path / "repo"
    make_tree(
        root,
        {
            "lambdas/mlops_common/__init__.py": b"",
            "lambdas/mlops_common/contract.py": b"NAME = 'x'\n",
            "lambdas/mlops_common/__pycache__/contract.cpython-311.pyc": b"junk",
            "lambdas/seedcode_checkin/__init__.py": b"",
            "lambdas/seedcode_checkin/handler.py": b"def handler(event, context):\n    return 1\n",
            "lambdas/seedcode_checkin/requirements.txt": b"fakedep==1.0\n",
            "lambdas/seedcode_checkin/tests/test_handler.py": b"assert True\n",
            "lambdas/seedcode_checkin/stale.pyc": b"junk",
            "lambdas/seedcode_checkin/.DS_Store": b"junk",
            "lambdas/pipeline_trigger/__init__.py": b"",
            "lambdas/pipeline_trigger/handler.py": b"def handler(event, context):\n    return 2\n",
            "seedcode/model-build/README.md": b"# build\n",
            "seedcode/model-build/.gitlab-ci.yml": b"stages: [build]\n",
            "seedcode/model-build/data/sample.bin": BINARY,
            "seedcode/model-build/pipelines/build/keep.py": b"# a package named build, deep down\n",
            "seedcode/model-build/build/output.txt": b"junk",
            "seedcode/model-build/.venv/lib/x.py": b"junk",
            "seedcode/model-build/.pytest_cache/v": b"junk",
            "seedcode/model-build/node_modules/m/index.js": b"junk",
            "seedcode/model-build/.git/HEAD": b"junk",
            "seedcode/model-build/pipelines/__pycache__/a.pyc": b"junk",
            "seedcode/model-deploy/README.md": b"# deploy\n",
            "seedcode/model-deploy/scripts/run.sh": b"#!/bin/sh\necho hi\n",
        },
    )
    (root / "seedcode/model-deploy/scripts/run.sh").chmod(0o755)
    # Junk inside the dependency too: its tests, a stray .pyc, scripts in .data.
    junk = {
        "fakedep/tests/test_x.py": b"",
        "fakedep/__pycache__/x.pyc": b"",
        "fakedep-1.0.data/scripts/t": b"",
    }
    make_wheel(tmp_path / "wheelhouse", "fakedep", extra=junk)
    return root


@pytest.fixture
def index_args(tmp_path: Path) -> list[str]:
    """Point pip at the local wheelhouse only: the tests never touch PyPI."""
    return ["--no-index", "--find-links", str(tmp_path / "wheelhouse")]


def names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()


def test_same_input_gives_same_bytes_whatever_the_order_and_mtime(tmp_path: Path) -> None:
    one = package.deterministic_zip({"b.txt": (b"b", False), "a/x.py": (b"a", True)})
    two = package.deterministic_zip({"a/x.py": (b"a", True), "b.txt": (b"b", False)})
    assert one == two
    with zipfile.ZipFile(io.BytesIO(one)) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == ["a/x.py", "b.txt"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert [stat.S_IMODE(i.external_attr >> 16) for i in infos] == [0o755, 0o644]


def test_seed_zip_is_independent_of_file_timestamps(repo: Path) -> None:
    first = package.build_seed_zip(repo / "seedcode/model-build")
    os.utime(repo / "seedcode/model-build/README.md", (1_700_000_000, 1_700_000_000))
    assert package.build_seed_zip(repo / "seedcode/model-build") == first


def test_seed_zip_round_trips_files_at_root_byte_exact_without_junk(repo: Path, tmp_path: Path) -> None:
    data = package.build_seed_zip(repo / "seedcode/model-build")
    out = tmp_path / "unzipped"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(out)
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == [".gitlab-ci.yml", "README.md", "data/sample.bin", "pipelines/build/keep.py"]
    assert (out / "data/sample.bin").read_bytes() == BINARY


def test_seed_zip_keeps_the_executable_bit(repo: Path) -> None:
    data = package.build_seed_zip(repo / "seedcode/model-deploy")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        modes = {i.filename: stat.S_IMODE(i.external_attr >> 16) for i in archive.infolist()}
    assert modes == {"README.md": 0o644, "scripts/run.sh": 0o755}


def test_seed_with_a_symlink_is_refused(repo: Path) -> None:
    (repo / "seedcode/model-deploy/link.md").symlink_to(repo / "seedcode/model-deploy/README.md")
    with pytest.raises(package.PackagingError, match="link.md is a symlink"):
        package.build_seed_zip(repo / "seedcode/model-deploy")


def test_lambda_zip_holds_code_common_and_deps_without_tests_or_caches(
    repo: Path, tmp_path: Path, index_args: list[str]
) -> None:
    data = package.build_lambda_zip(repo / "lambdas", "seedcode_checkin", tmp_path / "cache", index_args)
    assert sorted(names(data)) == [
        "fakedep-1.0.dist-info/METADATA",
        "fakedep-1.0.dist-info/WHEEL",
        "fakedep/__init__.py",
        "mlops_common/__init__.py",
        "mlops_common/contract.py",
        "seedcode_checkin/__init__.py",
        "seedcode_checkin/handler.py",
    ]


def test_lambda_zip_is_reproducible_and_served_from_the_wheel_cache(
    repo: Path, tmp_path: Path, index_args: list[str]
) -> None:
    cache = tmp_path / "cache"
    first = package.build_lambda_zip(repo / "lambdas", "seedcode_checkin", cache, index_args)
    assert [p.name for p in cache.iterdir()] == ["fakedep-1.0-py3-none-any.whl"]
    # The wheelhouse disappears: the second build must come from the cache alone.
    for wheel in (tmp_path / "wheelhouse").iterdir():
        wheel.unlink()
    second = package.build_lambda_zip(repo / "lambdas", "seedcode_checkin", cache, index_args)
    assert first == second


def test_dependency_with_a_compiled_extension_is_refused(
    repo: Path, tmp_path: Path, index_args: list[str]
) -> None:
    make_wheel(tmp_path / "wheelhouse", "fakedep", version="2.0", extra={"fakedep/_speedups.so": b"\x7fELF"})
    (repo / "lambdas/seedcode_checkin/requirements.txt").write_text("fakedep==2.0\n")
    with pytest.raises(package.NativeDependencyError, match=r"fakedep/_speedups\.so.*pure Python"):
        package.build_lambda_zip(repo / "lambdas", "seedcode_checkin", tmp_path / "cache", index_args)


def test_dependency_with_only_platform_wheels_is_named(
    repo: Path, tmp_path: Path, index_args: list[str]
) -> None:
    make_wheel(tmp_path / "wheelhouse", "nativeonly", tag="cp313-cp313-manylinux2014_aarch64")
    (repo / "lambdas/seedcode_checkin/requirements.txt").write_text("nativeonly==1.0\n")
    with pytest.raises(
        package.NativeDependencyError, match=r"no pure-Python wheel for nativeonly-1\.0-cp313"
    ):
        package.build_lambda_zip(repo / "lambdas", "seedcode_checkin", tmp_path / "cache", index_args)


def test_dependency_that_excludes_python_311_is_refused(
    repo: Path, tmp_path: Path, index_args: list[str]
) -> None:
    make_wheel(tmp_path / "wheelhouse", "newonly", requires_python=">=3.12")
    (repo / "lambdas/seedcode_checkin/requirements.txt").write_text("newonly==1.0\n")
    with pytest.raises(package.PackagingError, match=r"requires Python >=3\.12, which excludes 3\.11"):
        package.build_lambda_zip(repo / "lambdas", "seedcode_checkin", tmp_path / "cache", index_args)


def test_unresolvable_pin_fails_with_pip_reason(repo: Path, tmp_path: Path, index_args: list[str]) -> None:
    (repo / "lambdas/seedcode_checkin/requirements.txt").write_text("fakedep==9.9\n")
    with pytest.raises(package.PackagingError, match="pip could not resolve"):
        package.build_lambda_zip(repo / "lambdas", "seedcode_checkin", tmp_path / "cache", index_args)


def test_build_all_writes_hashed_files_and_the_manifest(
    repo: Path, tmp_path: Path, index_args: list[str]
) -> None:
    out = tmp_path / "build"
    seen: list[package.Artifact] = []
    manifest = package.build_all(out, repo_root=repo, index_args=index_args, log=seen.append)

    assert set(manifest) == {"lambdas", "seeds"}
    assert set(manifest["lambdas"]) == {"seedcode_checkin", "pipeline_trigger"}
    assert set(manifest["seeds"]) == {"model-build", "model-deploy"}
    for group in manifest.values():
        for name, entry in group.items():
            assert set(entry) == {"file", "sha256"}
            data = (out / entry["file"]).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            assert entry == {"file": f"{name}-{digest[:12]}.zip", "sha256": digest}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert [a.name for a in seen] == ["seedcode_checkin", "pipeline_trigger", "model-build", "model-deploy"]


def test_changed_code_changes_the_file_name_and_drops_the_old_zip(
    repo: Path, tmp_path: Path, index_args: list[str]
) -> None:
    out = tmp_path / "build"
    before = package.build_all(out, repo_root=repo, index_args=index_args)
    again = package.build_all(out, repo_root=repo, index_args=index_args)
    assert again == before

    (repo / "lambdas/pipeline_trigger/handler.py").write_text("def handler(event, context):\n    return 3\n")
    after = package.build_all(out, repo_root=repo, index_args=index_args)

    old, new = before["lambdas"]["pipeline_trigger"]["file"], after["lambdas"]["pipeline_trigger"]["file"]
    assert old != new
    assert not (out / old).exists() and (out / new).exists()
    assert after["seeds"] == before["seeds"]


def test_cli_turns_a_packaging_error_into_a_message_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(out: Path, log: object = None) -> None:
        package.build_seed_zip(tmp_path / "no-such-seed")

    monkeypatch.setattr(package, "build_all", fail)
    assert package.main(["--out", str(tmp_path / "build")]) == 1
    err = capsys.readouterr().err
    assert "packaging failed: seed repository" in err and "no-such-seed not found" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("path", "junk"),
    [
        ("pkg/__pycache__/m.cpython-311.pyc", True),
        ("pkg/m.pyc", True),
        (".DS_Store", True),
        ("a/.mypy_cache/x", True),
        ("x.egg-info/PKG-INFO", True),
        ("pkg/module.py", False),
        ("docs/.gitlab-ci.yml", False),
    ],
)
def test_junk_detection(path: str, junk: bool) -> None:
    assert package.is_junk(tuple(path.split("/"))) is junk


def test_wheel_tags(tmp_path: Path) -> None:
    assert package.is_pure_wheel("requests_toolbelt-1.0.0-py2.py3-none-any.whl")
    assert not package.is_pure_wheel("charset_normalizer-3.4.0-cp313-cp313-manylinux2014_aarch64.whl")


# --- the real bundle (downloads pinned wheels from PyPI once per session) ---------------------------------


@pytest.fixture(scope="session")
def real_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, dict[str, str]]]]:
    out = tmp_path_factory.mktemp("real-build")
    return out, package.build_all(out)


def test_real_bundle_rebuilds_to_identical_bytes(
    real_build: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, manifest = real_build
    again = tmp_path / "again"
    (again).mkdir()
    # Reuse the session's wheel cache: the rebuild is offline and must give the same bytes.
    os.symlink(out / ".wheel-cache", again / ".wheel-cache")
    assert package.build_all(again) == manifest


@pytest.mark.parametrize("name", package.LAMBDAS)
def test_real_lambda_zip_imports_its_handler_on_this_python(
    real_build: tuple[Path, dict[str, Any]], name: str
) -> None:
    import subprocess
    import sys

    out, manifest = real_build
    zip_path = out / manifest["lambdas"][name]["file"]
    members = names(zip_path.read_bytes())
    assert f"{name}/handler.py" in members and "mlops_common/contract.py" in members
    assert not [m for m in members if "__pycache__" in m or m.endswith((".pyc", ".so")) or "/tests/" in m]
    code = (
        f"import sys; sys.path.insert(0, {str(zip_path)!r}); import {name}.handler, gitlab; "
        f"assert gitlab.__file__.startswith({str(zip_path)!r}), gitlab.__file__"
    )
    env = {"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=out)
    assert done.returncode == 0, done.stderr
