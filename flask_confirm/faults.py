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

import smtplib

from .errors import ConfirmError

#: SES error codes that will not change by trying again.
SES_PERMANENT_CODES = frozenset({"MessageRejected", "InvalidParameterValue"})
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


class TransientSendError(SendError):
    """Sending failed for now: retry later."""


class ConfirmationBusy(TransientSendError):
    """Another worker holds this confirmation's lock; try again later."""


def is_permanent(error: BaseException) -> bool:
    """Whether ``error``, raised by a sender, means the message can never be
    delivered as it is.

    - :class:`PermanentSendError` / :class:`TransientSendError`: as they say.
    - SMTP: a 5xx reply to the recipient or the message (``SMTPRecipientsRefused``
      with every recipient refused 5xx, ``SMTPDataError`` 5xx). A 5xx to the
      login or the sender address is our configuration, not the recipient, and
      every other mail would fail the same way: transient, until fixed.
    - SES: ``MessageRejected`` and ``InvalidParameterValue``.
    """
    if isinstance(error, SendError):
        return isinstance(error, PermanentSendError)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(error, smtplib.SMTPDataError):
        return 500 <= error.smtp_code < 600
    code = _client_error_code(error)
    return code in SES_PERMANENT_CODES


def is_throttling(error: BaseException) -> bool:
    """Whether ``error`` says we send faster than the provider allows: the
    answer is to slow down, not to fail the job."""
    return _client_error_code(error) in SES_THROTTLING_CODES


def describe(error: BaseException) -> str:
    """A short, log-safe description of ``error``: its type and the provider's
    reply, never the message that was being sent."""
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


def _decode(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return reply
