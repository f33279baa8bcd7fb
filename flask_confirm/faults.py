"""Which send failures are worth retrying.

A transient fault (the provider is down, slow, throttling, or asks to try
later) is retried with backoff and, failing that, picked up again by the
sweeper: the confirmation stays pending until it is delivered. A permanent
fault (the provider refuses this recipient or this message for good) is not:
retrying would only repeat the refusal, and may hurt the sender's reputation.

Anything not known to be permanent is treated as transient, so an unexpected
error delays a confirmation but never loses it.
"""

from __future__ import annotations

import re
import smtplib
import typing as t

from .errors import ConfirmError

#: SES error codes that will not change by trying again.
SES_PERMANENT_CODES = frozenset({"MessageRejected", "InvalidParameterValue"})

#: SES v2's answer to a request it cannot take: permanent when it is about
#: the address (see :func:`is_permanent`), not when it is about the request.
SES_BAD_REQUEST = "BadRequestException"

#: What in a ``BadRequestException`` says the recipient's address is bad.
_BAD_ADDRESS = re.compile(r"address|domain|local part|mailbox|recipient", re.I)
#: ... unless it names the sender's, which is the app's configuration.
_OUR_ADDRESS = re.compile(r"\bfrom\b|sender|source", re.I)

#: SES refusing the account, not the message: every message would fail the
#: same way until someone fixes the account (see :func:`is_account_refusal`).
SES_ACCOUNT_CODES = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
    }
)
#: SES error codes that mean "slow down".
SES_THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException"}
)


class SendError(ConfirmError):
    """Base for errors a :class:`.Sender` may raise to say how to treat a
    failure. Other exceptions are classified by :func:`is_permanent`."""


class PermanentSendError(SendError):
    """The provider refused this message for good: do not retry."""


class InvalidRecipient(PermanentSendError, ValueError):
    """The recipient's address cannot be parsed or encoded as one address
    (a row stored by the app itself, or by an older version, holding
    ``a,b@example.org``, say). No provider will ever take it, so it is a
    permanent failure, not one for the sweeper to queue again forever.
    """


class AddressSuppressed(PermanentSendError):
    """The recipient is on the suppression list (:meth:`.Confirm.suppress`),
    so nothing was sent: the error :data:`.confirmation_failed` carries
    then. ``str(error)`` is ``"suppressed: <reason>"``, which is also what
    :attr:`.ConfirmableMixin.confirmation_error` says.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"suppressed: {reason}")
        #: Why the address is suppressed: ``hard_bounce``, ``complaint``,
        #: ``smtp_rejected`` or ``manual``.
        self.reason = reason

    def __reduce__(self) -> tuple[type[AddressSuppressed], tuple[str]]:
        # Pickled (by a job queue, a process pool) with its reason, not its text.
        return (type(self), (self.reason,))


class TransientSendError(SendError):
    """Sending failed for now: retry later."""


class ConfirmationBusy(TransientSendError):
    """Another worker holds this confirmation's lock; try again later."""


class SendingPaused(TransientSendError):
    """Sending is paused for every worker: the provider refused the account
    (:func:`is_account_refusal`). Nothing is wrong with the message."""


def is_permanent(error: BaseException) -> bool:
    """Whether ``error``, raised by a sender, means the message can never be
    delivered as it is.

    - :class:`PermanentSendError` / :class:`TransientSendError`: as they say.
    - SMTP: a 5xx reply to the recipient or the message (``SMTPRecipientsRefused``
      with every recipient refused 5xx, ``SMTPDataError`` 5xx). A 5xx to the
      login or the sender address is our configuration, not the recipient, and
      every other mail would fail the same way: transient, until fixed.
    - SES: ``MessageRejected`` and ``InvalidParameterValue`` (v1), and v2's
      ``BadRequestException`` when its message is about the address (v2's
      answer to a malformed recipient); one about anything else is our
      request's fault, not the recipient's: transient, until fixed.
    """
    if isinstance(error, SendError):
        return isinstance(error, PermanentSendError)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(error, smtplib.SMTPDataError):
        return 500 <= error.smtp_code < 600
    code = _client_error_code(error)
    if code == SES_BAD_REQUEST:
        message = _client_error_message(error)
        return bool(_BAD_ADDRESS.search(message)) and not _OUR_ADDRESS.search(message)
    return code in SES_PERMANENT_CODES


def is_account_refusal(error: BaseException) -> str | None:
    """The provider's code when ``error`` refuses the sending account itself
    (SES: suspended, sending paused, MAIL FROM domain not verified), else
    ``None``. No user is at fault, and no retry can succeed until the account
    is fixed: sending pauses for every worker instead."""
    code = _client_error_code(error)
    return code if code in SES_ACCOUNT_CODES else None


