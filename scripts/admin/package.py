"""Build the bundle's artifacts: one zip per Lambda and one per seed repository, plus build/manifest.json.

Same input, same bytes: entries are sorted, timestamps and permissions fixed, caches and build junk left
out. Each file name carries the first 12 hex digits of the zip's sha256, so a new bundle version gets new
S3 keys and CloudFormation really updates the Lambdas.

Lambda dependencies are resolved for the Lambda runtime (python3.13) but must be pure Python: the same
zip runs on Lambda arm64 and in the local sandbox (x86_64, python3.11). Wheels are cached under
<out>/.wheel-cache, so repeat builds are fast and work offline.

Usage: python -m scripts.admin.package --out build
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from scripts import REPO_ROOT

# The artifacts the manifest promises (see the team brief); directories under lambdas/ and seedcode/.
LAMBDAS: tuple[str, ...] = ("seedcode_checkin", "pipeline_trigger")
COMMON_PACKAGE = "mlops_common"
SEEDS: tuple[str, ...] = ("model-build", "model-deploy")

# Lambda runtime the dependencies are resolved for, and the Python versions the zip must also import on.
LAMBDA_PYTHON = "3.13"
LAMBDA_PLATFORM = "manylinux2014_aarch64"
SUPPORTED_PYTHONS: tuple[str, ...] = ("3.11", LAMBDA_PYTHON)

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
EXEC_MODE = 0o755
HASH_LENGTH = 12
WHEEL_CACHE = ".wheel-cache"
MANIFEST = "manifest.json"

# Never shipped, anywhere.
JUNK_DIRS = frozenset(
    {
        ".git",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".venv",
        "venv",
        "node_modules",
        ".gitlab-ci-local",
        ".tox",
        ".nox",
        ".idea",
        ".vscode",
        "htmlcov",
        ".ipynb_checkpoints",
    }
)
JUNK_FILES = frozenset({".DS_Store", "Thumbs.db", ".coverage"})
JUNK_SUFFIXES = (".pyc", ".pyo", ".egg-info")
# Only at the top of a seed repository: build outputs there, but legitimate names deeper down.
SEED_ROOT_JUNK = frozenset({"build", "dist", ".sandbox", "reports", ".pipeline-local"})
# Our own Lambda code: tests and the dependency list are not runtime code.
LAMBDA_JUNK_DIRS = frozenset({"tests", "test"})
LAMBDA_JUNK_FILES = frozenset({"requirements.txt", "requirements-dev.txt"})
# Installer bookkeeping that describes an installation, not the code.
DIST_INFO_JUNK = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
PURE_PYTHON_REASON = (
    "Lambda zips must be pure Python because the same zip runs on Lambda (arm64, python3.13) and in the "
    "local sandbox (x86_64, python3.11); pin a version with a pure-Python wheel or drop the dependency"
)


class PackagingError(Exception):
    """A build problem with a message that says what to fix."""


class NativeDependencyError(PackagingError):
    """A Lambda dependency ships compiled code, so one zip cannot serve both arm64 and x86_64."""


@dataclass(frozen=True)
class Artifact:
    """One built zip: its logical name, hashed file name, digest and size."""

    name: str
    file: str
    sha256: str
    size: int


# --- pure helpers -------------------------------------------------------------------------------------


def is_junk(parts: Sequence[str]) -> bool:
    """True when a relative path (as parts) is a cache, VCS folder or editor/OS leftover."""
    for part in parts[:-1]:
        if part in JUNK_DIRS or part.endswith(".egg-info"):
            return True
    name = parts[-1]
    return name in JUNK_FILES or name in JUNK_DIRS or name.endswith(JUNK_SUFFIXES)


def collect_files(root: Path, skip: Iterable[Sequence[str]] = ()) -> dict[str, Path]:
    """Every file under root as {posix relative path: path}, junk excluded.

    `skip` holds extra exclusion rules: a rule is a tuple of path parts a relative path must start with.
    Symlinks are refused: a zip entry cannot represent them portably and seeds pushed to GitLab would
    silently lose them.
    """
    skip_rules = [tuple(rule) for rule in skip]
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        current = Path(dirpath)
        rel_dir = current.relative_to(root).parts
        kept = []
        for dirname in dirnames:
            parts = (*rel_dir, dirname)
            if is_junk((*parts, "")) or _skipped(parts, skip_rules):
                continue
            if (current / dirname).is_symlink():
                raise PackagingError(f"{current / dirname} is a symlink; replace it with a real directory")
            kept.append(dirname)
        dirnames[:] = kept
        for filename in filenames:
            parts = (*rel_dir, filename)
            if is_junk(parts) or _skipped(parts, skip_rules):
                continue
            path = current / filename
            if path.is_symlink():
                raise PackagingError(f"{path} is a symlink; replace it with a copy of the file")
            found[PurePosixPath(*parts).as_posix()] = path
    return found


def _skipped(parts: tuple[str, ...], rules: list[tuple[str, ...]]) -> bool:
    return any(parts[: len(rule)] == rule for rule in rules)


def deterministic_zip(entries: Mapping[str, tuple[bytes, bool]]) -> bytes:
    """Zip {arcname: (content, executable)} so that equal input always gives equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for arcname in sorted(entries):
            content, executable = entries[arcname]
            info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
            info.create_system = 3  # Unix, so external_attr carries POSIX permissions
            info.external_attr = (stat.S_IFREG | (EXEC_MODE if executable else FILE_MODE)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content, compresslevel=9)
    return buffer.getvalue()


