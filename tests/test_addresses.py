"""``normalize_email``: what the resend form accepts, in what form, and what
it refuses with which message."""

from __future__ import annotations

import unicodedata

import email_validator
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from conftest import DNSServer
from flask_confirm import ConfirmError
from flask_confirm.addresses import _canonical_by_validating
from flask_confirm.addresses import canonical_email
from flask_confirm.addresses import check_deliverable
from flask_confirm.addresses import InvalidEmail
from flask_confirm.addresses import MAX_LENGTH
from flask_confirm.addresses import MAX_LOCAL_LENGTH
from flask_confirm.addresses import normalize_email

NOT_AN_ADDRESS = "That does not look like an email address."
TOO_LONG = "That email address is too long."
BAD_DOMAIN = "The domain of that address is not valid."
EMPTY = "Please enter your email address."
MESSAGES = {NOT_AN_ADDRESS, TOO_LONG, BAD_DOMAIN, EMPTY}


def domain_of(length: int) -> str:
    """A valid ASCII domain of exactly ``length`` characters, labels <= 63."""
    body = length - len(".org")  # labels and the dots between them
    sizes = []
    while body > 64:
        sizes.append(63)
        body -= 64
    sizes += [62, 1] if body == 64 else [body]
    labels = [chr(ord("a") + i) * size for i, size in enumerate(sizes)]
    domain = ".".join([*labels, "org"])
    assert len(domain) == length, (length, len(domain))
    return domain


#: 64 + 1 + 189 = 254 characters: the longest address.
LONGEST = "l" * 64 + "@" + domain_of(189)


ACCEPTED = {
    "plain": ("ada@example.org", "ada@example.org"),
    "domain-lowered": ("ada@Example.ORG", "ada@example.org"),
    "local-kept": ("Ada.Lovelace@example.org", "Ada.Lovelace@example.org"),
    "spaces-stripped": ("  ada@example.org  ", "ada@example.org"),
    "tabs-stripped": ("\tada@example.org\t", "ada@example.org"),
    "plus-tag": ("ada+news@example.org", "ada+news@example.org"),
    "dots-and-symbols": ("a.b-c_d!#$%&'*/=?^`{|}~@example.org", None),
    "subdomain": ("ada@mail.eu.example.co.uk", "ada@mail.eu.example.co.uk"),
    "digits-in-domain": ("ada@123.example.org", "ada@123.example.org"),
    "hyphen-inside-label": ("ada@ex-ample.org", "ada@ex-ample.org"),
    "one-char-local-and-labels": ("a@b.co", "a@b.co"),
    "idn": ("user@bücher.example", "user@bücher.example"),
    "idn-upper": ("user@BÜCHER.Example", "user@bücher.example"),
    # One stored form for a domain: its Unicode one, however it was typed.
    "idn-punycode": ("user@xn--bcher-kva.example", "user@bücher.example"),
    "idn-punycode-upper": ("user@XN--BCHER-KVA.Example", "user@bücher.example"),
    "idn-cjk": ("user@例え.テスト", "user@例え.テスト"),
    "non-ascii-local": ("ÜNAL@Example.ORG", "ÜNAL@example.org"),
    "non-ascii-local-kept": ("ünal@example.org", "ünal@example.org"),
    "longest": (LONGEST, LONGEST),
    "longest-local": ("l" * 64 + "@example.org", "l" * 64 + "@example.org"),
    # 32 two-octet characters: 64 octets, the most a local part may hold.
    "longest-local-non-ascii": ("ü" * 32 + "@example.org", "ü" * 32 + "@example.org"),
    "longest-label": (
        "ada@" + "x" * 63 + ".org",
        "ada@" + "x" * 63 + ".org",
    ),
}


@pytest.mark.parametrize(
    ("raw", "expected"), list(ACCEPTED.values()), ids=list(ACCEPTED)
)
def test_accepted(raw: str, expected: str | None) -> None:
    assert normalize_email(raw) == (raw if expected is None else expected)


def test_longest_is_254() -> None:
    assert len(LONGEST) == MAX_LENGTH == 254
    assert len(LONGEST.split("@")[0]) == MAX_LOCAL_LENGTH == 64
    assert max(len(label) for label in LONGEST.split("@")[1].split(".")) <= 63


#: Three labels of 56 "ü": 174 characters, but 192 in IDNA form.
LONG_IDN = "l" * 64 + "@" + ".".join(["ü" * 56] * 3 + ["org"])

