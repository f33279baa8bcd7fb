"""DKIM signatures (RFC 6376) on the bytes :mod:`.mime` writes, with the
well-kept ``dkimpy``.

Signed last, over the bytes exactly as they are sent: :mod:`.mime` writes a
signed mail's bodies in 7bit or quoted-printable only, never 8bit, since a
server without 8BITMIME on the way would convert an 8bit body and break the
body hash. The ``relaxed/relaxed`` canonicalisation lets the signature
survive what servers are allowed to do on the way (refolding headers,
trailing white space). Internal.
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from ..config import DKIMKey

#: The header fields signed, as RFC 6376 (section 5.4.1) recommends of what
#: Flask-Confirm writes.
SIGNED = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
)

#: Signed once more than they occur, which signs that there is no other:
#: a second From, To or Subject added on the way makes the signature fail
#: instead of showing the reader the added one (RFC 6376, section 8.15).
OVERSIGNED = ("From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted")


def sign(data: bytes, key: DKIMKey) -> bytes:
    """``data`` (a whole message, CRLF line ends) with a ``DKIM-Signature``
    header field before its others."""
    import dkim

    signature: bytes = dkim.sign(
        data,
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[name.lower().encode("ascii") for name in SIGNED + OVERSIGNED],
        linesep=b"\r\n",
    )
    return signature + data
