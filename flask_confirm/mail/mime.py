"""Building the bytes of an SMTP message, fast.

The standard library's ``email`` package, used so that the common case costs
little: header values it would leave unchanged are written as they are, the
encoded forms of addresses and subjects are made once per distinct value, and
the MIME boundary is chosen here. What :class:`.SMTPSender` sends. Internal.
"""

from __future__ import annotations

import dataclasses
import email.charset
import email.header
import email.message
import email.policy
import email.utils
import functools
import os
import re
import typing as t

from ..config import Keys
from ..faults import InvalidRecipient
from ..faults import PermanentSendError
from ..faults import TransientSendError
from . import signing

if t.TYPE_CHECKING:
    import smtplib

    from ..config import DKIMKey
    from .message import EmailMessage
    from .verp import ReturnPath


#: On every mail: it was sent by a program, not a person (RFC 3834), so
#: vacation and out-of-office responders, which would answer to a mailbox
#: nobody reads, keep quiet; Exchange and Outlook read the second.
AUTO_SUBMITTED_HEADERS = (
    ("Auto-Submitted", "auto-generated"),
    ("X-Auto-Response-Suppress", "All"),
)

#: The longest line, in octets before CRLF, a 7bit or 8bit body may have
#: (RFC 5322, section 2.1.1); longer ones are sent quoted-printable.
_MAX_LINE = 998


def _quoted_utf8() -> email.charset.Charset:
    # Set explicitly: Flask-Mail, when imported, changes the global defaults
    # for "utf-8" (8bit bodies, shortest header encoding).
    charset = email.charset.Charset("utf-8")
    charset.header_encoding = email.charset.SHORTEST
    charset.body_encoding = email.charset.QP
    charset.output_charset = "utf-8"
    return charset


#: For what must be 7-bit: quoted-printable bodies, encoded-word headers.
_QUOTED = _quoted_utf8()


class _Folded(str):
    """A header value folded already (with CRLF), to be written as it is."""


class _Policy(email.policy.Compat32):
    """``compat32`` with CRLF line ends, which writes short ASCII header values
    and values folded beforehand (:class:`_Folded`) as they are. Re-folding
    every header through :class:`email.header.Header` is most of what it costs
    to serialise a message; the values written as they are here are the ones
    it would leave unchanged. Others (long ones, and raw UTF-8 addresses for
    SMTPUTF8) take compat32's own way."""

    def fold_binary(self, name: str, value: t.Any) -> bytes:
        if isinstance(value, _Folded) or (
            isinstance(value, str)
            and len(name) + len(value) <= 76
            and value.isascii()
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}\r\n".encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _Policy(linesep="\r\n")

#: Characters that make an address more than a bare ``local@domain``.
_NOT_BARE = re.compile(r"[\s<>()\[\],;:\"\\]")
#: ``Name <address>``, for a From whose name is not quoted as it should be
#: (``Example, Inc. <no-reply@example.com>``).
_NAME_ADDR = re.compile(r"(.*?)\s*<([^<>]+)>\s*")
#: Characters that make a display name need quotes (as ``formataddr``).
_SPECIALS = re.compile(r"[][\\()<>@,:;\".]")


@dataclasses.dataclass(frozen=True)
class _Address:
    #: The From or To header's value: encoded for 7-bit transport, or raw
    #: UTF-8 (as surrogate escapes) when :attr:`international`.
    header: str
    #: For MAIL FROM and RCPT TO: the local part as it is, the domain in IDNA.
    envelope: str
    #: The domain, in its ASCII (IDNA) form.
    domain: str
    #: The local part is not ASCII: SMTPUTF8 is needed.
    international: bool


def _address(value: str, role: str) -> _Address:
    """The address ``value`` (``local@domain`` or ``Name <local@domain>``)
    ready for the header and the envelope.

    :raises InvalidRecipient: the recipient's cannot be read as one address
        or its domain cannot be encoded, which no retry changes.
    :raises ValueError: the same of the sender: the configuration, which
        every mail shares, so it stays a transient failure until fixed.
    """
    if value.isascii() and "@" in value and not _NOT_BARE.search(value):
        # The common case, per message: a plain ASCII address as it is.
        return _Address(value, value, value.rpartition("@")[2], False)
    try:
        return _parse_address(value, role)
    except ValueError as e:  # UnicodeError too, from the IDNA codec
        if role != "recipient" or isinstance(e, InvalidRecipient):
            raise
        raise InvalidRecipient(str(e) or "The recipient address is not valid.") from e


