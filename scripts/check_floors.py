"""The floors pyproject.toml states: as constraints, and checked once installed.

``scripts/dev lowest`` writes the floors as constraints (``name==floor``, one a
line, with ``--constraints``), installs with them and uv's ``lowest-direct``
resolution, then runs this again with the new environment's Python to check
them. Without the constraints a resolver may quietly pick a version above a
floor (no wheel of the floor for this Python, or a newer dependency of a
dependency that needs it), and the suite would pass on something else than
what pyproject.toml promises. So each requirement of the project, of its
extras and of the ``dev`` group must have a ``>=`` floor, and exactly that
version must be the one installed. Exits non-zero, naming each one that is
not.

Usage: python scripts/check_floors.py [--constraints] path/to/pyproject.toml
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


def floors(pyproject: dict[str, t.Any]) -> cabc.Iterator[tuple[str, str | None]]:
    """Each requirement (but the project itself) and its ``>=`` floor."""
    for text in requirements(pyproject):
        req = Requirement(text)
        if canonicalize_name(req.name) == PROJECT:
            continue  # the project itself, installed from the checkout
        if req.marker is not None and not req.marker.evaluate():
            continue
        found = [s.version for s in req.specifier if s.operator == ">="]
        yield text, found[0] if found else None


def constraints(pyproject: dict[str, t.Any]) -> list[str]:
    return [
        f"{Requirement(text).name}=={floor}"
        for text, floor in floors(pyproject)
        if floor is not None
    ]


def problems(pyproject: dict[str, t.Any]) -> list[str]:
    found = []
    for text, floor in floors(pyproject):
        req = Requirement(text)
        if floor is None:
            found.append(f"{text}: no '>=' floor, so nothing says what is supported")
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{text}: not installed")
            continue
        if Version(installed) != Version(floor):
            found.append(
                f"{text}: {installed} is installed, not the floor {floor}"
                " (is the floor installable on this Python? raise it to the"
                " lowest version that is)"
            )
    return found


def main() -> int:
    args = sys.argv[1:]
    emit = "--constraints" in args
    args = [a for a in args if a != "--constraints"]
    path = Path(args[0] if args else "pyproject.toml")
    with path.open("rb") as f:
        pyproject = tomllib.load(f)
    if emit:
        print("\n".join(constraints(pyproject)))
        return 0
    found = problems(pyproject)
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
