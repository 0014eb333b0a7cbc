"""docs/design.md's module map matches the code: each module imports only what the map allows,
and the Airflow-free ones load no Airflow at all."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "airflow_provider_flexinsights"
PREFIX = "airflow_provider_flexinsights"
ROW = re.compile(r"^\| `(?P<module>[a-z_]+)` \| (?P<owns>[^|]+) \|\s*(?P<may>[^|]*?)\s*\|$")


def module_map() -> dict[str, str]:
    """Module -> its 'may import' cell, from the table in docs/design.md."""
    text = (ROOT / "docs" / "design.md").read_text()
    return {m["module"]: m["may"].strip() for line in text.splitlines() if (m := ROW.match(line))}


def allowed(cell: str) -> tuple[set[str], str]:
    """The provider modules a cell names, and its Airflow rule: 'no', 'lazily' or 'yes'."""
    names = set(re.findall(r"`([a-z_]+)`", cell))
    airflow = "lazily" if "Airflow, lazily" in cell else "yes" if "Airflow" in cell else "no"
    return names, airflow


def files_of(module: str) -> list[Path]:
    folder = PACKAGE / module
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{module}.py"]


def imports_of(path: Path) -> tuple[set[str], set[str], set[str]]:
    """Provider modules imported anywhere, Airflow imported at module level, Airflow imported lazily."""
    tree = ast.parse(path.read_text())
    provider: set[str] = set()
    top_airflow: set[str] = set()
    lazy_airflow: set[str] = set()
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(f"{PREFIX}."):
                first = name.split(".")[1]
                if (PACKAGE / first).is_dir() or (PACKAGE / f"{first}.py").exists():
                    provider.add(first)
            elif name == "airflow" or name.startswith("airflow."):
                (top_airflow if id(node) in top_level else lazy_airflow).add(name)
    return provider, top_airflow, lazy_airflow


def test_the_map_names_every_module_and_nothing_else() -> None:
    on_disk = {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    on_disk |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert set(module_map()) == on_disk


@pytest.mark.parametrize("module", sorted(module_map()))
def test_each_module_imports_only_what_the_map_allows(module: str) -> None:
    names, airflow = allowed(module_map()[module])
    for path in files_of(module):
        provider, top_airflow, lazy_airflow = imports_of(path)
        own = {module} if (PACKAGE / module).is_dir() else set()
        assert provider - names - own == set(), f"{path.name} imports more than the map allows"
        if airflow == "no":
            assert top_airflow | lazy_airflow == set(), f"{path.name} imports Airflow"
        if airflow == "lazily":
            assert top_airflow == set(), f"{path.name} imports Airflow at module level"


def test_the_airflow_free_modules_load_no_airflow() -> None:
    """In a fresh interpreter: importing them (client, export, protocol...) loads no airflow module."""
    free = sorted(m for m, cell in module_map().items() if allowed(cell)[1] != "yes" and m != "emulator")
    assert {"client", "export", "protocol", "session", "api", "cli"} <= set(free)
    program = (
        "import sys\n"
        + "".join(f"import {PREFIX}.{m}\n" for m in free)
        + "print(sorted(n for n in sys.modules if n == 'airflow' or n.startswith('airflow.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, env=os.environ.copy()
    )
    assert done.stdout.strip() == "[]"