def hashed_file_name(name: str, data: bytes) -> tuple[str, str]:
    """(`<name>-<sha12>.zip`, full sha256 hex) for a zip's bytes."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{name}-{digest[:HASH_LENGTH]}.zip", digest


def manifest_dict(
    lambdas: Iterable[Artifact], seeds: Iterable[Artifact]
) -> dict[str, dict[str, dict[str, str]]]:
    """The manifest shape the templates renderer and init.sh read."""
    return {
        "lambdas": {a.name: {"file": a.file, "sha256": a.sha256} for a in lambdas},
        "seeds": {a.name: {"file": a.file, "sha256": a.sha256} for a in seeds},
    }


def native_files(names: Iterable[str]) -> list[str]:
    """The compiled-extension files among the given paths."""
    return sorted(n for n in names if n.lower().endswith(NATIVE_SUFFIXES) or ".so." in PurePosixPath(n).name)


def is_pure_wheel(filename: str) -> bool:
    """True for a wheel tagged `none-any` (runs on any CPU and CPython version)."""
    stem = filename[: -len(".whl")] if filename.endswith(".whl") else filename
    parts = stem.split("-")
    return len(parts) >= 5 and parts[-2] == "none" and parts[-1] == "any"


# --- file system: trees and wheels ----------------------------------------------------------------------


def _entries_from(
    files: Mapping[str, Path], prefix: str = "", keep_exec: bool = False
) -> dict[str, tuple[bytes, bool]]:
    entries: dict[str, tuple[bytes, bool]] = {}
    for rel, path in files.items():
        executable = keep_exec and bool(path.stat().st_mode & stat.S_IXUSR)
        entries[f"{prefix}{rel}"] = (path.read_bytes(), executable)
    return entries


def wheel_entries(wheel: Path) -> dict[str, tuple[bytes, bool]]:
    """A pure-Python wheel's installed files, as pip would lay them out in a --target dir.

    `<dist>.data/purelib|platlib` moves to the root; scripts, headers and data are not importable and
    are dropped, as are installer bookkeeping files and test packages (certifi ships its tests).
    """
    entries: dict[str, tuple[bytes, bool]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            parts = PurePosixPath(info.filename).parts
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                parts = parts[2:]
            if parts[0].endswith(".dist-info") and parts[-1] in DIST_INFO_JUNK:
                continue
            if parts[0] in LAMBDA_JUNK_DIRS or "tests" in parts[:-1] or is_junk(parts):
                continue
            entries[PurePosixPath(*parts).as_posix()] = (archive.read(info), False)
    return entries


def check_no_native(entries: Mapping[str, object], origin: str) -> None:
    """Refuse compiled extensions: the zip must import on arm64/3.13 and x86_64/3.11 alike."""
    found = native_files(entries)
    if found:
        raise NativeDependencyError(
            f"{origin} contains compiled extensions ({', '.join(found[:5])}). {PURE_PYTHON_REASON}"
        )


def check_requires_python(entries: Mapping[str, tuple[bytes, bool]], origin: str) -> None:
    """Refuse a dependency whose Requires-Python excludes one of the Pythons the zip runs on."""
    from email.parser import BytesParser

    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # pragma: no cover - pip always vendors it
        from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[assignment]

    for arcname, (content, _) in entries.items():
        parts = PurePosixPath(arcname).parts
        if len(parts) != 2 or not parts[0].endswith(".dist-info") or parts[1] != "METADATA":
            continue
        spec = BytesParser().parsebytes(content, headersonly=True).get("Requires-Python")
        if not spec:
            continue
        bad = [v for v in SUPPORTED_PYTHONS if v not in SpecifierSet(spec)]
        if bad:
            raise PackagingError(
                f"{origin} ({parts[0]}) requires Python {spec}, which excludes {', '.join(bad)}; "
                f"pin a version that supports Python {' and '.join(SUPPORTED_PYTHONS)}"
            )


# --- pip -------------------------------------------------------------------------------------------------


def _pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _platform_args(pure_only: bool) -> list[str]:
    if pure_only:
        # Only `none-any` wheels qualify, so pip never picks a compiled wheel when a pure one exists.
        return [
            "--only-binary=:all:",
            "--implementation",
            "py",
            "--abi",
            "none",
            "--platform",
            "any",
            "--python-version",
            LAMBDA_PYTHON,
        ]
    return [
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--platform",
        LAMBDA_PLATFORM,
        "--python-version",
        LAMBDA_PYTHON,
    ]


def _requirement_args(requirements: Sequence[Path]) -> list[str]:
    args: list[str] = []
    for req in requirements:
        args += ["-r", str(req)]
    return args


def download_wheels(
    requirements: Sequence[Path], dest: Path, cache: Path, index_args: Sequence[str] = ()
) -> list[Path]:
    """Download the pure-Python wheels for `requirements` into dest, serving from `cache` when possible.

    First tries the cache alone (offline, fast); on a miss asks the index and adds the new wheels to the
    cache. When no pure-Python resolution exists, finds out which dependency is compiled and says so.
    """
    cache.mkdir(parents=True, exist_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    reqs = _requirement_args(requirements)
    pure = _platform_args(pure_only=True)
    offline = _pip(
        ["download", "--quiet", "--no-index", "--find-links", str(cache), "--dest", str(dest), *pure, *reqs]
    )
    if offline.returncode != 0:
        online = _pip(
            [
                "download",
                "--quiet",
                "--find-links",
                str(cache),
                *index_args,
                "--dest",
                str(dest),
                *pure,
                *reqs,
            ]
        )
        if online.returncode != 0:
            _explain_failed_resolution(requirements, index_args, online.stderr)
        for wheel in dest.glob("*.whl"):
            if not (cache / wheel.name).exists():
                shutil.copy2(wheel, cache / wheel.name)
    wheels = sorted(dest.glob("*.whl"))
    impure = [w.name for w in wheels if not is_pure_wheel(w.name)]
    if impure:  # pip would not pick these with the pure-only tags; a guard against a misbehaving index
        raise NativeDependencyError(f"compiled wheels in the resolution: {', '.join(impure)}")
    return wheels


def _explain_failed_resolution(
    requirements: Sequence[Path], index_args: Sequence[str], pip_stderr: str
) -> None:
    """Turn a failed pure-only resolution into a message naming the compiled dependency, if there is one."""
    with tempfile.TemporaryDirectory() as probe:
        native = _pip(
            [
                "download",
                "--quiet",
                *index_args,
                "--dest",
                probe,
                *_platform_args(pure_only=False),
                *_requirement_args(requirements),
            ]
        )
        compiled = sorted(p.name for p in Path(probe).glob("*.whl") if not is_pure_wheel(p.name))
    names = ", ".join(str(r) for r in requirements)
    if native.returncode == 0 and compiled:
        raise NativeDependencyError(
            f"{names}: no pure-Python wheel for {', '.join(compiled)}. {PURE_PYTHON_REASON}"
        )
    tail = "\n".join(pip_stderr.strip().splitlines()[-5:])
    raise PackagingError(
        f"pip could not resolve {names} as wheels for python{LAMBDA_PYTHON} (offline and the cache "
        f"missing a wheel is a common cause; check network access to PyPI and the pins):\n{tail}"
    )


# --- artifacts -------------------------------------------------------------------------------------------


def lambda_requirements(lambdas_dir: Path, name: str) -> list[Path]:
    """The requirement files of one Lambda: its own plus the shared package's, when present."""
    return [
        p
        for p in (lambdas_dir / name / "requirements.txt", lambdas_dir / COMMON_PACKAGE / "requirements.txt")
        if p.is_file()
    ]


