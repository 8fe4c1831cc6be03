"""Import a seed's top-level package (model-build's `pipelines`, model-deploy's `steps`) by location.

The seeds are separate projects: the repositories a new SageMaker project gets in GitLab. They are not
installed into the bundle's environment, because an installed copy would win over a pushed clone wherever a
sandbox CI job reaches the package through a console script. The benchmark and the bundle tests that run a
seed's own checks load its package from the seed directory instead: the package's `__path__` points there,
so its submodules and its own absolute imports (`from steps.common import ...`) resolve inside the seed, and
`sys.path` is left as it was.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Final

from scripts import REPO_ROOT

MODEL_BUILD_SEED: Final = REPO_ROOT / "seedcode" / "model-build"
MODEL_DEPLOY_SEED: Final = REPO_ROOT / "seedcode" / "model-deploy"


class SeedImportError(ImportError):
    """A seed package that cannot be imported, with what to do about it."""


def import_seed_package(seed_dir: Path, package: str) -> ModuleType:
    """The seed's package `package` imported from `seed_dir` (once per process), registered by its name."""
    init = seed_dir / package / "__init__.py"
    if not init.is_file():
        raise SeedImportError(f"{init} not found: is {seed_dir} a seed directory with a `{package}` package?")
    loaded = sys.modules.get(package)
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
        if origin is not None and Path(origin).resolve() == init.resolve():
            return loaded
        raise SeedImportError(
            f"a different `{package}` is already imported (from {origin or 'a namespace package'}); "
            "run the seed's code in a process that has not imported it"
        )
    spec = importlib.util.spec_from_file_location(
        package, init, submodule_search_locations=[str(init.parent)]
    )
    if spec is None or spec.loader is None:
        raise SeedImportError(f"{init} cannot be loaded as a package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[package]
        raise
    return module
