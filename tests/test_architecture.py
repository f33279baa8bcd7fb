"""The layer contract (``[tool.importlinter]`` in pyproject.toml, checked by
``scripts/dev lint``) covers every module, and breaks when it should."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import flask_confirm

if sys.version_info >= (3, 11):
    import tomllib
else:  # import-linter needs tomli there, so it is installed
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(flask_confirm.__file__).resolve().parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def layered_modules() -> set[str]:
    (layers,) = [c["layers"] for c in contracts() if c["type"] == "layers"]
    assert isinstance(layers, list)
    names = set()
    for layer in layers:
        for part in layer.replace("|", ":").split(":"):
            names.add(part.strip())
    return names


def test_every_module_has_a_layer() -> None:
    """A module outside every layer could import the facade unnoticed: each
    module and sub-package of the package is in one."""
    found = {
        f"flask_confirm.{path.stem if path.is_file() else path.name}"
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert found - layered_modules() == set()
    assert layered_modules() - found == set()


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_contract_holds() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "anchor", "added", "broken"),
    [
        # An entry point reaching for the facade.
        ("web/confirm.py", "from .. import links\n", "from .. import extension\n", 2),
        # A service importing an entry point.
        ("delivery.py", "from . import signals\n", "from . import tasks\n", 2),
        # Two services importing each other: a cycle.
        ("store.py", "from . import signals\n", "from . import links\n", 2),
        # Siblings in one package importing each other, in one layer.
        ("web/answers.py", "from ..i18n import render\n", "from . import confirm\n", 1),
    ],
)
def test_the_contract_breaks(
    tmp_path: Path, module: str, anchor: str, added: str, broken: int
) -> None:
    """The contract is not vacuous: an import against it, in a copy of the
    package, breaks it."""
    shutil.copytree(PACKAGE, tmp_path / "flask_confirm")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / "flask_confirm" / module
    source = path.read_text()
    assert anchor in source
    path.write_text(source.replace(anchor, anchor + added, 1))
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert f"{2 - broken} kept, {broken} broken" in result.stdout
