"""The documentation: every configuration key is documented, in the Sphinx docs
and in the README, and the docs build without a single warning."""

from __future__ import annotations

import re
from pathlib import Path

from sphinx.cmd.build import build_main

from flask_confirm.config import Keys

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: ``.. data:: CONFIRM_X`` (or ``.. py:data::``) at the start of a line.
DATA_ENTRY = re.compile(r"^\.\. (?:py:)?data:: (CONFIRM_\w+)\s*$", re.MULTILINE)
#: A table row whose first cell is a ``CONFIRM_*`` key in backticks.
README_ROW = re.compile(r"^\|\s*`(CONFIRM_\w+)`\s*\|", re.MULTILINE)


def declared_keys() -> set[str]:
    """The key names declared as constants of :class:`Keys`."""
    return {
        value
        for name, value in vars(Keys).items()
        if not name.startswith("_") and isinstance(value, str)
    }


def disagreement(where: str, documented: list[str]) -> str:
    """A failure message naming each key missing on either side."""
    declared = declared_keys()
    lines = [f"{where} and flask_confirm.config.Keys disagree."]
    if missing := sorted(declared - set(documented)):
        lines.append(f"Declared in Keys but not in {where}: {', '.join(missing)}")
    if unknown := sorted(set(documented) - declared):
        lines.append(f"In {where} but not declared in Keys: {', '.join(unknown)}")
    if twice := sorted({key for key in documented if documented.count(key) > 1}):
        lines.append(f"In {where} more than once: {', '.join(twice)}")
    return "\n".join(lines)


def test_keys_are_all_confirm_keys() -> None:
    # The checks below look for CONFIRM_* names only.
    assert declared_keys()
    assert all(key.startswith("CONFIRM_") for key in declared_keys())


def test_config_page_documents_every_key() -> None:
    documented = DATA_ENTRY.findall((DOCS / "config.rst").read_text("utf-8"))
    assert sorted(documented) == sorted(declared_keys()), disagreement(
        "docs/config.rst (.. data:: entries)", documented
    )


def test_readme_table_lists_every_key() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = re.search(r"^## Configuration\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert section is not None, "README.md has no '## Configuration' section."
    documented = README_ROW.findall(section.group(1))
    assert sorted(documented) == sorted(declared_keys()), disagreement(
        "the README's configuration table", documented
    )


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    status = build_main(
        ["-W", "--keep-going", "-b", "html", "-q", str(DOCS), str(tmp_path)]
    )
    assert status == 0, "sphinx-build failed; its warnings are in the stderr above."
    assert (tmp_path / "config.html").is_file()