REJECTED = {
    "empty": ("", EMPTY),
    "blank": ("   ", EMPTY),
    "tab-only": ("\t", EMPTY),
    # Line breaks and NUL are refused wherever they are, before stripping.
    "trailing-crlf": ("ada@example.org\r\n", NOT_AN_ADDRESS),
    "leading-lf": ("\nada@example.org", NOT_AN_ADDRESS),
    "cr": ("ada@example.org\r", NOT_AN_ADDRESS),
    "crlf-bcc": ("ada@example.org\r\nBcc: eve@example.org", NOT_AN_ADDRESS),
    "lf-in-local": ("ad\na@example.org", NOT_AN_ADDRESS),
    "nul": ("ada@exa\x00mple.org", NOT_AN_ADDRESS),
    "trailing-nul": ("ada@example.org\x00", NOT_AN_ADDRESS),
    "only-crlf": ("\r\n", NOT_AN_ADDRESS),
    # Whitespace and control characters inside.
    "space-in-local": ("ada lovelace@example.org", NOT_AN_ADDRESS),
    "space-in-domain": ("ada@exam ple.org", NOT_AN_ADDRESS),
    "space-around-at": ("ada @ example.org", NOT_AN_ADDRESS),
    "tab-inside": ("ada\t@example.org", NOT_AN_ADDRESS),
    "vertical-tab": ("ada\x0b@example.org", NOT_AN_ADDRESS),
    "nbsp": ("ada\u00a0x@example.org", NOT_AN_ADDRESS),
    "ideographic-space": ("ada\u3000x@example.org", NOT_AN_ADDRESS),
    "control-char": ("ada\x01@example.org", NOT_AN_ADDRESS),
    "escape": ("ada\x1b[31m@example.org", NOT_AN_ADDRESS),
    "del": ("ada@example.org\x7f", NOT_AN_ADDRESS),
    # Other characters of category C: C1 controls, format characters
    # (invisible, or reordering what is shown), private use, unassigned.
    "c1-control": ("ada\u0080@example.org", NOT_AN_ADDRESS),
    "c1-csi": ("ada\u009b@example.org", NOT_AN_ADDRESS),
    "c1-in-domain": ("ada@exa\u0080mple.org", NOT_AN_ADDRESS),
    "zero-width-space": ("ada\u200b@example.org", NOT_AN_ADDRESS),
    "zero-width-domain": ("ada@\u200b.org", NOT_AN_ADDRESS),
    "bidi-override": ("ada\u202e@example.org", NOT_AN_ADDRESS),
    "bom": ("\ufeffada@example.org", NOT_AN_ADDRESS),
    "soft-hyphen": ("ada@exam\u00adple.org", NOT_AN_ADDRESS),
    "private-use": ("ada\ue000@example.org", NOT_AN_ADDRESS),
    "unassigned": ("ada\u0378@example.org", NOT_AN_ADDRESS),
    # Not one @.
    "no-at": ("ada.example.org", NOT_AN_ADDRESS),
    "two-ats": ("ada@@example.org", NOT_AN_ADDRESS),
    "two-ats-apart": ("ada@b@example.org", NOT_AN_ADDRESS),
    "quoted-at": ('"ada@home"@example.org', NOT_AN_ADDRESS),
    "no-local": ("@example.org", NOT_AN_ADDRESS),
    "no-domain": ("ada@", NOT_AN_ADDRESS),
    "only-at": ("@", NOT_AN_ADDRESS),
    # Domains that cannot exist.
    "dotless": ("ada@localhost", BAD_DOMAIN),
    "numeric-tld": ("ada@example.123", BAD_DOMAIN),
    "alphanumeric-tld": ("ada@example.a1", BAD_DOMAIN),
    # Special-use names (RFC 6761), where no mail is ever delivered.
    "special-use-test": ("ada@example.test", BAD_DOMAIN),
    "special-use-invalid": ("ada@mail.invalid", BAD_DOMAIN),
    "special-use-local": ("ada@printer.local", BAD_DOMAIN),
    # What mail libraries parse as another address, or not at all: only
    # dot-atom local parts are addresses here (issue: the worker mailed
    # x<carol@example.com to carol@example.com, and failed on a,b@...).
    "comma": ("a,b@example.org", NOT_AN_ADDRESS),
    "semicolon": ("a;b@example.org", NOT_AN_ADDRESS),
    "angle-open": ("x<carol@example.com", NOT_AN_ADDRESS),
    "markup": ("<b>hi</b>@example.org", NOT_AN_ADDRESS),
    "comment": ("(x)carol@example.com", NOT_AN_ADDRESS),
    "group": ("g:carol@example.com", NOT_AN_ADDRESS),
    "quote": ('a"b@example.org', NOT_AN_ADDRESS),
    "quoted-local": ('"a b"@example.org', NOT_AN_ADDRESS),
    "brackets": ("a[b]@example.org", NOT_AN_ADDRESS),
    "backslash": ("a\\b@example.org", NOT_AN_ADDRESS),
    "display-name": ("Carol <carol@example.com>", NOT_AN_ADDRESS),
    "leading-dot-local": (".ada@example.org", NOT_AN_ADDRESS),
    "trailing-dot-local": ("ada.@example.org", NOT_AN_ADDRESS),
    "double-dot-local": ("a..da@example.org", NOT_AN_ADDRESS),
    "ipv4": ("ada@192.168.0.1", BAD_DOMAIN),
    "address-literal": ("ada@[192.168.0.1]", BAD_DOMAIN),
    "ipv6-literal": ("ada@[IPv6:::1]", BAD_DOMAIN),
    "leading-dot": ("ada@.example.org", BAD_DOMAIN),
    "trailing-dot": ("ada@example.org.", BAD_DOMAIN),
    "empty-label": ("ada@example..org", BAD_DOMAIN),
    "hyphen-first": ("ada@-example.org", BAD_DOMAIN),
    "hyphen-last": ("ada@example-.org", BAD_DOMAIN),
    "underscore": ("ada@exa_mple.org", BAD_DOMAIN),
    "other-punctuation": ("ada@exa!mple.org", BAD_DOMAIN),
    "label-64": ("ada@" + "x" * 64 + ".org", BAD_DOMAIN),
    "idn-label-too-long": ("ada@" + "ü" * 60 + ".org", BAD_DOMAIN),
    "idn-prohibited": ("ada@exa\u2ff0mple.org", BAD_DOMAIN),
    "empty-punycode": ("ada@xn--.org", BAD_DOMAIN),
    # Lengths.
    "255": ("l" + LONGEST, TOO_LONG),
    "255-in-domain": ("l" * 64 + "@" + domain_of(190), TOO_LONG),
    "local-65": ("l" * 65 + "@example.org", TOO_LONG),
    "local-65-octets": ("ü" * 32 + "a@example.org", TOO_LONG),
    "local-66-octets-33-chars": ("ü" * 33 + "@example.org", TOO_LONG),
    "idn-longer-as-ascii": (LONG_IDN, TOO_LONG),
    "10k": ("a" * 10_000 + "@example.org", TOO_LONG),
    "10k-with-crlf": ("a" * 10_000 + "\r\n@example.org", NOT_AN_ADDRESS),
}