def lambda_code_entries(lambdas_dir: Path, name: str) -> dict[str, tuple[bytes, bool]]:
    """The Lambda's package and the shared package, each under its own folder at the zip root."""
    entries: dict[str, tuple[bytes, bool]] = {}
    for package in (name, COMMON_PACKAGE):
        root = lambdas_dir / package
        if not (root / "__init__.py").is_file():
            raise PackagingError(
                f"{root} is not a Python package (no __init__.py); the Lambda cannot import it"
            )
        files = collect_files(root)
        files = {
            rel: p
            for rel, p in files.items()
            if not (set(PurePosixPath(rel).parts[:-1]) & LAMBDA_JUNK_DIRS)
            and PurePosixPath(rel).name not in LAMBDA_JUNK_FILES
            and PurePosixPath(rel).parts[0] not in LAMBDA_JUNK_DIRS
        }
        entries.update(_entries_from(files, prefix=f"{package}/"))
    return entries


def build_lambda_zip(lambdas_dir: Path, name: str, cache: Path, index_args: Sequence[str] = ()) -> bytes:
    """One Lambda's deployment zip: its code, mlops_common and its pure-Python dependencies."""
    entries = lambda_code_entries(lambdas_dir, name)
    requirements = lambda_requirements(lambdas_dir, name)
    if requirements:
        with tempfile.TemporaryDirectory() as tmp:
            for wheel in download_wheels(requirements, Path(tmp), cache, index_args):
                unpacked = wheel_entries(wheel)
                check_no_native(unpacked, f"dependency {wheel.name} of {name}")
                check_requires_python(unpacked, f"dependency {wheel.name} of {name}")
                clash = sorted(set(unpacked) & set(entries))
                if clash:
                    raise PackagingError(f"{wheel.name} would overwrite {clash[0]} in the {name} zip")
                entries.update(unpacked)
    check_no_native(entries, f"the {name} Lambda")
    return deterministic_zip(entries)


