"""Package the trained model with its inference code: the model.tar.gz the registry points at.

Runs in the scikit-learn processing image (standard library only). The built-in XGBoost training
job writes model.tar.gz with `xgboost-model` at its root; this adds `code/inference.py` and
`code/features.py` so the XGBoost image serves it in script mode. The deploy template creates the
model with EnableNetworkIsolation: the container cannot download a source tarball from S3 at run
time (the SageMaker Python SDK repacks entry points into model.tar.gz for the same reason), and it
cannot pip-install a requirements.txt either, so the code directory must not carry one.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path

MODEL_FILE = "xgboost-model"
CODE_DIR = "code"
ENTRY_POINT = "inference.py"
REQUIRED_CODE = (ENTRY_POINT, "features.py")
ARCHIVE = "model.tar.gz"


class PackagingError(ValueError):
    """The model or its code cannot be packaged; the message says which file is wrong."""


def find_archive(path: Path) -> Path:
    """The training job's model.tar.gz: the path itself or the one archive inside a directory."""
    if path.is_file():
        return path
    archives = sorted(path.rglob("*.tar.gz"))
    if len(archives) != 1:
        raise PackagingError(f"expected one model.tar.gz under {path}, found {[a.name for a in archives]}")
    return archives[0]


def read_model(archive: Path) -> bytes:
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and Path(m.name).name == MODEL_FILE), None)
        source = tar.extractfile(member) if member is not None else None
        if source is None:
            raise PackagingError(f"{archive.name} has no {MODEL_FILE}: it is not the built-in XGBoost's output")
        return source.read()


def code_files(code_dir: Path) -> list[Path]:
    """The Python files to ship under code/ (flat: the container installs them as top-level modules)."""
    if (code_dir / "requirements.txt").exists():
        raise PackagingError(
            "requirements.txt in the model code: the network-isolated endpoint cannot pip-install it; "
            "use only the serving image's packages"
        )
    files = sorted(p for p in code_dir.iterdir() if p.is_file() and p.suffix == ".py")
    missing = sorted(set(REQUIRED_CODE) - {p.name for p in files})
    if missing:
        raise PackagingError(f"the model code in {code_dir} lacks {', '.join(missing)}")
    return files


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def package(model: bytes, code: list[Path]) -> bytes:
    """model.tar.gz bytes: xgboost-model at the root, the code under code/ (same input, same bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, MODEL_FILE, model)
        for path in code:
            _add(tar, f"{CODE_DIR}/{path.name}", path.read_bytes())
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="/opt/ml/processing/model", help="the training job's model.tar.gz")
    parser.add_argument("--code-dir", default="/opt/ml/processing/input/model-code", help="inference.py, features.py")
    parser.add_argument("--output-dir", default="/opt/ml/processing/packaged")
    args = parser.parse_args(argv)
    try:
        archive = find_archive(Path(args.model_dir))
        payload = package(read_model(archive), code_files(Path(args.code_dir)))
    except (PackagingError, tarfile.TarError, OSError) as error:
        print(f"package_model: {error}", file=sys.stderr)
        return 2
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / ARCHIVE).write_bytes(payload)
    print(f"package_model: {ARCHIVE} with {MODEL_FILE} and {CODE_DIR}/ ({len(payload)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
