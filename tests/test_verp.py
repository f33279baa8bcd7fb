"""The tagged envelope sender (VERP): what a bounce's address names, and that
nobody without the secret key can make it name anything."""

from __future__ import annotations

import hashlib
import hmac
import re
import typing as t

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_confirm.mail.verp import derive_keys
from flask_confirm.mail.verp import MAC_LENGTH
from flask_confirm.mail.verp import ReturnPath

SECRET = "a-secret-key-of-the-tests"
PATH = ReturnPath.of("bounces@example.com", [SECRET])

#: What an SMTP server takes without SMTPUTF8 or quoting: a dot-atom.
DOT_ATOM = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)

ODD_ADDRESSES = [
    "ada@example.org",
    "Ada.Lovelace@Example.org",
    "ada+news@example.org",  # the tag's own separator, in the recipient's
    "ada+news+more@example.org",
    "a-b_c=d@example.org",  # the tag's other separators
    "o'brien@example.org",
    '"john doe"@example.org',  # quoted local parts, as the envelope has them
    '"a..b."@example.org',
    '"\\"quoted\\""@example.org',
    "ünal@xn--bcher-kva.example",  # SMTPUTF8 recipients
    "用户@xn--fsqu00a.xn--3lr804guic",
    "ada@[192.0.2.1]",  # a domain literal
    "ada_2b@example.org",  # looks like an escape
    ".ada@example.org",
]


@pytest.mark.parametrize("recipient", ODD_ADDRESSES)
def test_round_trip(recipient: str) -> None:
    address = PATH.address_for(recipient)
    assert PATH.recipient_of(address) == recipient
    assert PATH.recipient_of(f"<{address}>") == recipient


@pytest.mark.parametrize("recipient", ODD_ADDRESSES)
def test_tagged_address_is_a_plain_ascii_dot_atom(recipient: str) -> None:
    """No SMTPUTF8, no quoting, and no "+" or "%" after the base's own "+"
    that a server could route on."""
    address = PATH.address_for(recipient)
    local, _, domain = address.rpartition("@")
    assert domain == "example.com"
    assert local.isascii() and DOT_ATOM.fullmatch(local)
    base, plus, tag = local.partition("+")
    assert (base, plus) == ("bounces", "+")
    assert "+" not in tag and "%" not in tag


def test_readable_form() -> None:
    address = PATH.address_for("ada+news@example.org")
    assert re.fullmatch(
        rf"bounces\+ada_2bnews=example\.org-[a-z2-7]{{{MAC_LENGTH}}}@example\.com",
        address,
    )


def test_case_folded_on_the_way_still_reads() -> None:
    """Exim lowers local parts by default; the address that comes back is
    the same mailbox in practice, and still unforgeable."""
    address = PATH.address_for("Ada.Lovelace@Example.org")
    assert PATH.recipient_of(address.lower()) == "ada.lovelace@example.org"
    assert PATH.recipient_of(address.upper()) == "ADA.LOVELACE@EXAMPLE.ORG"


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.replace("ada", "eve", 1),  # another recipient, same MAC
        lambda a: a.replace("example.org", "example.net", 1),
        lambda a: (
            a[: a.index("@") - 1]
            + ("a" if a[a.index("@") - 1] != "a" else "b")
            + a[a.index("@") :]
        ),  # one character of the MAC
        lambda a: a.replace("-", "", 1),  # no MAC separator
        lambda a: a.replace("=", "_3d", 1),  # no domain separator
        lambda a: a.replace("bounces+", "other+", 1),  # another base
        lambda a: a.replace("@example.com", "@example.net"),
        lambda a: a.replace("bounces+", "bounces", 1),
        lambda a: a.replace("=", "=_zz", 1),  # a bad escape
        lambda a: a.replace("ada", "_ff", 1),  # not UTF-8
        lambda a: a.replace("ada", "a+da", 1),  # a character never written
        lambda a: a.rpartition("@")[0],  # no domain
        lambda a: "",
    ],
)
def test_tampered_or_garbled_names_nobody(change: t.Callable[[str], str]) -> None:
    address = PATH.address_for("ada@example.org")
    assert PATH.recipient_of(address) == "ada@example.org"
    assert PATH.recipient_of(change(address)) is None


def test_forged_with_another_key_names_nobody() -> None:
    forger = ReturnPath.of("bounces@example.com", ["not-the-secret"])
    assert PATH.recipient_of(forger.address_for("ada@example.org")) is None


def test_key_rotation_reads_old_tags_and_makes_new_ones() -> None:
    rotated = ReturnPath.of("bounces@example.com", [SECRET, "the-new-secret"])
    old = PATH.address_for("ada@example.org")
    new = rotated.address_for("ada@example.org")
    assert new != old
    assert rotated.recipient_of(old) == "ada@example.org"
    assert rotated.recipient_of(new) == "ada@example.org"
    assert PATH.recipient_of(new) is None


def test_keys_are_derived_for_their_purpose() -> None:
    """The tag key is not the secret key, nor another purpose's key."""
    (key,) = derive_keys([SECRET])
    login_key = hmac.new(SECRET.encode(), b"flask-confirm.login", hashlib.sha256)
    assert key not in (SECRET.encode(), login_key.digest())
    assert derive_keys([SECRET.encode()]) == (key,)
    assert len(key) == 32
    assert repr(PATH) == "ReturnPath(base='bounces@example.com')"  # no keys


def test_base_domain_in_any_case_and_with_a_final_dot() -> None:
    address = PATH.address_for("ada@example.org")
    local, _, _ = address.rpartition("@")
    assert PATH.recipient_of(f"{local}@EXAMPLE.COM.") == "ada@example.org"


addresses = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
    st.text(
        st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40
    ).filter(lambda d: "@" not in d),
)


@given(addresses)
def test_any_address_round_trips(recipient: str) -> None:
    address = PATH.address_for(recipient)
    assert address.isascii()
    assert DOT_ATOM.fullmatch(address.rpartition("@")[0])
    assert PATH.recipient_of(address) == recipient


def test_internationalised_base_domain_in_either_form() -> None:
    path = ReturnPath.of("bounces@xn--bcher-kva.example", [SECRET])
    address = path.address_for("ada@example.org")
    assert address.endswith("@xn--bcher-kva.example")
    local, _, _ = address.rpartition("@")
    assert path.recipient_of(address) == "ada@example.org"
    assert path.recipient_of(f"{local}@Bücher.example") == "ada@example.org"
