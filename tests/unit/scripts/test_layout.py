"""The layout rules scripts/__init__.py states, checked on the source: the admin tooling stands alone.

init.sh installs the bundle into an environment that holds boto3, botocore and PyYAML and nothing else (see
its "Python with boto3 and PyYAML" step), then runs `python -m scripts.admin.bootstrap`. So every module the
admin tooling imports, followed through the bundle's own modules, must resolve there: the standard library,
those three distributions, and the bundle's code outside the development harness.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from scripts import REPO_ROOT

ADMIN = REPO_ROOT / "scripts" / "admin"
# The pins init.sh installs, by import name, and pip, which every venv holds (packaging runs it).
BOOTSTRAP_ENV = frozenset({"boto3", "botocore", "yaml", "pip"})
BUNDLE_ROOTS = {"scripts": REPO_ROOT / "scripts", "mlops_common": REPO_ROOT / "lambdas" / "mlops_common"}
HARNESS = (
    "scripts.iam",
    "scripts.sandbox",
    "scripts.gitlab_standin",
    "scripts.bench_model",
    "scripts.seed_packages",
)


def imported_modules(path: Path) -> Iterator[str]:
    """Absolute names of every module `path` imports, at top level or inside functions.

    An import tried under `except ImportError` is optional and left out (its fallback is walked). A relative
    import is reported as `<relative>`: the bundle's tooling imports absolutely, so the walk never has to
    guess a package.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    optional = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.Try)
        and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield "<relative>"
                continue
            yield node.module or ""
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def module_file(name: str) -> Path | None:
    """The bundle's source file for module `name`, or None when `name` is not a module of the bundle."""
    root, _, rest = name.partition(".")
    if root not in BUNDLE_ROOTS:
        return None
    base = BUNDLE_ROOTS[root].joinpath(*rest.split(".")) if rest else BUNDLE_ROOTS[root]
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None  # a name imported from a module (`from scripts import REPO_ROOT`), not a module


def admin_closure() -> dict[str, set[str]]:
    """Every module the admin tooling reaches, by importer file."""
    pending = sorted(ADMIN.rglob("*.py"))
    seen: dict[str, set[str]] = {}
    while pending:
        path = pending.pop()
        key = str(path.relative_to(REPO_ROOT))
        if key in seen:
            continue
        seen[key] = set(imported_modules(path))
        pending.extend(found for name in seen[key] if (found := module_file(name)) is not None)
    return seen


def test_the_admin_tooling_imports_nothing_of_the_development_harness() -> None:
    reached = {
        f"{importer} imports {name}"
        for importer, names in admin_closure().items()
        for name in names
        if name.startswith(HARNESS)
    }
    assert not reached


def test_the_admin_tooling_needs_only_what_init_sh_installs() -> None:
    closure = admin_closure()
    outside = {
        f"{importer} imports {name}"
        for importer, names in closure.items()
        for name in names
        if (top := name.partition(".")[0]) not in sys.stdlib_module_names
        and top not in BOOTSTRAP_ENV
        and top not in BUNDLE_ROOTS
    }
    assert not outside
    # The closure really follows the bundle's own imports: the bootstrap reaches the shared contract.
    assert "lambdas/mlops_common/contract.py" in closure


def test_the_import_walk_sees_imports_inside_functions_and_refuses_relative_ones(tmp_path: Path) -> None:
    workflow = set(imported_modules(ADMIN / "bootstrap" / "workflow.py"))
    assert "scripts.admin.render_template" in workflow  # imported inside a function
    sample = tmp_path / "sample.py"
    sample.write_text("from . import sibling\n\ndef f():\n    import moto.server\n", encoding="utf-8")
    assert list(imported_modules(sample)) == ["<relative>", "moto.server"]