@pytest.mark.parametrize(
    ("raw", "message"), list(REJECTED.values()), ids=list(REJECTED)
)
def test_rejected(raw: str, message: str) -> None:
    with pytest.raises(InvalidEmail) as info:
        normalize_email(raw)
    assert str(info.value) == message


def test_idn_example_is_within_character_limits() -> None:
    # What makes it too long is its IDNA form only.
    assert len(LONG_IDN) <= MAX_LENGTH
    assert len(LONG_IDN.split("@")[1].encode("idna")) > 189


def test_invalid_email_is_a_value_error_and_a_confirm_error() -> None:
    assert issubclass(InvalidEmail, ValueError)
    assert issubclass(InvalidEmail, ConfirmError)


@pytest.mark.parametrize("length", [64, 65])
def test_local_part_length_boundary(length: int) -> None:
    raw = "x" * length + "@example.org"
    if length <= MAX_LOCAL_LENGTH:
        assert normalize_email(raw) == raw
    else:
        with pytest.raises(InvalidEmail, match="too long"):
            normalize_email(raw)


@pytest.mark.parametrize("length", [252, 253, 254, 255, 256])
def test_total_length_boundary(length: int) -> None:
    raw = "l" * 64 + "@" + domain_of(length - 65)
    assert len(raw) == length
    if length <= MAX_LENGTH:
        assert normalize_email(raw) == raw
    else:
        with pytest.raises(InvalidEmail, match="too long"):
            normalize_email(raw)


# -- properties --------------------------------------------------------------------


ADDRESS_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))


@settings(max_examples=500, deadline=None)
@given(st.text(ADDRESS_CHARS, max_size=300))
def test_any_text_is_accepted_or_refused_cleanly(raw: str) -> None:
    try:
        email = normalize_email(raw)
    except InvalidEmail as e:
        assert str(e) in MESSAGES
        return
    check_normalised(raw, email)


#: A dot-atom local part (RFC 5322 atext, and letters of any script, as
#: RFC 6531 allows), with single dots between its atoms.
ATOM = st.text(
    st.one_of(
        st.sampled_from(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            "!#$%&'*+-/=?^_`{|}~"
        ),
        st.characters(codec="utf-8", categories=("Ll", "Lu", "Lo"), min_codepoint=0xC0),
    ),
    min_size=1,
    max_size=24,
)
LOCAL = st.lists(ATOM, min_size=1, max_size=3).map(".".join)
LABEL = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?", fullmatch=True)
TLD = st.from_regex(r"[a-zA-Z]{2,10}", fullmatch=True).filter(
    lambda tld: tld.lower() not in email_validator.SPECIAL_USE_DOMAIN_NAMES
)


