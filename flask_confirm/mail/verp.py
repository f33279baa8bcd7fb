"""The envelope sender of SMTP mail with its recipient in it (VERP), so that
a bounce names the address it is about, and nobody else can name one.

With :data:`CONFIRM_RETURN_PATH` = ``"bounces@example.com"``, the mail to
``ada@example.org`` is sent ``MAIL FROM:<bounces+ada=example.org-TAG@example.com>``:
the recipient's local part, ``=``, its domain (ASCII), ``-`` and a MAC of
the address keyed from ``SECRET_KEY``. A delivery status notification
(RFC 3464) goes to that address, whatever the remote server quotes of the
original mail, and :meth:`ReturnPath.recipient_of` reads the recipient back,
or ``None`` for an address that was not made here: a bounce cannot be forged
to suppress someone else's address.

The encoding keeps a tagged address a plain dot-atom of ASCII letters,
digits, ``-``, ``.``, ``=`` and ``_``: every character of the recipient's
address other than letters, digits, ``-`` and single dots is written ``_``
and two hex digits of each of its UTF-8 octets (``ada+news`` is
``ada_2bnews``), so no ``+`` or ``%`` that a server might route on is ever
added, and the envelope needs no SMTPUTF8. Case does not matter: the MAC is
made over the address with ASCII letters in lower case, so a server that
lowers the local part (Exim does, by default) does not break it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import typing as t

#: The purpose the tag keys are derived for, from each secret key.
PURPOSE = b"flask-confirm.verp"

#: Octets of HMAC-SHA256 kept in a tag: 80 bits, 16 characters of base32.
MAC_BYTES = 10
MAC_LENGTH = len(base64.b32encode(bytes(MAC_BYTES)).rstrip(b"="))

#: Between the encoded address and the MAC; never in the MAC's base32.
_MAC_SEPARATOR = "-"
#: Between the recipient's encoded local part and its domain.
_DOMAIN_SEPARATOR = "="
_KEPT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_ESCAPE = re.compile(r"_([0-9A-Fa-f]{2})")
_ENCODED = re.compile(r"(?:[A-Za-z0-9.-]|_[0-9A-Fa-f]{2})+")
_MAC = re.compile(rf"[a-z2-7]{{{MAC_LENGTH}}}")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def derive_keys(secret_keys: t.Sequence[str | bytes]) -> tuple[bytes, ...]:
    """The tag keys of the secret keys ``[*SECRET_KEY_FALLBACKS,
    SECRET_KEY]``, oldest first: tags are made with the last and read with
    any, so that the bounces of mail sent before a key rotation still count.
    """
    return tuple(
        hmac.new(
            key.encode("utf-8") if isinstance(key, str) else key,
            PURPOSE,
            hashlib.sha256,
        ).digest()
        for key in secret_keys
    )


@dataclasses.dataclass(frozen=True)
class ReturnPath:
    """Tagged envelope senders on one base address, and the recipients
    named by them.

    :param base: the checked :data:`CONFIRM_RETURN_PATH` (``local@domain``,
        the local part ASCII without ``+``, the domain lower-case ASCII), as
        :class:`~flask_confirm.config.Settings` holds it.
    :param keys: from :func:`derive_keys`.

    .. versionadded:: 0.1
    """

    base: str
    keys: tuple[bytes, ...] = dataclasses.field(repr=False)

    @classmethod
    def of(cls, base: str, secret_keys: t.Sequence[str | bytes]) -> ReturnPath:
        """The return path on ``base``, keyed from ``secret_keys``
        (``[*SECRET_KEY_FALLBACKS, SECRET_KEY]``)."""
        return cls(base, derive_keys(secret_keys))

    def address_for(self, recipient: str) -> str:
        """The envelope sender of a mail to ``recipient``, the address of
        the RCPT TO (IDNA domain, local part as it is)."""
        local, _, domain = recipient.rpartition("@")
        encoded = f"{_encode(local)}{_DOMAIN_SEPARATOR}{_encode(domain)}"
        mac = _mac(self.keys[-1], f"{local}@{domain}")
        base_local, _, base_domain = self.base.rpartition("@")
        return f"{base_local}+{encoded}{_MAC_SEPARATOR}{mac}@{base_domain}"

    def recipient_of(self, address: str) -> str | None:
        """The recipient whose mail was sent from ``address`` (as
        :meth:`address_for` made it: its domain in ASCII, the case of the
        local part as the servers on the way kept it), or ``None`` if
        ``address`` is not one of this return path's, was garbled, or its
        MAC is not one made with any of the keys.

        A DSN's ``Original-Envelope-Id`` is not needed: the address it was
        delivered to is enough, with or without angle brackets.
        """
        address = address.strip().removeprefix("<").removesuffix(">")
        local, _, domain = address.rpartition("@")
        try:
            domain = domain.encode("idna").decode("ascii")  # as the base's
        except UnicodeError:
            return None
        base_local, _, base_domain = self.base.rpartition("@")
        prefix, plus, tag = local.partition("+")
        if (
            not plus
            or prefix.lower() != base_local.lower()
            or domain.lower().rstrip(".") != base_domain
        ):
            return None
        encoded, separator, mac = tag.rpartition(_MAC_SEPARATOR)
        mac = mac.lower()
        if not separator or not _MAC.fullmatch(mac):
            return None
        recipient_local, separator, recipient_domain = encoded.rpartition(
            _DOMAIN_SEPARATOR
        )
        if not separator:
            return None
        try:
            recipient = f"{_decode(recipient_local)}@{_decode(recipient_domain)}"
        except ValueError:
            return None
        found = False
        for key in self.keys:  # all of them: no early exit to time
            found |= hmac.compare_digest(_mac(key, recipient), mac)
        return recipient if found else None


def _mac(key: bytes, address: str) -> str:
    """The MAC of ``address``, lower-case base32; ASCII letters lowered
    first, since servers may fold the case of what they relay."""
    data = address.translate(_ASCII_LOWER).encode("utf-8", "surrogatepass")
    digest = hmac.new(key, data, hashlib.sha256).digest()[:MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def _encode(text: str) -> str:
    """``text`` as a run of dot-atom characters that :func:`_decode` reads
    back: letters, digits and ``-`` as they are, a dot as it is unless it
    follows one or ends ``text`` (no ``..``, nothing ending in ``.`` before
    the separators), everything else as ``_xx`` per UTF-8 octet."""
    out: list[str] = []
    for i, char in enumerate(text):
        if char in _KEPT or (
            char == "." and i + 1 < len(text) and i > 0 and out[-1][-1] != "."
        ):
            out.append(char)
        else:
            out.extend(f"_{octet:02x}" for octet in char.encode("utf-8"))
    return "".join(out)


def _decode(encoded: str) -> str:
    """What :func:`_encode` made ``encoded`` from.

    :raises ValueError: ``encoded`` is empty, has a character or escape that
        :func:`_encode` never writes, or is not UTF-8.
    """
    if not _ENCODED.fullmatch(encoded):
        raise ValueError(encoded)
    octets = bytearray()
    position = 0
    for match in _ESCAPE.finditer(encoded):
        octets += encoded[position : match.start()].encode("ascii")
        octets.append(int(match[1], 16))
        position = match.end()
    octets += encoded[position:].encode("ascii")
    return octets.decode("utf-8")  # UnicodeDecodeError is a ValueError
