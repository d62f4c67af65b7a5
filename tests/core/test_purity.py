"""The pure core imports nothing but the standard library, jinja2 and holidays."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = ["model", "policy", "workflow", "calendar", "service", "codec", "ports", "references"]
FORBIDDEN = {"flask", "zenpy", "jira", "requests", "sqlalchemy", "huey", "adapters", "webhooks"}
ROOT = Path(__file__).resolve().parents[2] / "integration"


@pytest.mark.parametrize("module", CORE)
def test_core_module_is_pure(module: str) -> None:
    source = (ROOT / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Attribute) and node.attr == "environ":
            pytest.fail(f"integration/{module}.py reads os.environ")
    assert not imported & FORBIDDEN, f"integration/{module}.py imports {sorted(imported & FORBIDDEN)}"
    # integration.* imports must stay inside the core, never the infrastructure modules.
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("integration."):
            assert node.module.split(".")[1] in CORE, f"{module} imports {node.module}"
