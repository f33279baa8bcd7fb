"""Checking and normalising the email addresses visitors type.

Only what arrives over the network passes through here (the resend and
password reset forms, :meth:`.Confirm.request_email_change`, ``flask confirm
send``); addresses an app stores are its own business. The syntax is checked
by the well-kept ``email-validator`` package (what WTForms and pydantic use)
rather than by rules of our own: an address it accepts is one a mail can
carry. Only dot-atom local parts are accepted (no quoted ones, comments,
display names, brackets or commas, which mail libraries read as *other*
addresses), and special-use domains (``.test``, ``.invalid``, ...) are
refused, since no mail reaches them.
"""

from __future__ import annotations

import typing as t
import unicodedata

import email_validator

from .errors import ConfirmError
from .i18n import N_

#: RFC 5321: a path is at most 256 octets including the angle brackets.
MAX_LENGTH = 254
MAX_LOCAL_LENGTH = 64

NOT_AN_ADDRESS = N_("That does not look like an email address.")
TOO_LONG = N_("That email address is too long.")
BAD_DOMAIN = N_("The domain of that address is not valid.")
EMPTY = N_("Please enter your email address.")
UNDELIVERABLE = N_("The domain of that address does not accept mail.")


class InvalidEmail(ConfirmError, ValueError):
    """An address that cannot be a deliverable one; ``str(error)`` is a
    message fit to show the visitor."""


def normalize_email(raw: str) -> str:
    """Return ``raw`` checked and in the one form used to store and compare
    addresses: surrounding whitespace removed, Unicode normalised (NFC), the
    domain lower-cased and in its Unicode form, so that ``xn--bcher-kva.de``
    and ``bücher.de`` are one domain. The local part is kept as typed (it is
    case-sensitive in principle; lookups compare it case-insensitively).

    :raises InvalidEmail: with a message for the visitor.
    """
    if any(c in raw for c in "\r\n\0"):
        # Before stripping: line breaks are never part of an address, and a
        # header-injection attempt deserves a refusal, not a quiet trim.
        raise InvalidEmail(NOT_AN_ADDRESS)
    email = raw.strip()
    if not email:
        raise InvalidEmail(EMPTY)
    if len(email) > MAX_LENGTH:
        raise InvalidEmail(TOO_LONG)
    if any(c.isspace() or unicodedata.category(c).startswith("C") for c in email):
        # Controls (C0, DEL, C1), format characters (zero-width, soft hyphen),
        # surrogates, unassigned: invisible, and never in a real address.
        raise InvalidEmail(NOT_AN_ADDRESS)
    local, _, _ = email.rpartition("@")
    if len(local.encode("utf-8")) > MAX_LOCAL_LENGTH:
        # RFC 5321's limit in octets, which email-validator leaves to strict
        # mode; servers refuse longer ones.
        raise InvalidEmail(TOO_LONG)
    try:
        valid = email_validator.validate_email(email, check_deliverability=False)
    except email_validator.EmailNotValidError:
        raise InvalidEmail(_message(email)) from None
    return str(valid.normalized)


def check_deliverable(email: str, resolver: t.Any) -> None:
    """Check that the domain of ``email`` (normalised) accepts mail: it has
    an MX record that is not a null MX (RFC 7505), or, lacking one, a
    global address, as ``email-validator`` checks it, through ``resolver``
    (a dnspython resolver with a cache, so a domain costs one lookup).

    A lookup that times out or finds no server says nothing, and passes:
    only a definite answer refuses an address.

    :raises InvalidEmail: the domain does not exist or accepts no mail.
    """
    try:
        email_validator.validate_email(
            email, check_deliverability=True, dns_resolver=resolver
        )
    except email_validator.EmailUndeliverableError:
        raise InvalidEmail(UNDELIVERABLE) from None
    except email_validator.EmailNotValidError:
        raise InvalidEmail(_message(email)) from None


def lookup_keys(email: str) -> list[str]:
    """What ``lower()`` of a stored address must be for it to be ``email``:
    the forms a row may hold it in, lower-cased as a database lowers them.

    A row may hold the address normalised (:func:`normalize_email`: the
    domain in Unicode) or as stored before normalisation, such as
    ``carol@XN--BCHER-KVA.example``, so both the Unicode and the ASCII
    (IDNA) domain are given, so that the punycode spelling of an address is
    that address. Each is lower-cased as PostgreSQL and MariaDB do (all of
    Unicode) and as SQLite does (ASCII letters only), so that the keys can
    be compared with ``lower(column)`` on any database, and use an index
    on it. An ``email`` that is not a valid address is looked up as typed,
    stripped.
    """
    email = email.strip()
    forms = [email]
    try:
        normal = normalize_email(email)
        ascii_domain = email_validator.validate_email(
            normal, check_deliverability=False
        ).ascii_domain
    except InvalidEmail:
        pass
    else:
        local = normal.rpartition("@")[0]
        forms = [normal, f"{local}@{ascii_domain}"]
    keys = {key for form in forms for key in (form.lower(), _ascii_lower(form))}
    return sorted(keys)


def canonical_email(email: str) -> str:
    """The one spelling of ``email`` that a table keyed by address stores
    (the suppression list): :func:`normalize_email`'s form (the domain in
    Unicode, so the punycode spelling is the same address), lower-cased
    throughout, as lookups compare addresses without regard to case. An
    ``email`` that is not a valid address is stripped and lower-cased, so
    that even a row the app stored badly has one key.

    The worker spells every address it mails this way: an ASCII one with
    no quote and no IDNA label is spelled without validating it, since all
    that normalising could change in it is the case (or it is not valid,
    and stripped and lower-cased anyway). ``tests/test_addresses`` checks
    that both ways agree.
    """
    if email.isascii() and '"' not in email and "xn--" not in email.lower():
        return email.strip().lower()
    return _canonical_by_validating(email)


def _canonical_by_validating(email: str) -> str:
    """:func:`canonical_email`, the whole way: through :func:`normalize_email`."""
    try:
        return normalize_email(email).lower()
    except InvalidEmail:
        return email.strip().lower()


def _ascii_lower(text: str) -> str:
    """``text`` lower-cased as SQLite's ``lower()`` does: ASCII only."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _message(email: str) -> str:
    """One of our few messages for ``email-validator``'s many: a bad domain
    (told by checking the domain alone), too long (in UTF-8 octets, as
    RFC 6531 counts and ``email-validator`` checks), or not an address."""
    local, at, domain = email.rpartition("@")
    if at and local and domain:
        probe = f"a@{domain}"
        try:
            email_validator.validate_email(probe, check_deliverability=False)
        except email_validator.EmailNotValidError:
            if len(probe.encode()) <= MAX_LENGTH:
                return BAD_DOMAIN
    return TOO_LONG if len(email.encode()) > MAX_LENGTH else NOT_AN_ADDRESS