def recipient_refusal(error: BaseException) -> str | None:
    """The server's reply when ``error`` is an SMTP server refusing the
    recipient for good (``SMTPRecipientsRefused``, every reply 5xx, as
    ``550 5.1.1 user unknown`` to ``RCPT``), else ``None``. That address
    goes on the suppression list: mailing it again would be refused again,
    and each refusal counts against the sender. A 5xx to the message
    (``SMTPDataError``) is about the content, not the address: ``None``."""
    if not isinstance(error, smtplib.SMTPRecipientsRefused) or not is_permanent(error):
        return None
    return "; ".join(
        f"{code} {_decode(reply)}" for code, reply in error.recipients.values()
    )


def is_throttling(error: BaseException) -> bool:
    """Whether ``error`` says we send faster than the provider allows: the
    answer is to slow down, not to fail the job."""
    return _client_error_code(error) in SES_THROTTLING_CODES


def describe(error: BaseException) -> str:
    """A short, log-safe description of ``error``: its type and the provider's
    reply, never the message that was being sent. A suppressed address is
    its own reason, ``suppressed: <reason>``."""
    if isinstance(error, AddressSuppressed):
        return str(error)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = "; ".join(
            f"{code} {_decode(reply)}" for code, reply in error.recipients.values()
        )
        text = f"recipient refused: {replies}"
    elif isinstance(error, smtplib.SMTPResponseException):
        text = f"{error.smtp_code} {_decode(error.smtp_error)}"
    elif (code := _client_error_code(error)) is not None:
        # botocore names the exception class after the code already.
        message = getattr(error, "response", {}).get("Error", {}).get("Message", "")
        return f"{code}: {message}"[:500]
    else:
        text = str(error)
    return f"{type(error).__name__}: {text}"[:500]


def _client_error_code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return code if isinstance(code, str) else None


def _client_error_message(error: BaseException) -> str:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    message = response.get("Error", {}).get("Message")
    return message if isinstance(message, str) else ""


def _decode(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return reply


#: Anything shaped like an address, a link, or a signed token
#: (``payload.timestamp.signature``) in a provider's reply.
_SECRETS = re.compile(
    r"[^\s<>()\[\]{}'\",;:]+@[^\s<>()\[\]{}'\",;:]+"
    r"|\b[a-z][a-z0-9+.-]*://[^\s<>'\"]+"
    r"|\b[\w-]{10,}\.[\w-]{4,}\.[\w-]{10,}\b",
    re.I,
)


def redact(
    text: str, addresses: t.Iterable[str | None] = (), keep: t.Iterable[str] = ()
) -> str:
    """``text`` with every address, link and token in it replaced by
    ``<address>`` (or ``<link>``, ``<token>``), and each of ``addresses``'
    local parts too: servers echo the recipient ("no mailbox ada.lovelace"),
    and what is kept of a failure (RQ's failed jobs, the dashboard, logs,
    :attr:`.ConfirmableMixin.confirmation_error`) must not name anyone.

    :param keep: addresses left as they are: the app's own sender address,
        which a provider names when it refuses it ("not verified"), and
        which the operator needs to read there.
    """
    kept = {address.lower() for address in keep if address}

    def placeholder(match: re.Match[str]) -> str:
        found = match.group(0)
        if "@" in found and "://" not in found:
            return found if found.lower() in kept else "<address>"
        return "<link>" if "://" in found else "<token>"

    text = _SECRETS.sub(placeholder, text)
    for address in addresses:
        local = (address or "").rpartition("@")[0]
        if local:
            pattern = rf"(?<![\w.+-]){re.escape(local)}(?![\w+-])"
            text = re.sub(pattern, "<address>", text, flags=re.I)
    return text


def redacted(
    error: BaseException,
    addresses: t.Iterable[str | None],
    keep: t.Iterable[str] = (),
) -> SendError:
    """A stand-in for ``error`` to raise out of a job instead of it: the
    same verdict (:func:`is_permanent`), and :func:`describe`'s text with
    :func:`redact` applied. RQ stores the traceback of what a job raises
    (for :data:`CONFIRM_FAILED_JOB_TTL`, on the dashboard), and
    ``smtplib``'s exceptions carry the recipient's address in their
    arguments; raise it ``from None``, so the original is not chained in."""
    text = redact(describe(error), addresses, keep)
    if is_permanent(error):
        return PermanentSendError(text)
    return TransientSendError(text)
