"""scripts/seed_packages.py: a seed's package imported by location, sys.path untouched."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.seed_packages import MODEL_DEPLOY_SEED, SeedImportError, import_seed_package

PACKAGE = "seedpkg_under_test"


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[Path]:
    """A seed with a package whose modules import each other absolutely, as the real seeds' do."""
    package = tmp_path / "seed" / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "common.py").write_text("NAME = 'from the seed'\n", encoding="utf-8")
    (package / "step.py").write_text(f"from {PACKAGE}.common import NAME\n", encoding="utf-8")
    yield package.parent
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def test_a_seed_package_and_its_absolute_imports_resolve_inside_the_seed_without_sys_path(seed: Path) -> None:
    before = list(sys.path)
    package = import_seed_package(seed, PACKAGE)
    step = __import__(f"{PACKAGE}.step", fromlist=["NAME"])
    assert step.NAME == "from the seed"
    assert step.__file__ is not None and Path(step.__file__).parent == seed / PACKAGE
    assert sys.path == before
    assert import_seed_package(seed, PACKAGE) is package


def test_a_same_named_package_from_elsewhere_is_refused_not_mixed(seed: Path, tmp_path: Path) -> None:
    import_seed_package(seed, PACKAGE)
    other = tmp_path / "other"
    (other / PACKAGE).mkdir(parents=True)
    (other / PACKAGE / "__init__.py").write_text("", encoding="utf-8")
    with pytest.raises(SeedImportError, match="a different `seedpkg_under_test` is already imported"):
        import_seed_package(other, PACKAGE)


def test_a_package_that_fails_to_import_is_not_left_half_registered(seed: Path) -> None:
    (seed / PACKAGE / "__init__.py").write_text("raise RuntimeError('broken seed')\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="broken seed"):
        import_seed_package(seed, PACKAGE)
    assert PACKAGE not in sys.modules


def test_a_directory_without_the_package_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(SeedImportError, match="steps/__init__.py not found"):
        import_seed_package(tmp_path, "steps")


def test_the_real_deploy_seed_loads_its_steps_package() -> None:
    steps = import_seed_package(MODEL_DEPLOY_SEED, "steps")
    assert steps.__file__ is not None and Path(steps.__file__).parent == MODEL_DEPLOY_SEED / "steps"
