"""Run a processing script the way its image would: only the image's packages and the job's files.

    python container_python.py --image LABEL --allow a,b,c --root DIR SCRIPT [ARGS...]

In a SageMaker processing container the script sees the image's installed packages, the standard
library and the files the job's inputs put under /opt/ml/processing (its own code input first on
sys.path, then PYTHONPATH as the job's Environment sets it). On this machine the host's
site-packages hold much more (moto, the SDK, this repository if installed): an import made by the
job's own code (a file under --root) of a top-level module that is neither standard library, nor in
the image's list (pipelines/local/images.py), nor found under --root fails here with
ModuleNotFoundError naming the image, as it would fail there. Imports made by libraries are not
checked (their own dependencies are in the image by construction).

Not reproduced: the image's Python version and package versions (the host's run), OS packages.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, ModuleType

_IMPORT_MACHINERY = ("<frozen importlib", str(Path(importlib.__file__).parent))


def _under(path: str, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def _importer(frame: FrameType | None) -> str | None:
    """File of the code that executes the import statement (the first frame outside importlib)."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_IMPORT_MACHINERY) and filename != __file__:
            return filename
        frame = frame.f_back
    return None


class ImageFinder(importlib.abc.MetaPathFinder):
    """Refuses, for the job's own code, top-level imports the image and the job's files cannot satisfy."""

    def __init__(self, image: str, allowed: frozenset[str], root: Path) -> None:
        self.image, self.allowed, self.root = image, allowed, root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if "." in fullname or fullname in self.allowed:
            return None
        if fullname in sys.stdlib_module_names or fullname in sys.builtin_module_names:
            return None
        importer = _importer(sys._getframe(1))
        if importer is None or not _under(importer, self.root):
            return None
        job_paths = [entry for entry in sys.path if entry and _under(entry, self.root)]
        spec = importlib.machinery.PathFinder.find_spec(fullname, job_paths)
        if spec is not None:
            return spec
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: the {self.image} image does not have it and the job's inputs do "
            f"not provide it (SageMaker uploads only the step's code file and inputs)",
            name=fullname,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--allow", default="")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("script", type=Path)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    root = options.root.resolve()
    allowed = frozenset(name for name in options.allow.split(",") if name)
    # As `python3 SCRIPT` in the container: the script's directory first, never this runner's.
    sys.path[0] = str(options.script.resolve().parent)
    sys.meta_path.insert(0, ImageFinder(options.image, allowed, root))
    sys.argv = [str(options.script), *options.args]
    runpy.run_path(str(options.script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
