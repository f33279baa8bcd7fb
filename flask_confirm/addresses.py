"""Checking and normalising the email addresses visitors type.

Only what arrives over the network passes through here (the resend and
password reset forms, and :meth:`.Confirm.request_email_change`); addresses an
app stores are its own business. The checks are those of
RFC 5321 that matter for delivery and safety: lengths, no line breaks (header
injection), a domain that can exist (internationalised ones included, checked
in their IDNA form).
"""

from __future__ import annotations

import re
import unicodedata

from .errors import ConfirmError

#: RFC 5321: a path is at most 256 octets including the angle brackets.
MAX_LENGTH = 254
MAX_LOCAL_LENGTH = 64
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class InvalidEmail(ConfirmError, ValueError):
    """An address that cannot be a deliverable one; ``str(error)`` is a
    message fit to show the visitor."""


def normalize_email(raw: str) -> str:
    """Return ``raw`` checked and in the form used to compare addresses:
    surrounding whitespace removed and the domain lower-cased (the local part
    is case-sensitive in principle, so it is kept as typed; lookups compare it
    case-insensitively).

    :raises InvalidEmail: with a message for the visitor.
    """
    if any(c in raw for c in "\r\n\0"):
        # Before stripping: line breaks are never part of an address, and a
        # header-injection attempt deserves a refusal, not a quiet trim.
        raise InvalidEmail("That does not look like an email address.")
    email = raw.strip()
    if not email:
        raise InvalidEmail("Please enter your email address.")
    if len(email) > MAX_LENGTH:
        raise InvalidEmail("That email address is too long.")
    if any(c.isspace() or unicodedata.category(c).startswith("C") for c in email):
        # Controls (C0, DEL, C1), format characters, surrogates, unassigned.
        raise InvalidEmail("That does not look like an email address.")
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or "@" in local:
        raise InvalidEmail("That does not look like an email address.")
    if len(local.encode("utf-8")) > MAX_LOCAL_LENGTH:
        raise InvalidEmail("That email address is too long.")
    domain = domain.lower()
    ascii_domain = _idna(domain)
    if len(local.encode("utf-8")) + 1 + len(ascii_domain) > MAX_LENGTH:
        raise InvalidEmail("That email address is too long.")
    return f"{local}@{domain}"


def _idna(domain: str) -> str:
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidEmail("The domain of that address is not valid.") from None
    labels = ascii_domain.split(".")
    if (
        len(labels) < 2
        or len(ascii_domain) > 253
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidEmail("The domain of that address is not valid.")
    return ascii_domain