def check_recipient(value: str) -> None:
    """Check that ``value`` can be a mail's recipient, as the SMTP and SES
    senders write it, before any sender (the app's own included) is handed
    it. Internal.

    :raises InvalidRecipient: it cannot.
    """
    _address(value, "recipient")


def ascii_address(value: str, role: str, service: str) -> str:
    """``value`` in the 7-bit form an API such as SES's wants: the name as
    encoded words, the domain in IDNA, on one line.

    :param role: ``"sender"`` or ``"recipient"``.
    :raises PermanentSendError: the recipient's local part is not ASCII,
        which ``service`` cannot carry.
    :raises TransientSendError: the same of the sender (a configuration
        problem, worth retrying once it is fixed).
    """
    address = _address(value, role)
    if address.international:
        problem = f"{service} does not accept an address that is not ASCII before the @"
        if role == "sender":
            raise TransientSendError(f"{problem}: fix {Keys.MAIL_FROM}.")
        raise PermanentSendError(f"{problem} (the recipient's).")
    return address.header.replace("\r\n", "")


@functools.lru_cache(maxsize=64)
def _parse_address(value: str, role: str) -> _Address:
    if "\r" in value or "\n" in value:
        raise ValueError(f"The {role} address contains a line break.")
    pairs = email.utils.getaddresses([value])
    if len(pairs) == 1 and "@" in pairs[0][1]:
        name, addr_spec = pairs[0]
    elif match := _NAME_ADDR.fullmatch(value.strip()):
        name, addr_spec = match[1].strip('"'), match[2].strip()
    else:
        raise ValueError(f"The {role} address is not one email address.")
    local, _, domain = addr_spec.rpartition("@")
    if not local or not domain:
        raise ValueError(f"The {role} address is not one email address.")
    domain = _ascii_domain(domain)
    addr_spec = f"{local}@{domain}"
    if not name:
        header = addr_spec
    elif name.isascii():
        quote = '"' if _SPECIALS.search(name) else ""
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        header = f"{quote}{escaped}{quote} <{addr_spec}>"
    else:
        # Encoded words of at most 75 characters, separated by spaces.
        words = email.header.Header(name, _QUOTED).encode(linesep="")
        header = f"{words} <{addr_spec}>"
    international = not local.isascii()
    if international:
        # Written raw (SMTPUTF8): the generator writes the surrogate escapes
        # back as the UTF-8 bytes they stand for.
        header = header.encode("utf-8").decode("ascii", "surrogateescape")
    else:
        header = _fold("From" if role == "sender" else "To", header)
    return _Address(header, addr_spec, domain, international)


@functools.lru_cache(maxsize=256)
def _ascii_domain(domain: str) -> str:
    return domain if domain.isascii() else domain.encode("idna").decode("ascii")


def _fold(name: str, value: str) -> _Folded:
    """``value`` folded as compat32 would fold it (encoded words if it is not
    ASCII), once, to be cached."""
    charset = None if value.isascii() else _QUOTED
    header = email.header.Header(value, charset, header_name=name)
    return _Folded(header.encode(linesep="\r\n"))


@functools.lru_cache(maxsize=64)
def _subject(subject: str) -> _Folded:
    if "\r" in subject or "\n" in subject:
        raise ValueError("The subject contains a line break.")
    return _fold("Subject", subject)


def _fits_as_is(text: str) -> bool:
    """No line of ``text`` is too long to send without an encoding."""
    data = text.encode("utf-8")
    return len(data) <= _MAX_LINE or max(map(len, data.splitlines())) <= _MAX_LINE


