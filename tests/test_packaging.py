"""What the package index shows: the license, the project URLs, the Python
classifiers and the README's links. (scripts/check_dist.py checks the built
sdist and wheel themselves, in CI.)"""

from __future__ import annotations

import re
import sys
import typing as t
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "https://github.com/flask-confirm/flask-confirm"
#: The target of a Markdown link or image, ``[text](target)``.
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def pyproject() -> dict[str, t.Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def assert_in_repository(url: str) -> None:
    """A URL into this repository names a file or folder that exists."""
    assert url == REPOSITORY or url.startswith(f"{REPOSITORY}/"), url
    match = re.match(rf"{re.escape(REPOSITORY)}/(?:blob|tree)/main/([^#?]+)", url)
    if match:
        assert (ROOT / match.group(1)).exists(), url


def test_license_file_is_bsd_3_clause() -> None:
    project = pyproject()["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text("utf-8")
    assert re.match(r"Copyright \d{4} Flask-Confirm developers\n", text)
    # The third clause is what makes it BSD-3-Clause.
    assert "Neither the name of the copyright holder nor the names of its" in text


def test_readme_links_work_on_the_package_index() -> None:
    # The index page shows the README without the repository around it: a
    # relative link such as docs/json.rst leads nowhere there.
    links = MARKDOWN_LINK.findall((ROOT / "README.md").read_text("utf-8"))
    assert links
    for link in links:
        assert link.startswith("https://"), f"not an absolute link: {link}"
        if link.startswith(REPOSITORY):
            assert_in_repository(link)


def test_project_urls_are_the_repository() -> None:
    urls = pyproject()["project"]["urls"]
    assert {"Documentation", "Changes", "Source"} <= set(urls)
    for url in urls.values():
        assert_in_repository(url)


def test_python_classifiers_follow_requires_python_and_tox() -> None:
    project = pyproject()["project"]
    classified = sorted(
        (
            Version(c.rsplit(" ", 1)[1])
            for c in project["classifiers"]
            if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
        ),
    )
    assert classified, "no Python version classifiers"
    requires = SpecifierSet(project["requires-python"])
    (floor,) = (s.version for s in requires if s.operator == ">=")
    assert classified[0] == Version(floor)
    assert all(str(v) in requires for v in classified)
    # tox's envlist, e.g. py3{13,12,11,10}, runs the suite on each of them.
    tox = (ROOT / "tox.ini").read_text("utf-8")
    minors = re.search(r"envlist = py3\{([\d,]+)\}", tox)
    assert minors is not None
    tested = sorted(Version(f"3.{m}") for m in minors.group(1).split(","))
    assert classified == tested
