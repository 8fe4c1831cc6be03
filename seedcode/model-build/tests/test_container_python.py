"""Processing scripts see only their image's packages and their job's files, as in SageMaker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.local import container_python, images

SEED = Path(__file__).resolve().parents[1]
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"


def run(tmp_path: Path, script: str, pythonpath: str = "") -> subprocess.CompletedProcess[str]:
    root = tmp_path / "processing"
    (root / "input" / "code").mkdir(parents=True, exist_ok=True)
    (root / "input" / "lib").mkdir(parents=True, exist_ok=True)
    (root / "input" / "lib" / "helper.py").write_text("VALUE = 7\n")
    (root / "input" / "lib" / "features.py").write_bytes((SEED / "pipelines" / "abalone" / "features.py").read_bytes())
    path = root / "input" / "code" / "job.py"
    path.write_text(script)
    label, packages = images.image_packages(SKLEARN)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [
        sys.executable,
        container_python.__file__,
        "--image",
        label,
        "--allow",
        ",".join(packages),
        "--root",
        str(root),
        str(path),
        "--flag",
        "x",
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def test_the_image_packages_the_jobs_files_and_the_standard_library_import(tmp_path):
    done = run(
        tmp_path,
        "import json, sys, numpy, pandas\nimport helper\nprint(helper.VALUE, sys.argv[1:])\n",
        pythonpath=str(tmp_path / "processing" / "input" / "lib"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7 ['--flag', 'x']"


def test_a_package_the_image_lacks_fails_naming_the_image(tmp_path):
    done = run(tmp_path, "import moto\n")
    assert done.returncode != 0
    assert "No module named 'moto': the sagemaker-scikit-learn:1.4-2 image does not have it" in done.stderr


def test_this_repository_installed_on_the_host_is_not_visible_to_the_job(tmp_path):
    # as after `pip install -e .`: pipelines/ importable on the host, but SageMaker uploads only the code file
    done = run(tmp_path, "from pipelines.abalone import features\n", pythonpath=str(SEED))
    assert done.returncode != 0
    assert "No module named 'pipelines'" in done.stderr


def test_the_seed_scripts_import_nothing_the_sklearn_image_lacks(tmp_path):
    for name in ("preprocess.py", "package_model.py"):
        source = (SEED / "pipelines" / "abalone" / name).read_text().replace('if __name__ == "__main__":', "if False:")
        done = run(tmp_path, source, pythonpath=str(tmp_path / "processing" / "input" / "lib"))
        assert done.returncode == 0, (name, done.stderr)
