"""integration/ stays pure: only store, queue, config and cli touch frameworks, drivers and the environment.

The core (model, policy, workflow, ...) imports nothing but the standard library, jinja2 and
holidays, and no infrastructure module of its own package. Everything else in integration/
(the worker, the sweep, logs, forms, ...) may use the infrastructure modules, but imports no
web framework, helpdesk client, HTTP library, database or queue library itself, and never
reads os.environ.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "integration"
CORE = ["model", "policy", "workflow", "calendar", "service", "codec", "ports", "references"]
# Where frameworks, drivers and the environment are allowed (modules or packages).
INFRASTRUCTURE = {"store", "queue", "config", "cli"}
FORBIDDEN = {"flask", "werkzeug", "gunicorn", "zenpy", "jira", "requests", "sqlalchemy", "alembic", "huey", "redis"}
OUTSIDE = {"adapters", "webhooks"}


def _modules() -> list[str]:
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0].removesuffix(".py") not in INFRASTRUCTURE:
            names.append(str(relative))
    return names


def _imports(path: Path) -> tuple[ast.Module, set[str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    return tree, imported


def test_every_module_outside_the_infrastructure_is_checked() -> None:
    checked = _modules()
    assert {f"{m}.py" for m in CORE} <= set(checked)
    assert "processing.py" in checked and "sweep.py" in checked
    assert not [m for m in checked if m.startswith(("store", "cli", "migrations"))]


@pytest.mark.parametrize("module", _modules())
def test_module_uses_no_framework_driver_or_environment(module: str) -> None:
    tree, imported = _imports(ROOT / module)
    assert not imported & FORBIDDEN, f"integration/{module} imports {sorted(imported & FORBIDDEN)}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "environ":
            pytest.fail(f"integration/{module} reads os.environ")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getenv":
            pytest.fail(f"integration/{module} reads the environment")


@pytest.mark.parametrize("module", CORE)
def test_core_module_is_pure(module: str) -> None:
    tree, imported = _imports(ROOT / f"{module}.py")
    assert not imported & (FORBIDDEN | OUTSIDE), f"integration/{module}.py imports {sorted(imported & FORBIDDEN)}"
    # integration.* imports must stay inside the core, never the infrastructure modules.
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("integration."):
            assert node.module.split(".")[1] in CORE, f"{module} imports {node.module}"
