"""docs/design.md's module map matches the code: each module imports only what the map allows,
every arrow points down (a row names only rows above it), and the Airflow-free ones load no
Airflow at all. ``PYTHONPATH=src python -m pytest tests/test_design.py`` is the one command."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_public_paths import MOVED

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "airflow_provider_flexinsights"
PREFIX = "airflow_provider_flexinsights"
ROW = re.compile(r"^\| `(?P<module>[a-z_.]+)` \| (?P<owns>[^|]+) \|\s*(?P<may>[^|]*?)\s*\|$")
SHIM = re.compile(
    r'^"""Compatibility path of 0\.2\.0: [^\n]*"""\n\nfrom (?P<home>[a-z_.]+) import \*  # noqa: F403\n$'
)


def module_map() -> dict[str, str]:
    """Module -> its 'may import' cell, from the table in docs/design.md, lower rooms first."""
    text = (ROOT / "docs" / "design.md").read_text()
    return {m["module"]: m["may"].strip() for line in text.splitlines() if (m := ROW.match(line))}


def allowed(cell: str) -> tuple[set[str], str]:
    """The provider modules a cell names, and its Airflow rule: 'no', 'lazily' or 'yes'."""
    names = set(re.findall(r"`([a-z_.]+)`", cell))
    airflow = "lazily" if "Airflow, lazily" in cell else "yes" if "Airflow" in cell else "no"
    return names, airflow


def shim_home(path: Path) -> str | None:
    """The module a 0.2.0 compatibility path re-exports, or None for real code."""
    match = SHIM.match(path.read_text())
    return match["home"] if match else None


def key_of(dotted: str, keys: set[str]) -> str | None:
    """The map row a module path (relative to the package) belongs to: itself or its folder."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if (candidate := ".".join(parts[:end])) in keys:
            return candidate
    return None


def files_of(module: str) -> list[Path]:
    folder = PACKAGE.joinpath(*module.split("."))
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]


def imports_of(path: Path, keys: set[str]) -> tuple[set[str], set[str], set[str]]:
    """Map rows imported anywhere, Airflow imported at module level, Airflow imported lazily."""
    tree = ast.parse(path.read_text())
    provider: set[str] = set()
    top_airflow: set[str] = set()
    lazy_airflow: set[str] = set()
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg.library import protocol`` imports ``library.protocol``, not ``library``
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.startswith(f"{PREFIX}."):
                if key := key_of(name.removeprefix(f"{PREFIX}."), keys):
                    provider.add(key)
                    break
            elif name == "airflow" or name.startswith("airflow."):
                (top_airflow if id(node) in top_level else lazy_airflow).add(name)
    return provider, top_airflow, lazy_airflow


def modules_on_disk() -> tuple[set[str], dict[str, str]]:
    """Rows the code calls for (a folder of one role, or a module), and the 0.2.0 paths -> homes."""
    keys = set(module_map())
    rows: set[str] = set()
    shims: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        dotted = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if (home := shim_home(path)) is not None:
            shims[dotted] = home.removeprefix(f"{PREFIX}.")
        elif path.stem not in ("__init__", "__main__"):
            rows.add(key_of(dotted, keys) or dotted)
    return rows, shims


def test_the_map_names_every_module_and_nothing_else() -> None:
    rows, shims = modules_on_disk()
    assert set(module_map()) == rows
    strip = len(PREFIX) + 1
    assert shims == {old[strip:]: new[strip:] for old, new in MOVED.items()}


@pytest.mark.parametrize("module", sorted(module_map()))
def test_each_module_imports_only_what_the_map_allows(module: str) -> None:
    keys = set(module_map())
    names, airflow = allowed(module_map()[module])
    for path in files_of(module):
        if shim_home(path) is not None:
            continue  # transfers/columns.py: checked by the test above
        provider, top_airflow, lazy_airflow = imports_of(path, keys)
        assert provider - names - {module} == set(), f"{path.name} imports more than the map allows"
        if airflow == "no":
            assert top_airflow | lazy_airflow == set(), f"{path.name} imports Airflow"
        if airflow == "lazily":
            assert top_airflow == set(), f"{path.name} imports Airflow at module level"


def test_every_arrow_points_down() -> None:
    """A row may name only rows above it: the library never imports the glue, operators never
    import transfers, nothing imports the CLI. With the test above, the code's imports agree."""
    order = list(module_map())
    for rank, module in enumerate(order):
        names, _ = allowed(module_map()[module])
        upward = {name for name in names - {module} if name not in order[:rank]}
        assert upward == set(), f"{module} names rows below or beside it: {sorted(upward)}"
    library = [m for m in order if m.startswith("library.")]
    assert order[: len(library)] == library, "the library is the lowest room"


def test_the_airflow_free_modules_load_no_airflow() -> None:
    """In a fresh interpreter: importing them (client, export, protocol...) loads no airflow module."""
    free = sorted(m for m, cell in module_map().items() if allowed(cell)[1] != "yes" and m != "emulator")
    assert {m for m in module_map() if m.startswith("library.")} | {"cli"} <= set(free)
    program = (
        "import sys\n"
        + "".join(f"import {PREFIX}.{m}\n" for m in free)
        + "print(sorted(n for n in sys.modules if n == 'airflow' or n.startswith('airflow.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, env=os.environ.copy()
    )
    assert done.stdout.strip() == "[]"
