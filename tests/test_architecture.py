"""Imports point one way (docs/architecture.md); import-linter states the contracts in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(path.parent.name for path in ROOT.glob("*/__init__.py") if path.parent.name not in {"tests", "xsd"})


def test_the_import_contracts_cover_every_package():
    import tomllib

    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert sorted(settings["root_packages"]) == PACKAGES
    [layers] = [contract for contract in settings["contracts"]
                if contract["type"] == "layers" and not contract.get("containers")]
    named = {part.strip().split(".")[0] for layer in layers["layers"] for part in layer.split("|")}
    assert named == set(PACKAGES), "every package has its place in the one layering"


def test_import_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), "import-linter is part of the test extra"
    result = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_domain_model_imports_nothing_but_eventsourcing_domain():
    import ast

    tree = ast.parse((ROOT / "hub" / "declarations" / "domainmodel.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert imported <= {"__future__", "typing", "uuid", "eventsourcing.domain"}, imported


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).parent / "ruff"
    assert ruff.exists(), "ruff is part of the test extra"
    result = subprocess.run([str(ruff), "check", *PACKAGES, "tests"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