def build_seed_zip(seed_dir: Path) -> bytes:
    """The seed repository's files at the zip root, byte-exact, without caches or build output."""
    if not seed_dir.is_dir():
        raise PackagingError(f"seed repository {seed_dir} not found")
    files = collect_files(seed_dir, skip=[(name,) for name in SEED_ROOT_JUNK])
    if not files:
        raise PackagingError(f"seed repository {seed_dir} has no files")
    return deterministic_zip(_entries_from(files, keep_exec=True))


def write_artifact(out: Path, name: str, data: bytes) -> Artifact:
    """Write the zip under its hashed name (only if missing or different) and describe it."""
    file_name, digest = hashed_file_name(name, data)
    target = out / file_name
    if not target.is_file() or target.read_bytes() != data:
        target.write_bytes(data)
    return Artifact(name=name, file=file_name, sha256=digest, size=len(data))


def remove_stale(out: Path, keep: Iterable[Artifact], names: Iterable[str]) -> None:
    """Delete zips of earlier builds of the same artifacts, so build/ holds one version of each."""
    current = {a.file for a in keep}
    for name in names:
        for old in out.glob(f"{name}-*.zip"):
            suffix = old.name[len(name) + 1 : -len(".zip")]
            if (
                old.name not in current
                and len(suffix) == HASH_LENGTH
                and all(c in "0123456789abcdef" for c in suffix)
            ):
                old.unlink()


def build_all(
    out: Path,
    repo_root: Path = REPO_ROOT,
    lambdas: Sequence[str] = LAMBDAS,
    seeds: Sequence[str] = SEEDS,
    index_args: Sequence[str] = (),
    log: Callable[[Artifact], None] | None = None,
) -> dict[str, dict[str, dict[str, str]]]:
    """Build every artifact into `out`, write manifest.json and return the manifest."""
    say: Callable[[Artifact], None] = log or (lambda artifact: None)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / WHEEL_CACHE
    built_lambdas = []
    for name in lambdas:
        artifact = write_artifact(out, name, build_lambda_zip(repo_root / "lambdas", name, cache, index_args))
        say(artifact)
        built_lambdas.append(artifact)
    built_seeds = []
    for name in seeds:
        artifact = write_artifact(out, name, build_seed_zip(repo_root / "seedcode" / name))
        say(artifact)
        built_seeds.append(artifact)
    remove_stale(out, [*built_lambdas, *built_seeds], [*lambdas, *seeds])
    manifest = manifest_dict(built_lambdas, built_seeds)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


class Progress:
    """Prints one line per artifact: name, hashed file, size."""

    def __call__(self, artifact: Artifact) -> None:
        print(
            f"  {artifact.name:<18} {artifact.file:<36} {artifact.size / 1024:>9.1f} KiB"
            f"  sha256 {artifact.sha256}",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Lambda and seed zips and build/manifest.json.")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "build", help="output folder (default: build)"
    )
    args = parser.parse_args(argv)
    print(f"Packaging into {args.out}", flush=True)
    try:
        build_all(args.out, log=Progress())
    except PackagingError as error:
        print(f"packaging failed: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {args.out / MANIFEST}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
