from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pipelines.abalone import package_model, pipeline

SEED_CODE = Path(pipeline.BASE_DIR)


def training_output(tmp_path: Path, member: str = "xgboost-model") -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    with tarfile.open(model_dir / "model.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = 5
        tar.addfile(info, io.BytesIO(b"model"))
    return model_dir


def code_dir(tmp_path: Path) -> Path:
    code = tmp_path / "model-code"
    code.mkdir()
    for name in pipeline.MODEL_CODE:
        (code / name).write_bytes((SEED_CODE / name).read_bytes())
    return code


def test_the_packaged_archive_has_the_model_at_its_root_and_the_code_under_code(tmp_path):
    out = tmp_path / "out"
    assert (
        package_model.main(
            [
                "--model-dir",
                str(training_output(tmp_path)),
                "--code-dir",
                str(code_dir(tmp_path)),
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    with tarfile.open(out / "model.tar.gz") as tar:
        names = sorted(tar.getnames())
        assert tar.extractfile("xgboost-model").read() == b"model"
        assert tar.extractfile("code/inference.py").read() == (SEED_CODE / "inference.py").read_bytes()
    assert names == ["code/features.py", "code/inference.py", "xgboost-model"]
    again = tmp_path / "again"
    package_model.main(
        ["--model-dir", str(tmp_path / "model"), "--code-dir", str(tmp_path / "model-code"), "--output-dir", str(again)]
    )
    assert (again / "model.tar.gz").read_bytes() == (out / "model.tar.gz").read_bytes()


def test_a_requirements_file_is_refused_because_the_isolated_endpoint_cannot_install_it(tmp_path, capsys):
    code = code_dir(tmp_path)
    (code / "requirements.txt").write_text("lightgbm\n")
    assert (
        package_model.main(
            [
                "--model-dir",
                str(training_output(tmp_path)),
                "--code-dir",
                str(code),
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "network-isolated endpoint cannot pip-install" in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["no model", "no entry point"])
def test_missing_pieces_are_named(problem, tmp_path, capsys):
    model = training_output(tmp_path, "other" if problem == "no model" else "xgboost-model")
    code = code_dir(tmp_path)
    if problem == "no entry point":
        (code / "inference.py").unlink()
    assert (
        package_model.main(["--model-dir", str(model), "--code-dir", str(code), "--output-dir", str(tmp_path / "o")])
        == 2
    )
    assert ("has no xgboost-model" if problem == "no model" else "lacks inference.py") in capsys.readouterr().err
