"""Delivery status notifications (RFC 3464), read as bounces.

An SMTP server that cannot deliver a mail it accepted sends a DSN to the
envelope sender. With :data:`CONFIRM_RETURN_PATH` that sender is
``bounces+<tag>@domain`` (:mod:`.mail.verp`), whose tag names the recipient
under an HMAC: the DSN's own ``Final-Recipient`` is only what its author wrote,
and anyone can mail a bounce box, so a recipient is believed only from a
valid tag. ``flask confirm bounces`` hands each DSN (from an MTA pipe or a
Maildir) to :func:`read`, and what it finds to :func:`.feedback.apply`, as
for SES's bounces: a ``5.x.x`` failure suppresses the address and fails what
was owed to it; a ``4.x.x`` or a delay is a soft bounce. Internal.
"""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import email.utils
import re
import typing as t

from .ses_events import MAX_DIAGNOSTIC
from .ses_events import Recipient
from .ses_events import SESEvent

if t.TYPE_CHECKING:
    from .mail.verp import ReturnPath

#: Headers in which an MTA says to whom it delivered the DSN: the tagged
#: envelope sender of the mail that bounced.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")

_STATUS = re.compile(r"([245])\.\d{1,3}\.\d{1,3}")


@dataclasses.dataclass(frozen=True)
class Reading:
    """What a message turned out to be: ``event`` to apply, or why not."""

    event: SESEvent | None
    #: ``bounce``, ``not_a_dsn``, ``unverified`` (no valid tag), or
    #: ``delivered`` (a DSN that reports success).
    outcome: str


def read(
    raw: bytes, return_path: ReturnPath, envelope_to: str | None = None
) -> Reading:
    """Read one message: a DSN whose tagged recipient address verifies
    becomes a bounce event for that recipient.

    :param envelope_to: the address the MTA delivered the DSN to, when it
        passes it (Postfix's ``${original_recipient}``); else the headers
        are read (:data:`ENVELOPE_HEADERS`).
    """
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    status = _delivery_status(message)
    if status is None:
        return Reading(None, "not_a_dsn")
    recipient = _tagged_recipient(message, return_path, envelope_to)
    if recipient is None:
        return Reading(None, "unverified")
    action, code, diagnostic = _recipient_fields(status)
    if action in ("delivered", "relayed", "expanded"):
        return Reading(None, "delivered")
    permanent = action == "failed" and code.startswith("5.")
    event = SESEvent(
        "bounce",
        (Recipient(recipient, diagnostic),),
        permanent=permanent,
        detail=f"{action or 'unknown'} {code}".strip(),
    )
    return Reading(event, "bounce")


def _delivery_status(
    message: email.message.Message,
) -> list[email.message.Message] | None:
    """The ``message/delivery-status`` part's field groups, if this is a DSN."""
    if message.get_content_type() != "multipart/report":
        return None
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            groups = part.get_payload()
            if isinstance(groups, list) and groups:
                return [g for g in groups if isinstance(g, email.message.Message)]
    return None


def _tagged_recipient(
    message: email.message.Message, return_path: ReturnPath, envelope_to: str | None
) -> str | None:
    candidates = [envelope_to] if envelope_to else []
    for name in ENVELOPE_HEADERS:
        for value in message.get_all(name, []):
            for _, address in email.utils.getaddresses([str(value)]):
                candidates.append(address)
    for address in candidates:
        if address and (recipient := return_path.recipient_of(address)):
            return recipient
    return None


def _recipient_fields(
    groups: list[email.message.Message],
) -> tuple[str, str, str | None]:
    """``(action, status code, diagnostic)`` of the first per-recipient group
    (the one after the per-message group): a tagged return path carries one
    recipient per mail."""
    fields = groups[1] if len(groups) > 1 else groups[0]
    action = str(fields.get("Action", "")).strip().lower()
    match = _STATUS.search(str(fields.get("Status", "")))
    code = match.group(0) if match else ""
    diagnostic = fields.get("Diagnostic-Code")
    text = " ".join(str(diagnostic).split()) if diagnostic else None
    return action, code, text[:MAX_DIAGNOSTIC] if text else None