@dataclasses.dataclass(frozen=True)
class OutgoingMail:
    """One message on its way over SMTP: everything but its bytes, which
    depend on what the server offers (:meth:`render`)."""

    sender: _Address
    to: _Address
    #: The envelope sender (MAIL FROM): the From address, or the recipient's
    #: tagged :data:`CONFIRM_RETURN_PATH`.
    mail_from: str
    subject: _Folded
    date: str
    message_id: str
    text: str
    html: str

    @classmethod
    def prepare(
        cls,
        message: EmailMessage,
        sender_address: str,
        return_path: ReturnPath | None = None,
    ) -> OutgoingMail:
        """Everything but the bytes of ``message``, sent from
        ``sender_address`` (its From, or a default), with ``return_path``'s
        address for its recipient as the envelope sender if given."""
        sender = _address(sender_address, "sender")
        to = _address(message.to, "recipient")
        return cls(
            sender=sender,
            to=to,
            mail_from=(
                return_path.address_for(to.envelope)
                if return_path is not None
                else sender.envelope
            ),
            subject=_subject(message.subject),
            date=email.utils.formatdate(localtime=True),
            # With a domain, make_msgid does not ask for the host's name.
            message_id=email.utils.make_msgid(domain=sender.domain),
            text=message.text,
            html=message.html,
        )

    def render(
        self, host: smtplib.SMTP, dkim: DKIMKey | None = None
    ) -> tuple[bytes, list[str]]:
        """The message's bytes and the MAIL FROM options, for ``host``;
        signed with ``dkim`` if given, once the bytes are final, and then
        with no 8bit body, which a server on the way might convert."""
        host.ehlo_or_helo_if_needed()
        options: list[str] = []
        eight_bit = host.has_extn("8bitmime") and dkim is None
        if self.sender.international or self.to.international:
            if not host.has_extn("smtputf8"):
                if self.sender.international:
                    raise TransientSendError(
                        f"The sender address ({Keys.MAIL_FROM}) is not ASCII before"
                        " the @, which needs SMTPUTF8; the SMTP server does not"
                        " offer it."
                    )
                raise PermanentSendError(
                    "The recipient's address is not ASCII before the @, which"
                    " needs SMTPUTF8; the SMTP server does not offer it."
                )
            options.append("SMTPUTF8")
            eight_bit = dkim is None
        root = email.message.Message(policy=_POLICY)
        root["From"] = self.sender.header
        root["To"] = self.to.header
        root["Subject"] = self.subject
        root["Date"] = self.date
        root["Message-ID"] = self.message_id
        root["MIME-Version"] = "1.0"
        for name, value in AUTO_SUBMITTED_HEADERS:
            root[name] = value
        boundary = _boundary(self.text, self.html)
        root["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
        for body, subtype in ((self.text, "plain"), (self.html, "html")):
            part = email.message.Message(policy=_POLICY)
            part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
            if body.isascii() and _fits_as_is(body):
                part["Content-Transfer-Encoding"] = "7bit"
                part.set_payload(body)
            elif eight_bit and _fits_as_is(body):
                part["Content-Transfer-Encoding"] = "8bit"
                # As surrogate escapes, which the generator writes as bytes.
                part.set_payload(body.encode().decode("ascii", "surrogateescape"))
                if "BODY=8BITMIME" not in options:
                    options.append("BODY=8BITMIME")
            else:
                part["Content-Transfer-Encoding"] = "quoted-printable"
                part.set_payload(_QUOTED.body_encode(body))
            root.attach(part)
        if "SMTPUTF8" in options and "BODY=8BITMIME" not in options:
            options.append("BODY=8BITMIME")  # RFC 6531: SMTPUTF8 goes with it
        data = root.as_bytes(policy=_POLICY)
        if dkim is not None:
            data = signing.sign(data, dkim)
        return data, options


def _boundary(*bodies: str) -> str:
    # Set here: the generator would otherwise make one and compile a regular
    # expression to check it, for each message. "=_" never occurs in
    # quoted-printable; the check covers the bodies sent as they are.
    while True:
        boundary = "=_" + os.urandom(12).hex()
        if not any(boundary in body for body in bodies):
            return boundary
