"""Check that the running environment holds every floor pyproject.toml states.

``scripts/dev lowest`` installs with uv's ``lowest-direct`` resolution, then
runs this with the new environment's Python. A resolver may quietly pick a
version above a floor (no wheel of the floor for this Python, a conflict with
another floor); the suite would then pass on something else than what
pyproject.toml promises. So each requirement of the project, of its extras and
of the ``dev`` group must have a ``>=`` floor, and exactly that version must be
the one installed. Exits non-zero, naming each one that is not.

Usage: python scripts/check_floors.py path/to/pyproject.toml
"""

from __future__ import annotations

import collections.abc as cabc
import importlib.metadata
import sys
import typing as t
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on Python 3.10
    import tomli as tomllib

PROJECT = "flask-confirm"


def requirements(pyproject: dict[str, t.Any]) -> cabc.Iterator[str]:
    """Every requirement string the lowest leg installs."""
    project = pyproject["project"]
    yield from project["dependencies"]
    for extra in project.get("optional-dependencies", {}).values():
        yield from extra
    groups = pyproject.get("dependency-groups", {})

    def group(name: str) -> cabc.Iterator[str]:
        for item in groups[name]:
            if isinstance(item, dict):
                yield from group(item["include-group"])
            else:
                yield item

    yield from group("dev")


def problems(pyproject: dict[str, t.Any]) -> list[str]:
    found = []
    for text in requirements(pyproject):
        req = Requirement(text)
        if canonicalize_name(req.name) == PROJECT:
            continue  # the project itself, installed from the checkout
        if req.marker is not None and not req.marker.evaluate():
            continue
        floors = [s.version for s in req.specifier if s.operator == ">="]
        if not floors:
            found.append(f"{text}: no '>=' floor, so nothing says what is supported")
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{text}: not installed")
            continue
        if Version(installed) != Version(floors[0]):
            found.append(
                f"{text}: {installed} is installed, not the floor {floors[0]}"
                " (is the floor installable on this Python? raise it to the"
                " lowest version that is)"
            )
    return found


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    with path.open("rb") as f:
        found = problems(tomllib.load(f))
    python = ".".join(map(str, sys.version_info[:3]))
    if found:
        print(f"Floors not held on Python {python} ({path}):", file=sys.stderr)
        for line in found:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"Every floor in {path} is what is installed (Python {python}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