@settings(max_examples=500, deadline=None)
@given(
    LOCAL,
    st.lists(LABEL, min_size=1, max_size=4),
    TLD,
    st.sampled_from(["", " ", "  ", "\t"]),
)
def test_well_formed_addresses(
    local: str, labels: list[str], tld: str, padding: str
) -> None:
    domain = ".".join([*labels, tld])
    raw = f"{padding}{local}@{domain}{padding}"
    too_long = len(local.encode()) > 64 or len(local.encode()) + 1 + len(domain) > 254
    if too_long:
        with pytest.raises(InvalidEmail, match="too long"):
            normalize_email(raw)
        return
    email = normalize_email(raw)
    assert email == unicodedata.normalize("NFC", f"{local}@{domain.lower()}")
    check_normalised(raw, email)


def check_normalised(raw: str, email: str) -> None:
    assert email == email.strip()
    assert not any(c in email for c in "\r\n\0")
    assert not any(c.isspace() or unicodedata.category(c)[0] == "C" for c in email)
    local, _, domain = email.rpartition("@")
    assert local and "@" not in local
    assert domain == domain.lower()
    # The local part as typed, in Unicode's composed form (NFC).
    assert unicodedata.normalize("NFC", raw.strip().rpartition("@")[0]) == local
    assert len(email) <= MAX_LENGTH
    assert len(local.encode()) <= MAX_LOCAL_LENGTH
    assert "." in domain.encode("idna").decode()
    # Idempotent: the normalised form is its own normal form.
    assert normalize_email(email) == email


# -- deliverability (CONFIRM_CHECK_DELIVERABILITY) ----------------------------


def test_a_domain_that_accepts_mail_passes(dns_server: DNSServer) -> None:
    resolver = dns_server.resolver()
    check_deliverable("ada@example.org", resolver)
    # Cached: a second address at the domain asks the server nothing.
    asked = len(dns_server.queries)
    check_deliverable("grace@example.org", resolver)
    assert len(dns_server.queries) == asked


@pytest.mark.parametrize(
    "address",
    [
        "ada@nomail.example.com",  # null MX (RFC 7505)
        "ada@gone.example.com",  # no such domain
    ],
)
def test_a_domain_that_accepts_no_mail_is_refused(
    dns_server: DNSServer, address: str
) -> None:
    with pytest.raises(InvalidEmail, match="does not accept mail"):
        check_deliverable(address, dns_server.resolver())
    assert dns_server.queries  # the server was asked: the answer is its


def test_a_lookup_that_times_out_passes(dns_server: DNSServer) -> None:
    """No answer is no proof: the address is let through."""
    dns_server.silent.add("slow.example.com")
    check_deliverable("ada@slow.example.com", dns_server.resolver())
    assert ("slow.example.com", "MX") in dns_server.queries


ASCII_LOCAL = st.lists(
    st.text(
        st.sampled_from(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            "!#$%&'*+-/=?^_`{|}~.\"\\ ()<>[]:;@,"
        ),
        min_size=1,
        max_size=12,
    ),
    min_size=1,
    max_size=3,
).map(".".join)


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        st.text(st.characters(max_codepoint=127), max_size=80),
        st.builds(
            lambda pad, local, labels, tld: (
                f"{pad}{local}@{'.'.join(labels)}.{tld}{pad}"
            ),
            st.sampled_from(["", " ", "\t"]),
            ASCII_LOCAL,
            st.lists(LABEL, min_size=1, max_size=3),
            TLD,
        ),
    )
)
def test_an_ascii_address_is_spelled_as_validating_spells_it(raw: str) -> None:
    """canonical_email's shortcut for ASCII addresses (what the worker spells
    for every mail) gives what normalising gives, valid address or not."""
    assert canonical_email(raw) == _canonical_by_validating(raw)


@pytest.mark.parametrize(
    ("raw", "spelled"),
    [
        (" Ada@Example.ORG ", "ada@example.org"),
        ('"Ada"@example.org', '"ada"@example.org'),  # quoted: not accepted
        ("carol@XN--BCHER-KVA.example", "carol@bücher.example"),
        ("Carol@Bücher.example", "carol@bücher.example"),
        ("not an address", "not an address"),
    ],
)
def test_canonical_spellings(raw: str, spelled: str) -> None:
    assert canonical_email(raw) == spelled
