"""Typo suggestions for common consumer domains."""

from __future__ import annotations

import pytest

from conftest import AppFactory
from flask_confirm.suggestions import KNOWN
from flask_confirm.suggestions import POPULAR
from flask_confirm.suggestions import suggest


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("ada@gmial.com", "ada@gmail.com"),  # two letters swapped
        ("ada@gmail.con", "ada@gmail.com"),  # top-level domain
        ("ada@gmail.co", "ada@gmail.com"),
        ("ada@gmai.com", "ada@gmail.com"),  # a letter left out
        ("ada@gmaill.com", "ada@gmail.com"),  # one too many
        ("ada@gmail", "ada@gmail.com"),  # no top-level domain at all
        ("Ada.Lovelace@GMIAL.COM", "Ada.Lovelace@gmail.com"),  # local part kept
        ("ada@hotmial.com", "ada@hotmail.com"),
        ("ada@yaho.com", "ada@yahoo.com"),
        ("ada@outlok.com", "ada@outlook.com"),
        ("ada@icloud.co", "ada@icloud.com"),
        ("ada@yahoo.co.uj", "ada@yahoo.co.uk"),
        ("  ada@gmial.com ", "ada@gmail.com"),
    ],
)
def test_a_likely_typo_gets_a_suggestion(typed: str, suggested: str) -> None:
    assert suggest(typed) == suggested


@pytest.mark.parametrize(
    "typed",
    [
        *(f"ada@{domain}" for domain in sorted(KNOWN)),
        "ada@mail.com",  # a real domain one letter from gmail.com
        "ada@ymail.com",
        "ada@example.org",  # nothing like a consumer domain
        "ada@university.example.edu",
        "ada@gmx.fr",  # short: two edits from gmx.de is too far
        "ada@",
        "not an address",
        "",
    ],
)
def test_no_suggestion(typed: str) -> None:
    assert suggest(typed) is None


def test_popular_domains_are_known() -> None:
    assert set(POPULAR) <= KNOWN


def test_the_extension_suggests(make_app: AppFactory) -> None:
    app = make_app()
    assert app.extensions["confirm"].suggest("grace@gmial.com") == "grace@gmail.com"
